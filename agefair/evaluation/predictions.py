"""A system's or a baseline's predictions over a loader, and the outputs they are scored into."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from agefair.metrics.age_groups import age_group_metrics
from agefair.models.base import AgeFairModule, prediction_frame
from agefair.training.results import write_split_outputs

PREDICTION_COLUMNS = ["age", "gender", "race", "age_pred", "gender_pred", "race_pred"]


@torch.no_grad()
def predict_frame(
    model: AgeFairModule, loader: DataLoader, precision: str = "32", progress: bool = True
) -> pd.DataFrame:
    """Runs the model over a loader; one row per image with labels and predictions.

    A batch given as None (every image of it failed to load) is skipped.
    """
    model.eval()
    model.setup("test")
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if precision.startswith("bf16")
        else nullcontext()
    )
    frames = []
    for batch in tqdm(loader, desc="Evaluating", leave=False, disable=not progress):
        if batch is None:
            continue
        with autocast:
            pred = model.infer(batch["image"])
        frames.append(prediction_frame(batch, pred))
    if not frames:  # nothing could be predicted: an empty table that scores as NaN
        return pd.DataFrame(columns=PREDICTION_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def baseline_frame(baseline: Any, loader: DataLoader, progress: bool = True) -> pd.DataFrame:
    """Runs an external baseline over a loader of uint8 crops; one row per image, as
    :func:`predict_frame` for a checkpoint."""
    frames = [
        baseline.frame(batch)
        for batch in tqdm(loader, desc=f"Evaluating {baseline.name}", disable=not progress)
    ]
    if not frames:
        return pd.DataFrame(columns=PREDICTION_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def score_predictions(
    out_dir: Path,
    split: str,
    preds: pd.DataFrame,
    age_groups: tuple[np.ndarray, np.ndarray] | None,
    race: bool = True,
) -> dict[str, Any]:
    """Writes the split's outputs and returns its metrics: against true ages, or against age
    groups (``age_group_acc``, ``age_group_mae``) when only those are known."""
    if age_groups is None:
        return write_split_outputs(out_dir, split, preds, race=race)
    metrics = age_group_metrics(*age_groups, preds["age_pred"].to_numpy())
    preds = preds.assign(age=np.nan)
    metrics.update(write_split_outputs(out_dir, split, preds, age=False, race=race))
    return metrics
