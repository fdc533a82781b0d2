"""Task metrics with torchmetrics: one :class:`TaskMetrics` per split.

Names follow ``{split}/{task}_{metric}``: ``val/age_mae``, ``test/race_acc_balanced``.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from agefair.labels import GENDERS, RACES

# Direction of "better" for each metric: sweeps optimise ``val/<metric>_best``.
HIGHER_IS_BETTER = {
    "age_mae": False,
    "age_cs5": True,
    "gender_acc": True,
    "race_acc": True,
    "race_acc_balanced": True,
}


class TaskMetrics(nn.Module):
    """Age MAE, CS@5 (share within 5 years), gender and race accuracy, balanced race accuracy."""

    def __init__(self) -> None:
        super().__init__()
        self.age_mae = MeanAbsoluteError()
        self.age_cs5 = MeanMetric()
        # Input checks cost as much as the update itself and run every training step; the
        # inputs come from our own heads, so their shapes and ranges are known.
        fast = {"validate_args": False}
        self.gender_acc = MulticlassAccuracy(len(GENDERS), average="micro", **fast)
        self.race_acc = MulticlassAccuracy(len(RACES), average="micro", **fast)
        # macro accuracy = mean per-class recall: "Others" counts as much as "White"
        self.race_acc_balanced = MulticlassAccuracy(len(RACES), average="macro", **fast)

    def update(self, pred: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> None:
        """Adds a batch. ``pred`` holds ``age`` (years), ``gender_p`` and ``race_p``."""
        age_err = (pred["age"].float() - batch["age"].float()).abs()
        self.age_mae.update(pred["age"].float(), batch["age"].float())
        self.age_cs5.update((age_err <= 5).float())
        self.gender_acc.update(pred["gender_p"], batch["gender"])
        self.race_acc.update(pred["race_p"], batch["race"])
        self.race_acc_balanced.update(pred["race_p"], batch["race"])

    def compute(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name).compute() for name in HIGHER_IS_BETTER}

    def reset(self) -> None:
        for name in HIGHER_IS_BETTER:
            getattr(self, name).reset()


# The reference the combined objective is scaled to: a plain 64 px CNN recipe on two CPU cores
# (age MAE 5.0 years, gender 92.8%, balanced race accuracy about 76%).
OBJECTIVE_REFERENCE = {"age_mae": 5.0, "gender_error": 0.072, "race_balanced_error": 0.24}


def combined_objective(metrics: dict, prefix: str = "val/") -> float:
    """One number for a search over three tasks: the mean of each task's error relative to the
    reference recipe (``OBJECTIVE_REFERENCE``). 1.0 is as good as the reference on every task;
    lower is better. Balanced race accuracy, so a search cannot trade the rare races away."""
    ref = OBJECTIVE_REFERENCE
    terms = (
        metrics[f"{prefix}age_mae"] / ref["age_mae"],
        (1.0 - metrics[f"{prefix}gender_acc"]) / ref["gender_error"],
        (1.0 - metrics[f"{prefix}race_acc_balanced"]) / ref["race_balanced_error"],
    )
    return float(sum(terms) / len(terms))
