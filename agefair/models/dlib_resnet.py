"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``) as a backbone.

Source: Davis King's ``dlib_face_recognition_resnet_model_v1.dat`` (davisking/dlib-models), the
network behind ``dlib.face_recognition_model_v1`` and the ``face_recognition`` package, released
into the public domain (CC0). A ResNet-34 with some layers removed and half the filters (29
convolutions), it was trained from scratch with a metric loss on about 3 million faces (from the
FaceScrub and VGG face sets and images its author scraped from the internet) to map an aligned
150 x 150 face chip to a 128-D embedding in which two photos of one person lie within 0.6 of
each other (99.38% on the LFW benchmark, by its author's account). The
``face_recognition_models`` package ships the file, so no download is needed.

The network is rebuilt here in torch, module for module, from dlib's
``dnn_face_recognition_ex.cpp``, and the weights are read straight from the ``.dat`` file by
:func:`read_dlib_weights`, a small reader of dlib's serialisation format. Input to output::

    conv 7x7/2 (32, no padding) - affine - relu - max pool 3x3/2 (no padding)
    3 blocks 32 | block 32->64 /2, 3 blocks 64 | block 64->128 /2, 2 blocks 128
    block 128->256 /2, 2 blocks 256 | block 256 /2
    global average pool (256, ``features="pooled"``) - fc 256->128 without bias (the embedding)

The blocks are agev1's :class:`~agefair.models.agev1.ResidualBlock`: dlib uses the same residual
unit in both networks (a stride-2 first convolution without padding, a 2 x 2 average pool on
the shortcut, the two branches added with trailing zero padding where they differ). At 150 px
they differ in channels at each downsampling block and, at the 8 x 8 to 4 x 4 one, also in size:
the convolution gives 3 x 3 and the pool 4 x 4.

The input is dlib's ``input_rgb_image_sized<150>``: ``(pixel - average) / 256`` on RGB bytes with
the averages (122.782, 117.001, 104.298), which is agefair's ``(p / 255 - mean) / std`` with
``mean = average / 255`` and ``std = 256 / 255``. The chip is meant to be aligned the way
``dlib.get_face_chip`` aligns it (5 landmarks, padding 0.25); other crops work less well.

The file format (dlib/serialize.h, dlib/dnn/core.h, tensor.h, layers.h), as far as this reader
needs it:

- integers are packed: one control byte (low nibble: the number of little-endian bytes that
  follow, bit ``0x80``: negative, bits ``0x70``: always zero), then the bytes;
- scalar floats are two packed integers, a 64-bit mantissa and a 16-bit exponent, value
  ``mantissa * 2**exponent`` (exponents 32000, 32001 and 32002 mean inf, -inf and nan);
- strings are a packed length and the bytes; bools are the characters ``'1'`` and ``'0'``;
- tensors (version 2) are the packed version, num_samples, k, nr and nc, followed by the data as
  raw little-endian float32, not as packed mantissa/exponent pairs;
- a network is serialised from its loss layer inwards, each wrapper writing its version and then
  its subnetwork before its own details: the loss details come first, then one version number
  per layer (2 for a layer, 1 for a tag or skip, 3 for the innermost), then the input layer, then
  each layer's details and state from the input side to the output.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from agefair.models.agev1 import Affine, AgeV1Trunk, init_random
from agefair.models.backbone import Backbone, InputConfig

log = logging.getLogger(__name__)

PACKAGE = "face_recognition_models"
WEIGHTS_NAME = "dlib_face_recognition_resnet_model_v1.dat"
INSTALL_HINT = "pip install face_recognition_models"

INPUT_SIZE = 150
#: dlib cuts the chips its network learned from (``get_face_chip``, 150 px, padding 0.25) 1.085
#: times as wide as UTKFace's crops, about the same centre, untilted: the median over 2,000
#: training faces (experiments/unseen/dlib_chip.py; quartiles 1.053 and 1.114). Cut so, its
#: frozen features read out linearly do better on other photographers' faces than from
#: UTKFace's framing (experiments/unseen, the probe table).
CHIP_FRAMING = 1.085
# dlib's input_rgb_image averages (R, G, B) on 0..255; the network sees (pixel - average) / 256.
PIXEL_AVERAGE = (122.782, 117.001, 104.298)
PIXEL_SCALE = 256.0
PIXEL_MAX = 255.0  # agefair's normalisation stats are on 0..1

STEM_CHANNELS = 32
EMBEDDING_SIZE = 128
# (output channels, stride) of each residual block, input to output (alevel4 ... alevel0).
BLOCKS = (
    *[(32, 1)] * 3,
    (64, 2),
    *[(64, 1)] * 3,
    (128, 2),
    *[(128, 1)] * 2,
    (256, 2),
    *[(256, 1)] * 2,
    (256, 2),
)
# The smallest square input the unpadded stride-2 convolutions accept (the last one needs 3 x 3).
MIN_INPUT_SIZE = 103
FEATURES = ("embedding", "pooled")


# ---------------------------------------------------------------------------- locating the file
def default_weights_path() -> Path:
    """The ``.dat`` file in the installed ``face_recognition_models`` package.

    Found without importing the package, whose ``__init__`` needs ``pkg_resources``.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"the dlib_resnet backbone reads its weights from the face_recognition_models "
            f"package ({INSTALL_HINT}), or pass weights_path=/path/to/{WEIGHTS_NAME}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"the face_recognition_models package has no {path}; reinstall it")
    return path


# ---------------------------------------------------------------------------- modules
class DlibResnetTrunk(AgeV1Trunk):
    """The network up to its last residual block (``B x 256 x h x w``): agev1's trunk shape
    with this network's stem width and blocks."""

    def __init__(self) -> None:
        super().__init__(STEM_CHANNELS, BLOCKS)

    @staticmethod
    def check_size(images: torch.Tensor) -> None:
        if min(images.shape[-2:]) < MIN_INPUT_SIZE:
            raise ValueError(
                f"dlib_resnet needs inputs of at least {MIN_INPUT_SIZE} x {MIN_INPUT_SIZE} px "
                f"(its stride-2 convolutions have no padding; it was trained at {INPUT_SIZE}), "
                f"got {tuple(images.shape[-2:])}"
            )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.check_size(images)
        return super().forward(images)


class DlibFaceResnet(nn.Module):
    """The whole network: trunk, global average pool and the 128-D embedding (``fc_no_bias``)."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = DlibResnetTrunk()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.trunk.out_channels, EMBEDDING_SIZE, bias=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.trunk(images)).flatten(1))


def _con_sig(c_in: int, c_out: int, nr: int, nc: int, sy: int, sx: int, py: int, px: int) -> str:
    return f"con {c_in}->{c_out} {nr}x{nc} stride {sy}x{sx} padding {py}x{px}"


def _pool_sig(kind: str, nr: int, nc: int, sy: int, sx: int, py: int, px: int) -> str:
    if nr == nc == 0:  # dlib's *_pool_everything
        return f"{kind} everything"
    return f"{kind} {nr}x{nc} stride {sy}x{sx} padding {py}x{px}"


def _fc_sig(n_in: int, n_out: int, bias: bool) -> str:
    return f"{'fc' if bias else 'fc_no_bias'} {n_in}->{n_out}"


def dlib_layers(net: DlibFaceResnet) -> Iterator[tuple[str, nn.Module | None]]:
    """The layers dlib serialises for ``net``, input to output: ``(signature, module)``.

    The module is the one that holds the layer's parameters, ``None`` for parameter-free layers.
    """

    def con(m: nn.Conv2d) -> tuple[str, nn.Module]:
        sig = _con_sig(m.in_channels, m.out_channels, *m.kernel_size, *m.stride, *m.padding)
        return sig, m

    def affine(m: Affine) -> tuple[str, nn.Module]:
        return f"affine {m.weight.numel()}", m

    conv, aff, _, mp = net.trunk.stem
    yield con(conv)
    yield affine(aff)
    yield "relu", None
    yield _pool_sig("max_pool", mp.kernel_size, mp.kernel_size, mp.stride, mp.stride, 0, 0), None
    for block in net.trunk.blocks:
        yield con(block.conv1)
        yield affine(block.affine1)
        yield "relu", None
        yield con(block.conv2)
        yield affine(block.affine2)
        if isinstance(block.shortcut, nn.AvgPool2d):
            k, s = block.shortcut.kernel_size, block.shortcut.stride
            yield _pool_sig("avg_pool", k, k, s, s, 0, 0), None
        yield "add_prev", None
        yield "relu", None
    yield "avg_pool everything", None
    yield _fc_sig(net.fc.in_features, net.fc.out_features, net.fc.bias is not None), net.fc


# ---------------------------------------------------------------------------- the .dat reader
class DlibFormatError(ValueError):
    """The file is not dlib's serialisation of the face-recognition network."""


class _Stream:
    """dlib's serialisation primitives (dlib/serialize.h) read from a byte buffer."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.pos = memoryview(data), path, 0

    def error(self, what: str) -> DlibFormatError:
        return DlibFormatError(
            f"{self.path} is not dlib's {WEIGHTS_NAME} (at byte {self.pos}: {what}); pass the "
            f"file from the face_recognition_models package ({INSTALL_HINT})"
        )

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise self.error(f"needs {n} more bytes, the file ends after {len(self.data)}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def at_end(self) -> bool:
        return self.pos == len(self.data)

    def int(self) -> int:
        ctrl = self.take(1)[0]
        size = ctrl & 0x0F
        if ctrl & 0x70 or size > 8:
            raise self.error(f"0x{ctrl:02x} is no integer control byte")
        value = int.from_bytes(self.take(size), "little")
        return -value if ctrl & 0x80 else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        if exponent < 32000:
            return math.ldexp(mantissa, exponent)
        return {32000: math.inf, 32001: -math.inf}.get(exponent, math.nan)

    def string(self) -> str:
        return bytes(self.take(self.int())).decode("latin-1")

    def peek_string(self) -> str | None:
        """The string at the current position, without consuming it; ``None`` if there is none."""
        start = self.pos
        try:
            return self.string()
        except DlibFormatError:
            return None
        finally:
            self.pos = start

    def bool(self) -> bool:
        ch = bytes(self.take(1))
        if ch not in (b"0", b"1"):
            raise self.error(f"{ch!r} is no bool")
        return ch == b"1"

    def tensor(self) -> np.ndarray:
        """A ``resizable_tensor``: its shape, then raw little-endian float32 data."""
        version = self.int()
        if version != 2:
            raise self.error(f"tensor version {version}, expected 2")
        shape = tuple(self.int() for _ in range(4))
        if min(shape) < 0:
            raise self.error(f"tensor shape {shape}")
        n = math.prod(shape)
        return np.frombuffer(self.take(4 * n), dtype="<f4").reshape(shape).astype(np.float32)

    def alias(self) -> tuple[int, int, int, int]:
        """An ``alias_tensor``: only a shape, into its layer's ``params`` tensor."""
        version = self.int()
        if version != 1:
            raise self.error(f"alias_tensor version {version}, expected 1")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]


@dataclass
class DlibLayer:
    """One computational layer of the file: its signature (as :func:`dlib_layers` writes it) and
    its parameters as torch wants them (``weight``, ``bias``)."""

    name: str  # dlib's serialisation tag, e.g. "con_4"
    signature: str
    params: dict[str, np.ndarray] = field(default_factory=dict)


def _read_con(s: _Stream) -> DlibLayer:
    params = s.tensor().reshape(-1)
    num_filters, nr, nc, sy, sx, py, px = (s.int() for _ in range(7))
    filters, biases = s.alias(), s.alias()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        s.float()
    n_filt = math.prod(filters)
    if filters[0] != num_filters or filters[2:] != (nr, nc) or n_filt + num_filters != params.size:
        raise s.error(f"con_4 filters {filters} do not fit {num_filters} filters, {params.size}")
    weight = params[:n_filt].reshape(filters)
    bias = params[n_filt:].reshape(math.prod(biases))
    sig = _con_sig(filters[1], num_filters, nr, nc, sy, sx, py, px)
    return DlibLayer("con_4", sig, {"weight": weight, "bias": bias})


def _read_affine(s: _Stream) -> DlibLayer:
    params = s.tensor().reshape(-1)
    gamma, beta = s.alias(), s.alias()
    mode = s.int()  # 0: per channel (CONV_MODE), 1: per element (FC_MODE)
    n = math.prod(gamma)
    if mode != 0 or gamma != beta or 2 * n != params.size:
        raise s.error(f"affine_ mode {mode}, gamma {gamma}, beta {beta}, {params.size} params")
    return DlibLayer("affine_", f"affine {n}", {"weight": params[:n], "bias": params[n:]})


def _read_pool(kind: str):
    def read(s: _Stream) -> DlibLayer:
        return DlibLayer(f"{kind}_2", _pool_sig(kind, *(s.int() for _ in range(6))))

    return read


def _read_fc(s: _Stream) -> DlibLayer:
    n_out, n_in = s.int(), s.int()
    params = s.tensor().reshape(-1)
    weights, _biases = s.alias(), s.alias()
    has_bias = s.int() == 0  # dlib's fc_bias_mode: FC_HAS_BIAS = 0, FC_NO_BIAS = 1
    for _ in range(4):
        s.float()
    if weights[:2] != (n_in, n_out) or params.size != n_in * n_out + has_bias * n_out:
        raise s.error(f"fc_2 weights {weights} do not fit {n_in}->{n_out}, {params.size} params")
    # dlib computes ``x @ W`` with W stored num_inputs x num_outputs; torch's weight is W.T.
    out = {"weight": np.ascontiguousarray(params[: n_in * n_out].reshape(n_in, n_out).T)}
    if has_bias:
        out["bias"] = params[n_in * n_out :]
    return DlibLayer("fc_2", _fc_sig(n_in, n_out, has_bias), out)


LAYER_READERS = {
    "con_4": _read_con,
    "affine_": _read_affine,
    "relu_": lambda s: DlibLayer("relu_", "relu"),
    "add_prev_": lambda s: DlibLayer("add_prev_", "add_prev"),
    "max_pool_2": _read_pool("max_pool"),
    "avg_pool_2": _read_pool("avg_pool"),
    "fc_2": _read_fc,
}


@dataclass
class DlibResnetWeights:
    """What the file holds: the input layer's settings and the layers, input to output."""

    input_average: tuple[float, float, float]
    input_size: tuple[int, int]
    layers: list[DlibLayer]
    margin: float  # of the metric loss
    distance_threshold: float  # same person below this distance (0.6)


def read_dlib_weights(path: str | Path) -> DlibResnetWeights:
    """Reads ``dlib_face_recognition_resnet_model_v1.dat`` (see the module docstring's format).

    Raises:
        FileNotFoundError: no file at ``path``.
        DlibFormatError: the file is truncated, garbage or another network.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"no dlib face-recognition network at {path}: pass weights_path=/path/to/"
            f"{WEIGHTS_NAME}, install {PACKAGE} ({INSTALL_HINT}), or set pretrained=false"
        )
    s = _Stream(path.read_bytes(), path)
    if s.int() != 1 or s.peek_string() != "loss_metric_2":
        raise s.error("it does not begin with dlib's loss_metric layer (loss_metric_2)")
    s.string()
    margin, distance_threshold = s.float(), s.float()
    # One version per wrapper, outermost first, until the input layer's name.
    versions = []
    while s.peek_string() != "input_rgb_image_sized":
        versions.append(s.int())
        if versions[-1] not in (1, 2, 3) or len(versions) > 1000:
            raise s.error(f"layer version {versions[-1]} before any input_rgb_image_sized layer")
    s.string()
    average = (s.float(), s.float(), s.float())
    size = (s.int(), s.int())
    if not versions or versions[-1] not in (2, 3):
        raise s.error("no layer on the input")
    n_layers = versions.count(2) + (versions[-1] == 3)
    layers = []
    for i in range(n_layers):
        name = s.string()
        if name not in LAYER_READERS:
            raise s.error(f"layer {i} is {name[:40]!r}, which this network does not have")
        layers.append(LAYER_READERS[name](s))
        # add_layer's state: setup called, gradient stale, getters disabled, x_grad, output ...
        for _ in range(3):
            s.bool()
        s.tensor()
        s.tensor()
        if i == 0:  # ... the innermost: grad_final (and from version 3 the expansion factor)
            s.tensor()
            if versions[-1] == 3:
                s.int()
        else:  # ... the others: params_grad
            s.tensor()
    if not s.at_end():
        raise s.error(f"{len(s.data) - s.pos} bytes left after the last layer")
    return DlibResnetWeights(average, size, layers, margin, distance_threshold)


def _copy(param: torch.Tensor, value: np.ndarray, what: str) -> None:
    """Copies ``value`` into ``param``, failing with the layer's name when shapes differ."""
    if tuple(param.shape) != value.shape:
        raise DlibFormatError(
            f"dlib_resnet {what}: the file has {value.shape}, the rebuild {tuple(param.shape)}"
        )
    with torch.no_grad():
        param.copy_(torch.from_numpy(value))


def load_dlib_weights(net: DlibFaceResnet, weights: DlibResnetWeights) -> None:
    """Checks the file's layers against ``net``, one by one, and copies the parameters in."""
    if max(abs(a - b) for a, b in zip(weights.input_average, PIXEL_AVERAGE, strict=True)) > 1e-3:
        raise DlibFormatError(f"input averages {weights.input_average}, expected {PIXEL_AVERAGE}")
    if weights.input_size != (INPUT_SIZE, INPUT_SIZE):
        raise DlibFormatError(f"input size {weights.input_size}, expected {INPUT_SIZE} px")
    expected = list(dlib_layers(net))
    if len(expected) != len(weights.layers):
        raise DlibFormatError(
            f"the file has {len(weights.layers)} layers, the rebuild {len(expected)}"
        )
    for i, ((sig, module), layer) in enumerate(zip(expected, weights.layers, strict=True)):
        if sig != layer.signature:
            raise DlibFormatError(
                f"layer {i}: the file has '{layer.signature}', the rebuild '{sig}'"
            )
        for name, value in layer.params.items():
            _copy(getattr(module, name), value, f"layer {i} ({sig}) {name}")


def load_dlib_resnet(weights_path: str | Path | None = None) -> DlibFaceResnet:
    """The pretrained network, from ``weights_path`` or the package's file, in eval mode."""
    path = Path(weights_path).expanduser() if weights_path else default_weights_path()
    net = DlibFaceResnet()
    load_dlib_weights(net, read_dlib_weights(path))
    log.info("dlib_resnet: loaded the face-recognition network from %s", path)
    return net.eval()


# ---------------------------------------------------------------------------- backbone
class DlibResnetBackbone(Backbone):
    """dlib's face-recognition ResNet: a 128-D face embedding or its 256 pooled features.

    Args:
        pretrained: load the weights from ``weights_path``; false builds the same architecture
            with random weights (agev1's initialisation: blocks start as identity).
        weights_path: the ``.dat`` file; default: the one in the ``face_recognition_models``
            package.
        features: ``"embedding"``: the 128-D embedding dlib compares faces with (not
            normalised; same person below a distance of 0.6); ``"pooled"``: the 256 features of
            the global average pool before it.
    """

    def __init__(
        self, pretrained: bool = True, weights_path: str | None = None, features: str = "embedding"
    ) -> None:
        super().__init__()
        if features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
        if pretrained:
            net = load_dlib_resnet(weights_path)
        else:
            net = DlibFaceResnet()
            init_random(net.trunk)
            log.info("dlib_resnet: pretrained=false, random initialisation")
        self.pretrained = bool(pretrained)
        self.features = features
        self.trunk, self.pool = net.trunk, net.pool
        self.fc = net.fc if features == "embedding" else None
        self.num_features = EMBEDDING_SIZE if self.fc is not None else self.trunk.out_channels
        self.input_config = InputConfig(
            tuple(a / PIXEL_MAX for a in PIXEL_AVERAGE),
            (PIXEL_SCALE / PIXEL_MAX,) * 3,
            INPUT_SIZE,
            CHIP_FRAMING,
        )

    @property
    def num_blocks(self) -> int:
        """Residual blocks in the trunk (the unit :meth:`activations` splits it at)."""
        return len(self.trunk.blocks)

    def activations(self, images: torch.Tensor, blocks: int) -> torch.Tensor:
        """The activations after the stem and the trunk's first ``blocks`` residual blocks."""
        self.trunk.check_size(images)
        return self.trunk.blocks[:blocks](self.trunk.stem(images))

    def features_from(self, activations: torch.Tensor, blocks: int) -> torch.Tensor:
        """:meth:`forward`'s features from ``activations(images, blocks)``: the remaining
        blocks, the pool and (``features="embedding"``) the embedding."""
        x = self.pool(self.trunk.blocks[blocks:](activations)).flatten(1)
        return self.fc(x) if self.fc is not None else x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features_from(self.activations(images, self.num_blocks), self.num_blocks)
