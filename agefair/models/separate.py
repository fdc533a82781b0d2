"""Several independent networks, each serving a group of tasks.

The default grouping is "one CNN for gender and race + one CNN for age"; one network per task
is ``groups=[[age], [gender], [race]]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from hydra.utils import instantiate
from torch import nn

from agefair.models.base import AgeFairModule
from agefair.models.multitask import MultiTaskNet


class SeparateModule(AgeFairModule):
    """Independent :class:`MultiTaskNet` s whose tasks together cover age, gender and race.

    Args:
        nets: networks by name; each serves the tasks in its ``tasks``; no task may be served
            twice and every task must be served.
        **kwargs: see :class:`~agefair.models.base.AgeFairModule`.
    """

    def __init__(self, nets: Mapping[str, MultiTaskNet], **kwargs) -> None:
        super().__init__(**kwargs)
        served = [t for net in nets.values() for t in net.tasks]
        if sorted(served) != ["age", "gender", "race"]:
            raise ValueError(
                f"the networks must serve age, gender and race once each, got {served}"
            )
        self.nets = nn.ModuleDict(dict(nets))

    @classmethod
    def from_config(
        cls,
        groups: Sequence[Sequence[str]],
        backbone: Mapping,
        net: Mapping | None = None,
        **kwargs,
    ) -> SeparateModule:
        """Builds one network per task group, each with its own backbone built from ``backbone``
        (a Hydra config node), so the networks share nothing."""
        nets = {
            "+".join(group): MultiTaskNet(
                instantiate(backbone), tasks=tuple(group), **dict(net or {})
            )
            for group in groups
        }
        return cls(nets, **kwargs)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for net in self.nets.values():
            out.update(net(images))
        return out

    def compute_loss(self, out: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        losses: dict[str, torch.Tensor] = {}
        for net in self.nets.values():
            losses.update(net.task_losses(out, batch, self.class_weights))
        losses["loss"] = sum(self.loss_weights[t] * v for t, v in losses.items())
        return losses
