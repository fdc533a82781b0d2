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

With ``tuned_blocks``, the frozen network's last residual blocks train too, at their own lower
learning rate (``tuned_lr_factor``): the cache then holds the activations entering them (256 x
4 x 4 per face for dlib's network at 150 px), so each step costs only those blocks' small maps.
With the last block learning (the default recipe), identity features learn what age, gender and
race need, and UTKFace's test faces and unseen ones both gain, age most; with two, UTKFace is fit
by the third epoch (experiments/unseen, the fine-tuning section).

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
from torch import nn

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
        tuned_blocks: the frozen network's last residual blocks that train nonetheless (it
            must split at its blocks, as ``dlib_resnet`` does); 0 keeps it whole frozen.
        tuned_lr_factor: their learning rate relative to the rest of the backbone's.
        mirror_in_training: training draws the frozen part's features of each face or of its
            mirror at random (the cache holds both, at the cost of a second pass): the frozen
            branch's share of the flip augmentation (with one tuned block it bought nothing).
    """

    def __init__(
        self,
        frozen: Backbone,
        learned: Backbone,
        learned_size: int = 64,
        frame_inside: bool = False,
        tuned_blocks: int = 0,
        tuned_lr_factor: float = 0.1,
        mirror_in_training: bool = False,
    ) -> None:
        super().__init__()
        self.frozen = frozen
        self.learned = learned
        self.frozen.requires_grad_(False)
        self.tuned_blocks = int(tuned_blocks)
        self.tuned_lr_factor = float(tuned_lr_factor)
        self.mirror_in_training = bool(mirror_in_training)
        self.cut = self._cut(frozen, self.tuned_blocks)
        if self.tuned_blocks:
            self.tuned().requires_grad_(True)
        self.learned_size = int(learned_size)
        self.num_features = self.frozen.num_features + self.learned.num_features
        self.input_config = self.frozen.input_config
        self.frozen_zoom = 1.0
        if frame_inside:
            self.frozen_zoom = self.input_config.framing
            self.input_config = dataclasses.replace(self.input_config, framing=1.0)
        self.pretrained = getattr(self.frozen, "pretrained", False)

    @staticmethod
    def _cut(frozen: Backbone, tuned_blocks: int) -> int | None:
        """The block the frozen network's fixed part ends at (``None``: it is all fixed)."""
        if tuned_blocks == 0:
            return None
        blocks = getattr(frozen, "num_blocks", None)
        if blocks is None:
            raise ValueError(
                f"tuned_blocks={tuned_blocks} needs a frozen network that splits at its residual "
                f"blocks (dlib_resnet), not {type(frozen).__name__}"
            )
        if not 0 < tuned_blocks <= blocks:
            raise ValueError(f"tuned_blocks must be between 0 and {blocks}, got {tuned_blocks}")
        return blocks - tuned_blocks

    def tuned(self) -> nn.Module:
        """The frozen network's blocks that train (``tuned_blocks``; empty if none)."""
        if self.cut is None:
            return nn.Sequential()
        return self.frozen.trunk.blocks[self.cut :]

    def lr_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        tuned = {id(p) for p in self.tuned().parameters()}
        return [
            ([p for p in self.parameters() if id(p) in tuned], self.tuned_lr_factor),
            ([p for p in self.parameters() if id(p) not in tuned], 1.0),
        ]

    def train(self, mode: bool = True) -> FusedBackbone:
        super().train(mode)
        # Frozen means frozen: no dropout, no batch-statistics updates. dlib's blocks have
        # neither, so the tuned ones train the same in eval mode.
        self.frozen.eval()
        return self

    @torch.no_grad()
    def frozen_features(self, images: torch.Tensor) -> torch.Tensor:
        """What the frozen part gives (and the training cache holds): the frozen network's
        features, or with ``tuned_blocks`` the activations entering the tuned blocks."""
        view = self.frozen_view(images)
        return self.frozen(view) if self.cut is None else self.frozen.activations(view, self.cut)

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
        """``frozen_features``: :meth:`frozen_features` of ``images``, computed before (the
        training cache's rows)."""
        if frozen_features is None:
            frozen_features = self.frozen_features(images)
        frozen_features = frozen_features.to(images.dtype)
        if self.cut is not None:
            frozen_features = self.frozen.features_from(frozen_features, self.cut)
        return torch.cat([frozen_features, self.learned_features(images)], 1)
