"""Percentile bootstrap intervals of the headline metrics, resampling images with replacement."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from agefair.labels import RACES
from agefair.metrics.groups import BOOTSTRAP_METRICS, CS_THRESHOLD, checked_columns

# Index-matrix elements per chunk: bounds memory (a few tens of MB of gathered values) while
# keeping each chunk big enough for numpy to amortise its per-call overhead.
_CHUNK_ELEMENTS = 1 << 22


def _bootstrap_fns(c: Mapping[str, np.ndarray]) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Vectorised metric functions mapping an ``(n_rep, n)`` index matrix to ``n_rep`` values."""
    err = c["age_pred"] - c["age"]
    abs_err = np.abs(err)
    within = (abs_err <= CS_THRESHOLD).astype(float)
    gender_ok = (c["gender"] == c["gender_pred"]).astype(float)
    race_ok = (c["race"] == c["race_pred"]).astype(float)
    race = c["race"]
    k = len(RACES)

    def recalls(idx: np.ndarray) -> np.ndarray:
        # One bincount over (replicate, class) pairs gives every replicate's per-class counts
        # and hits at once instead of a Python loop over replicates.
        n_rep = idx.shape[0]
        keys = (race[idx] + k * np.arange(n_rep)[:, None]).ravel()
        counts = np.bincount(keys, minlength=n_rep * k).reshape(n_rep, k)
        hits = np.bincount(keys, weights=race_ok[idx].ravel(), minlength=n_rep * k)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, hits.reshape(n_rep, k) / counts, np.nan)

    def balanced(idx: np.ndarray) -> np.ndarray:
        r = recalls(idx)
        present = ~np.isnan(r)
        return np.where(present, r, 0.0).sum(axis=1) / present.sum(axis=1)

    fns: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "age_mae": lambda idx: abs_err[idx].mean(axis=1),
        "age_bias": lambda idx: err[idx].mean(axis=1),
        "age_cs5": lambda idx: within[idx].mean(axis=1),
        "gender_acc": lambda idx: gender_ok[idx].mean(axis=1),
        "race_acc": lambda idx: race_ok[idx].mean(axis=1),
        "race_acc_balanced": balanced,
    }
    for i, name in enumerate(RACES):
        fns[f"race_recall_{name}"] = lambda idx, i=i: recalls(idx)[:, i]
    return fns


def bootstrap_ci(
    preds: pd.DataFrame,
    metrics: Iterable[str] = BOOTSTRAP_METRICS,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap confidence intervals, resampling images with replacement.

    All metrics are computed on the same resamples. Resample indices are drawn as a matrix and
    every metric is evaluated on all replicates at once (in chunks to bound memory), so 1000
    replicates of a full test set take well under a second.

    Args:
        preds: Predictions table (see the module docstring).
        metrics: Names among the keys of :func:`headline_metrics` (``age_mae``, ``age_bias``,
            ``age_cs5``, ``gender_acc``, ``race_acc``, ``race_acc_balanced``,
            ``race_recall_<name>``).
        n_boot: Number of bootstrap replicates.
        alpha: 1 minus the coverage; 0.05 gives a 95% interval.
        seed: Seed of the resampling; the same seed gives the same intervals.

    Returns:
        ``{metric: (low, high)}``. Replicates where a metric is undefined (a race recall when
        the resample has no image of that race) are skipped; (NaN, NaN) if none is defined or
        the table is empty.

    Raises:
        ValueError: Unknown metric, ``n_boot`` < 1 or ``alpha`` outside (0, 1).
    """
    metrics = list(metrics)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    c = checked_columns(preds)
    fns = _bootstrap_fns(c)
    unknown = [m for m in metrics if m not in fns]
    if unknown:
        raise ValueError(f"unknown bootstrap metric(s) {unknown}; known: {sorted(fns)}")
    n = len(c["age"])
    if n == 0:
        return {m: (math.nan, math.nan) for m in metrics}

    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    values = {m: np.empty(n_boot) for m in metrics}
    for start in range(0, n_boot, chunk):
        stop = min(start + chunk, n_boot)
        idx = rng.integers(0, n, size=(stop - start, n))
        for m in metrics:
            values[m][start:stop] = fns[m](idx)

    out: dict[str, tuple[float, float]] = {}
    for m in metrics:
        v = values[m][~np.isnan(values[m])]
        if v.size == 0:
            out[m] = (math.nan, math.nan)
        else:
            low, high = np.quantile(v, [alpha / 2, 1 - alpha / 2])
            out[m] = (float(low), float(high))
    return out


def proportion_ci(
    hits: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of a share of successes, resampling images like
    :func:`bootstrap_ci`.

    Args:
        hits: One boolean per image.
        n_boot: Number of bootstrap replicates.
        alpha: 1 minus the coverage.
        seed: Seed of the resampling.

    Returns:
        ``(low, high)``; (NaN, NaN) for no images.
    """
    x = np.asarray(hits, dtype=float).ravel()
    if x.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    # The count of successes in a resample of n is binomial: no index matrix needed.
    shares = rng.binomial(x.size, x.mean(), size=n_boot) / x.size
    low, high = np.quantile(shares, [alpha / 2, 1 - alpha / 2])
    return (float(low), float(high))


def paired_difference_ci(
    a: np.ndarray, b: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """``mean(a) - mean(b)`` of two systems' per-image scores on the same images, and its
    percentile bootstrap interval, resampling the same images for both: what makes the interval
    of a difference on one test set narrow and honest.

    Args:
        a, b: One score per image (an error, or 1/0 for right/wrong), the same images in order.
        n_boot: Number of bootstrap replicates.
        alpha: 1 minus the coverage.
        seed: Seed of the resampling.

    Returns:
        ``(difference, low, high)``; NaNs for no images.

    Raises:
        ValueError: ``a`` and ``b`` differ in length.
    """
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"a and b must score the same images, got {a.size} and {b.size}")
    if a.size == 0:
        return (math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(n_boot, a.size))
    diffs = a[idx].mean(axis=1) - b[idx].mean(axis=1)
    low, high = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    return (float(a.mean() - b.mean()), float(low), float(high))
