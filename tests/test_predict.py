"""Tests of agefair.predict: the Predictor on generated and real photos, checkpoints, the CLI."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from agefair.data.boxes import FaceBox
from agefair.data.framing import BOX_CENTRE_OFFSET_Y, CROP_SCALE, crop_face, reframe
from agefair.inference.checkpoints import (
    CKPT_ENV_VAR,
    NoCheckpointError,
    default_checkpoint,
    run_checkpoint,
)
from agefair.inference.detect import CentreDetector, StaticDetector, create_detector
from agefair.inference.drawing import draw_predictions, format_label
from agefair.inference.imageio import ImageError, load_image
from agefair.inference.model_files import YUNET_ENV_VAR
from agefair.inference.predict import main
from agefair.inference.predictor import FacePrediction, Predictor
from agefair.labels import GENDERS, RACES
from agefair.models.checkpoint import CheckpointError, load_system
from tests.conftest import jpeg_bytes, photos_dir, textured, yunet_path


def check_face(face: FacePrediction, width: int, height: int) -> None:
    """Every field of a prediction is present and in range."""
    x0, y0, x1, y1 = face.box
    assert all(isinstance(v, int) for v in face.box)
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    assert 0 <= face.age <= 130
    assert face.age_sd is None or face.age_sd > 0
    assert face.gender in GENDERS and 0.5 <= face.gender_p <= 1
    assert list(face.race_p) == list(RACES)
    assert sum(face.race_p.values()) == pytest.approx(1, abs=1e-4)
    assert face.race == max(face.race_p, key=face.race_p.get)


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def centre(tiny_ckpt) -> Predictor:
    return Predictor.from_checkpoint(tiny_ckpt, detector=CentreDetector())


@pytest.fixture(scope="module")
def yunet_predictor(tiny_ckpt) -> Predictor:
    return Predictor.from_checkpoint(
        tiny_ckpt, detector=create_detector("yunet", model_path=yunet_path())
    )


# --------------------------------------------------------------------------------------------
# Finding checkpoints
# --------------------------------------------------------------------------------------------
def _touch(path: Path, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    os.utime(path, (mtime, mtime))
    return path


def test_default_checkpoint_picks_newest_run_and_its_best(tmp_path, monkeypatch):
    monkeypatch.delenv(CKPT_ENV_VAR, raising=False)
    root = tmp_path / "outputs"
    with pytest.raises(NoCheckpointError, match=r"make train.*--ckpt"):
        default_checkpoint(root)
    _touch(root / "train/runs/a/checkpoints/epoch004.ckpt", 1000)
    _touch(root / "train/runs/a/checkpoints/last.ckpt", 1001)
    assert default_checkpoint(root).name == "epoch004.ckpt"  # best beats last in one run
    _touch(root / "train/multiruns/b/0/checkpoints/last.ckpt", 2000)  # newer run, no best
    assert default_checkpoint(root) == root / "train/multiruns/b/0/checkpoints/last.ckpt"
    _touch(root / "train/runs/c/checkpoints/epoch001.ckpt", 3000)
    _touch(root / "train/runs/c/checkpoints/last.ckpt", 3001)
    assert default_checkpoint(root) == root / "train/runs/c/checkpoints/epoch001.ckpt"

    chosen = _touch(tmp_path / "elsewhere.ckpt", 10)
    monkeypatch.setenv(CKPT_ENV_VAR, str(chosen))
    assert default_checkpoint(root) == chosen
    monkeypatch.setenv(CKPT_ENV_VAR, str(tmp_path / "missing.ckpt"))
    with pytest.raises(NoCheckpointError, match=CKPT_ENV_VAR):
        default_checkpoint(root)


def test_run_checkpoint_picks_within_one_run_whatever_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(CKPT_ENV_VAR, str(_touch(tmp_path / "elsewhere.ckpt", 10)))
    run = tmp_path / "run"
    with pytest.raises(NoCheckpointError, match="holds no checkpoint"):
        run_checkpoint(run)
    _touch(run / "checkpoints/last.ckpt", 1001)
    assert run_checkpoint(run).name == "last.ckpt"
    _touch(run / "checkpoints/epoch004.ckpt", 1000)
    assert run_checkpoint(run).name == "epoch004.ckpt"  # the kept best beats the newer last


def test_from_checkpoint_without_any_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.delenv(CKPT_ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="make train"):
        Predictor.from_checkpoint(detector=CentreDetector())


def test_checkpoints_from_before_framings_keep_utkfaces(tiny_ckpt, tmp_path):
    stored = torch.load(tiny_ckpt, map_location="cpu", weights_only=False)
    assert stored["agefair"]["config"]["data"]["framing"] is None  # now: the backbone's own
    del stored["agefair"]["config"]["data"]["framing"]
    torch.save(stored, tmp_path / "old.ckpt")
    assert load_system(tmp_path / "old.ckpt")[1].data.framing == 1.0
    assert load_system(tiny_ckpt)[1].data.framing is None


def test_foreign_and_broken_checkpoints_are_refused_clearly(tmp_path):
    foreign = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "epoch": 3}, foreign)
    with pytest.raises(CheckpointError, match="not an agefair checkpoint"):
        Predictor.from_checkpoint(foreign, detector=CentreDetector())
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        Predictor.from_checkpoint(text, detector=CentreDetector())


# --------------------------------------------------------------------------------------------
# The Predictor on generated images
# --------------------------------------------------------------------------------------------
def test_from_checkpoint_takes_sizes_and_normalisation(centre):
    assert centre.img_size == 32 and centre.cache_size == 32
    assert centre.mean == (0.5, 0.5, 0.5) and centre.system == "MultiTaskModule"
    assert centre.checkpoint is not None and centre.checkpoint.name == "last.ckpt"


def test_every_input_kind_gives_the_same_answer(centre, tmp_path):
    image = textured(300, 240)
    path = tmp_path / "photo.png"
    Image.fromarray(image).save(path)
    sources = [path, str(path), path.read_bytes(), io.BytesIO(path.read_bytes()), image,
               Image.fromarray(image)]  # fmt: skip
    results = [centre(src) for src in sources]
    assert all(len(r) == 1 for r in results)
    check_face(results[0][0], 300, 240)
    for other in results[1:]:
        assert other[0].box == results[0][0].box
        assert other[0].age == pytest.approx(results[0][0].age, abs=1e-4)


def test_all_faces_go_through_the_model_in_one_batch(tiny_ckpt, monkeypatch):
    boxes = [(10, 10, 60, 75, 0.9), (100, 20, 150, 85, 0.8), (200, 30, 240, 82, 0.7)]
    predictor = Predictor.from_checkpoint(tiny_ckpt, detector=StaticDetector(boxes))
    calls = []
    infer = predictor.model.infer
    monkeypatch.setattr(predictor.model, "infer", lambda x: calls.append(len(x)) or infer(x))
    result = predictor.analyse(textured(320, 200))
    assert calls == [3]
    assert [f.box for f in result.faces] == [
        [10, 10, 60, 75],
        [100, 20, 150, 85],
        [200, 30, 240, 82],
    ]
    assert [f.det_score for f in result.faces] == [0.9, 0.8, 0.7]
    assert set(result.timings_ms) == {"decode", "detect", "crop", "model"}
    assert all(v >= 0 for v in result.timings_ms.values())
    for face in result.faces:
        check_face(face, 320, 200)

    capped = Predictor.from_checkpoint(tiny_ckpt, detector=StaticDetector(boxes), max_faces=2)
    result = capped.analyse(textured(320, 200))
    assert len(result.faces) == 2 and result.n_detected == 3


def test_no_face_gives_an_empty_list(tiny_ckpt):
    predictor = Predictor.from_checkpoint(tiny_ckpt, detector=StaticDetector([]))
    result = predictor.analyse(textured(200, 200))
    assert result.faces == [] and result.n_detected == 0 and result.timings_ms["model"] == 0


def test_boxes_past_the_edge_are_clipped(tiny_ckpt):
    predictor = Predictor.from_checkpoint(tiny_ckpt, detector=StaticDetector([(-20, -5, 60, 90)]))
    (face,) = predictor(textured(100, 80))
    assert face.box == [0, 0, 60, 80]


def test_unreadable_and_oversized_inputs_raise_image_error(centre, tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        centre(tmp_path / "missing.jpg")
    with pytest.raises(ImageError, match="not a recognised image format"):
        centre(b"this is text, not a photo")
    small = Predictor(centre.model, detector=CentreDetector(), img_size=32, max_pixels=10_000)
    with pytest.raises(ImageError, match="more than the limit"):
        small(jpeg_bytes(textured(200, 100)))


def box_for_square(x0: float, y0: float, side: float, score: float) -> FaceBox:
    """A box without landmarks that ``crop_face`` cuts at the square ``(x0, y0, side)``."""
    width = side / CROP_SCALE
    cx, cy = x0 + side / 2, y0 + side / 2 - BOX_CENTRE_OFFSET_Y * width
    return FaceBox(cx - width / 2, cy - 0.65 * width, cx + width / 2, cy + 0.65 * width, score)


def test_large_jpeg_is_cropped_from_a_reduced_decode_like_from_full_size(tiny_ckpt):
    """Detection sees a quarter-scale decode; the crops still match crops of the full photo."""
    width, height = 3200, 2400
    data = jpeg_bytes(textured(width, height, seed=3, grain=8), quality=95)
    full = load_image(data)  # compare with the decoded JPEG, not the pre-compression array
    seen = load_image(data, max_side=800)
    # Boxes in the coordinates of what the detector sees (800 px wide: a quarter of the photo),
    # placed so that their crops are whole pixels there: a crop edge half a pixel off in the
    # detection image is 2 px off in the photo, which on this fine texture is not "like" at all.
    seen_boxes = [box_for_square(94, 104, 72, 0.9), box_for_square(497, 302, 36, 0.8)]
    for cache_size in (32, 64, 200):
        predictor = Predictor.from_checkpoint(
            tiny_ckpt, detector=StaticDetector(seen_boxes), detect_side=800, cache_size=cache_size
        )
        found = predictor.extract_faces(data)
        assert (found.width, found.height) == (width, height)
        assert [b.as_list() for b in found.boxes] == [b.scaled(4).as_list() for b in seen_boxes]
        for seen_box, box, crop in zip(seen_boxes, found.boxes, found.crops, strict=True):
            assert crop.shape == (cache_size, cache_size, 3)
            reference = crop_face(full, box, out_size=cache_size).astype(int)
            diff = np.abs(crop.astype(int) - reference).mean()
            naive = np.abs(crop_face(seen, seen_box, out_size=cache_size) - reference).mean()
            if cache_size == 32:  # every crop has >= 32 px in the detection image: it is used
                assert diff == naive < 5
            else:  # a second decode at a larger scale: far closer than the detection image
                assert diff < 2 and diff < naive / 2, (cache_size, diff, naive)


def test_predict_crops_matches_the_training_path(centre, tiny_root):
    files = sorted((tiny_root / "UTKFace").glob("*_*_*_*.jpg.chip.jpg"))[:5]
    crops = [load_image(f) for f in files]
    preds = centre.predict_crops(crops)
    assert len(preds) == 5 and centre.predict_crops([]) == []
    for face, crop in zip(preds, crops, strict=True):
        check_face(face, crop.shape[1], crop.shape[0])
        assert face.det_score is None and face.box == [0, 0, crop.shape[1], crop.shape[0]]
    with pytest.raises(ValueError, match="uint8"):
        centre.predict_crops([crops[0].astype(np.float32)])


def test_framing_cuts_photos_and_given_crops_as_the_training_cache(tiny_ckpt, tiny_root):
    box = FaceBox(60, 50, 140, 150)
    plain = Predictor.from_checkpoint(tiny_ckpt, detector=StaticDetector([box]))
    wide = Predictor.from_checkpoint(tiny_ckpt, detector=StaticDetector([box]), framing=1.3)
    assert plain.framing == 1.0 and wide.framing == 1.3  # the tiny CNN's own framing is 1
    photo = np.random.default_rng(0).integers(0, 256, (240, 200, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        wide.extract_faces(photo).crops[0],
        crop_face(photo, box, out_size=wide.cache_size, zoom=1.3),
    )
    utk = load_image(next((tiny_root / "UTKFace").glob("*_*_*_*.jpg.chip.jpg")))
    ages = [p.predict_crops([c])[0].age for p, c in ((wide, utk), (plain, reframe(utk, 1.3)))]
    assert ages[0] == pytest.approx(ages[1])


def test_draw_predictions_labels_each_face(centre):
    image = textured(400, 300)
    preds = centre(image)
    label = format_label(preds[0])
    assert "±" in label and "%" in label and preds[0].gender in label and preds[0].race in label
    drawn = draw_predictions(image, preds)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    assert not np.array_equal(drawn, image) and image is not drawn
    x0, y0, x1, _ = preds[0].box
    assert not np.array_equal(drawn[y0 + 5, x0:x1], image[y0 + 5, x0:x1])  # the box's edges


# --------------------------------------------------------------------------------------------
# Real photos with YuNet
# --------------------------------------------------------------------------------------------
def test_two_people(yunet_predictor):
    result = yunet_predictor.analyse(photos_dir() / "two_people.jpg")
    assert (result.width, result.height) == (1126, 661)
    assert len(result.faces) == 2
    for face in result.faces:
        check_face(face, result.width, result.height)
        assert face.det_score > 0.8
    left, right = sorted(result.faces, key=lambda f: f.box[0])
    assert left.box[2] < 563 < right.box[0]  # one person on each side


def test_exif_rotated_phone_photo(yunet_predictor, tiny_ckpt):
    """A photo stored sideways with an EXIF orientation gets boxes in upright coordinates."""
    upright = Image.open(photos_dir() / "two_people.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    buf = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(buf, "JPEG", quality=95, exif=exif)
    reference = sorted(f.box for f in yunet_predictor(photos_dir() / "two_people.jpg"))
    # detect_side=500: the 1126 px photo is decoded at half scale for detection.
    small_decode = Predictor.from_checkpoint(
        tiny_ckpt, detector=yunet_predictor.detector, detect_side=500
    )
    for predictor in (yunet_predictor, small_decode):  # full decode, then reduced-scale decode
        result = predictor.analyse(buf.getvalue())
        assert (result.width, result.height) == (1126, 661)
        assert len(result.faces) == 2
        for box, ref in zip(sorted(f.box for f in result.faces), reference, strict=True):
            assert np.abs(np.subtract(box, ref)).max() < 12, (box, ref)


def test_dog_photo_gives_no_face(yunet_predictor):
    # YuNet scores one dog's face 0.855; its landmarks make no human face (inference.detect).
    assert yunet_predictor(photos_dir() / "no_faces_dogs.jpg") == []


def test_rgba_png_photo(yunet_predictor):
    faces = yunet_predictor(photos_dir() / "astronaut.png")
    assert len(faces) == 1
    check_face(faces[0], 512, 512)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def test_cli_json_and_unreadable_file(tiny_ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(YUNET_ENV_VAR, str(yunet_path()))
    photo = photos_dir() / "two_people.jpg"
    text = tmp_path / "notes.jpg"
    text.write_text("a text file renamed .jpg")
    code = main([str(photo), str(text), str(tmp_path / "missing.jpg"), "--ckpt", str(tiny_ckpt),
                 "--json"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 1
    results = json.loads(out)
    assert [r["file"] for r in results] == [str(photo), str(text), str(tmp_path / "missing.jpg")]
    assert results[0]["n_faces"] == 2 and len(results[0]["faces"]) == 2
    assert {"box", "age", "age_sd", "gender", "gender_p", "race", "race_p"} <= set(
        results[0]["faces"][0]
    )
    assert "not a recognised image format" in results[1]["error"]
    assert "no such file" in results[2]["error"]
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("agefair predict: error:") for line in lines)
    assert "Traceback" not in err


def test_cli_table_out_and_no_face(tiny_ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(YUNET_ENV_VAR, str(yunet_path()))
    photo = photos_dir() / "two_people.jpg"
    blank = tmp_path / "blank.png"
    Image.new("RGB", (320, 240), (200, 200, 200)).save(blank)
    out_path = tmp_path / "annotated.jpg"
    assert main([str(photo), "--ckpt", str(tiny_ckpt), "--out", str(out_path)]) == 0
    out = capsys.readouterr().out
    assert "2 faces" in out and "±" in out and str(out_path) in out
    with Image.open(out_path) as img:
        assert img.size == (1126, 661)

    assert (
        main([str(blank), str(photo), "--ckpt", str(tiny_ckpt), "--out-dir", str(tmp_path / "d")])
        == 0
    )
    out = capsys.readouterr().out
    assert "blank.png (320x240): no face found" in out
    assert (tmp_path / "d" / "two_people_predicted.jpg").is_file()


def test_cli_bad_checkpoint_is_one_line(tmp_path, capsys):
    photo = tmp_path / "p.png"
    Image.fromarray(textured(64, 64)).save(photo)
    assert main([str(photo), "--ckpt", str(tmp_path / "nope.ckpt")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err and "make train" in err


def test_checkpoints_from_before_the_package_moves_name_todays_classes(tiny_ckpt, tmp_path):
    stored = torch.load(tiny_ckpt, map_location="cpu", weights_only=False)
    config = stored["agefair"]["config"]
    config["callbacks"] = {"ema": {"_target_": "agefair.callbacks.EMA", "decay": 0.99}}
    config["extra"] = [{"_target_": "agefair.callbacks.ProgressiveResize"}]
    torch.save(stored, tmp_path / "old.ckpt")
    _, cfg = load_system(tmp_path / "old.ckpt")
    assert cfg.callbacks.ema._target_ == "agefair.training.callbacks.EMA"
    assert cfg.extra[0]._target_ == "agefair.training.callbacks.ProgressiveResize"
    assert type(instantiate(cfg.callbacks.ema)).__name__ == "EMA"
    assert cfg.model._target_ == config["model"]["_target_"]  # names that did not move stay
