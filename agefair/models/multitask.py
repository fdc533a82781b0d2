"""The shared-backbone multitask network: one backbone, three heads (age, gender, race)."""

from __future__ import annotations

import torch
from torch import nn

from agefair.data.utkface import GENDERS, RACES
from agefair.models.backbones import Backbone
from agefair.models.base import AgeFairModule
from agefair.models.heads import ClassHead, create_age_head


class MultiTaskNet(nn.Module):
    """Backbone features shared by an age head and gender and race classifiers.

    Args:
        backbone: a :class:`~agefair.models.backbones.Backbone`.
        age_head: ``regression``, ``expectation`` or ``ordinal``.
        age_head_kwargs: keyword arguments of the age head (e.g. ``sigma``, ``l1_weight``).
        dropout: dropout before each head.
        label_smoothing: for the gender and race cross-entropies.
        tasks: the tasks this network serves; a network inside ``SeparateModule`` serves some.
    """

    def __init__(
        self,
        backbone: Backbone,
        age_head: str = "expectation",
        age_head_kwargs: dict | None = None,
        dropout: float = 0.0,
        label_smoothing: float = 0.0,
        tasks: tuple[str, ...] | list[str] = ("age", "gender", "race"),
    ) -> None:
        super().__init__()
        unknown = set(tasks) - {"age", "gender", "race"}
        if unknown or not tasks:
            raise ValueError(f"tasks must be a non-empty subset of age, gender, race; got {tasks}")
        self.tasks = tuple(tasks)
        self.backbone = backbone
        f = backbone.num_features
        self.heads = nn.ModuleDict()
        if "age" in tasks:
            self.heads["age"] = create_age_head(
                age_head, f, dropout=dropout, **dict(age_head_kwargs or {})
            )
        if "gender" in tasks:
            self.heads["gender"] = ClassHead(f, len(GENDERS), dropout, label_smoothing)
        if "race" in tasks:
            self.heads["race"] = ClassHead(f, len(RACES), dropout, label_smoothing)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_heads(self.backbone(images))

    def forward_heads(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """The heads on pooled backbone features."""
        out: dict[str, torch.Tensor] = {}
        for task, head in self.heads.items():
            if task == "age":
                out.update(head(feats))
            else:
                out[f"{task}_logits"] = head(feats)
        return out

    def task_losses(
        self, out: dict[str, torch.Tensor], batch: dict, class_weights: dict | None = None
    ) -> dict[str, torch.Tensor]:
        """The unweighted loss of each task this network serves."""
        class_weights = class_weights or {}
        losses = {}
        for task, head in self.heads.items():
            if task == "age":
                losses["age"] = head.loss(out, batch["age"])
            else:
                losses[task] = head.loss(
                    out[f"{task}_logits"], batch[task], class_weights.get(task)
                )
        return losses


class MultiTaskModule(AgeFairModule):
    """One shared backbone with three heads, trained on a weighted sum of the task losses.

    Args:
        net: the :class:`MultiTaskNet` (a model, kept apart from this training system).
        **kwargs: see :class:`~agefair.models.base.AgeFairModule`.
    """

    def __init__(self, net: MultiTaskNet, **kwargs) -> None:
        super().__init__(**kwargs)
        self.net = net
        # Backbone features of the training set, filled by FreezeBackbone while it is frozen.
        self.cached_features: torch.Tensor | None = None

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net(images)

    def training_forward(self, batch: dict) -> dict[str, torch.Tensor]:
        if self.cached_features is not None and "index" in batch:
            return self.net.forward_heads(self.cached_features[batch["index"]])
        return super().training_forward(batch)

    def compute_loss(self, out: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        losses = self.net.task_losses(out, batch, self.class_weights)
        losses["loss"] = sum(self.loss_weights[t] * v for t, v in losses.items())
        return losses
