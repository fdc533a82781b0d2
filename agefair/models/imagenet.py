"""ImageNet-pretrained backbones: any timm model by name, and torchvision's VGG-16.

Weights come through the libraries' own APIs (timm's hub, torchvision's weights enums); without
network access the error says where to put the file, or to train with ``pretrained=false``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from agefair.models.backbone import Backbone, InputConfig

log = logging.getLogger(__name__)


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
            log.warning("VGG-16: pretrained=false, random initialisation")
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
