"""What a run leaves in its folder: metrics, per-group tables, one results row for reports.

Every run (training or evaluation) writes:

- ``metrics.json``: the headline test metrics with bootstrap 95% intervals;
- ``groups_<split>.csv`` and ``gaps_<split>.csv``: per-group metrics and worst-group gaps;
- ``predictions_<split>.csv``: one row per image, so any figure can be recomputed;
- ``confusion_<task>_<split>.png``: row-normalised confusion matrices;
- ``results.csv``: one row (system, backbone, costs, every test metric, config hash) that
  ``agefair.report`` collects across a sweep.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from agefair.labels import GENDERS, RACES
from agefair.metrics.bootstrap import bootstrap_ci
from agefair.metrics.confusion import confusion_matrix, plot_confusion
from agefair.metrics.groups import (
    BOOTSTRAP_METRICS,
    TABLE_METRICS,
    group_gaps,
    group_table,
    headline_metrics,
)

log = logging.getLogger(__name__)


#: Overrides (and config keys) that say where a run's files are and how it prints or is launched,
#: not what it trains.
NOT_TRAINED = ("paths.", "callbacks.progress.", "hydra.", "hydra/")


def override_key(override: str) -> str:
    """``+backbone.width=4`` -> ``backbone.width``: the config key an override sets."""
    return override.split("=", 1)[0].lstrip("+~")


def trains_alike(override: str) -> bool:
    """Whether an override leaves what is trained unchanged (:data:`NOT_TRAINED`)."""
    return (override_key(override) + ".").startswith(NOT_TRAINED)


def without_keys(config: Mapping, keys: Iterable[str]) -> dict:
    """A copy of a nested config without the given dotted keys (``callbacks.progress``; a
    trailing ``.`` or ``/`` is ignored); keys it lacks are skipped."""
    data = json.loads(json.dumps(config, default=str))
    for key in keys:
        *parents, leaf = key.rstrip("./").split(".")
        node = data
        for name in parents:
            node = node.get(name) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return data


def config_hash(config: Mapping | None) -> str:
    """A short stable digest of a resolved config, to tell runs with equal settings apart."""
    text = json.dumps(config or {}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def write_split_outputs(
    out_dir: Path, split: str, preds: pd.DataFrame, age: bool = True, race: bool = True
) -> dict:
    """Writes the per-group tables, predictions and confusion matrices of one evaluated split.

    Args:
        out_dir: the run folder.
        split: name used in the file names (``test``, ``val``, ``labels`` ...).
        preds: one row per image (see :mod:`agefair.metrics.groups`).
        age: False when the true ages are unknown (only age groups): age metrics are left out.
        race: False when the system does not predict race (a pretrained age and gender model):
            race metrics are left out rather than reported as 0, and no race confusion matrix is
            drawn.

    Returns:
        Headline metrics of the split, each with its bootstrap interval as ``<name>_ci``.
    """
    unscored = tuple(task for task, scored in (("age", age), ("race", race)) if not scored)
    out_dir.mkdir(parents=True, exist_ok=True)
    preds.to_csv(out_dir / f"predictions_{split}.csv", index=False)
    scored = preds if age else preds.assign(age=preds["age_pred"])
    table = group_table(scored)
    table = table.drop(columns=[m for m in TABLE_METRICS if m.startswith(unscored)])
    table.to_csv(out_dir / f"groups_{split}.csv", index=False)
    metrics_cols = [m for m in TABLE_METRICS if m in table.columns]
    gaps = group_gaps(table, metrics=metrics_cols)
    gaps.to_csv(out_dir / f"gaps_{split}.csv", index=False)
    for task, labels in (("gender", GENDERS), ("race", RACES)):
        if task in unscored:
            continue
        # A photo without a prediction (no face found, agefair.evaluation.unseen) has no cell to
        # count in.
        known = preds[f"{task}_pred"].between(0, len(labels) - 1)
        cm = confusion_matrix(preds[task][known], preds[f"{task}_pred"][known], len(labels))
        plot_confusion(cm, labels, f"{task} ({split})", out_dir / f"confusion_{task}_{split}.png")
    metrics: dict[str, Any] = {**headline_metrics(scored), **worst_group_metrics(gaps)}
    names = [m for m in BOOTSTRAP_METRICS if not m.startswith(unscored)]
    for name, (lo, hi) in bootstrap_ci(scored, metrics=names).items():
        metrics[f"{name}_ci"] = [lo, hi]
    # Worst-group keys (``worst_race_gender_acc``) start with worst_/gap_, so they stay.
    return {k: v for k, v in metrics.items() if not k.startswith(unscored)}


def worst_group_metrics(gaps: pd.DataFrame) -> dict[str, float]:
    """The worst group's value and the gap between groups, per partition and metric.

    ``worst_race_gender_acc`` (gender accuracy of the race it is lowest for) and
    ``gap_race_gender_age_mae`` (age MAE spread over the race x gender groups) put fairness into
    the one-row results, beside the overall figures, so sweeps can be compared on it.
    """
    out: dict[str, float] = {}
    for row in gaps.itertuples(index=False):
        if row.metric == "age_bias":  # its spread is the gap; the worst value adds nothing
            out[f"gap_{row.group_type}_{row.metric}"] = float(row.gap)
            continue
        out[f"worst_{row.group_type}_{row.metric}"] = float(row.worst)
        out[f"gap_{row.group_type}_{row.metric}"] = float(row.gap)
    return out


def write_results_row(out_dir: Path, row: Mapping[str, Any]) -> Path:
    """Writes the run's one-row ``results.csv``."""
    path = out_dir / "results.csv"
    pd.DataFrame([dict(row)]).to_csv(path, index=False)
    return path


def read_ok_row(out_dir: Path) -> dict[str, Any] | None:
    """The results row in ``out_dir`` when it has status ``ok``; None when there is none, it
    failed, or it cannot be read (logged)."""
    path = out_dir / "results.csv"
    if not path.is_file():
        return None
    try:
        row = pd.read_csv(path, keep_default_na=False).iloc[0].to_dict()
    except (pd.errors.ParserError, pd.errors.EmptyDataError, IndexError) as err:
        log.warning("Unreadable %s: %s", path, err)
        return None
    return row if row.get("status") == "ok" else None


def format_group_table(table: pd.DataFrame) -> str:
    """The per-group table as aligned text for the console."""
    cols = ["group_type", "group", "n", "age_mae", "age_bias", "gender_acc", "race_acc"]
    return table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}")
