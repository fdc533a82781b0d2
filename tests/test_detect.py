"""Tests of agefair.detect: detectors on real photos, model-file handling, cropping."""

from __future__ import annotations

import os
import sys
import urllib.error
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest

from agefair import detect
from agefair.detect import (
    CROP_SCALE,
    YUNET_ENV_VAR,
    YUNET_FILENAME,
    CentreDetector,
    FaceBox,
    FaceDetector,
    ModelFileError,
    StaticDetector,
    YuNetDetector,
    available_detectors,
    create_detector,
    crop_face,
    crop_square,
)
from agefair.imageio import load_image

REPO = Path(__file__).resolve().parents[1]
PHOTOS = Path(os.environ.get("AGEFAIR_PHOTOS", REPO.parent / "shared" / "photos"))
MODEL = Path(os.environ.get(YUNET_ENV_VAR, REPO.parent / "shared" / "models" / YUNET_FILENAME))
# Labelled boxes are tight (brows to chin), YuNet's run from the hairline: see the experiment.
MATCH_IOU = 0.3


@pytest.fixture(scope="module")
def photos() -> Path:
    if not (PHOTOS / "faces_training.xml").exists():
        pytest.skip(f"real test photos not found in {PHOTOS}: set AGEFAIR_PHOTOS")
    return PHOTOS


@pytest.fixture(scope="module")
def model() -> Path:
    if not MODEL.is_file():
        pytest.skip(f"YuNet model not found at {MODEL}: set {YUNET_ENV_VAR}")
    return MODEL


@pytest.fixture(scope="module")
def yunet(model) -> YuNetDetector:
    return YuNetDetector(model)


def _labels(photos: Path) -> dict[str, list[FaceBox]]:
    labels = {}
    for name in ("faces_training.xml", "faces_testing.xml"):
        for image in ET.parse(photos / name).getroot().iter("image"):
            labels[image.get("file")] = [
                FaceBox(
                    float(b.get("left")),
                    float(b.get("top")),
                    float(b.get("left")) + float(b.get("width")),
                    float(b.get("top")) + float(b.get("height")),
                )
                for b in image.iter("box")
            ]
    return labels


def _found(boxes: list[FaceBox], truth: list[FaceBox]) -> int:
    used: set[int] = set()
    for box in boxes:
        for i, lab in enumerate(truth):
            if i not in used and box.iou(lab) >= MATCH_IOU:
                used.add(i)
                break
    return len(used)


# ------------------------------------------------------------------------------------------
# YuNet on real photos
# ------------------------------------------------------------------------------------------
def test_yunet_counts_on_single_photos(yunet, photos):
    two = yunet.detect(load_image(photos / "two_people.jpg"))
    assert len(two) == 2
    assert all(b.landmarks is not None and len(b.landmarks) == 5 for b in two)
    assert two[0].score >= two[1].score
    assert len(yunet.detect(load_image(photos / "astronaut.png"))) == 1


def test_yunet_on_dog_photo(yunet, photos):
    # Known weakness (experiments/face_detection): one dog's face scores 0.81-0.89 depending on
    # the resolution, overlapping the weakest real faces (0.86), so it can be reported.
    # What must not happen is dogs being taken for a crowd.
    boxes = yunet.detect(load_image(photos / "no_faces_dogs.jpg"))
    assert len(boxes) <= 1


def test_yunet_recall_on_group_photos(yunet, photos):
    labels = _labels(photos)
    found = false = total = 0
    for name, truth in labels.items():
        boxes = yunet.detect(load_image(photos / name))
        hit = _found(boxes, truth)
        found, false, total = found + hit, false + len(boxes) - hit, total + len(truth)
    assert total == 43
    assert found / total >= 0.95
    assert false <= 2


def test_large_photo_boxes_map_back(yunet, photos):
    img = load_image(photos / "two_people.jpg")
    big = cv2.resize(img, (img.shape[1] * 4, img.shape[0] * 4), interpolation=cv2.INTER_LINEAR)
    assert max(big.shape[:2]) > 4000  # detection runs on a 640 px copy
    ref = yunet.detect(img)
    got = yunet.detect(big)
    assert len(got) == len(ref) == 2
    for r, g in zip(sorted(ref, key=lambda b: b.x0), sorted(got, key=lambda b: b.x0), strict=True):
        assert g.scaled(0.25).iou(r) > 0.85
        eye_ref, eye_big = np.array(r.landmarks[0]), np.array(g.landmarks[0]) / 4
        assert np.linalg.norm(eye_ref - eye_big) < 0.05 * r.width


def test_tiny_faces_in_small_photo_are_found(yunet, photos):
    img = load_image(photos / "two_people.jpg")
    small = cv2.resize(img, (80, 47), interpolation=cv2.INTER_AREA)  # faces ~11 px wide
    ref = sorted(yunet.detect(img), key=lambda b: b.x0)
    got = sorted(yunet.detect(small), key=lambda b: b.x0)  # found in a 4x enlarged copy
    assert len(got) == 2
    factor = 80 / img.shape[1]
    for r, g in zip(ref, got, strict=True):
        assert g.iou(r.scaled(factor)) > 0.5
    # Without the enlargement these faces are too small for YuNet's finest anchors.
    plain = YuNetDetector(MODEL, upscale_small=False)
    assert len(plain.detect(small)) == 0


def test_detect_rejects_non_rgb(yunet):
    with pytest.raises(ValueError, match="uint8"):
        yunet.detect(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        yunet.detect(np.zeros((10, 10), np.uint8))


# ------------------------------------------------------------------------------------------
# Model file resolution and verification
# ------------------------------------------------------------------------------------------
def test_checksum_mismatch_is_refused(tmp_path, model):
    bad = tmp_path / YUNET_FILENAME
    data = bytearray(model.read_bytes())
    data[1000] ^= 0xFF  # one flipped byte
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="SHA-256"):
        YuNetDetector(bad)


def test_missing_model_offline_gives_clear_message(tmp_path, monkeypatch):
    monkeypatch.delenv(YUNET_ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))

    def offline(url, dest, timeout=30.0):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(detect, "_download", offline)
    with pytest.raises(ModelFileError) as err:
        create_detector("yunet")
    message = str(err.value)
    assert YUNET_FILENAME in message
    assert YUNET_ENV_VAR in message
    assert str(tmp_path / ".cache" / "agefair") in message
    assert "network unreachable" in message


def test_env_var_and_explicit_path(tmp_path, monkeypatch, model):
    monkeypatch.setenv(YUNET_ENV_VAR, str(model))
    assert YuNetDetector().model_path == model
    monkeypatch.setenv(YUNET_ENV_VAR, str(tmp_path / "nowhere.onnx"))
    with pytest.raises(ModelFileError, match=f"{YUNET_ENV_VAR}=.*nowhere.onnx"):
        YuNetDetector()
    with pytest.raises(ModelFileError, match="typo.onnx does not exist"):
        YuNetDetector(tmp_path / "typo.onnx")


def test_download_verifies_and_stores(tmp_path, monkeypatch, model):
    # file:// URLs go through the same urllib code path as the real download, offline.
    dest = tmp_path / "cache" / YUNET_FILENAME
    detect._download(model.as_uri(), dest)
    assert dest.read_bytes() == model.read_bytes()

    wrong = tmp_path / "wrong.onnx"
    wrong.write_bytes(b"not the model")
    dest2 = tmp_path / "cache2" / YUNET_FILENAME
    with pytest.raises(ModelFileError, match="SHA-256"):
        detect._download(wrong.as_uri(), dest2)
    assert list(dest2.parent.iterdir()) == []  # no partial or wrong file left behind

    monkeypatch.delenv(YUNET_ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(detect, "YUNET_URL", model.as_uri())
    assert YuNetDetector().model_path == tmp_path / "home" / ".cache" / "agefair" / YUNET_FILENAME


# ------------------------------------------------------------------------------------------
# dlib, registry and test doubles
# ------------------------------------------------------------------------------------------
def test_dlib_hog_on_two_people(photos):
    pytest.importorskip("dlib", reason="dlib not installed (optional extra agefair[app])")
    det = create_detector("dlib-hog")
    boxes = det.detect(load_image(photos / "two_people.jpg"))
    assert len(boxes) == 2
    assert boxes[0].landmarks is None


def test_dlib_missing_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` fail
    with pytest.raises(ImportError, match=r"agefair\[app\]"):
        create_detector("dlib-hog")


def test_unknown_detector_name_lists_known_ones():
    with pytest.raises(ValueError, match="unknown face detector 'mtcnn'.*yunet"):
        create_detector("mtcnn")
    assert {"yunet", "dlib-hog", "centre", "static"} <= set(available_detectors())


def test_static_and_centre_detectors():
    img = np.zeros((100, 80, 3), np.uint8)
    static = create_detector("static", boxes=[(0, 0, 10, 10, 0.5), FaceBox(5, 5, 20, 20, 0.9)])
    assert isinstance(static, StaticDetector) and isinstance(static, FaceDetector)
    assert [b.score for b in static.detect(img)] == [0.9, 0.5]
    (box,) = create_detector("centre").detect(img)
    assert box.width == pytest.approx(80 / CROP_SCALE)
    assert box.centre[0] == pytest.approx(40)


def test_centre_box_crops_a_utkface_image_back_to_itself():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8), (9, 9), 3)
    (box,) = CentreDetector().detect(img)
    np.testing.assert_array_equal(crop_face(img, box, out_size=200), img)


# ------------------------------------------------------------------------------------------
# FaceBox and crop_face
# ------------------------------------------------------------------------------------------
def test_facebox_helpers():
    a = FaceBox(0, 0, 10, 20, 0.7, ((1, 2),) * 5)
    b = FaceBox(5, 0, 15, 20)
    assert (a.width, a.height, a.area) == (10, 20, 200)
    assert a.iou(b) == pytest.approx(100 / 300)
    assert a.iou(FaceBox(50, 50, 60, 60)) == 0.0
    assert a.as_list() == [0.0, 0.0, 10.0, 20.0]
    assert a.to_dict()["landmarks"][0] == [1.0, 2.0]
    assert a.scaled(2).landmarks[0] == (2, 4)
    assert a.clipped(8, 8).as_list() == [0, 0, 8, 8]


def test_crop_face_shape_and_centring():
    img = np.zeros((300, 400, 3), np.uint8)
    img[100:200, 150:250] = 255  # a white square "face"
    box = FaceBox(150, 100, 250, 200)
    crop = crop_face(img, box, out_size=64)
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    x0, y0, side = crop_square(box, use_landmarks=False)
    assert side == pytest.approx(100 * CROP_SCALE)
    assert x0 + side / 2 == pytest.approx(200)  # centred horizontally
    assert crop_face(img[..., 0], box, out_size=32).shape == (32, 32)


def test_crop_face_at_image_border_replicates_edges():
    img = np.zeros((100, 100, 3), np.uint8)
    img[:, :, 0] = np.arange(100, dtype=np.uint8)[None, :]  # red grows to the right
    img[:, :, 1] = np.arange(100, dtype=np.uint8)[:, None]  # green grows downwards
    box = FaceBox(-30, -40, 30, 20)  # a face cut by the top-left corner
    crop = crop_face(img, box, out_size=72, use_landmarks=False)
    assert crop.shape == (72, 72, 3)
    # Outside the image, each pixel repeats the nearest edge pixel: the corner is (0, 0).
    assert tuple(crop[0, 0, :2]) == (0, 0)
    assert (crop[-1, -1, :2] > 0).all()
    # Even a box entirely outside the image gives a full (replicated) crop.
    assert crop_face(img, FaceBox(500, 500, 520, 520), out_size=16).shape == (16, 16, 3)
    with pytest.raises(ValueError, match="degenerate"):
        crop_face(img, FaceBox(10, 10, 10, 30), out_size=16)


def test_crop_face_on_real_photo_uses_full_resolution(yunet, photos):
    img = load_image(photos / "two_people.jpg")
    big = cv2.resize(img, (img.shape[1] * 4, img.shape[0] * 4), interpolation=cv2.INTER_LINEAR)
    (face, _) = yunet.detect(big)
    crop = crop_face(big, face, out_size=200)
    assert crop.shape == (200, 200, 3)
    # The face's landmarks land where UTKFace puts them: centroid near the middle of the crop.
    x0, y0, side = crop_square(face)
    centroid = np.mean(face.landmarks, axis=0)
    rel = (centroid - (x0, y0)) / side
    assert np.allclose(rel, 0.5, atol=0.03)
