"""Sweep reports: one row per member, seeds pooled, failures kept, every study's tables and plots.

Sweeps are written by hand here (results rows, ``.hydra`` files) so the expected answers are
known; ``tests/test_studies.py`` runs the real study sweeps.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from agefair.reporting import report
from agefair.reporting.plots import curve_styles, pareto_mask, short_label
from agefair.reporting.report import main, markdown_table
from agefair.reporting.studies import STUDIES, StudyInput, smallest_reaching
from agefair.reporting.sweep_results import aggregate_seeds, collect, distinct_labels
from agefair.reporting.tables import budget_line
from tests.conftest import run_module

BUDGET = {
    "trainer": {"max_epochs": 3, "limit_train_batches": 80, "fast_dev_run": False},
    "data": {"batch_size": 64, "img_size": 64},
    "threads": 1,
}


def scores(age_mae: float, gender: float, race: float, flops: float) -> dict:
    """A finished member's results row with the given metrics and FLOPs."""
    return {
        "status": "ok",
        "model": "multitask",
        "backbone": "cnn",
        "pretrained": False,
        "test/age_mae": age_mae,
        "test/gender_acc": gender,
        "test/race_acc": race,
        "test/race_acc_balanced": race - 0.1,
        "flops_per_image": flops,
        "params": flops / 30,
        "latency_ms_b1": flops / 1e7,
        "train_time_s": flops / 1e6,
        "examples_seen": 15360,
        "threads": 1,
        "val/objective": age_mae / 10,
        "val/age_mae": age_mae,
    }


def write_sweep(
    folder: Path,
    members: list[tuple[list[str], dict]],
    swept: dict[str, str] | None = None,
    budget: dict | None = None,
) -> Path:
    """A multirun folder: per member its results row and Hydra's overrides and config files
    (the config: ``budget``, :data:`BUDGET` unless given)."""
    folder.mkdir(parents=True, exist_ok=True)
    params = swept or {"backbone.width": "8,16"}
    OmegaConf.save({"hydra": {"sweeper": {"params": params}, "overrides": {"task": []}}},
                   folder / "multirun.yaml")  # fmt: skip
    for i, (overrides, row) in enumerate(members):
        hydra_dir = folder / str(i) / ".hydra"
        hydra_dir.mkdir(parents=True)
        OmegaConf.save(OmegaConf.create(overrides), hydra_dir / "overrides.yaml")
        OmegaConf.save(OmegaConf.create(budget or BUDGET), hydra_dir / "config.yaml")
        seed = next((int(o.split("=")[1]) for o in overrides if o.startswith("seed=")), 0)
        pd.DataFrame([{"seed": seed, **row}]).to_csv(folder / str(i) / "results.csv", index=False)
    return folder


def test_markdown_table_keeps_failed_members(tmp_path):
    for i, row in enumerate(
        [
            {"status": "ok", "model": "multitask", "test/age_mae": 6.12345, "params": 1234567},
            {"status": "failed", "model": "joint", "error": "ValueError: width must be >= 1"},
        ]
    ):
        (tmp_path / str(i)).mkdir()
        pd.DataFrame([row]).to_csv(tmp_path / str(i) / "results.csv", index=False)
    df = collect(tmp_path)
    assert list(df["model"]) == ["multitask", "joint"]
    table = markdown_table(df)
    assert "6.123" in table and "1.23 M" in table
    assert "joint failed" in table and "width must be" in table
    assert main([str(tmp_path), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "table.md").is_file()


def test_collect_refuses_a_folder_without_results(tmp_path):
    with pytest.raises(FileNotFoundError, match="multirun"):
        collect(tmp_path)


def test_members_differing_only_by_seed_are_pooled(tmp_path):
    width8 = ["backbone.width=8", "paths.archive=/a"]
    sweep = write_sweep(
        tmp_path / "sweep",
        [
            ([*width8, "seed=0"], scores(8.0, 0.80, 0.60, 1e6)),
            ([*width8, "seed=1"], scores(7.0, 0.90, 0.70, 1e6)),
            (["backbone.width=16", "seed=0"], scores(6.0, 0.85, 0.65, 4e6)),
            (["backbone.width=16", "seed=1"], {"status": "failed", "error": "OOM"}),
        ],
    )
    members = collect(sweep)
    assert list(members["label"]) == ["backbone.width=8"] * 2 + ["backbone.width=16"] * 2
    configs = aggregate_seeds(members)
    assert list(configs["n_seeds"]) == [2, 1, 1]
    assert list(configs["status"]) == ["ok", "ok", "failed"]
    assert configs.loc[0, "test/age_mae"] == pytest.approx(7.5)
    assert configs.loc[0, "test/age_mae:std"] == pytest.approx(np.std([8.0, 7.0], ddof=1))
    assert configs.loc[0, "seeds"] == "0,1"
    table = markdown_table(members)
    assert "7.500 ± 0.707" in table and "backbone.width=16 failed:* `OOM`" in table


def test_the_report_draws_every_members_validation_curve(tmp_path):
    sweep = write_sweep(
        tmp_path / "sweep",
        [(["seed=0"], scores(6.0, 0.9, 0.8, 1e6)), (["seed=1"], scores(6.2, 0.9, 0.8, 1e6))],
        swept={"seed": "0,1"},
    )
    history = pd.DataFrame({"epoch": [0, 1, 2], "val/age_mae": [9.0, 7.0, 6.5]})
    history.to_csv(sweep / "0" / "history.csv", index=False)
    assert main([str(sweep), "--out", str(tmp_path / "report")]) == 0
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "![curves](learning_curves.png)" in summary
    assert (tmp_path / "report" / "learning_curves.png").stat().st_size > 1000
    # No member with a history: no curves, and no empty figure.
    (sweep / "0" / "history.csv").unlink()
    assert main([str(sweep), "--out", str(tmp_path / "plain")]) == 0
    assert "learning_curves" not in (tmp_path / "plain" / "summary.md").read_text()
    assert not (tmp_path / "plain" / "learning_curves.png").exists()


def test_the_same_member_from_two_sweeps_keeps_both_curves(tmp_path, monkeypatch):
    """A configuration and seed trained in two sweeps (a rerun beside the first) draws two
    curves, the second named by its sweep, not one overwritten by the other."""
    sweeps = []
    for name, mae in (("first", 6.5), ("rerun", 6.0)):
        sweep = write_sweep(
            tmp_path / name, [(["seed=0"], scores(mae, 0.9, 0.8, 1e6))], swept={"seed": "0"}
        )
        history = pd.DataFrame({"epoch": [0, 1], "val/age_mae": [9.0, mae]})
        history.to_csv(sweep / "0" / "history.csv", index=False)
        sweeps.append(sweep)
    drawn = {}
    monkeypatch.setattr(
        report, "learning_curves", lambda curves, path, title: drawn.update(curves) or None
    )
    members = collect(*sweeps)
    inp = StudyInput(members, aggregate_seeds(members), sweeps, tmp_path, "a budget")
    assert report.curves_section(inp) == []  # nothing drawn (the plot is stubbed)
    (label,) = drawn
    curves = drawn[label]
    assert sorted(curves) == ["seed=0", "seed=0 (rerun)"]
    assert curves["seed=0 (rerun)"]["val/age_mae"].iloc[-1] == 6.0


def test_a_configuration_keeps_one_colour_and_its_seeds_differ_by_line():
    curves = {f"backbone.width={w}": {"seed=0": None, "seed=1": None} for w in range(12)}
    styles = curve_styles(curves)
    colours = {label: styles[label, "seed=0"][0] for label in curves}
    assert len(set(colours.values())) == 12  # no two of 12 configurations share a colour
    for label in curves:
        (c0, line0), (c1, line1) = styles[label, "seed=0"], styles[label, "seed=1"]
        assert c0 == c1 and line0 != line1


def test_unseen_faces_get_columns_of_their_own_pooled_over_seeds(tmp_path):
    def with_unseen(gender: float) -> dict:
        return {**scores(6.0, 0.9, 0.8, 1e6), "unseen/gender_acc": gender}

    sweep = write_sweep(
        tmp_path / "sweep",
        [(["seed=0"], with_unseen(0.80)), (["seed=1"], with_unseen(0.86))],
        swept={"seed": "0,1"},
    )
    header, _, row = markdown_table(collect(sweep)).splitlines()[:3]
    columns = [c.strip() for c in header.strip("|").split("|")]
    cells = dict(zip(columns, (c.strip() for c in row.strip("|").split("|")), strict=True))
    assert cells["unseen gender acc"] == "0.830 ± 0.042"
    assert cells["gender acc"] == "0.900"
    # A sweep scored on UTKFace alone shows no empty unseen columns.
    plain = write_sweep(tmp_path / "plain", [(["seed=0"], scores(6.0, 0.9, 0.8, 1e6))])
    assert "unseen" not in markdown_table(collect(plain))


def test_labels_tell_apart_configurations_that_share_swept_overrides():
    members = pd.DataFrame(
        {
            "label": ["model=multitask"] * 4 + ["model=separate"],
            "overrides": [
                "model=multitask seed=0 threads=1",
                "model=multitask seed=1 threads=1",
                "model=multitask model.race_weighting=0 seed=0 threads=1",
                "model=multitask seed=0 threads=1",  # same overrides, other config file
                "model=separate seed=0 threads=1",
            ],
            "group": ["a", "a", "b", "c", "d"],
            "sweep": ["out/s0", "out/s0", "out/rw0", "out/old", "out/s0"],
            "member": ["0", "1", "0", "0", "1"],
        }
    )
    assert distinct_labels(members).tolist() == [
        "model=multitask @s0",
        "model=multitask @s0",
        "model=multitask model.race_weighting=0",
        "model=multitask @old",
        "model=separate",
    ]


def test_a_sweep_over_seeds_alone_is_named_by_what_it_trained(tmp_path):
    ran = ["threads=1", "hydra/launcher=parallel", "paths.data_dir=/d"]
    trained = ["experiment=face_pretrained", "trainer.max_epochs=22"]
    sweep = write_sweep(
        tmp_path / "sweep",
        [([*trained, *ran, f"seed={s}"], scores(5.0, 0.93, 0.83, 1e6)) for s in (0, 1)],
        {"seed": "0,1"},
    )
    assert set(collect(sweep)["label"]) == {"experiment=face_pretrained trainer.max_epochs=22"}


def two_budgets(tmp_path: Path) -> tuple[Path, Path]:
    """A converged sweep (22 full epochs) and a quick one (:data:`BUDGET`) of two models."""
    converged = {**BUDGET, "trainer": {"max_epochs": 22, "limit_train_batches": None}}
    rows = {"multitask": scores(5.0, 0.93, 0.83, 1e6), "separate": scores(5.1, 0.92, 0.84, 2e6)}
    members = [
        (
            [f"model={m}", f"seed={s}"],
            {**row, "model": m, "examples_seen": 374528, "machine": "x86_64, 2 CPU cores"},
        )
        for m, row in rows.items()
        for s in (0, 1)
    ]
    long = write_sweep(tmp_path / "long", members, {"model": "multitask,separate"}, converged)
    quick = write_sweep(
        tmp_path / "quick",
        [(["model=multitask"], {**scores(8.8, 0.85, 0.72, 1e6), "machine": "x86_64, 1 GPU"}),
         (["model=separate"], {**scores(8.7, 0.85, 0.73, 2e6), "model": "separate",
                               "machine": "x86_64, 1 GPU"})],
        {"model": "multitask,separate"},
    )  # fmt: skip
    return long, quick


def test_each_budget_is_reported_apart_the_longest_first(tmp_path):
    long, quick = two_budgets(tmp_path)
    out = tmp_path / "report"
    assert main([str(quick), str(long), "--study", "compare_approaches", "--out", str(out)]) == 0
    summary = (out / "summary.md").read_text()
    parts = summary.split("## Budget: ")[1:]
    assert [p.splitlines()[0] for p in parts] == [
        "22 epochs x all batches of 64, 1 thread",
        "3 epochs x 80 batches of 64, 1 thread",
    ]
    # Each part pools its own seeds under plain labels, and draws its own plot.
    assert "| model=multitask | multitask | cnn | False | 2 | ok | 5.000" in parts[0]
    assert "| model=multitask | multitask | cnn | False | 1 | ok | 8.800" in parts[1]
    assert "(approaches.png)" in parts[0] and "### Approaches" in parts[0]
    assert "Trained on: x86_64, 1 GPU (2); x86_64, 2 CPU cores (4)." in summary
    assert "(approaches_3_epochs_x_80_batches_of_64_1_thread.png)" in parts[1]
    assert (out / "approaches_3_epochs_x_80_batches_of_64_1_thread.png").is_file()


def test_a_reports_results_csv_stands_for_its_sweeps(tmp_path):
    """A report made again from its own results.csv, once the multiruns are gone, says the same;
    with a new sweep beside it, the recorded members keep their budget's part."""
    long, quick = two_budgets(tmp_path)
    first = tmp_path / "first"
    main([str(quick), "--study", "compare_approaches", "--out", str(first)])
    again = tmp_path / "again"
    main([str(first / "results.csv"), "--study", "compare_approaches", "--out", str(again)])

    def tables(report: Path) -> str:  # the summary but its title and provenance line
        return (report / "summary.md").read_text().split("\n\n", 2)[2]

    assert tables(again) == tables(first)
    both = collect(first / "results.csv", long)
    assert both.groupby("budget")["member"].count().to_dict() == {
        "22 epochs x all batches of 64, 1 thread": 4,
        "3 epochs x 80 batches of 64, 1 thread": 2,
    }
    plain = tmp_path / "plain.csv"  # a results row of one member: not a report's table
    pd.DataFrame([{"status": "ok", "model": "multitask"}]).to_csv(plain, index=False)
    with pytest.raises(ValueError, match="not a report's results.csv"):
        collect(plain)


def test_budget_line_reads_the_members_configs(tmp_path):
    sweep = write_sweep(tmp_path / "sweep", [(["backbone.width=8"], scores(8, 0.8, 0.6, 1e6))])
    assert budget_line(collect(sweep)) == "budget: 3 epochs x 80 batches of 64, 1 thread"
    row = {"cfg/trainer.fast_dev_run": True, "cfg/data.batch_size": 16, "threads": 2}
    assert budget_line(pd.DataFrame([row])) == "budget: fast_dev_run: 1 batch of 16, 2 threads"


def test_smallest_model_reaching_each_threshold():
    members = pd.DataFrame(
        [
            # label, seed, age MAE, gender, race, FLOPs
            ("tiny", 0, 9.0, 0.86, 0.60, 1e5),
            ("small", 0, 7.5, 0.89, 0.71, 1e6),
            ("small", 1, 6.5, 0.87, 0.73, 1e6),  # mean: 7.0, 0.88, 0.72
            ("twin", 0, 7.0, 0.88, 0.72, 1e6),  # as small on FLOPs, more params
            ("big", 0, 5.9, 0.95, 0.78, 1e8),
            ("broken", 0, np.nan, np.nan, np.nan, np.nan),
        ],
        columns=["label", "seed", "val/age_mae", "val/gender_acc", "val/race_acc", "flops"],
    )
    # The test figures differ from the validation ones: the choice must follow validation.
    tests = {f"test/{t}": members[f"val/{t}"] - 0.5 for t in ("age_mae", "gender_acc", "race_acc")}
    members = members.assign(
        **tests,
        status=["ok"] * 5 + ["failed"],
        group=members["label"],
        sweep="s",
        member=[str(i) for i in range(6)],
        flops_per_image=members["flops"],
        params=members["flops"] / 10 + (members["label"] == "twin"),
        latency_ms_b1=members["flops"] / 1e5,
    )
    thresholds = {
        "gender_acc": (0.85, 0.88, 0.90),
        "race_acc": (0.70, 0.75, 0.80),
        "age_mae": (8.0, 7.0, 6.0),
    }
    table = smallest_reaching(aggregate_seeds(members), thresholds)
    table = table.set_index(["metric", "threshold"])
    expected = {
        ("gender_acc", 0.85): "tiny",
        ("gender_acc", 0.88): "small",  # its mean reaches 0.88; one seed alone does not
        ("gender_acc", 0.90): "big",
        ("race_acc", 0.70): "small",
        ("race_acc", 0.75): "big",
        ("race_acc", 0.80): "none reached",
        ("age_mae", 8.0): "small",
        ("age_mae", 7.0): "small",
        ("age_mae", 6.0): "big",
    }
    assert table["label"].to_dict() == expected
    assert table.loc[("age_mae", 7.0), "val"] == pytest.approx(7.0)
    assert table.loc[("age_mae", 7.0), "test"] == pytest.approx(6.5)
    assert table.loc[("gender_acc", 0.90), "flops_per_image"] == 1e8
    assert table.loc[("race_acc", 0.80)].drop("label").isna().all()


def test_smallest_model_on_unseen_faces_is_chosen_there(tmp_path):
    def member(width: int, flops: float, unseen_gender: float) -> tuple[list[str], dict]:
        row = {**scores(6.0, 0.95, 0.85, flops), "unseen/gender_acc": unseen_gender}
        return [f"backbone.width={width}"], {**row, "unseen/race_acc": 0.5}

    sweep = write_sweep(
        tmp_path / "sweep", [member(8, 1e6, 0.82), member(16, 4e6, 0.86), member(32, 1.6e7, 0.9)]
    )
    assert main([str(sweep), "--study", "complexity_sweep", "--out", str(tmp_path / "r")]) == 0
    summary = (tmp_path / "r" / "summary.md").read_text()
    unseen = summary[summary.index("## The smallest model that reaches a target on unseen") :]
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in unseen.splitlines()
            if line.startswith("| unseen gender acc")}  # fmt: skip
    assert rows == {
        "unseen gender acc ≥ 0.75": "backbone.width=8",
        "unseen gender acc ≥ 0.78": "backbone.width=8",
        "unseen gender acc ≥ 0.80": "backbone.width=8",
        "unseen gender acc ≥ 0.85": "backbone.width=16",
        "unseen gender acc ≥ 0.87": "backbone.width=32",
    }
    # Without unseen figures the section is left out rather than shown empty.
    plain = write_sweep(tmp_path / "plain", [([], scores(6.0, 0.9, 0.8, 1e6))])
    assert main([str(plain), "--study", "complexity_sweep", "--out", str(tmp_path / "p")]) == 0
    assert "on unseen" not in (tmp_path / "p" / "summary.md").read_text()
    # Nor in the part of a budget whose members have none, beside one whose members do.
    quick = {**BUDGET, "trainer": {**BUDGET["trainer"], "max_epochs": 1}}
    plain = write_sweep(tmp_path / "quick", [([], scores(6.0, 0.9, 0.8, 1e6))], budget=quick)
    assert main([str(sweep), str(plain), "--study", "complexity_sweep",
                 "--out", str(tmp_path / "both")]) == 0  # fmt: skip
    assert (tmp_path / "both" / "summary.md").read_text().count("on unseen") == 1


def test_pareto_mask_and_labels():
    cost = [1, 2, 3, 4, np.nan]
    acc = [0.5, 0.7, 0.6, 0.9, 1.0]
    assert list(pareto_mask(cost, acc, lower_is_better=False)) == [1, 1, 0, 1, 0]
    assert list(pareto_mask(cost, [9, 8, 8, 7, 1], lower_is_better=True)) == [1, 1, 0, 1, 0]
    assert list(pareto_mask([1, 1], [0.5, 0.5], lower_is_better=False)) == [1, 1]  # ties stay
    assert short_label("backbone.depth=2 backbone.width=8") == "depth=2 width=8"
    assert short_label("model=joint") == "joint"


@pytest.mark.parametrize("study", list(STUDIES))
def test_every_study_reports_every_member(tmp_path, study):
    sweep = write_sweep(
        tmp_path / "sweep",
        [
            (["model=multitask", "backbone.width=8"], scores(8.0, 0.80, 0.60, 1e6)),
            (["model=separate", "backbone.width=16"], scores(7.0, 0.90, 0.70, 4e6)),
            (["model=joint", "backbone.width=0"], {"status": "failed", "error": "bad width"}),
        ],
        swept={"model": "multitask,separate,joint", "backbone.width": "8,16,0"},
    )
    out = tmp_path / "report"
    out.mkdir()
    readme = out / "README.md"
    readme.write_text("# Study\n\nProse.\n\n<!-- report:start -->\nold\n<!-- report:end -->\n")
    assert main([str(sweep), "--study", study, "--out", str(out)]) == 0
    assert len(pd.read_csv(out / "results.csv")) == 3
    summary = (out / "summary.md").read_text()
    assert "budget: 3 epochs x 80 batches of 64, 1 thread" in summary
    assert "failed:* `bad width`" in summary
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", summary)
    assert len(images) == {"generic": 0, "hparam_search": 1, "complexity_sweep": 2}.get(study, 1)
    for image in images:
        assert (out / image).stat().st_size > 1000
    text = readme.read_text()
    assert "Prose." in text and "old" not in text and "bad width" in text


def test_search_report_checks_the_sweepers_best(tmp_path):
    params = {"model.lr": "interval(1e-3, 1e-2)"}
    sweep = write_sweep(
        tmp_path / "search",
        [
            (["model.lr=0.002"], scores(8.0, 0.80, 0.60, 1e6)),
            (["model.lr=0.005"], scores(6.0, 0.90, 0.70, 1e6)),
            (["model.lr=0.009"], {"status": "failed", "error": "diverged"}),
        ],
        swept=params,
    )
    for member in range(3):
        config = OmegaConf.load(sweep / str(member) / ".hydra" / "config.yaml")
        config.optimized_metric = "val/objective"
        OmegaConf.save(config, sweep / str(member) / ".hydra" / "config.yaml")
    results = {"name": "optuna", "best_params": {"model.lr": 0.005}, "best_value": 0.6}
    OmegaConf.save(results, sweep / "optimization_results.yaml")
    main([str(sweep), "--study", "hparam_search", "--out", str(tmp_path / "report")])
    summary = (tmp_path / "report" / "summary.md").read_text()
    trials = [line for line in summary.splitlines() if line.startswith("| ") and "ok |" in line]
    assert [line.split("|")[1].strip() for line in trials][:2] == ["1", "0"]  # best first
    assert "optimization_results.yaml` agrees with the table" in summary
    assert "python -m agefair.train model.lr=0.005" in summary

    results["best_value"] = 0.8
    OmegaConf.save(results, sweep / "optimization_results.yaml")
    main([str(sweep), "--study", "hparam_search", "--out", str(tmp_path / "report")])
    assert "DISAGREES: best value 0.8" in (tmp_path / "report" / "summary.md").read_text()


@pytest.mark.slow
def test_multirun_with_a_failing_member(tmp_path, tiny_archive):
    run_module(
        "agefair.train",
        "-m",
        "experiment=from_scratch",
        "backbone=tiny",
        "+backbone.width=4,0",
        "data.img_size=32",
        "data.batch_size=16",
        # not fast_dev_run, which switches the logger off: the sweep must reach TensorBoard
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "callbacks.progress.refresh_rate=0",
        f"paths.archive={tiny_archive}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    df = collect(tmp_path / "sweep")
    assert list(df["status"]) == ["ok", "failed"]
    assert "width" in df.loc[1, "error"]
    assert (tmp_path / "sweep" / "1" / "error.txt").is_file()
    run_module("agefair.report", str(tmp_path / "sweep"), "--out", str(tmp_path / "report"))
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "| +backbone.width=4 |" in summary and "| +backbone.width=0 |" in summary
    assert "+backbone.width=0 failed:* `" in summary
    # TensorBoard's HPARAMS view of the sweep: the member's settings with its test results
    hparams = tensorboard_hparams(tmp_path / "sweep" / "0" / "tensorboard")
    assert hparams["backbone"] == "tiny" and hparams["status"] == "ok"
    assert {"test/age_mae", "test/gender_acc"} <= metric_tags(tmp_path / "sweep" / "0")


def tensorboard_hparams(log_dir: Path) -> dict:
    """The hyperparameters a run wrote for TensorBoard's HPARAMS view (its session start)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name != "hparams":
                    continue
                data = plugin_data_pb2.HParamsPluginData.FromString(
                    value.metadata.plugin_data.content
                )
                if data.HasField("session_start_info"):
                    hp = data.session_start_info.hparams
                    return {k: v.string_value or v.number_value for k, v in hp.items()}
    raise AssertionError(f"no hparams written under {log_dir}")


def metric_tags(run_dir: Path) -> set[str]:
    """Scalar tags a run logged to TensorBoard."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return {
        value.tag
        for path in run_dir.glob("tensorboard/events.out.tfevents.*")
        for event in EventFileLoader(str(path)).Load()
        for value in event.summary.value
    }
