"""The best-CPU recipe's pieces: race loss weights, weight averaging, the ablation report."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from agefair.models.base import race_class_weights
from tests.conftest import REPO, run_module
from tests.test_train import TINY


def test_race_class_weights_follow_the_power_and_average_one():
    races = np.array([0] * 100 + [4] * 25)
    w = race_class_weights(races, 0.5)
    assert w[0].item() == pytest.approx(w[4].item() / 2)  # 4x fewer images: 2x the weight
    per_image = w[torch.as_tensor(races)]
    assert per_image.mean().item() == pytest.approx(1.0)
    assert w[1].item() == 0.0  # a race absent from training weighs nothing
    assert torch.allclose(race_class_weights(races, 0.0)[[0, 4]], torch.ones(2))


def load_report_script():
    path = REPO / "experiments" / "best_cpu" / "run.py"
    spec = importlib.util.spec_from_file_location("best_cpu_report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_ablation_sweep_and_report(tmp_path, tiny_archive):
    sweep = tmp_path / "sweep"
    run_module(
        "agefair.train",
        "-m",
        "experiment=ablation_cpu",
        "ablation=full,no_ema",
        "seed=0,1",
        *TINY,
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
    assert (runs["ablation"], runs["seed"]) == ("no_ema", 0)  # Hydra varies the last key fastest
    no_ema = torch.load(next((sweep / "2" / "checkpoints").glob("epoch*.ckpt")), weights_only=False)
    assert "current_model_state" not in no_ema

    readme = tmp_path / "report" / "README.md"
    readme.parent.mkdir()
    shutil.copy(REPO / "experiments" / "best_cpu" / "README.md", readme)
    report = load_report_script()
    report.main(["--ablation", str(sweep), "--final", str(member), "--readme", str(readme)])
    text = readme.read_text()
    table = pd.read_csv(readme.parent / "results" / "ablation.csv")
    assert list(table["variant"]) == ["full", "no_ema"]
    assert (table["seeds"] == 2).all() and "±" in table.loc[0, "age MAE"]
    assert "2 epochs each at" in table.loc[0, "budget"] and "2 epochs each at" in text
    assert "| Others White" not in text and "| White female |" in text
    assert (readme.parent / "results" / "learning_curves.png").stat().st_size > 0
