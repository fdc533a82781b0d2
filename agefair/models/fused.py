"""A frozen face-pretrained backbone and a small learned one, side by side.

A network pretrained on millions of faces (dlib's face-recognition ResNet) holds what UTKFace's
20,000 faces cannot teach: features that stay put when the photographer, the light or the crop
change. Frozen, it costs one forward pass per image, and its features can be computed once per
training image. A small CNN trained from scratch beside it learns what the frozen features lack
(the fine age cues a metric loss for identity throws away). The heads see both, concatenated.

The learned branch sees the input shrunk to ``learned_size`` (its own resolution: the small CNN
at 64 px costs a fifth of what it would at 150), the frozen one the input as it comes. Both
take the frozen branch's normalisation: the learned one starts from scratch, so any fixed
normalisation suits it.

Training serves the frozen branch from a cache that
:class:`~agefair.models.multitask.MultiTaskModule` fills as training starts: its features of
each training image, computed once without augmentation, while the learned branch sees the
augmented image. Evaluation and inference compute both live, on every test-time view.

A frozen network learned from faces framed its own way (dlib's chips are wider than UTKFace's
crops) can get that framing in two ways: the whole input is cut to it (the backbone declares
the frozen network's ``framing``, and the data and the predictor follow), or, with
``frame_inside``, the input keeps UTKFace's framing for the learned branch and the frozen branch
widens its own view inside the model, replicating the input's border pixels.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from agefair.models.backbone import Backbone

#: The parts of a fused backbone's features a head may read (see :meth:`FusedBackbone.part`).
PARTS = ("all", "frozen", "learned")


class FusedBackbone(Backbone):
    """Features of a frozen backbone and of a learned one, concatenated.

    Args:
        frozen: the frozen backbone (e.g. ``dlib_resnet``); its parameters never train.
        learned: the learned backbone (e.g. a small ``cnn``).
        learned_size: side the learned backbone sees its input at.
        frame_inside: the input keeps UTKFace's framing and only the frozen branch's view is
            widened to the frozen network's framing (see the module docstring).
    """

    def __init__(
        self,
        frozen: Backbone,
        learned: Backbone,
        learned_size: int = 64,
        frame_inside: bool = False,
    ) -> None:
        super().__init__()
        self.frozen = frozen
        self.learned = learned
        self.frozen.requires_grad_(False)
        self.learned_size = int(learned_size)
        self.num_features = self.frozen.num_features + self.learned.num_features
        self.input_config = self.frozen.input_config
        self.frozen_zoom = 1.0
        if frame_inside:
            self.frozen_zoom = self.input_config.framing
            self.input_config = dataclasses.replace(self.input_config, framing=1.0)
        self.pretrained = getattr(self.frozen, "pretrained", False)

    def train(self, mode: bool = True) -> FusedBackbone:
        super().train(mode)
        self.frozen.eval()  # frozen means frozen: no dropout, no batch-statistics updates
        return self

    @torch.no_grad()
    def frozen_features(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen branch's features (what the cache holds)."""
        return self.frozen(self.frozen_view(images))

    def frozen_view(self, images: torch.Tensor) -> torch.Tensor:
        """The input as the frozen branch sees it: widened by ``frozen_zoom`` about its centre
        (border pixels replicated, as :func:`agefair.data.framing.reframe` does), same size."""
        if self.frozen_zoom == 1:
            return images
        size = images.shape[-2:]
        pad = [round(s * (self.frozen_zoom - 1) / 2) for s in size]
        wide = F.pad(images, (pad[1], pad[1], pad[0], pad[0]), mode="replicate")
        return F.interpolate(wide, size=size, mode="bilinear", antialias=True)

    def learned_features(self, images: torch.Tensor) -> torch.Tensor:
        """The learned branch's features of the input shrunk to ``learned_size``."""
        if images.shape[-1] != self.learned_size or images.shape[-2] != self.learned_size:
            images = F.interpolate(
                images, size=(self.learned_size,) * 2, mode="bilinear", antialias=True
            )
        return self.learned(images)

    def part(self, features: torch.Tensor, name: str) -> torch.Tensor:
        """The columns of ``forward``'s features that come from one branch (or ``all``)."""
        if name not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {name!r}")
        n = self.frozen.num_features
        return {"all": features, "frozen": features[:, :n], "learned": features[:, n:]}[name]

    def part_size(self, name: str) -> int:
        """How many features :meth:`part` gives."""
        sizes = {"frozen": self.frozen.num_features, "learned": self.learned.num_features}
        return self.num_features if name == "all" else sizes[name]

    def forward(
        self, images: torch.Tensor, frozen_features: torch.Tensor | None = None
    ) -> torch.Tensor:
        if frozen_features is None:
            frozen_features = self.frozen_features(images)
        return torch.cat([frozen_features.to(images.dtype), self.learned_features(images)], 1)
