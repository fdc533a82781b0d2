"""Faces from another data set: labels, the never-train-on-it guard, and scoring through the
app's path with detector misses counted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from agefair.data.boxes import FaceBox
from agefair.data.other_faces import UnseenDataError, check_disjoint, read_labels_csv, select
from agefair.evaluation.unseen import MISSED, labelled_face, score_unseen, summary_line
from agefair.inference.detect import CentreDetector, create_detector
from agefair.inference.model_files import YUNET_ENV_VAR
from agefair.inference.predictor import Predictor
from tests.conftest import SHARED, UNSEEN_LABELS, photos_dir, run_module, yunet_path


def write_labels(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "labels.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def noise_photo(rng: np.random.Generator, size: int = 224) -> np.ndarray:
    """A smooth random background: no face in it."""
    small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    return np.array(Image.fromarray(small).resize((size, size), Image.BICUBIC))


# ------------------------------------------------------------------------------ labels
def test_labels_take_codes_or_names_and_age_groups(tmp_path):
    path = write_labels(
        tmp_path,
        [
            {"file": "a.jpg", "age_group": "20-29", "gender": "female", "race": "Asian"},
            {"file": "b.jpg", "age_group": "70+", "gender": "male", "race": "others"},
        ],
    )
    table = read_labels_csv(path)
    assert table["gender"].tolist() == [1, 0]
    assert table["race"].tolist() == [2, 4]
    assert table["age"].tolist() == [-1, -1]  # only the group is known


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"file": "a.jpg", "gender": 0, "race": 1}, "age or age_group"),
        ({"file": "a.jpg", "age": 30, "gender": 0}, "race"),
        ({"file": "a.jpg", "age": 30, "gender": 2, "race": 1}, "gender"),
        ({"file": "a.jpg", "age": 30, "gender": 0, "race": "Martian"}, "race"),
    ],
)
def test_bad_labels_are_refused_with_the_column(tmp_path, row, message):
    with pytest.raises(UnseenDataError, match=message):
        read_labels_csv(write_labels(tmp_path, [row]))


def test_the_real_fairface_mapping():
    labels = Path(UNSEEN_LABELS or SHARED / "data" / "fairface_dev" / "labels.csv")
    if not labels.is_file():
        pytest.skip(f"fairface_dev not found at {labels}")
    table = read_labels_csv(labels)
    mapping = table.groupby("race7")["race"].unique().to_dict()
    assert {k: v.tolist() for k, v in mapping.items()} == {
        "Black": [1],
        "East Asian": [2],
        "Indian": [3],
        "Latino_Hispanic": [4],
        "Middle Eastern": [4],
        "Southeast Asian": [2],
        "White": [0],
    }
    assert (table["age"] == -1).all() and table["age_group"].notna().all()


def test_a_sample_is_seeded_and_keeps_order(tmp_path):
    table = pd.DataFrame({"file": [f"{i}.jpg" for i in range(50)]})
    a, b = select(table, 10), select(table, 10)
    assert a["file"].tolist() == b["file"].tolist()
    assert len(a) == 10 and a["file"].map(lambda f: int(f[:-4])).is_monotonic_increasing
    assert len(select(table, None)) == 50


# ------------------------------------------------------------------------------ never train on it
def test_training_on_unseen_images_is_refused(tmp_path, tiny_root):
    train_root = tiny_root / "UTKFace"
    files = sorted(p.name for p in train_root.glob("*.chip.jpg"))[:5]
    unseen = tmp_path / "unseen"
    unseen.mkdir()
    shutil.copy(train_root / files[2], unseen / "copy.jpg")  # the same bytes, another name
    labels = write_labels(unseen, [{"file": "copy.jpg", "age": 30, "gender": 0, "race": 0}])
    with pytest.raises(UnseenDataError, match="also in the unseen faces"):
        check_disjoint(train_root, files, labels)
    check_disjoint(train_root, files[:2], labels)  # disjoint: accepted
    nested = write_labels(train_root / "held_out", [{"file": "x.jpg", "age": 1, "gender": 0,
                                                     "race": 0}])  # fmt: skip
    try:
        with pytest.raises(UnseenDataError, match="share a folder"):
            check_disjoint(train_root, files, nested)
    finally:
        shutil.rmtree(train_root / "held_out")


def test_a_run_whose_training_set_holds_unseen_images_is_refused(tmp_path, tiny_root):
    root = tmp_path / "data"
    shutil.copytree(tiny_root / "UTKFace", root / "UTKFace")
    name = next((root / "UTKFace").glob("1*_*_*_*.chip.jpg")).name
    unseen = tmp_path / "unseen"
    unseen.mkdir()
    shutil.copy(root / "UTKFace" / name, unseen / "face.jpg")
    labels = write_labels(unseen, [{"file": "face.jpg", "age": 30, "gender": 0, "race": 0}])
    from agefair.data.datamodule import UTKFaceDataModule

    dm = UTKFaceDataModule(archive=root, data_dir=tmp_path / "work", img_size=32, unseen=labels)
    with pytest.raises(UnseenDataError, match=name):
        dm.prepare_data()


# ------------------------------------------------------------------------------ scoring
def test_the_labelled_face_is_the_central_one():
    edge = FaceBox(0, 0, 40, 40, 0.99)
    centre = FaceBox(80, 80, 140, 150, 0.85)
    assert labelled_face([edge, centre], 224, 224) == 1
    assert labelled_face([], 224, 224) is None


class EveryOtherDetector(CentreDetector):
    """Finds the centred face only in photos whose top-left pixel is bright: misses on cue."""

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        return super().detect(image) if image[0, 0].mean() > 127 else []


def test_missed_faces_count_as_wrong_and_are_counted(tmp_path, tiny_ckpt):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        photo = noise_photo(rng)
        photo[:8, :8] = 255 if i % 3 else 0  # every third photo: no face found
        Image.fromarray(photo).save(tmp_path / f"{i}.jpg")
        rows.append({"file": f"{i}.jpg", "age_group": "20-29", "gender": i % 2, "race": i % 5})
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    rows.append({"file": "broken.jpg", "age_group": "30-39", "gender": 0, "race": 0})
    labels = write_labels(tmp_path, rows)
    predictor = Predictor.from_checkpoint(tiny_ckpt, detector=EveryOtherDetector())

    out = tmp_path / "run"
    metrics = score_unseen(predictor, labels, out, progress=False)

    assert metrics["n"] == 13 and metrics["missed"] == 5  # 4 without a face, 1 unreadable
    preds = pd.read_csv(out / "predictions_unseen.csv")
    missed = preds[~preds["found"]]
    assert (missed["gender_pred"] == MISSED).all() and missed["age_pred"].isna().all()
    found = preds[preds["found"]]
    assert found["gender_pred"].between(0, 1).all() and found["age_pred"].notna().all()
    # Misses are wrong for every task: the overall figure is the found ones' hits over all 13.
    assert metrics["gender_acc"] == pytest.approx((found["gender"] == found["gender_pred"]).sum()
                                                  / 13)  # fmt: skip
    assert metrics["age_group_acc"] <= 8 / 13
    assert 0 <= metrics["gender_acc_ci"][0] <= metrics["gender_acc"] <= metrics["gender_acc_ci"][1]
    for name in ("groups_unseen.csv", "gaps_unseen.csv", "confusion_race_unseen.png"):
        assert (out / name).is_file()
    groups = pd.read_csv(out / "groups_unseen.csv")
    assert "age_mae" not in groups.columns  # only age groups are known
    assert "5 without a found face" in summary_line(metrics)


def test_real_detector_misses_exactly_the_photos_without_a_face(tmp_path, tiny_ckpt):
    """A real face pasted into generated photos at several sizes and places is found by YuNet
    through the predictor; photos of only background count as misses."""
    face = Image.open(photos_dir() / "astronaut.png").convert("RGB").crop((140, 20, 320, 220))
    predictor = Predictor.from_checkpoint(
        tiny_ckpt, detector=create_detector("yunet", model_path=yunet_path())
    )
    rng = np.random.default_rng(1)
    rows = []
    for i, (side, x, y) in enumerate([(120, 50, 40), (200, 12, 12), (90, 100, 110), (0, 0, 0)] * 2):
        photo = Image.fromarray(noise_photo(rng))
        if side:
            photo.paste(face.resize((side, side)), (x, y))
        photo.save(tmp_path / f"{i}.jpg", quality=92)
        rows.append({"file": f"{i}.jpg", "age": 53, "gender": 1, "race": 0})
    metrics = score_unseen(predictor, write_labels(tmp_path, rows), tmp_path / "run",
                           progress=False)  # fmt: skip
    assert metrics["n"] == 8 and metrics["missed"] == 2
    assert "age_mae" in metrics  # true ages are known here


def test_training_scores_the_unseen_faces_too(tmp_path, tiny_archive, monkeypatch):
    """A run with data.unseen puts unseen/... into metrics.json and results.csv."""
    monkeypatch.setenv(YUNET_ENV_VAR, str(yunet_path()))
    rng = np.random.default_rng(2)
    unseen = tmp_path / "unseen"
    unseen.mkdir()
    rows = []
    for i in range(6):
        Image.fromarray(noise_photo(rng, 96)).save(unseen / f"{i}.jpg")
        rows.append({"file": f"{i}.jpg", "age_group": "20-29", "gender": i % 2, "race": 0})
    labels = write_labels(unseen, rows)
    run = tmp_path / "run"
    proc = run_module(
        "agefair.train", "experiment=from_scratch", "backbone=tiny", "data.img_size=32",
        "data.batch_size=16",
        "trainer.max_epochs=1", "callbacks.progress.refresh_rate=0",
        f"paths.archive={tiny_archive}", f"paths.data_dir={tmp_path / 'data'}",
        f"data.unseen={labels}", "data.unseen_limit=4", f"hydra.run.dir={run}",
        timeout=300,
    )  # fmt: skip
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["unseen/n"] == 4 and metrics["unseen/missed"] == 4  # no face in noise
    assert metrics["unseen/gender_acc"] == 0.0
    row = pd.read_csv(run / "results.csv").iloc[0]
    assert row["unseen/n"] == 4 and "test/gender_acc" in row
    assert "Unseen faces" in proc.stdout + proc.stderr
    # a run without progress bars (a sweep's log) gets none from the unseen scoring either
    assert "Unseen faces: detecting" not in proc.stdout + proc.stderr
    # the detector's answers are kept for the next run (boxes only: none were found here)
    (kept,) = (tmp_path / "data" / "detections").glob("yunetdetector-*.json")
    assert len(json.loads(kept.read_text())) == 4
