"""The model card: generated from a run's own outputs, every figure the run's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agefair.labels import RACES
from agefair.reporting.model_card import CardError, main, model_card, write_model_card
from agefair.reporting.tables import with_ci
from agefair.training.results import write_results_row, write_split_outputs


def predictions(n: int, seed: int, weak_race: int) -> pd.DataFrame:
    """Predictions that are right 90% of the time, except race ``weak_race``'s 40%."""
    rng = np.random.default_rng(seed)
    race = rng.integers(0, len(RACES), n)
    gender = rng.integers(0, 2, n)
    age = rng.integers(1, 90, n)
    right = rng.random(n) < np.where(race == weak_race, 0.4, 0.9)
    return pd.DataFrame(
        {
            "age": age,
            "gender": gender,
            "race": race,
            "age_pred": age + rng.normal(0, 1 + age / 10),
            "gender_pred": np.where(rng.random(n) < 0.9, gender, 1 - gender),
            "race_pred": np.where(right, race, (race + 1) % len(RACES)),
            "gender_p": 0.9,
            "race_p": 0.8,
        }
    )


def fake_run(root: Path, unseen: bool = True) -> Path:
    """A run folder as ``agefair.train`` leaves it, from generated predictions."""
    run = root / "run"
    metrics = write_split_outputs(run, "test", predictions(600, 0, weak_race=4))
    if unseen:
        scored = write_split_outputs(run, "unseen", predictions(500, 1, weak_race=3), age=False)
        scored.update(n=500, missed=12, labels="/data/fairface_dev/labels.csv")
        scored.update(age_group_acc=0.45, age_group_acc_ci=[0.41, 0.49])
        metrics.update({f"unseen/{k}": v for k, v in scored.items()})
    (run / "metrics.json").write_text(json.dumps(metrics))
    write_results_row(
        run,
        {
            "status": "ok", "system": "MultiTaskModule", "backbone": "fused,dlib_resnet,cnn",
            "pretrained_from": "dlib_resnet", "params": 2_500_000, "trainable_params": 1_900_000,
            "flops_per_image": 1.2e9,
            "img_size": 150, "framing": 1.085, "seed": 1, "epochs": 16, "train_time_s": 600.0,
            "threads": 2, "experiment": "face_pretrained",
        },
    )  # fmt: skip
    (run / ".hydra").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text("- seed=1\n- paths.data_dir=/somewhere\n")
    (run / ".hydra" / "config.yaml").write_text("model:\n  race_prior: uniform\n")
    return run


def test_the_card_carries_the_runs_own_figures(tmp_path):
    run = fake_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    card = model_card(run, exported="model.onnx")
    for key in ("gender_acc", "race_acc"):
        assert with_ci(metrics[key], metrics[f"{key}_ci"], percent=True) in card
        unseen = metrics[f"unseen/{key}"], metrics[f"unseen/{key}_ci"]
        assert with_ci(*unseen, percent=True) in card
    assert with_ci(metrics["age_mae"], metrics["age_mae_ci"], percent=False) in card
    assert "`python -m agefair.train seed=1`" in card and "/somewhere" not in card
    assert "2.5 M parameters (1.9 M of them trained" in card
    assert "dlib's face-recognition ResNet" in card
    assert "`model.onnx`" in card and "`model.onnx.json`" in card
    for heading in ("Intended use", "Out-of-scope uses", "Data and licences", "Known failure"):
        assert f"## {heading}" in card
    assert "non-commercial" in card and "CC BY 4.0" in card
    assert "| White/male |" in card and "| Others/female |" in card
    # The failure modes come from the figures: the unseen set's weak class, the misses.
    assert "weakest class on unseen faces is Indian" in card
    assert "no face in 12 of 500 unseen photos" in card
    assert "equally common beforehand" in card


def test_a_card_of_a_run_under_the_training_prior_says_nothing_of_it(tmp_path):
    run = fake_run(tmp_path)
    (run / ".hydra" / "config.yaml").write_text("model:\n  race_prior: training\n")
    assert "equally common" not in model_card(run)


def test_a_run_without_unseen_faces_says_so(tmp_path):
    card = model_card(fake_run(tmp_path, unseen=False))
    assert "not scored in this run" in card and "unseen faces |" not in card
    assert "weakest class on the UTKFace test split is Others" in card


def test_a_run_that_did_not_test_gets_no_card(tmp_path, capsys):
    with pytest.raises(CardError, match="finished training run"):
        model_card(tmp_path)
    assert main([str(tmp_path), "--out", str(tmp_path / "card.md")]) == 1
    assert "model card: error" in capsys.readouterr().err
    run = fake_run(tmp_path)
    write_results_row(run, {"status": "failed", "error": "boom"})
    with pytest.raises(CardError, match="failed run"):
        model_card(run)


def test_the_card_is_written_where_asked(tmp_path):
    out = write_model_card(fake_run(tmp_path), tmp_path / "shipped" / "MODEL_CARD.md")
    assert out.read_text().startswith("# Model card")


@pytest.mark.slow
def test_export_writes_the_card_only_for_a_tested_run(tiny_ckpt, tmp_path, capsys):
    from agefair.inference.export import main as export_main

    # The tiny run trained with test=false: the export is written, the card is not.
    assert export_main([str(tiny_ckpt), "--out", str(tmp_path / "model.onnx")]) == 0
    assert "no model card" in capsys.readouterr().err
    assert (tmp_path / "model.onnx").is_file() and not (tmp_path / "MODEL_CARD.md").exists()
