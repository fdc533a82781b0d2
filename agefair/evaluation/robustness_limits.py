"""How far a degradation can go: the lowest resolution and the smallest face fraction at which
each metric of the robustness study stays within a tolerance of its clean value.

Everything here reads the study's table (``robustness.csv``, one row per model and grid point,
see :mod:`agefair.evaluation.robustness`); the report of :mod:`agefair.reporting.robustness`
shows the result.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from agefair.labels import RACES

#: Curves with a threshold: ``(family, variant)``, each read from its largest value down.
THRESHOLD_CURVES = (("resolution", ""), ("face_fraction", "as_is"), ("face_fraction", "detected"))
#: Metrics with a threshold, and whether lower values are better.
THRESHOLD_METRICS = {"age_mae": True, "gender_acc": False, "race_acc": False, "found_rate": False}


def read_results(path: str | Path) -> pd.DataFrame:
    """A ``robustness.csv`` read back (empty variants and errors stay empty strings)."""
    text = {"variant": str, "error": str}
    return pd.read_csv(path, dtype=text).fillna({"variant": "", "error": ""})


def within_tolerance(value: float, clean: float, lower_is_better: bool, tolerance: float) -> bool:
    """Whether ``value`` is within ``tolerance`` (relative) of ``clean``; NaN never is."""
    value, clean = float(value), float(clean)
    if not (math.isfinite(value) and math.isfinite(clean)):
        return False
    if lower_is_better:
        return value <= (1 + tolerance) * clean
    return value >= (1 - tolerance) * clean


def _within_run(values: Sequence[float], ok: Sequence[bool]) -> tuple[float, float, list[float]]:
    """Reads one curve from its largest value down (``values`` sorted so).

    Returns:
        The last value of the first run of values within the bound (NaN: none is), the value
        that ends the run (NaN: the run reaches the smallest value) and the values above the
        run that were outside.
    """
    start = next((i for i, flag in enumerate(ok) if flag), len(ok))
    above = list(values[:start])
    if start == len(ok):
        return math.nan, math.nan, above
    stop = next((i for i in range(start, len(ok)) if not ok[i]), len(ok))
    return values[stop - 1], values[stop] if stop < len(ok) else math.nan, above


def thresholds(
    frame: pd.DataFrame, tolerance: float = 0.1, groups: Iterable[str] = ("all", *RACES)
) -> pd.DataFrame:
    """The lowest grid value down to which each metric stays within ``tolerance`` of clean.

    "Within": age MAE at most ``(1 + tolerance)`` times its clean value; gender accuracy, race
    accuracy and found rate at least ``(1 - tolerance)`` times theirs (a missing value never
    is). Each curve of :data:`THRESHOLD_CURVES` is read from its largest grid value down; the
    threshold is the last value before the first one outside the bound, so every grid value
    from the top down to it is within. Values outside at the very top (the detected curve at
    fraction 1, where the face fills the whole picture) are listed in ``outside_above`` and
    the reading starts below them. The clean reference is the model's ``clean`` row.

    Args:
        frame: rows of the study (one or more models; ``robustness.csv``).
        tolerance: relative tolerance, 0.1 for "within 10%".
        groups: ``all`` for the overall metrics and race names for ``<metric>_<race>``.

    Returns:
        One row per model, curve (``family``, ``variant``), group and metric (found rate only
        for ``all``; metrics without their column in ``frame`` are left out) with ``clean``,
        ``bound``, ``threshold`` (NaN: no grid value is within), ``first_outside`` (the grid
        value that ends the run; NaN: within down to the smallest value) and ``outside_above``
        (the values above the run outside the bound, e.g. ``"1"``).

    Raises:
        ValueError: a model without its clean row.
    """
    frame = frame.fillna({"variant": ""})
    rows = []
    for model, runs in frame.groupby("model", sort=False):
        clean_rows = runs[runs["family"] == "clean"]
        if clean_rows.empty:
            raise ValueError(f"model {model!r} has no clean row to compare with")
        clean = clean_rows.iloc[0]
        for family, variant in THRESHOLD_CURVES:
            curve = runs[(runs["family"] == family) & (runs["variant"] == variant)]
            curve = curve.sort_values("value", ascending=False)
            if curve.empty:
                continue
            values = [float(v) for v in curve["value"]]
            for group in groups:
                for metric, lower in THRESHOLD_METRICS.items():
                    if group != "all" and metric == "found_rate":
                        continue
                    col = metric if group == "all" else f"{metric}_{group}"
                    if col not in curve.columns:
                        continue
                    ref = float(clean[col])
                    ok = [within_tolerance(float(x), ref, lower, tolerance) for x in curve[col]]
                    threshold, first_outside, above = _within_run(values, ok)
                    rows.append(
                        {
                            "model": model,
                            "family": family,
                            "variant": variant,
                            "group": group,
                            "metric": metric,
                            "clean": ref,
                            "bound": ref * (1 + tolerance if lower else 1 - tolerance),
                            "threshold": threshold,
                            "first_outside": first_outside,
                            "outside_above": ", ".join(f"{v:g}" for v in above),
                        }
                    )
    return pd.DataFrame(rows)


def _grid_value(value: float, family: str) -> str:
    return f"{value:g} px" if family == "resolution" else f"{value:g}"


def format_threshold(
    threshold: float, first_outside: float, family: str, outside_above: str = ""
) -> str:
    """A threshold as the summary prints it: ``16 px``; ``≤ 8 px`` when the metric stayed
    within down to the lowest value tried; ``none`` when no value was within; and
    ``(outside at 1)`` after it when values above were outside."""
    if math.isnan(threshold):
        return "none"
    text = _grid_value(threshold, family)
    text = f"≤ {text}" if math.isnan(first_outside) else text
    return f"{text} (outside at {outside_above})" if outside_above else text


def curve_name(family: str, variant: str) -> str:
    """A curve's name in tables, e.g. ``face fraction, as is``."""
    return family.replace("_", " ") + (f", {variant.replace('_', ' ')}" if variant else "")
