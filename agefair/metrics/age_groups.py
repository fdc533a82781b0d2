"""Age scored by group, for data sets that label only age ranges (FairFace's nine groups)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import numpy as np

from agefair.metrics.groups import mean_or_nan

_RANGE = re.compile(r"^\(?\s*(\d+)\s*(?:-|–|,|to)\s*(\d+)\s*\)?$")
_OPEN = re.compile(r"^(?:(\d+)\s*\+|(?:more than|over)\s*(\d+))$", re.IGNORECASE)


def parse_age_group(s: str | int) -> tuple[float, float]:
    """Parses an age-group label into inclusive bounds in whole years.

    Understands "20-29" (also with an en dash or "to"), Adience's "(25, 32)", open-ended "70+"
    and FairFace's "more than 70" (which FairFace uses for 70 and older), and a single age
    "25". Open-ended groups get ``hi = inf``.

    Args:
        s: The label.

    Returns:
        ``(lo, hi)`` as floats, ``lo <= hi``.

    Raises:
        ValueError: The label is not understood or ``lo > hi``.
    """
    if isinstance(s, int | np.integer):
        return float(s), float(s)
    text = str(s).strip()
    if m := _RANGE.match(text):
        lo, hi = float(m.group(1)), float(m.group(2))
        if lo > hi:
            raise ValueError(f"age group {s!r} has lower bound above upper bound")
        return lo, hi
    if m := _OPEN.match(text):
        return float(m.group(1) or m.group(2)), math.inf
    if text.isdigit():
        return float(text), float(text)
    raise ValueError(f"cannot parse age group {s!r}")


def parse_age_groups(labels: Iterable[str | int]) -> tuple[np.ndarray, np.ndarray]:
    """Parses many labels (see :func:`parse_age_group`) into ``(lo, hi)`` float arrays."""
    bounds = [parse_age_group(s) for s in labels]
    if not bounds:
        return np.empty(0), np.empty(0)
    lo, hi = zip(*bounds, strict=True)
    return np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)


def age_group_metrics(
    lo: np.ndarray | Sequence[float],
    hi: np.ndarray | Sequence[float],
    age_pred: np.ndarray | Sequence[float],
    *,
    margin: float = 0.5,
) -> dict[str, float]:
    """Scores age predictions against age-group labels.

    Group bounds are whole years but predictions are continuous; the model is trained on whole
    years, so a prediction counts as the whole year it rounds to, i.e. the group "20-29" covers
    predictions in ``[19.5, 29.5]`` with the default ``margin``. Without this, 29.7 would fall
    between "20-29" and "30-39" and count as wrong for both.

    Args:
        lo: Inclusive lower bound of each image's group (years).
        hi: Inclusive upper bound (``inf`` for open-ended groups).
        age_pred: Predicted age per image (years).
        margin: Widening of each bound, in years.

    Returns:
        ``age_group_acc`` (share of predictions inside their group), ``age_group_mae`` (mean
        distance in years from the prediction to its group, 0 inside) and ``n``; NaN metrics
        for no images.
    """
    distance = age_group_distance(lo, hi, age_pred, margin=margin)
    return {
        "age_group_acc": mean_or_nan(distance == 0.0),
        "age_group_mae": mean_or_nan(distance),
        "n": float(distance.size),
    }


def age_group_distance(
    lo: np.ndarray | Sequence[float],
    hi: np.ndarray | Sequence[float],
    age_pred: np.ndarray | Sequence[float],
    *,
    margin: float = 0.5,
) -> np.ndarray:
    """Years from each predicted age to its group, widened by ``margin``: 0 inside it, NaN for
    a NaN prediction (see :func:`age_group_metrics`)."""
    lo_e = np.asarray(lo, dtype=float) - margin
    hi_e = np.asarray(hi, dtype=float) + margin
    p = np.asarray(age_pred, dtype=float)
    if not lo_e.shape == hi_e.shape == p.shape:
        raise ValueError(
            f"lo, hi and age_pred differ in shape: {lo_e.shape}, {hi_e.shape}, {p.shape}"
        )
    return np.maximum(lo_e - p, 0.0) + np.maximum(p - hi_e, 0.0)
