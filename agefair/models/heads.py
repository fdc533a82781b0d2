"""Task heads on pooled features. Every age head reports age in years, whatever it predicts inside.

Each head is ``forward(features) -> dict`` of outputs and ``loss(outputs, target) -> scalar``,
so a system combines heads without knowing how each one estimates age.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from agefair.labels import NUM_AGES
from agefair.registry import Registry

AGE_MEAN, AGE_STD = 33.0, 20.0  # rough UTKFace statistics: keeps regression targets near unit scale


class ClassHead(nn.Module):
    """Dropout and a linear layer to ``num_classes`` logits, trained with cross-entropy."""

    def __init__(
        self, in_features: int, num_classes: int, dropout: float = 0.0, label_smoothing: float = 0.0
    ) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_classes))
        self.label_smoothing = label_smoothing

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)

    def loss(
        self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        return F.cross_entropy(
            logits.float(), target, weight=weight, label_smoothing=self.label_smoothing
        )


class RegressionAgeHead(nn.Module):
    """Age as one number, trained with L1 or smooth-L1 on standardised years."""

    def __init__(self, in_features: int, loss: str = "l1", dropout: float = 0.0) -> None:
        super().__init__()
        if loss not in ("l1", "smooth_l1"):
            raise ValueError(f"regression loss must be 'l1' or 'smooth_l1', got {loss!r}")
        self.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, 1))
        self.loss_name = loss

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.fc(features).squeeze(1).float()
        return {"age": z * AGE_STD + AGE_MEAN}

    def loss(self, out: dict[str, torch.Tensor], age: torch.Tensor) -> torch.Tensor:
        pred = (out["age"] - AGE_MEAN) / AGE_STD
        target = (age.float() - AGE_MEAN) / AGE_STD
        fn = F.l1_loss if self.loss_name == "l1" else F.smooth_l1_loss
        return fn(pred, target)


class ExpectationAgeHead(nn.Module):
    """A softmax over ages 0-116 whose expected value is the estimate (DEX, DLDL).

    Trained against a Gaussian label distribution of width ``sigma`` around the true age (label
    noise in UTKFace is a few years, so a one-hot target overstates certainty), plus ``l1_weight``
    times the L1 error of the expectation, which ties the training signal to the metric.
    ``sigma_per_year`` widens the distribution with age, ``sigma + sigma_per_year * age``: a
    year is a larger share of a child's age than of an adult's, and people misjudge (and
    misreport) adults' ages by more years. The defaults, 1.5 + 0.05 x age (2 years at 10, 3.5 at
    40, 5 at 70), against 2 years at every age (``ablation=fixed_age_sigma``): compared in
    experiments/best_cpu.
    The distribution's standard deviation is reported as ``age_sd``, the model's uncertainty.
    """

    def __init__(
        self,
        in_features: int,
        sigma: float = 1.5,
        l1_weight: float = 0.05,
        dropout: float = 0.0,
        sigma_per_year: float = 0.05,
    ) -> None:
        super().__init__()
        if sigma <= 0 or sigma_per_year < 0:
            raise ValueError(
                f"sigma must be > 0 and sigma_per_year >= 0, got {sigma} and {sigma_per_year}"
            )
        self.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, NUM_AGES))
        self.sigma = sigma
        self.sigma_per_year = sigma_per_year
        self.l1_weight = l1_weight
        self.register_buffer("ages", torch.arange(NUM_AGES, dtype=torch.float32), persistent=False)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.fc(features).float()
        return {"age_logits": logits, **self.summarise(logits.softmax(-1))}

    def summarise(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        """Expected age and spread of age distributions ``p`` (B x 117)."""
        mean = p @ self.ages
        var = (p @ self.ages.square() - mean.square()).clamp_min(0)
        return {"age": mean, "age_sd": var.sqrt()}

    def label_distribution(self, age: torch.Tensor) -> torch.Tensor:
        """The training target of each age: a Gaussian over 0-116 that sums to one (B x 117)."""
        age = age.float()[:, None]
        sigma = self.sigma + self.sigma_per_year * age
        target = torch.exp(-0.5 * ((self.ages - age) / sigma) ** 2)
        return target / target.sum(-1, keepdim=True)

    def loss(self, out: dict[str, torch.Tensor], age: torch.Tensor) -> torch.Tensor:
        target = self.label_distribution(age)
        kl = F.kl_div(out["age_logits"].log_softmax(-1), target, reduction="batchmean")
        return kl + self.l1_weight * F.l1_loss(out["age"], age.float())


class OrdinalAgeHead(nn.Module):
    """CORAL: one shared linear score and 116 ordered thresholds "is age > k".

    The estimate is the sum of the threshold probabilities, i.e. the expected number of
    thresholds passed, which is age in years.
    """

    def __init__(self, in_features: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, 1, bias=False))
        self.thresholds = nn.Parameter(torch.linspace(2, -2, NUM_AGES - 1))

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.fc(features).float() + self.thresholds
        return {"age_logits": logits, "age": torch.sigmoid(logits).sum(-1)}

    def loss(self, out: dict[str, torch.Tensor], age: torch.Tensor) -> torch.Tensor:
        levels = (torch.arange(NUM_AGES - 1, device=age.device) < age[:, None]).float()
        return F.binary_cross_entropy_with_logits(out["age_logits"], levels)


AGE_HEADS: Registry[Callable[..., nn.Module]] = Registry(
    "age head",
    {
        "regression": RegressionAgeHead,
        "expectation": ExpectationAgeHead,
        "ordinal": OrdinalAgeHead,
    },
)


def create_age_head(name: str, in_features: int, **kwargs) -> nn.Module:
    """Builds an age head by name (``regression``, ``expectation`` or ``ordinal``)."""
    return AGE_HEADS.create(name, in_features, **kwargs)
