"""Evaluation of collected predictions, overall and per demographic group.

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
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from agefair.labels import AGE_BANDS, GENDERS, RACES

AGE_BAND_LABELS = tuple(
    f"{lo}+" if i == len(AGE_BANDS) - 1 else f"{lo}-{hi}" for i, (lo, hi) in enumerate(AGE_BANDS)
)

GROUP_TYPES = ("race", "gender", "race_gender", "age_band")
TABLE_METRICS = ("age_mae", "age_bias", "gender_acc", "race_acc")
BOOTSTRAP_METRICS = ("age_mae", "gender_acc", "race_acc", "race_acc_balanced")
CS_THRESHOLD = 5.0  # years; "cumulative score" CS(5), the usual companion of MAE in age papers

_TRUE_COLUMNS = ("age", "gender", "race")
_PRED_COLUMNS = ("age_pred", "gender_pred", "race_pred")


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


def _columns(preds: pd.DataFrame) -> dict[str, np.ndarray]:
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


def _mean(x: np.ndarray) -> float:
    """Mean as a Python float; NaN (without a warning) for an empty array."""
    return float(np.mean(x)) if x.size else math.nan


def age_band(age: np.ndarray | float) -> np.ndarray:
    """Index into ``AGE_BANDS`` of each age (an age belongs to the band whose ``hi`` it does not
    exceed, so fractional ages such as 12.5 fall into the next band; everything above 59 is 60+).
    """
    edges = np.array([hi for _, hi in AGE_BANDS[:-1]], dtype=float)
    return np.searchsorted(edges, np.asarray(age, dtype=float), side="left")


# --------------------------------------------------------------------------------------------
# Headline numbers
# --------------------------------------------------------------------------------------------


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
    c = _columns(preds)
    err = c["age_pred"] - c["age"]
    recalls = _race_recalls(c["race"], c["race_pred"])
    present = recalls[~np.isnan(recalls)]
    out = {
        "age_mae": _mean(np.abs(err)),
        "age_bias": _mean(err),
        "age_cs5": _mean(np.abs(err) <= CS_THRESHOLD),
        "gender_acc": _mean(c["gender"] == c["gender_pred"]),
        "race_acc": _mean(c["race"] == c["race_pred"]),
        "race_acc_balanced": _mean(present),
    }
    for name, recall in zip(RACES, recalls, strict=True):
        out[f"race_recall_{name}"] = float(recall)
    return out


# --------------------------------------------------------------------------------------------
# Per-group table and gaps
# --------------------------------------------------------------------------------------------


def group_masks(preds: pd.DataFrame) -> list[tuple[str, str, np.ndarray]]:
    """``(group_type, group, row mask)`` for "all" and every group of every partition
    (race, gender, race x gender, age band), in the order of :func:`group_table`."""
    return _group_masks(_columns(preds))


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
    c = _columns(preds)
    abs_err = np.abs(c["age_pred"] - c["age"])
    err = c["age_pred"] - c["age"]
    gender_ok = c["gender"] == c["gender_pred"]
    race_ok = c["race"] == c["race_pred"]
    rows = [
        {
            "group_type": group_type,
            "group": group,
            "n": int(mask.sum()),
            "age_mae": _mean(abs_err[mask]),
            "age_bias": _mean(err[mask]),
            "gender_acc": _mean(gender_ok[mask]),
            "race_acc": _mean(race_ok[mask]),
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


# --------------------------------------------------------------------------------------------
# Bootstrap confidence intervals
# --------------------------------------------------------------------------------------------

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
    c = _columns(preds)
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


# --------------------------------------------------------------------------------------------
# Confusion matrices
# --------------------------------------------------------------------------------------------


def confusion_matrix(true: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of (true, predicted) class pairs.

    Args:
        true: True class per image, ints in ``[0, n_classes)``.
        pred: Predicted class per image, same range.
        n_classes: Number of classes.

    Returns:
        An ``(n_classes, n_classes)`` int64 array; rows are true classes, columns predictions.

    Raises:
        ValueError: Length mismatch or a class outside the range.
    """
    true = np.asarray(true).astype(np.int64).ravel()
    pred = np.asarray(pred).astype(np.int64).ravel()
    if true.shape != pred.shape:
        raise ValueError(f"true and pred differ in length: {true.size} vs {pred.size}")
    for name, x in (("true", true), ("pred", pred)):
        if x.size and (x.min() < 0 or x.max() >= n_classes):
            raise ValueError(f"{name} has classes outside 0-{n_classes - 1}")
    flat = np.bincount(true * n_classes + pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def plot_confusion(cm: np.ndarray, labels: Sequence[str], title: str, path: str | Path) -> Path:
    """Writes a confusion matrix as a PNG: colours are row-normalised, cells show counts.

    Row normalisation makes the colour of a cell the share of that true class predicted as the
    column class (a recall view), so small classes are as readable as large ones; the annotated
    counts keep the absolute sizes visible.

    Args:
        cm: Square count matrix from :func:`confusion_matrix` (rows true, columns predicted).
        labels: Class names, one per row.
        title: Figure title.
        path: Output file; parent folders are created.

    Returns:
        The path written.
    """
    # Figure without pyplot: no global backend switch and no figure registry to leak, which
    # matters when this runs inside training processes or web servers.
    from matplotlib.figure import Figure

    cm = np.asarray(cm)
    k = cm.shape[0]
    if cm.shape != (k, k) or len(labels) != k:
        raise ValueError(f"cm must be square with one label per row; got {cm.shape}, {len(labels)}")
    row_sums = cm.sum(axis=1, keepdims=True)
    shares = np.divide(cm, row_sums, out=np.zeros(cm.shape, dtype=float), where=row_sums > 0)

    size = 1.2 + 0.9 * k
    fig = Figure(figsize=(size + 1.0, size))
    ax = fig.add_subplot()
    im = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_xticks(range(k), labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(range(k), labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(k):
        for j in range(k):
            color = "white" if shares[i, j] > 0.5 else "black"
            text = f"{cm[i, j]}\n{shares[i, j]:.0%}"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


# --------------------------------------------------------------------------------------------
# Age groups (external data sets that only label age ranges)
# --------------------------------------------------------------------------------------------

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
        "age_group_acc": _mean(distance == 0.0),
        "age_group_mae": _mean(distance),
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
