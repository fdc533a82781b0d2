"""One network, one softmax over every gender x race x age combination (2 x 5 x 117 classes).

The literal "classify everything with one architecture" design: gender, race and age are read
off the marginals of the joint distribution, so it is trained and evaluated like the others.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from agefair.labels import GENDERS, NUM_AGES, RACES
from agefair.models.backbone import Backbone
from agefair.models.base import AgeFairModule

SHAPE = (len(GENDERS), len(RACES), NUM_AGES)


class JointNet(nn.Module):
    """A backbone and one linear layer to ``2 * 5 * 117`` logits."""

    def __init__(self, backbone: Backbone, dropout: float = 0.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(backbone.num_features, SHAPE[0] * SHAPE[1] * SHAPE[2])
        )
        self.register_buffer("ages", torch.arange(NUM_AGES, dtype=torch.float32), persistent=False)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.fc(self.backbone(images)).float()
        p = logits.softmax(-1).view(-1, *SHAPE)
        p_age = p.sum((1, 2))
        mean = p_age @ self.ages
        sd = (p_age @ self.ages.square() - mean.square()).clamp_min(0).sqrt()
        return {
            "joint_logits": logits,
            "age": mean,
            "age_sd": sd,
            "gender_p": p.sum((2, 3)),
            "race_p": p.sum((1, 3)),
        }


class JointModule(AgeFairModule):
    """Trains :class:`JointNet` with cross-entropy over the joint classes.

    Args:
        net: the :class:`JointNet`.
        age_sigma: spread (years) of the age part of the target. 0 gives the literal one-hot
            joint label; a few years shares the target between neighbouring ages of the same
            gender and race, since 1,170 classes leave most joint classes with few examples.
            The recipe's race weighting weighs each image by its race's class weight; its
            ``loss_weights`` find no per-task loss here to weight.
        **kwargs: see :class:`~agefair.models.base.AgeFairModule`.
    """

    def __init__(self, net: JointNet, age_sigma: float = 2.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.net = net

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net(images)

    def compute_loss(self, out: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        age, gender, race = batch["age"], batch["gender"], batch["race"]
        logp = out["joint_logits"].log_softmax(-1).view(-1, *SHAPE)
        logp = logp[torch.arange(len(age), device=age.device), gender, race]  # B x 117
        if self.hparams.age_sigma > 0:
            ages = self.net.ages
            target = torch.exp(-0.5 * ((ages - age.float()[:, None]) / self.hparams.age_sigma) ** 2)
            target = target / target.sum(-1, keepdim=True)
            per_image = -(target * logp).sum(-1)
        else:
            per_image = F.nll_loss(logp, age, reduction="none")
        # The recipe's race weighting, as the other systems' race losses apply it: each image
        # weighs its race's class weight, normalised by the batch's total weight.
        weights = self.class_weights.get("race")
        if weights is None:
            loss = per_image.mean()
        else:
            w = weights[race]
            loss = (w * per_image).sum() / w.sum()
        return {"joint": loss, "loss": loss}
