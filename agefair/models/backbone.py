"""The backbone contract every network of the registry (:mod:`agefair.models.backbones`) keeps.

A :class:`Backbone` is an ``nn.Module`` whose ``forward(images)`` maps a ``B x 3 x H x W`` float
batch to pooled features ``B x num_features``, and which carries ``num_features`` and
``input_config`` (the mean, std, input size and face framing it expects). Any head can sit on
any backbone through that contract.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


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

    def lr_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        """Its parameters in groups, each with its learning rate relative to the backbone's
        (a backbone whose parts learn at different rates says so here)."""
        return [(list(self.parameters()), 1.0)]
