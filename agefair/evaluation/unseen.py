"""Faces from another data set, scored through the app's own path.

A model that scores well on UTKFace's test split, cut like its training data, can still fail on
a person's own photo. This module measures that: each labelled photo of another data set (a
``labels.csv``, see :mod:`agefair.data.other_faces`; e.g. ``../shared/data/fairface_dev``)
goes through :class:`agefair.inference.predictor.Predictor` as an upload to the app would: the
detector finds the faces, the labelled one is taken (:func:`labelled_face`), it is framed like the
training crops and the model predicts with its test-time views. A photo in which no face is
found counts as wrong for every task, and the misses are counted (``missed``), so a detector
that gives up on hard photos cannot flatter the figures.

The images never enter a cache that training reads: the crops live only in memory, and the
datamodule refuses a training set that holds any of these images.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from agefair.data.other_faces import read_labels_csv, select
from agefair.inference.detection_cache import CachedDetector
from agefair.inference.imageio import ImageError
from agefair.metrics.age_groups import age_group_distance, age_group_metrics, parse_age_groups
from agefair.metrics.bootstrap import proportion_ci

log = logging.getLogger(__name__)

#: The split name of unseen faces in file names (``groups_unseen.csv``) and metric keys.
SPLIT = "unseen"
#: Prediction code of a photo in which no face was found: never equal to a true label.
MISSED = -1


def labelled_face(boxes: Sequence[Any], width: int, height: int) -> int | None:
    """Which detected face a one-label photo is about: the one nearest the photo's centre.

    Data sets labelled per photo (FairFace, UTKFace) centre the photo on the labelled face; a
    bystander at the edge may be detected too, and may even score higher.

    Args:
        boxes: Detected faces (``FaceBox``), in the photo's pixels.
        width: The photo's width.
        height: The photo's height.

    Returns:
        The index of the face, or None when there is none.
    """
    if not boxes:
        return None
    cx, cy = width / 2, height / 2
    return int(np.argmin([(b.centre[0] - cx) ** 2 + (b.centre[1] - cy) ** 2 for b in boxes]))


def extract_labelled_faces(
    predictor: Any, root: Path, files: Sequence[str], progress: bool = True
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The labelled face of each photo, cut out by the predictor's detect-and-crop path.

    Args:
        predictor: An :class:`agefair.inference.predictor.Predictor`.
        root: The folder the file names are relative to.
        files: The photos.
        progress: Show a progress bar.

    Returns:
        The crops of the photos with a found face (``cache_size`` px, in order), whether each
        photo had one, and how many faces each had.
    """
    crops, found, n_faces = [], np.zeros(len(files), bool), np.zeros(len(files), int)
    for i, name in enumerate(tqdm(files, desc="Unseen faces: detecting", disable=not progress)):
        try:
            faces = predictor.extract_faces(root / name)
        except (ImageError, OSError) as err:
            log.warning("Unseen photo %s unreadable, counted as missed: %s", name, err)
            continue
        n_faces[i] = len(faces.boxes)
        pick = labelled_face(faces.boxes, faces.width, faces.height)
        if pick is not None:
            crops.append(faces.crops[pick])
            found[i] = True
    return crops, found, n_faces


def predict_photos(
    predictor: Any, root: Path, files: Sequence[str], progress: bool = True
) -> pd.DataFrame:
    """Predictions for the labelled face of each photo (:func:`extract_labelled_faces`).

    Returns:
        One row per photo: ``age_pred``, ``gender_pred``, ``race_pred`` (:data:`MISSED` and
        NaN age for a photo without a found face), ``found``, ``n_faces`` and the
        probabilities ``gender_p``, ``race_p``.
    """
    crops, found, n_faces = extract_labelled_faces(predictor, root, files, progress)
    out = pd.DataFrame(
        {
            "age_pred": np.nan,
            "gender_pred": MISSED,
            "race_pred": MISSED,
            "gender_p": np.nan,
            "race_p": np.nan,
            "found": found,
            "n_faces": n_faces,
        }
    )
    if crops:
        batch = torch.stack([predictor.transform(c) for c in crops])
        pred = predictor.infer_batch(batch)
        idx = np.flatnonzero(found)
        out.loc[idx, "age_pred"] = pred["age"]
        out.loc[idx, "gender_pred"] = pred["gender_p"].argmax(1)
        out.loc[idx, "race_pred"] = pred["race_p"].argmax(1)
        out.loc[idx, "gender_p"] = pred["gender_p"].max(1)
        out.loc[idx, "race_p"] = pred["race_p"].max(1)
    return out


def score_unseen(
    predictor: Any,
    labels: str | Path,
    out_dir: Path,
    *,
    limit: int | None = None,
    progress: bool = True,
    detections: str | Path | None = None,
) -> dict[str, Any]:
    """Scores a predictor on a labelled folder of another data set; writes its outputs.

    Writes ``predictions_unseen.csv``, ``groups_unseen.csv``, ``gaps_unseen.csv`` and the
    confusion matrices into ``out_dir`` (see :mod:`agefair.training.results`).

    Args:
        predictor: An :class:`agefair.inference.predictor.Predictor` (detector, framing and model).
        labels: The labels CSV (:func:`agefair.data.other_faces.read_labels_csv`).
        out_dir: The run folder.
        limit: Score a seeded random sample of at most this many photos (a quick look).
        progress: Show a progress bar.
        detections: A folder where the detector's answers are kept between runs
            (:class:`agefair.inference.detection_cache.CachedDetector`); None detects afresh.

    Returns:
        Headline metrics with 95% bootstrap intervals (``<name>_ci``), per-race recalls,
        worst-group figures, ``age_group_acc`` (misses wrong) and ``age_group_mae`` (years
        outside the group, over found faces) when the labels have age groups, ``n`` photos
        and ``missed`` (photos without a found face, all counted as wrong).
    """
    from agefair.training.results import write_split_outputs  # results imports the model stack

    labels = Path(labels)
    table = select(read_labels_csv(labels), limit)
    if detections is not None:
        predictor = copy.copy(predictor)  # the caller's keeps its own detector
        predictor.detector = CachedDetector(predictor.detector, detections)
    preds = predict_photos(predictor, labels.parent, list(table["file"]), progress)
    if detections is not None:
        predictor.detector.save()
    preds = pd.concat([table, preds], axis=1)
    has_age = bool((table["age"] >= 0).all())
    # A missed photo keeps MISSED codes, wrong for every task: the tables need a number for its
    # age too, so with true ages it counts as a guess of -1 years; an age group it never hits.
    scored = preds.assign(age_pred=preds["age_pred"].fillna(MISSED))
    metrics: dict[str, Any] = write_split_outputs(out_dir, SPLIT, scored, age=has_age)
    preds.to_csv(out_dir / f"predictions_{SPLIT}.csv", index=False)
    if "age_group" in table.columns:
        lo, hi = parse_age_groups(table["age_group"].astype(str))
        age, found = preds["age_pred"].to_numpy(), preds["found"].to_numpy()
        hits = age_group_distance(lo, hi, age) == 0  # a miss (NaN age) is never inside
        metrics["age_group_acc"] = float(hits.mean())
        metrics["age_group_acc_ci"] = list(proportion_ci(hits))
        metrics["age_group_mae"] = age_group_metrics(lo[found], hi[found], age[found])[
            "age_group_mae"
        ]
    metrics["n"] = len(preds)
    metrics["missed"] = int((~preds["found"]).sum())
    metrics["labels"] = str(labels)
    return metrics


def summary_line(metrics: dict[str, Any]) -> str:
    """The unseen-faces figures as one line for the console."""

    def pct(key: str) -> str:
        if key not in metrics:
            return "n/a"
        ci = metrics.get(f"{key}_ci")
        text = f"{100 * metrics[key]:.1f}%"
        return text + (f" ({100 * ci[0]:.1f}-{100 * ci[1]:.1f})" if ci else "")

    return (
        f"{metrics['n']} photos, {metrics['missed']} without a found face (counted wrong): "
        f"gender {pct('gender_acc')}, race {pct('race_acc')}, balanced race "
        f"{pct('race_acc_balanced')}, 'Others' recall {pct('race_recall_Others')}, age group "
        f"{pct('age_group_acc')}, worst race's gender {pct('worst_race_gender_acc')}"
    )
