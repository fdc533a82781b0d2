"""Paired differences between two configurations of a sweep, on the very same faces.

Two configurations tested on one split saw the same faces, so their difference is measured per
face (one scored right where the other scored wrong) rather than as two accuracies each with its
own interval: the interval of a paired difference is much narrower, and it is what tells a
finding from noise. Each configuration's per-face score is its seeds' mean; the 95% interval is
a percentile bootstrap over faces.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

#: Splits whose per-face predictions members write (``predictions_<split>.csv``).
SPLITS = ("test", "unseen")
#: What is compared per face, and how: name -> (split, task, per-face score, header).
COMPARED = {
    "test/age_mae": ("test", "age", "abs_error", "Δ age MAE"),
    "test/gender_acc": ("test", "gender", "correct", "Δ gender acc"),
    "test/race_acc": ("test", "race", "correct", "Δ race acc"),
    "unseen/gender_acc": ("unseen", "gender", "correct", "Δ unseen gender acc"),
    "unseen/race_acc": ("unseen", "race", "correct", "Δ unseen race acc"),
}
_CHUNK_ELEMENTS = 1 << 22


def mean_ci(
    values: np.ndarray, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-face values; (NaN, NaN) for none."""
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, _CHUNK_ELEMENTS // x.size)
    for start in range(0, n_boot, chunk):
        stop = min(start + chunk, n_boot)
        means[start:stop] = x[rng.integers(0, x.size, size=(stop - start, x.size))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


#: A configuration's members' predictions: split -> one frame per member, None when a member
#: kept none of that split.
Predictions = dict[str, list[pd.DataFrame] | None]


def load_predictions(member_dirs: Sequence[Path]) -> Predictions:
    """Each member's ``predictions_<split>.csv`` of every split in :data:`SPLITS`, read once."""
    out: Predictions = {}
    for split in SPLITS:
        paths = [Path(member) / f"predictions_{split}.csv" for member in member_dirs]
        out[split] = [pd.read_csv(p) for p in paths] if all(p.is_file() for p in paths) else None
    return out


def face_scores(preds: Predictions, split: str, task: str, score: str) -> np.ndarray | None:
    """Each face's score (``correct``: 1 or 0; ``abs_error``: years) averaged over the members
    (seeds); None when a member kept no predictions of the split, or they differ in faces."""
    frames = preds.get(split)
    if not frames or len({len(f) for f in frames}) != 1:
        return None
    if score == "correct":
        per_member = [(f[f"{task}_pred"] == f[task]).to_numpy(float) for f in frames]
    else:
        per_member = [(f[f"{task}_pred"] - f[task]).abs().to_numpy(float) for f in frames]
    return np.mean(per_member, axis=0)


def paired_differences(
    members: Predictions, reference: Predictions
) -> dict[str, tuple[float, float, float]]:
    """Each of :data:`COMPARED` as ``(difference, low, high)``: ``members``' figure minus the
    ``reference`` members' over the same faces (:func:`load_predictions` of each), with its 95%
    interval. Figures that either side cannot give (no predictions kept, e.g. members recorded
    by an earlier report) are left out.
    """
    out = {}
    for name, (split, task, score, _) in COMPARED.items():
        mine = face_scores(members, split, task, score)
        theirs = face_scores(reference, split, task, score)
        if mine is None or theirs is None or len(mine) != len(theirs):
            continue
        diff = mine - theirs
        out[name] = (float(diff.mean()), *mean_ci(diff))
    return out


def formatted(diffs: dict[str, tuple[float, float, float]]) -> dict[str, str]:
    """:func:`paired_differences` as ``+1.50 (+0.84 to +2.18)`` under each figure's header
    (points of accuracy, years of MAE)."""
    out = {}
    for name, (value, low, high) in diffs.items():
        scale = 1 if name.endswith("age_mae") else 100
        out[COMPARED[name][3]] = f"{scale * value:+.2f} ({scale * low:+.2f} to {scale * high:+.2f})"
    return out


def paired_rows(
    pairs: Sequence[tuple[pd.Series, pd.Series]], members: pd.DataFrame
) -> pd.DataFrame:
    """Each ``(configuration, reference)`` pair (rows of the configurations table) as one row:
    ``config`` and ``against`` (their labels) and the :func:`formatted` differences of the
    configuration from the reference; pairs without predictions on both sides are left out."""

    def dirs(config: pd.Series) -> list[Path]:  # labels tell configurations apart
        same = members[(members["label"] == config["label"]) & (members["status"] == "ok")]
        return [Path(s) / str(m) for s, m in zip(same["sweep"], same["member"], strict=True)]

    loaded: dict[str, Predictions] = {}

    def predictions(config: pd.Series) -> Predictions:  # read once however many pairs it is in
        if config["label"] not in loaded:
            loaded[config["label"]] = load_predictions(dirs(config))
        return loaded[config["label"]]

    rows = []
    for config, reference in pairs:
        diffs = paired_differences(predictions(config), predictions(reference))
        if diffs:
            rows.append(
                {"config": config["label"], "against": reference["label"], **formatted(diffs)}
            )
    return pd.DataFrame(rows)


def paired_table(
    configs: pd.DataFrame, members: pd.DataFrame, reference: pd.Series
) -> pd.DataFrame:
    """Every finished configuration against ``reference`` (a row of ``configs``): the paired
    differences of :func:`paired_differences`, formatted ``+1.50 (+0.84 to +2.18)`` (points of
    accuracy, years of MAE); empty when no pair has predictions on both sides."""
    done = configs[configs["status"] == "ok"]
    pairs = [(config, reference) for i, config in done.iterrows() if i != reference.name]
    return paired_rows(pairs, members).drop(columns="against", errors="ignore")
