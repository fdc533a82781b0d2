"""The shared-backbone multitask network: one backbone, three heads (age, gender, race)."""

from __future__ import annotations

import torch
from torch import nn

from agefair.labels import GENDERS, RACES
from agefair.models.backbone import Backbone
from agefair.models.base import AgeFairModule
from agefair.models.frozen import plain_training_features
from agefair.models.fused import PARTS, FusedBackbone
from agefair.models.heads import ClassHead, create_age_head


class MultiTaskNet(nn.Module):
    """Backbone features shared by an age head and gender and race classifiers.

    Args:
        backbone: a :class:`~agefair.models.backbone.Backbone`.
        age_head: ``regression``, ``expectation`` or ``ordinal``.
        age_head_kwargs: keyword arguments of the age head (e.g. ``sigma``, ``l1_weight``).
        dropout: dropout before each head.
        label_smoothing: for the gender and race cross-entropies.
        tasks: the tasks this network serves; a network inside ``SeparateModule`` serves some.
        head_inputs: which part of a fused backbone's features each task's head reads
            (``{"gender": "frozen"}``: only the frozen network's; see
            :class:`~agefair.models.fused.FusedBackbone`); unnamed tasks read all of them.
    """

    def __init__(
        self,
        backbone: Backbone,
        age_head: str = "expectation",
        age_head_kwargs: dict | None = None,
        dropout: float = 0.0,
        label_smoothing: float = 0.0,
        tasks: tuple[str, ...] | list[str] = ("age", "gender", "race"),
        head_inputs: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        unknown = set(tasks) - {"age", "gender", "race"}
        if unknown or not tasks:
            raise ValueError(f"tasks must be a non-empty subset of age, gender, race; got {tasks}")
        self.tasks = tuple(tasks)
        self.backbone = backbone
        self.head_inputs = {t: part for t, part in dict(head_inputs or {}).items() if part != "all"}
        if self.head_inputs and not isinstance(backbone, FusedBackbone):
            raise ValueError(
                f"head_inputs {self.head_inputs} need a fused backbone, not "
                f"{type(backbone).__name__}"
            )
        bad = {t: p for t, p in self.head_inputs.items() if t not in tasks or p not in PARTS}
        if bad:
            raise ValueError(
                f"head_inputs {bad}: keys must be among the tasks {list(tasks)}, values among "
                f"{list(PARTS)}"
            )
        f = {t: self._input_size(t) for t in self.tasks}
        self.heads = nn.ModuleDict()
        if "age" in tasks:
            self.heads["age"] = create_age_head(
                age_head, f["age"], dropout=dropout, **dict(age_head_kwargs or {})
            )
        if "gender" in tasks:
            self.heads["gender"] = ClassHead(f["gender"], len(GENDERS), dropout, label_smoothing)
        if "race" in tasks:
            self.heads["race"] = ClassHead(f["race"], len(RACES), dropout, label_smoothing)

    def _input_size(self, task: str) -> int:
        if task in self.head_inputs:
            return self.backbone.part_size(self.head_inputs[task])
        return self.backbone.num_features

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_heads(self.backbone(images))

    def forward_heads(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """The heads on pooled backbone features."""
        out: dict[str, torch.Tensor] = {}
        for task, head in self.heads.items():
            x = (
                self.backbone.part(feats, self.head_inputs[task])
                if task in self.head_inputs
                else feats
            )
            if task == "age":
                out.update(head(x))
            else:
                out[f"{task}_logits"] = head(x)
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
        # A fused backbone's frozen-part features of the training set, one row per view (the
        # face, and its mirror with mirror_in_training), filled as training starts
        # (agefair.models.fused).
        self.frozen_branch_features: torch.Tensor | None = None

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net(images)

    def on_train_epoch_start(self) -> None:
        backbone = self.net.backbone
        if isinstance(backbone, FusedBackbone) and self.frozen_branch_features is None:
            views = [backbone.frozen_features]
            if backbone.mirror_in_training:
                views.append(lambda images: backbone.frozen_features(images.flip(-1)))
            self.frozen_branch_features = torch.stack(
                [plain_training_features(self.trainer, self, backbone.frozen, v) for v in views]
            )

    def training_forward(self, batch: dict) -> dict[str, torch.Tensor]:
        if self.cached_features is not None and "index" in batch:
            return self.net.forward_heads(self.cached_features[batch["index"]])
        if self.frozen_branch_features is not None and "index" in batch:
            images = self._prepare(batch["image"])
            cache, index = self.frozen_branch_features, batch["index"]
            views = torch.randint(len(cache), index.shape, device=index.device)
            frozen = cache[views, index]
            return self.net.forward_heads(self.net.backbone(images, frozen_features=frozen))
        return super().training_forward(batch)

    def compute_loss(self, out: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        losses = self.net.task_losses(out, batch, self.class_weights)
        losses["loss"] = sum(self.loss_weights[t] * v for t, v in losses.items())
        return losses
