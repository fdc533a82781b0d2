"""Exported models: ``agefair export`` writes an ONNX graph and its sidecar that give the
checkpoint's predictions on ONNX Runtime, without Lightning or Hydra; bad files are refused."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from agefair.app.server import create_app
from agefair.inference.detect import CentreDetector, create_detector
from agefair.inference.export import main as export_main
from agefair.inference.exporting import PARITY_TOLERANCE, export_onnx, generated_faces, parity
from agefair.inference.model_files import YUNET_ENV_VAR
from agefair.inference.predict import main as predict_main
from agefair.inference.predictor import Predictor
from agefair.inference.runtimes import ExportedModel, OnnxRuntime, sidecar_path
from agefair.labels import GENDERS, RACES
from agefair.models.checkpoint import load_system
from agefair.models.errors import CheckpointError
from tests.conftest import (
    REPO,
    compose_train,
    evaluate_cli,
    jpeg_bytes,
    photos_dir,
    textured,
    yunet_path,
)


@pytest.fixture(scope="module")
def exported(tiny_ckpt, tmp_path_factory) -> Path:
    """The tiny checkpoint exported by the command, test-time views included."""
    out = tmp_path_factory.mktemp("exported") / "model.onnx"
    assert export_main([str(tiny_ckpt), "--out", str(out)]) == 0
    return out


def copy_model(exported: Path, folder: Path) -> Path:
    """The exported model's two files copied into ``folder`` (to be spoilt by a test)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / exported.name
    target.write_bytes(exported.read_bytes())
    sidecar_path(target).write_bytes(sidecar_path(exported).read_bytes())
    return target


# --------------------------------------------------------------------------------------------
# Parity
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_command_writes_a_graph_and_sidecar_that_match_torch(exported, tiny_ckpt, capsys):
    spec = ExportedModel.read(exported)
    system, cfg = load_system(tiny_ckpt)
    assert spec.system == "MultiTaskModule" and spec.img_size == cfg.data.img_size == 32
    assert spec.views == system.view_count == 6  # the face and two zooms, each mirrored
    assert spec.outputs == ("age", "gender_p", "race_p", "age_sd")
    assert (spec.genders, spec.races) == (GENDERS, RACES)
    assert spec.mean == tuple(system.input_config.mean) and spec.framing == 1.0
    assert "tiny_predict_run" in spec.source
    runtime = OnnxRuntime(exported)
    # Batch sizes the export never saw: the batch axis is dynamic.
    for count in (1, 7):
        faces = generated_faces(count, 32, seed=count)
        assert parity(system.eval(), runtime, faces) <= PARITY_TOLERANCE
        out = runtime(faces)
        assert out["race_p"].shape == (count, len(RACES))
        np.testing.assert_allclose(out["race_p"].sum(1), 1, atol=1e-5)


@pytest.mark.slow
def test_the_default_fused_model_exports_within_tolerance(tmp_path):
    """The default architecture (dlib's ResNet frozen beside the CNN, resized inside with
    anti-aliasing), with random weights: the export checks its own parity and passes."""
    from agefair.training.build import build_system

    cfg = compose_train(["pretrained=false"], tmp_path)
    system = build_system(cfg)
    spec, difference = export_onnx(system, cfg.data, tmp_path / "default.onnx")
    assert difference is not None and difference <= PARITY_TOLERANCE
    assert spec.img_size == 150 and spec.framing == pytest.approx(1.085)
    assert parity(system, OnnxRuntime(tmp_path / "default.onnx"), generated_faces(3, 150, 2)) <= (
        PARITY_TOLERANCE
    )


@pytest.mark.slow
@pytest.mark.parametrize("model", ["joint", "separate", "per_task"])
def test_every_system_exports_within_tolerance(model, tmp_path):
    """The other systems (one softmax over all classes; two or three networks) export too."""
    from agefair.training.build import build_system

    overrides = ["experiment=from_scratch", "backbone=tiny", "data.img_size=32", f"model={model}"]
    cfg = compose_train(overrides, tmp_path)
    system = build_system(cfg)
    spec, difference = export_onnx(system, cfg.data, tmp_path / "model.onnx")
    assert spec.system == type(system).__name__ and difference <= PARITY_TOLERANCE


@pytest.mark.slow
def test_single_view_exports_the_face_alone(tiny_ckpt, tmp_path):
    out = tmp_path / "fast.onnx"
    assert export_main([str(tiny_ckpt), "--out", str(out), "--single-view", "--no-card"]) == 0
    assert ExportedModel.read(out).views == 1
    system, _ = load_system(tiny_ckpt)
    system.use_views(tta_flip=False, tta_scales=())
    assert parity(system, OnnxRuntime(out), generated_faces(4, 32)) <= PARITY_TOLERANCE


@pytest.mark.slow
def test_a_predictor_on_the_export_gives_the_checkpoints_faces(exported, tiny_ckpt):
    photo = jpeg_bytes(textured(300, 240, seed=3))
    by_ckpt = Predictor.from_checkpoint(tiny_ckpt, detector=CentreDetector())
    by_onnx = Predictor.from_checkpoint(exported, detector=CentreDetector())
    assert by_onnx.system == by_ckpt.system and by_onnx.runtime.kind == "onnxruntime"
    assert by_onnx.model is None and by_ckpt.model is not None
    assert (by_onnx.img_size, by_onnx.cache_size, by_onnx.framing) == (
        by_ckpt.img_size, by_ckpt.cache_size, by_ckpt.framing,
    )  # fmt: skip
    (a,), (b,) = by_ckpt(photo), by_onnx(photo)
    assert a.box == b.box and (a.gender, a.race) == (b.gender, b.race)
    assert abs(a.age - b.age) < 1e-3 and abs(a.gender_p - b.gender_p) < PARITY_TOLERANCE


# --------------------------------------------------------------------------------------------
# The commands and the app
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_predict_finds_the_same_two_people_with_the_checkpoint_and_the_export(
    exported, tiny_ckpt, capsys, monkeypatch
):
    photo = str(photos_dir() / "two_people.jpg")
    monkeypatch.setenv(YUNET_ENV_VAR, str(yunet_path()))
    results = {}
    for name, model in (("ckpt", tiny_ckpt), ("onnx", exported)):
        assert predict_main([photo, "--ckpt", str(model), "--json"]) == 0
        (results[name],) = json.loads(capsys.readouterr().out)
    ckpt, onnx = results["ckpt"]["faces"], results["onnx"]["faces"]
    assert len(ckpt) == len(onnx) == 2
    for a, b in zip(ckpt, onnx, strict=True):
        assert a["box"] == b["box"] and (a["gender"], a["race"]) == (b["gender"], b["race"])
        assert a["age"] == pytest.approx(b["age"], abs=0.01)


@pytest.mark.slow
def test_the_app_serves_an_exported_model(exported):
    predictor = Predictor.from_checkpoint(exported, detector=create_detector("centre"))
    client = TestClient(create_app(predictor))
    health = client.get("/health").json()
    assert health["runtime"] == "onnxruntime" and health["checkpoint"] == str(exported)
    photo = jpeg_bytes(textured(200, 200, seed=5))
    response = client.post("/predict", files={"file": ("face.jpg", photo, "image/jpeg")})
    assert response.status_code == 200 and response.json()["n_faces"] == 1


@pytest.mark.slow
def test_the_exported_model_runs_without_lightning_or_hydra(exported):
    """In a fresh interpreter, predicting with the export imports none of the training stack."""
    code = (
        "import sys, numpy as np\n"
        "from agefair.inference.detect import CentreDetector\n"
        "from agefair.inference.predictor import Predictor\n"
        f"p = Predictor.from_checkpoint({str(exported)!r}, detector=CentreDetector())\n"
        "faces = p(np.full((120, 100, 3), 90, np.uint8))\n"
        "heavy = ('pytorch_lightning', 'lightning', 'lightning_fabric', 'hydra', 'omegaconf',\n"
        "         'torchmetrics', 'agefair.models.base', 'agefair.training')\n"
        "print(len(faces), sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-2:] == ["1", "[]"], proc.stdout


@pytest.mark.slow
def test_evaluate_scores_the_export_on_labelled_photos_as_the_checkpoint(
    exported, tiny_ckpt, tmp_path, monkeypatch
):
    monkeypatch.setenv(YUNET_ENV_VAR, str(yunet_path()))
    face = Image.open(photos_dir() / "astronaut.png").convert("RGB").crop((140, 20, 320, 220))
    rows = []
    for i, side in enumerate((120, 180, 0)):
        photo = Image.fromarray(textured(224, 224, seed=i))
        if side:
            photo.paste(face.resize((side, side)), (20, 20))
        photo.save(tmp_path / f"{i}.jpg", quality=92)
        rows.append({"file": f"{i}.jpg", "age": 53, "gender": 1, "race": 0})
    labels = tmp_path / "labels.csv"
    pd.DataFrame(rows).to_csv(labels, index=False)
    scored = {
        name: evaluate_cli(f"ckpt_path={model}", f"labels={labels}",
                           f"hydra.run.dir={tmp_path / name}")[0]
        for name, model in (("ckpt", tiny_ckpt), ("onnx", exported))
    }  # fmt: skip
    assert scored["onnx"]["n"] == 3 and scored["onnx"]["missed"] == 1
    for key in ("gender_acc", "race_acc", "missed"):
        assert scored["onnx"][key] == scored["ckpt"][key]
    assert scored["onnx"]["age_mae"] == pytest.approx(scored["ckpt"]["age_mae"], abs=1e-3)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "scored through the app's path"),
        (["labels=labels.csv", "tta_flip=false"], "test-time views in its graph"),
    ],
)
def test_evaluate_refuses_what_an_export_cannot_do(exported, tmp_path, extra, message):
    proc = subprocess.run(
        [sys.executable, "-m", "agefair.evaluate", f"ckpt_path={exported}",
         f"hydra.run.dir={tmp_path}", *extra],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0 and message in proc.stderr


def test_the_cli_lists_export():
    proc = subprocess.run(
        [sys.executable, "-m", "agefair.cli", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert "export" in proc.stdout


# --------------------------------------------------------------------------------------------
# Bad files
# --------------------------------------------------------------------------------------------
def test_export_refuses_a_name_that_is_not_onnx(tiny_ckpt, tmp_path, capsys):
    assert export_main([str(tiny_ckpt), "--out", str(tmp_path / "model.pt")]) == 1
    assert ".onnx" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_export_of_a_file_that_is_no_checkpoint_is_one_clear_line(tmp_path, capsys):
    bogus = tmp_path / "bogus.ckpt"
    bogus.write_bytes(b"not a checkpoint")
    assert export_main([str(bogus)]) == 1
    assert capsys.readouterr().err.startswith("agefair export: error: cannot read checkpoint")


@pytest.mark.slow
def test_an_export_without_its_sidecar_is_refused(exported, tmp_path):
    model = copy_model(exported, tmp_path)
    sidecar_path(model).unlink()
    with pytest.raises(CheckpointError, match="no sidecar"):
        Predictor.from_checkpoint(model, detector=CentreDetector())


@pytest.mark.slow
def test_a_sidecar_of_another_graph_is_refused(exported, tmp_path):
    model = copy_model(exported, tmp_path)
    model.write_bytes(model.read_bytes() + b"\0")  # the graph changed, the sidecar did not
    with pytest.raises(CheckpointError, match="another model file"):
        OnnxRuntime(model)


@pytest.mark.slow
def test_a_graph_onnx_runtime_cannot_read_is_refused(exported, tmp_path):
    model = copy_model(exported, tmp_path)
    model.write_bytes(b"garbage, not a protobuf")
    spec = json.loads(sidecar_path(model).read_text())
    spec["sha256"] = hashlib.sha256(model.read_bytes()).hexdigest()
    sidecar_path(model).write_text(json.dumps(spec))
    with pytest.raises(CheckpointError, match="ONNX Runtime cannot load"):
        OnnxRuntime(model)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "something-else"}, "not an agefair sidecar"),
        ({"version": 99}, "export the model again"),
        ({"races": ["a", "b", "c", "d", "e"]}, "not agefair's"),
        ({"img_size": None, "outputs": None}, None),
    ],
)
def test_a_sidecar_that_does_not_fit_is_refused(exported, tmp_path, change, message):
    model = copy_model(exported, tmp_path)
    spec = json.loads(sidecar_path(model).read_text())
    if message is None:  # fields missing
        for key in change:
            del spec[key]
        message = "lacks img_size, outputs"
    else:
        spec.update(change)
    sidecar_path(model).write_text(json.dumps(spec))
    with pytest.raises(CheckpointError, match=message):
        OnnxRuntime(model)


def test_a_sidecar_that_is_not_json_is_refused(tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"x")
    sidecar_path(model).write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read the sidecar"):
        OnnxRuntime(model)


def test_a_missing_export_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        Predictor.from_checkpoint(tmp_path / "nowhere.onnx")


def test_an_export_that_differs_from_torch_is_not_written(tmp_path, monkeypatch):
    """The parity check guards every export: a graph that disagrees leaves no files."""
    from agefair.inference import exporting
    from agefair.training.build import build_system

    cfg = compose_train(["experiment=from_scratch", "backbone=tiny", "data.img_size=32"], tmp_path)
    system = build_system(cfg)
    monkeypatch.setattr(exporting, "parity", lambda *args: 0.5)
    with pytest.raises(RuntimeError, match="differs from the torch system by 0.5"):
        export_onnx(system, cfg.data, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()
    assert not sidecar_path(tmp_path / "model.onnx").exists()


def test_torch_and_onnx_runtimes_take_the_same_batch(tmp_path):
    """Both runtimes take a torch batch and give float numpy arrays of one shape."""
    from agefair.inference.runtimes import TorchRuntime
    from agefair.training.build import build_system

    cfg = compose_train(["experiment=from_scratch", "backbone=tiny", "data.img_size=32"], tmp_path)
    system = build_system(cfg)
    export_onnx(system, cfg.data, tmp_path / "model.onnx")
    batch = generated_faces(3, 32)
    a, b = TorchRuntime(system)(batch), OnnxRuntime(tmp_path / "model.onnx")(batch)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].shape == b[key].shape and b[key].dtype == np.float32
        np.testing.assert_allclose(a[key], b[key], atol=PARITY_TOLERANCE)
