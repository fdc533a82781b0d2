"""The crop framing study (experiments/crop_framing): its geometry, mechanics and real result."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from agefair.data.boxes import FaceBox
from agefair.data.framing import LANDMARK_TEMPLATE, crop_face, crop_frame, crop_square
from agefair.inference.checkpoints import CKPT_ENV_VAR
from agefair.inference.detect import CentreDetector, StaticDetector, create_detector
from agefair.inference.model_files import YUNET_ENV_VAR
from agefair.inference.predictor import Predictor
from tests.conftest import SHARED, load_script, real_archive

study = load_script("experiments/crop_framing/run.py", "crop_framing_study")


def synthetic_face(side: int = 200, seed: int = 0) -> np.ndarray:
    """A smooth random picture: detail everywhere, so any misframing changes the pixels."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    smooth = cv2.GaussianBlur(noise, (0, 0), side / 50)
    return cv2.normalize(smooth, None, 0, 255, cv2.NORM_MINMAX)


def square_iou(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[2], b[1] + b[2]) - max(a[1], b[1])
    inter = max(0.0, iw) * max(0.0, ih)
    return inter / (a[2] ** 2 + b[2] ** 2 - inter)


# ------------------------------------------------------------------------------------------
# Geometry, no model
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("surround", study.SURROUNDS)
@pytest.mark.parametrize(
    "layout", [study.Layout(400, 200), study.Layout(900, 300), study.Layout(500, 200, tilt=20)]
)
def test_pasted_face_is_cut_back_to_its_original_framing(layout, surround):
    face = synthetic_face()
    rng = np.random.default_rng(1)
    photo, centre, tilt = study.paste(face, layout, surround, rng)
    assert photo.shape == (layout.photo, layout.photo, 3) and abs(tilt) <= layout.tilt
    box = study.oracle_box(centre, layout.face, tilt)
    cx, cy, side, angle = crop_frame(box)
    assert (cx, cy, side, angle) == pytest.approx((*centre, layout.face, tilt), abs=1e-6)
    truth = (centre[0] - layout.face / 2, centre[1] - layout.face / 2, layout.face)
    assert square_iou(crop_square(box), truth) > 0.999
    # The pixels: the crop at the model's cache size matches the original crop resized the way
    # the training cache does it, up to interpolation (the paste itself resamples the face).
    for out_size in (64, 200):
        got = crop_face(photo, box, out_size=out_size).astype(float)
        want = cv2.resize(face, (out_size, out_size), interpolation=cv2.INTER_AREA).astype(float)
        assert np.abs(got - want).mean() < 4.0, (out_size, np.abs(got - want).mean())


def test_a_misframed_crop_is_caught_by_the_pixel_check():
    """The 4-level tolerance above is tight: a crop 5% too large or 3% off misses it."""
    face = synthetic_face()
    photo, centre, _ = study.paste(
        face, study.Layout(400, 200), "continued", np.random.default_rng(1)
    )
    want = cv2.resize(face, (64, 64), interpolation=cv2.INTER_AREA).astype(float)
    for shift, zoom in [((0, 0), 1.05), ((6, 0), 1.0), ((0, 6), 1.0)]:
        box = study.oracle_box((centre[0] + shift[0], centre[1] + shift[1]), 200, 0.0)
        got = crop_face(photo, box, out_size=64, zoom=zoom).astype(float)
        assert np.abs(got - want).mean() > 4.0


def test_tilted_face_needs_alignment():
    face = synthetic_face()
    photo, centre, tilt = study.paste(
        face, study.Layout(500, 200, tilt=20), "continued", np.random.default_rng(3)
    )
    assert abs(tilt) > 6  # this seed tilts the face beyond crop_face's threshold
    box = study.oracle_box(centre, 200, tilt)
    want = cv2.resize(face, (64, 64), interpolation=cv2.INTER_AREA).astype(float)
    upright = np.abs(crop_face(photo, box, out_size=64).astype(float) - want).mean()
    unturned = np.abs(crop_face(photo, box, out_size=64, align=False).astype(float) - want).mean()
    assert upright < 4.0 < unturned


def test_boxes_without_usable_landmarks_fall_back_to_the_box():
    box = FaceBox(100, 100, 200, 230)
    cx, cy, side, angle = crop_frame(box)
    assert angle == 0 and cx == 150 and cy > box.centre[1]
    # Landmarks all on one point make no face: the box decides.
    collapsed = FaceBox(100, 100, 200, 230, 1.0, ((150.0, 160.0),) * 5)
    assert crop_frame(collapsed) == crop_frame(box)
    assert crop_frame(box, zoom=1.1)[2] == pytest.approx(1.1 * side)


# ------------------------------------------------------------------------------------------
# The study's mechanics on the tiny checkpoint
# ------------------------------------------------------------------------------------------
def tiny_faces(tiny_root: Path, n: int) -> tuple[list[np.ndarray], list[dict], list[Path]]:
    """The first ``n`` good faces of the tiny data set, their labels and files."""
    from agefair.data.utkface import scan_folder

    records, _ = scan_folder(tiny_root / "UTKFace")
    files = [tiny_root / "UTKFace" / r.file for r in records[:n]]
    faces = [cv2.imread(str(f))[..., ::-1].copy() for f in files]
    labels = [{"age": r.age, "gender": r.gender, "race": r.race} for r in records[:n]]
    return faces, labels, files


def test_study_gives_one_row_per_setting(tiny_ckpt, tiny_root):
    faces, labels, _ = tiny_faces(tiny_root, 6)
    layouts = [study.Layout(80, 40), study.Layout(120, 40, tilt=15)]
    predictor = Predictor.from_checkpoint(tiny_ckpt, detector=CentreDetector())
    table = study.study(predictor, faces, labels, layouts=layouts)
    assert len(table) == 1 + len(study.SURROUNDS) * len(layouts)
    assert table["setting"].iloc[0].startswith("original crops")
    assert (table["faces"] == 6).all() and (table["found"] == 6).all()
    assert table.iloc[0][["d_age_mae", "d_gender", "d_race"]].tolist() == [0, 0, 0]
    assert set(table["surround"].iloc[1:]) == set(study.SURROUNDS)

    # A detector that finds nothing: every face is counted as missed, none scored.
    blind = Predictor.from_checkpoint(tiny_ckpt, detector=StaticDetector([]))
    missed = study.study(blind, faces, labels, layouts=layouts[:1], surrounds=["continued"])
    assert missed["found"].tolist() == [6, 0] and np.isnan(missed["age_mae"].iloc[1])


class Oracle:
    """A detector that knows where the study pasted each face (told by :func:`oracle`)."""

    def __init__(self) -> None:
        self.boxes: dict[bytes, FaceBox] = {}

    @staticmethod
    def key(image: np.ndarray) -> bytes:
        # By content: the predictor hands the detector a copy of the pasted photo.
        return hashlib.sha1(np.ascontiguousarray(image).tobytes()).digest()

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        return [self.boxes[self.key(image)]]


@pytest.fixture
def oracle(monkeypatch) -> Oracle:
    """The perfect detector: every ``study.paste`` tells it where the face went."""
    detector = Oracle()
    real_paste = study.paste

    def paste(face, layout, surround, rng):
        photo, centre, tilt = real_paste(face, layout, surround, rng)
        detector.boxes[detector.key(photo)] = study.oracle_box(centre, layout.face, tilt)
        return photo, centre, tilt

    monkeypatch.setattr(study, "paste", paste)
    return detector


def test_calibration_fits_the_template_back(oracle):
    df = study.measure_framing(oracle, [synthetic_face(60, seed) for seed in range(4)])
    fitted = study.fit_framing(df)
    np.testing.assert_allclose(fitted["LANDMARK_TEMPLATE"], LANDMARK_TEMPLATE, atol=1e-3)
    errors = study.framing_errors(df, crop_square)
    assert errors["IoU median"] > 0.999


def test_decomposition_rows(oracle, tiny_ckpt, tiny_root):
    faces, labels, files = tiny_faces(tiny_root, 6)
    predictor = Predictor.from_checkpoint(tiny_ckpt, detector=oracle)
    table = study.decompose(predictor, faces, labels, files, layout=study.Layout(120, 40))
    assert len(table) == 2 + 5 * len(study.SURROUNDS) and (table["faces"] == 6).all()
    # With a perfect detector, the template framing cuts exactly the known square.
    for surround in study.SURROUNDS:
        rows = table[table["surround"] == surround].set_index("crop")
        known, now = rows.loc["known square"], rows.loc["YuNet, landmark template (now)"]
        assert known["age_mae"] == pytest.approx(now["age_mae"])


# ------------------------------------------------------------------------------------------
# The real result: UTKFace test faces, YuNet and a trained checkpoint
# ------------------------------------------------------------------------------------------
def real_inputs() -> tuple[Path, Path]:
    """The trained checkpoint and YuNet model; skips, saying which is missing."""
    if real_archive() is None:
        pytest.skip("real UTKFace archive not found: set UTKFACE_ARCHIVE to UTKFace.tar.gz")
    yunet = Path(
        os.environ.get(YUNET_ENV_VAR, SHARED / "models" / "face_detection_yunet_2023mar.onnx")
    )
    if not yunet.is_file():
        pytest.skip(f"YuNet model not found at {yunet}: set {YUNET_ENV_VAR}")
    # Named explicitly, never the newest local run: the result must not depend on what happens
    # to lie in outputs/.
    ckpt = os.environ.get(CKPT_ENV_VAR)
    if not ckpt or not Path(ckpt).is_file():
        pytest.skip(f"no trained checkpoint named: set {CKPT_ENV_VAR} to one (e.g. make train's)")
    return Path(ckpt), yunet


@pytest.mark.realdata
@pytest.mark.slow
def test_detect_crop_predict_stays_within_one_point_of_the_original_crops():
    """The hardest layout of the study (tilted faces), on 600 test faces.

    The study measures within one point on 1000 faces and every layout (README); 600 faces
    leave about +-0.9 points of chance in an accuracy difference, so this test allows 2 points
    and 0.3 years: it catches a framing regression (the previous crop lost 0.8 years, 2 points
    of gender and 3 of race accuracy here) without failing on chance.
    """
    ckpt, yunet = real_inputs()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the study does: on a busy machine more threads only contend
    try:
        table = run_tilted_layout(ckpt, yunet)
    finally:
        torch.set_num_threads(threads)
    row = table.iloc[1]
    assert row["found"] >= 598
    assert abs(row["d_gender"]) <= 2 and abs(row["d_race"]) <= 2, table
    assert row["d_age_mae"] <= 0.3, table


def run_tilted_layout(ckpt: Path, yunet: Path):
    """The study's tilted layout on 600 test faces: the table of its differences."""
    faces, labels, _ = study.load_faces(ckpt, "test", 600, seed=0)
    predictor = Predictor.from_checkpoint(ckpt, detector=create_detector("yunet", model_path=yunet))
    layouts = [study.Layout(600, 200, tilt=20)]
    table = study.study(predictor, faces, labels, layouts=layouts, surrounds=["continued"])
    return table
