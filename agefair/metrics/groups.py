"""Metrics of collected predictions, overall and per demographic group.

Everything here works on a plain table of predictions so that it can be reused for any model
(trained here, a baseline, an external tool) and tested without a network or images. The input,
called ``preds`` throughout, is a pandas DataFrame with one row per image and the columns

* ``age`` (true age in years), ``gender`` (0 male, 1 female), ``race`` (0-4, see ``RACES``);
* ``age_pred`` (float years), ``gender_pred`` and ``race_pred`` (ints; ``race_pred`` is NaN
  for a system that does not predict race, whose race metrics ``agefair.training.results`` leaves
  out).

Extra columns are ignored. Per-group numbers are plain means over the group's rows, so the
n-weighted mean of the groups of any partition (race, gender, race x gender, age band) is exactly
the overall number: nothing is re-weighted or smoothed behind the reader's back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from agefair.labels import AGE_BANDS, GENDERS, RACES, age_band

AGE_BAND_LABELS = tuple(
    f"{lo}+" if i == len(AGE_BANDS) - 1 else f"{lo}-{hi}" for i, (lo, hi) in enumerate(AGE_BANDS)
)

GROUP_TYPES = ("race", "gender", "race_gender", "age_band")
TABLE_METRICS = ("age_mae", "age_bias", "gender_acc", "race_acc")
BOOTSTRAP_METRICS = ("age_mae", "gender_acc", "race_acc", "race_acc_balanced")
CS_THRESHOLD = 5.0  # years; "cumulative score" CS(5), the usual companion of MAE in age papers

_TRUE_COLUMNS = ("age", "gender", "race")
_PRED_COLUMNS = ("age_pred", "gender_pred", "race_pred")


def checked_columns(preds: pd.DataFrame) -> dict[str, np.ndarray]:
    """Checks ``preds`` and returns its needed columns as numpy arrays.

    True labels are validated because every per-group number relies on them: a race code outside
    ``RACES`` would silently fall out of every race group and break the partition property.

    Raises:
        KeyError: A required column is missing.
        ValueError: A true label is missing or outside its range.
    """
    missing = [c for c in _TRUE_COLUMNS + _PRED_COLUMNS if c not in preds.columns]
    if missing:
        raise KeyError(f"preds lacks column(s) {missing}; has {list(preds.columns)}")
    age = preds["age"].to_numpy(dtype=float)
    if np.isnan(age).any():
        raise ValueError("true age has missing values")
    out = {"age": age, "age_pred": preds["age_pred"].to_numpy(dtype=float)}
    for name, n_classes in (("gender", len(GENDERS)), ("race", len(RACES))):
        true = preds[name].to_numpy()
        if pd.isna(true).any():
            raise ValueError(f"true {name} has missing values")
        true = true.astype(np.int64)
        if true.size and (true.min() < 0 or true.max() >= n_classes):
            raise ValueError(f"true {name} outside 0-{n_classes - 1}")
        out[name] = true
        # Predictions are only compared for equality, so no range check: an out-of-range
        # prediction simply counts as wrong.
        out[f"{name}_pred"] = preds[f"{name}_pred"].to_numpy()
    return out


def mean_or_nan(x: np.ndarray) -> float:
    """Mean as a Python float; NaN (without a warning) for an empty array."""
    return float(np.mean(x)) if x.size else math.nan


def _race_recalls(race: np.ndarray, race_pred: np.ndarray) -> np.ndarray:
    """Recall of each race class; NaN for classes with no true examples."""
    counts = np.bincount(race, minlength=len(RACES)).astype(float)
    hits = np.bincount(race, weights=(race == race_pred), minlength=len(RACES))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)


def headline_metrics(preds: pd.DataFrame) -> dict[str, float]:
    """The overall numbers of one evaluation run.

    Args:
        preds: Predictions table (see the module docstring).

    Returns:
        ``age_mae`` (mean absolute error, years), ``age_bias`` (mean signed error,
        prediction minus truth: positive means the model guesses too old), ``age_cs5`` (share of
        images with absolute error <= 5 years), ``gender_acc``, ``race_acc``,
        ``race_acc_balanced`` (mean per-class recall over the races present in the true labels)
        and ``race_recall_<name>`` for every name in ``RACES`` (NaN if that race is absent).
        Every value is NaN for an empty table.
    """
    c = checked_columns(preds)
    err = c["age_pred"] - c["age"]
    recalls = _race_recalls(c["race"], c["race_pred"])
    present = recalls[~np.isnan(recalls)]
    out = {
        "age_mae": mean_or_nan(np.abs(err)),
        "age_bias": mean_or_nan(err),
        "age_cs5": mean_or_nan(np.abs(err) <= CS_THRESHOLD),
        "gender_acc": mean_or_nan(c["gender"] == c["gender_pred"]),
        "race_acc": mean_or_nan(c["race"] == c["race_pred"]),
        "race_acc_balanced": mean_or_nan(present),
    }
    for name, recall in zip(RACES, recalls, strict=True):
        out[f"race_recall_{name}"] = float(recall)
    return out


def group_masks(preds: pd.DataFrame) -> list[tuple[str, str, np.ndarray]]:
    """``(group_type, group, row mask)`` for "all" and every group of every partition
    (race, gender, race x gender, age band), in the order of :func:`group_table`."""
    return _group_masks(checked_columns(preds))


def _group_masks(c: Mapping[str, np.ndarray]) -> list[tuple[str, str, np.ndarray]]:
    """:func:`group_masks` of already checked columns."""
    race, gender = c["race"], c["gender"]
    band = age_band(c["age"])
    masks: list[tuple[str, str, np.ndarray]] = [("all", "all", np.ones(race.shape, dtype=bool))]
    masks += [("race", name, race == i) for i, name in enumerate(RACES)]
    masks += [("gender", name, gender == i) for i, name in enumerate(GENDERS)]
    masks += [
        ("race_gender", f"{r_name}/{g_name}", (race == r) & (gender == g))
        for r, r_name in enumerate(RACES)
        for g, g_name in enumerate(GENDERS)
    ]
    masks += [("age_band", label, band == i) for i, label in enumerate(AGE_BAND_LABELS)]
    return masks


def group_table(preds: pd.DataFrame) -> pd.DataFrame:
    """Metrics for everyone and for each race, gender, race x gender and age band.

    Every group is listed even when empty (``n`` 0, metrics NaN), so tables from different runs
    line up row by row and a missing group is visible rather than silently absent.

    Args:
        preds: Predictions table (see the module docstring).

    Returns:
        One row per group with columns ``group_type`` ("all", "race", "gender", "race_gender",
        "age_band"), ``group`` (e.g. "all", "Asian", "female", "Asian/female", "20-39"), ``n``,
        ``age_mae``, ``age_bias``, ``gender_acc`` and ``race_acc``. Within a group ``gender_acc``
        is the recall of that gender for gender groups and ``race_acc`` the recall of that race
        for race groups.
    """
    c = checked_columns(preds)
    abs_err = np.abs(c["age_pred"] - c["age"])
    err = c["age_pred"] - c["age"]
    gender_ok = c["gender"] == c["gender_pred"]
    race_ok = c["race"] == c["race_pred"]
    rows = [
        {
            "group_type": group_type,
            "group": group,
            "n": int(mask.sum()),
            "age_mae": mean_or_nan(abs_err[mask]),
            "age_bias": mean_or_nan(err[mask]),
            "gender_acc": mean_or_nan(gender_ok[mask]),
            "race_acc": mean_or_nan(race_ok[mask]),
        }
        for group_type, group, mask in _group_masks(c)
    ]
    return pd.DataFrame(rows, columns=["group_type", "group", "n", *TABLE_METRICS])


def group_gaps(
    table: pd.DataFrame, min_n: int = 1, metrics: Sequence[str] = TABLE_METRICS
) -> pd.DataFrame:
    """Worst and best group, and the spread between groups, per partition and metric.

    "Worst" is the highest value for ``age_mae``, the lowest for accuracies and the largest
    absolute value for ``age_bias`` (a model that is 3 years off in either direction is equally
    biased); "best" is the opposite. ``gap`` is always max minus min over the qualifying groups,
    so for ``age_bias`` it is the spread of the signed biases. Ties go to the group listed first.

    Args:
        table: Output of :func:`group_table`.
        min_n: Groups with fewer images are left out; tiny groups have noisy metrics and would
            otherwise dominate the worst-group column.
        metrics: Metric columns of ``table`` to summarise.

    Returns:
        One row per (group_type, metric) for group_type in ``GROUP_TYPES``, with columns
        ``group_type``, ``metric``, ``n_groups`` (groups that qualified), ``worst_group``,
        ``worst``, ``best_group``, ``best`` and ``gap``; group names are None and values NaN when
        no group qualifies.
    """
    rows = []
    for group_type in GROUP_TYPES:
        part = table[(table["group_type"] == group_type) & (table["n"] >= min_n)]
        for metric in metrics:
            values = part.set_index("group")[metric].astype(float).dropna()
            row: dict[str, object] = {
                "group_type": group_type,
                "metric": metric,
                "n_groups": len(values),
                "worst_group": None,
                "worst": math.nan,
                "best_group": None,
                "best": math.nan,
                "gap": math.nan,
            }
            if len(values):
                if metric.endswith("_bias"):
                    badness = values.abs()
                elif metric.endswith("_mae"):
                    badness = values
                else:  # accuracies and recalls: lower is worse
                    badness = -values
                worst, best = badness.idxmax(), badness.idxmin()
                row.update(
                    worst_group=worst,
                    worst=float(values[worst]),
                    best_group=best,
                    best=float(values[best]),
                    gap=float(values.max() - values.min()),
                )
            rows.append(row)
    return pd.DataFrame(rows)


def flat_group_metrics(table: pd.DataFrame, gaps: pd.DataFrame | None = None) -> dict[str, float]:
    """Flattens a group table (and optionally its gaps) into one dict for a metrics logger.

    Names are ``group/all/<metric>``, ``group/<group_type>=<group>/<metric>`` (e.g.
    ``group/race=Asian/gender_acc``, ``group/race_gender=Asian/female/age_mae``; the metric is
    always the part after the last "/"), ``gap/<group_type>/<metric>``,
    ``worst/<group_type>/<metric>`` and ``best/<group_type>/<metric>``. Each group also logs its
    ``n``. NaN values (empty groups) are dropped because loggers plot them as gaps or reject them.

    Args:
        table: Output of :func:`group_table`.
        gaps: Output of :func:`group_gaps`, or None to log the groups only.

    Returns:
        A flat ``{name: float}`` dict.
    """
    out: dict[str, float] = {}
    metric_cols = [c for c in table.columns if c not in ("group_type", "group")]
    for row in table.itertuples(index=False):
        row_d = row._asdict()
        prefix = (
            "group/all"
            if row_d["group_type"] == "all"
            else f"group/{row_d['group_type']}={row_d['group']}"
        )
        for metric in metric_cols:
            value = float(row_d[metric])
            if not math.isnan(value):
                out[f"{prefix}/{metric}"] = value
    if gaps is not None:
        for row in gaps.itertuples(index=False):
            for kind in ("gap", "worst", "best"):
                value = float(getattr(row, kind))
                if not math.isnan(value):
                    out[f"{kind}/{row.group_type}/{row.metric}"] = value
    return out
