"""The best-CPU recipe's pieces: race loss weights, weight averaging, the ablation report."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from agefair.models.base import race_class_weights
from agefair.models.multitask import MultiTaskNet
from agefair.training.complexity import count_params
from tests.conftest import REPO, TINY, compose_train, load_script, run_module


def test_race_class_weights_follow_the_power_and_average_one():
    races = np.array([0] * 100 + [4] * 25)
    counts = np.bincount(races, minlength=5)
    w = race_class_weights(counts, 0.5)
    assert w[0].item() == pytest.approx(w[4].item() / 2)  # 4x fewer images: 2x the weight
    per_image = w[torch.as_tensor(races)]
    assert per_image.mean().item() == pytest.approx(1.0)
    assert w[1].item() == 0.0  # a race absent from training weighs nothing
    assert torch.allclose(race_class_weights(counts, 0.0)[[0, 4]], torch.ones(2))


def load_report_script():
    return load_script("experiments/best_cpu/run.py", "best_cpu_report")


@pytest.mark.slow
def test_ablation_sweep_and_report(tmp_path, tiny_archive):
    sweep = tmp_path / "sweep"
    run_module(
        "agefair.train",
        "-m",
        *TINY,
        "experiment=ablation_cpu",
        "ablation=ema,none",
        "seed=0,1",
        "trainer.max_epochs=2",
        f"paths.archive={tiny_archive}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.sweep.dir={sweep}",
    )
    member = sweep / "0"
    history = pd.read_csv(member / "history.csv")
    assert list(history["epoch"]) == [0, 1] and "val/age_mae" in history
    ckpt = torch.load(next((member / "checkpoints").glob("epoch*.ckpt")), weights_only=False)
    # Checkpoints of an EMA run hold the averaged weights; the live ones ride along for resuming.
    assert "current_model_state" in ckpt
    averaged, live = ckpt["state_dict"], ckpt["current_model_state"]
    assert any(not torch.equal(averaged[k], live[k]) for k in averaged if k.endswith("weight"))
    runs = pd.read_csv(sweep / "2" / "results.csv").iloc[0]
    assert (runs["ablation"], runs["seed"]) == ("none", 0)  # Hydra varies the last key fastest
    plain = torch.load(next((sweep / "2" / "checkpoints").glob("epoch*.ckpt")), weights_only=False)
    assert "current_model_state" not in plain

    # Scores on detector-framed faces (experiments/best_cpu/framing.py) for the two "ema" runs:
    # the original-crop row, then the framed row the report reads.
    for i, framed_mae in [(0, 6.0), (1, 7.0)]:
        pd.DataFrame(
            {"age_mae": [5.0, framed_mae], "gender_acc": [0.9, 0.8], "race_acc": [0.7, 0.6]}
        ).to_csv(sweep / str(i) / "framing_val.csv", index=False)

    # The last "none" run as if measured on another default network: a row of its own.
    results = pd.read_csv(sweep / "3" / "results.csv")
    results["params"] = 2 * results["params"]
    results.to_csv(sweep / "3" / "results.csv", index=False)

    readme = tmp_path / "report" / "README.md"
    readme.parent.mkdir()
    shutil.copy(REPO / "experiments" / "best_cpu" / "README.md", readme)
    report = load_report_script()
    report.main(["--ablation", str(sweep), "--final", str(member), "--readme", str(readme)])
    text = readme.read_text()
    table = pd.read_csv(readme.parent / "results" / "ablation.csv")
    assert list(table["variant"]) == ["ema", "none", "none"]
    assert table["seeds"].tolist() == [2, 1, 1] and "±" in table.loc[0, "age MAE"]
    assert table.loc[1, "params"] != table.loc[2, "params"]
    framed = table[["framed age MAE", "framed gender acc"]]
    assert framed.loc[0].tolist() == ["6.50 ± 0.71", "80.0 ± 0.0"]
    assert framed.loc[1].tolist() == ["–", "–"]  # not scored, not zero
    assert "2 epochs each, " in table.loc[0, "budget"] and "2 epochs each, " in text
    assert "| Others White" not in text and "| White female |" in text
    # The final table names the backbone config the run chose and its torch threads.
    assert f"| {member.name} | tiny | False | 2 |" in text and "| threads |" in text
    # ... and the views it averages per test face (the default multitask system's)
    assert "| test-time views |" in text and "| mirror, 2 zooms |" in text
    assert (readme.parent / "results" / "learning_curves.png").stat().st_size > 0


def load_bare_script():
    return load_script("experiments/best_cpu/bare_script.py", "best_cpu_bare_script")


def test_bare_script_network_and_augmentation(tmp_path):
    bare = load_bare_script()
    net = bare.Net()
    assert 1.1e6 < sum(p.numel() for p in net.parameters()) < 1.3e6  # "a 1.2 M-parameter CNN"
    # At --width 48 --stem-width 24 it is agefair's from-scratch network, head for head.
    default = MultiTaskNet(
        instantiate(compose_train(["experiment=from_scratch"], tmp_path).backbone)
    )
    assert count_params(bare.Net(48, 24)) == count_params(default)
    images = torch.randint(0, 256, (5, 64, 64, 3), dtype=torch.uint8)
    x = bare.to_input(images)
    assert x.shape == (5, 3, 64, 64) and x.min() >= -1 and x.max() <= 1
    out = bare.augment(x, pad=4)
    assert out.shape == x.shape and out.is_contiguous(memory_format=torch.channels_last)
    # Each augmented image is a window of the (possibly flipped) reflect-padded original.
    padded = torch.nn.functional.pad(torch.cat([x, x.flip(3)]), (4,) * 4, mode="reflect")
    windows = padded.unfold(2, 64, 1).unfold(3, 64, 1)  # N x C x 9 x 9 x 64 x 64
    for i in range(5):
        found = [
            torch.equal(windows[j, :, dy, dx], out[i])
            for j in (i, i + 5)
            for dy in range(9)
            for dx in range(9)
        ]
        assert any(found)
    # The age target is a distribution around the true age: its loss is lowest there.
    age_logits = torch.full((1, 117), -10.0)
    age_logits[0, 30] = 10.0
    outs = (age_logits, torch.zeros(1, 2), torch.zeros(1, 5))
    at = bare.loss_fn(outs, torch.tensor([30]), torch.tensor([0]), torch.tensor([0]))
    off = bare.loss_fn(outs, torch.tensor([50]), torch.tensor([0]), torch.tensor([0]))
    assert at < off


@pytest.mark.slow
def test_bare_script_runs_on_agefairs_split_and_joins_the_report(tmp_path, tiny_archive):
    bare = load_bare_script()
    out = tmp_path / "bare"
    data = tmp_path / "data"
    args = ["--epochs", "2", "--batch", "16", "--threads", "1"]
    bare.main([*args, "--archive", str(tiny_archive), "--data-dir", str(data), "--out", str(out)])
    preds = pd.read_csv(out / "predictions_test.csv")
    # The same test faces as agefair's own runs on that data: its split manifest decides.
    manifest = pd.read_csv(next((data / "splits").glob("*.csv")))
    want = manifest[manifest["split"] == "test"][["age", "gender", "race"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(preds[["age", "gender", "race"]], want, check_dtype=False)
    assert preds["age_pred"].between(0, 116).all() and set(preds["race_pred"]) <= set(range(5))
    readme = tmp_path / "README.md"
    readme.write_text("<!-- final:start -->\n<!-- final:end -->\n")
    load_report_script().main(["--final", str(out), "--readme", str(readme)])
    assert "| bare | bare script | False | 2 |" in readme.read_text()


def test_report_averages_test_time_view_settings_over_runs(tmp_path):
    """experiments/best_cpu/tta.py's files, one per run, become one table: mean ± sd per setting."""
    runs = []
    for i, (mae, gender) in enumerate([(5.0, 0.90), (5.2, 0.94)]):
        run = tmp_path / f"run{i}"
        run.mkdir()
        pd.DataFrame(
            {
                "views": ["mirror", "mirror, zooms 0.94 and 1.06"],
                "passes": [2, 6],
                "faces": [100, 100],
                "age_mae": [mae, mae - 0.1],
                "gender_acc": [gender, gender],
                "race_acc": [0.8, 0.8],
                "framed_age_mae": [6.0, 5.9],
                "framed_gender_acc": [0.9, 0.9],
                "framed_race_acc": [0.7, 0.7],
            }
        ).to_csv(run / "tta_val.csv", index=False)
        runs.append(run)
    readme = tmp_path / "README.md"
    shutil.copy(REPO / "experiments" / "best_cpu" / "README.md", readme)
    load_report_script().main(["--tta", *map(str, runs), "--readme", str(readme)])
    text = readme.read_text()
    assert "| mirror | 2 | 5.10 ± 0.14 | 92.0 ± 2.8 | 80.0 ± 0.0 | 6.00 ± 0.00 |" in text
    assert "| mirror, zooms 0.94 and 1.06 | 6 | 5.00 ± 0.14 |" in text
    assert "100 seeded faces per run" in text and "2 runs" in text
