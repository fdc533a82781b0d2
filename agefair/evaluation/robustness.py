"""The robustness study: where do the models stop working as the face gets small or filtered?

    python -m agefair.evaluate study=robustness ckpt_path=...
    python -m agefair.evaluate study=robustness ckpt_path=... study.limit=300 study.filters=[blur]
    python -m agefair.evaluate -m study=robustness study.report_dir=experiments/robustness \\
        ckpt_path=A.ckpt,B.ckpt

The test split of agefair's own seeded split is decoded at UTKFace's 200 px and evaluated at
every point of four grids, each through the transform presets of :mod:`agefair.data.transforms`
(the code the datamodule uses), plus a clean reference point (the eval transform):

* ``resolution``: the face shrunk to N px and enlarged back to the model's input;
* ``input_size``: the model fed a larger input than it was trained at (1.5x, 2x);
* ``face_fraction``: the face covering a fraction of a larger picture, given to the model
  ``as_is`` (the whole picture at the input size) and ``detected`` (the picture goes through
  the prediction path of :class:`agefair.inference.predictor.Predictor`: its face detector and face
  crop, then the eval transform). A picture where the detector finds no face on the placed face
  counts as not found: the metrics of that point are computed on the found faces, and
  ``found_rate`` says how many that was;
* ``filter``: every photo filter at each strength, and no filter.

Each grid point becomes one row of ``robustness.csv``: n, the share of images that got a
prediction, age MAE, mean signed age error (prediction minus truth), gender and race accuracy,
overall and per race (``age_mae_White``, ``gender_acc_Asian`` ...). The run folder also gets
``thresholds.csv`` (the lowest resolution and the smallest face fraction at which each metric
stays within a tolerance of its clean value, :mod:`agefair.evaluation.robustness_limits`), the
plots and ``summary.md`` (:mod:`agefair.reporting.robustness`, written by the evaluate command);
with ``study.report_dir`` the results are also filed under ``<report_dir>/results/<model>/`` and
the plots and the README section of that folder are redrawn from every model filed there.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, default_collate
from tqdm.auto import tqdm

from agefair.data.boxes import FaceBox
from agefair.data.datamodule import FaceDataset
from agefair.data.degradations import FILTER_STRENGTHS, FILTERS, FaceFractionPreset, study_grid
from agefair.data.transforms import build_transform
from agefair.evaluation.predictions import predict_frame
from agefair.evaluation.robustness_limits import curve_name, format_threshold, thresholds
from agefair.evaluation.sources import load_for_evaluation, split_faces
from agefair.inference.predictor import Predictor
from agefair.labels import GENDERS, RACES
from agefair.metrics.groups import group_table, headline_metrics
from agefair.models.base import AgeFairModule

log = logging.getLogger("agefair.evaluation.robustness")

__all__ = [
    "FAMILIES",
    "GridPoint",
    "PointEvaluator",
    "detection_picture",
    "grid_points",
    "load_test_faces",
    "model_label",
    "pick_face",
    "run_grid",
    "run_study",
    "score",
]

#: Study families, in the order they run (the clean reference point always comes first).
FAMILIES = ("resolution", "input_size", "face_fraction", "filter")
#: Overall metrics of a row, in column order.
ROW_METRICS = ("age_mae", "age_bias", "age_cs5", "gender_acc", "race_acc", "race_acc_balanced")
#: Per-race metrics of a row, as columns ``<metric>_<race>``.
RACE_METRICS = ("n", "age_mae", "age_bias", "gender_acc", "race_acc")
#: Per-image failures logged in full per grid point; the rest are only counted.
MAX_LOGGED_FAILURES = 3


# ------------------------------------------------------------------------------------ the grid
@dataclass(frozen=True)
class GridPoint:
    """One evaluation of the study: a transform preset, its arguments and the model's input size.

    Attributes:
        family: ``clean``, ``resolution``, ``input_size``, ``face_fraction`` or ``filter``.
        variant: ``as_is`` or ``detected`` for face fractions, the filter's name for filters,
            empty otherwise.
        value: the grid value: face side in px, input scale, face fraction or filter strength
            (0 for no filter, NaN for the clean point).
        preset: name of the transform preset (:func:`agefair.data.transforms.build_transform`).
        kwargs: the preset's arguments.
        img_size: side of the model's input.
    """

    family: str
    variant: str
    value: float
    preset: str
    kwargs: dict[str, Any] = field(default_factory=dict, hash=False)
    img_size: int = 64

    @property
    def detect(self) -> bool:
        """Whether the picture goes through the face detector first."""
        return self.variant == "detected"

    @property
    def label(self) -> str:
        """A short human name, e.g. ``resolution 16 px`` or ``jpeg 0.5``."""
        if self.family == "resolution":
            return f"resolution {self.value:g} px"
        if self.family == "input_size":
            return f"input {self.img_size} px ({self.value:g}x)"
        if self.family == "face_fraction":
            return f"fraction {self.value:g} ({self.variant.replace('_', ' ')})"
        if self.family == "filter":
            return self.variant if self.variant == "none" else f"{self.variant} {self.value:g}"
        return self.family

    def columns(self) -> dict[str, Any]:
        """The point's identifying columns of a results row."""
        return {
            "family": self.family,
            "variant": self.variant,
            "value": self.value,
            "point": self.label,
            "img_size": self.img_size,
        }


def _filter_specs(names: Sequence[str] | None, strengths: Sequence[float] | None) -> list[dict]:
    """Filter grid points: the defaults of ``study_grid`` unless names or strengths are given."""
    if names is None and strengths is None:
        return study_grid("filter")
    specs = [{"name": "none"}]
    for name in names if names is not None else FILTERS:
        if name != "none":
            specs += [{"name": name, "strength": float(s)} for s in strengths or FILTER_STRENGTHS]
    return specs


def grid_points(study: Mapping[str, Any], img_size: int) -> list[GridPoint]:
    """Every point of the study configured by ``study`` (see ``conf/study/robustness.yaml``).

    Args:
        study: ``families`` and the grids (``resolutions``, ``input_scales``, ``fractions``,
            ``filters``, ``strengths``; None takes the default grid of the transforms module),
            ``background`` of the face-fraction pictures and ``detector`` (None: no detected
            curve).
        img_size: side of the input the model was trained at.

    Returns:
        The clean reference point, then the points of each family in :data:`FAMILIES` order.

    Raises:
        ValueError: an unknown family.
    """
    families = list(study.get("families") or FAMILIES)
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown study families {unknown}; known: {', '.join(FAMILIES)}")
    points = [GridPoint("clean", "", math.nan, "eval", {}, img_size)]
    if "resolution" in families:
        resolutions = study.get("resolutions") or [
            p["resolution"] for p in study_grid("resolution")
        ]
        points += [
            GridPoint("resolution", "", float(r), "resolution", {"resolution": int(r)}, img_size)
            for r in resolutions
        ]
    if "input_size" in families:
        points += [
            GridPoint("input_size", "", float(s), "eval", {}, round(float(s) * img_size))
            for s in study.get("input_scales") or []
        ]
    if "face_fraction" in families:
        fractions = study.get("fractions") or [p["fraction"] for p in study_grid("face_fraction")]
        background = study.get("background") or "constant"
        variants = ["as_is", "detected"] if study.get("detector") else ["as_is"]
        points += [
            GridPoint(
                "face_fraction",
                variant,
                float(f),
                "face_fraction",
                {"fraction": float(f), "background": background},
                img_size,
            )
            for variant in variants
            for f in fractions
        ]
    if "filter" in families:
        for spec in _filter_specs(study.get("filters"), study.get("strengths")):
            value = float(spec.get("strength", 0.0)) if spec["name"] != "none" else 0.0
            points.append(GridPoint("filter", spec["name"], value, "filter", dict(spec), img_size))
    return points


# ------------------------------------------------------------------------------- the test faces
def load_test_faces(datamodule: Any, source_size: int, limit: int | None, seed: int) -> FaceDataset:
    """The test split's faces decoded at ``source_size`` px, as a dataset without a transform.

    Args:
        datamodule: the checkpoint's :class:`~agefair.data.datamodule.UTKFaceDataModule`; its
            split (and age or race filters) define the test faces.
        source_size: side the faces are decoded at (cached beside the training cache).
        limit: evaluate a random subset of this many faces; None for all.
        seed: seed of the subset.

    Returns:
        A dataset whose ``images`` and ``table`` (file, labels, ``row`` into ``images``) hold the
        faces; unreadable files are left out with a warning.
    """
    dataset = split_faces(datamodule, "test", source_size, transform=None)
    table = dataset.table
    if limit is not None and limit < len(table):
        table = table.sample(n=int(limit), random_state=seed).sort_index().reset_index(drop=True)
    return FaceDataset(dataset.images, table, transform=None)


class _GuardedDataset(FaceDataset):
    """A FaceDataset whose item is None when the transform fails: one bad picture is counted,
    not fatal to the study."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures = 0

    def __getitem__(self, i: int) -> dict[str, Any] | None:
        try:
            return super().__getitem__(i)
        except Exception as err:  # any failure of one picture, whatever its cause
            self.failures += 1
            if self.failures <= MAX_LOGGED_FAILURES:
                log.warning(
                    "Skipped %s: %s: %s", self.table["file"].iloc[i], type(err).__name__, err
                )
            return None


def _collate_ok(items: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Batches the items that did not fail; None when none is left."""
    items = [item for item in items if item is not None]
    return default_collate(items) if items else None


# ------------------------------------------------------------------------------- one grid point
def score(preds: pd.DataFrame, n: int, failed: int = 0) -> dict[str, float]:
    """The metrics of one grid point.

    Args:
        preds: one row per image that got a prediction (see :mod:`agefair.metrics.groups`).
        n: images the point was evaluated on, including those without a prediction.
        failed: images whose picture could not be made (an error, not a missed face).

    Returns:
        ``n``, ``n_scored`` (rows of ``preds``), ``n_failed``, ``found_rate`` (n_scored / n),
        the overall metrics of :data:`ROW_METRICS` and ``<metric>_<race>`` for every metric of
        :data:`RACE_METRICS` and every race; metrics are NaN when nothing was scored.
    """
    head = headline_metrics(preds)
    row: dict[str, float] = {
        "n": n,
        "n_scored": len(preds),
        "n_failed": failed,
        "found_rate": len(preds) / n if n else math.nan,
        **{m: head[m] for m in ROW_METRICS},
    }
    races = group_table(preds).query("group_type == 'race'").set_index("group")
    for race in RACES:
        for metric in RACE_METRICS:
            row[f"{metric}_{race}"] = races.at[race, metric]
    return row


def pick_face(boxes: Sequence[FaceBox], side: int, face_side: int) -> int | None:
    """The detected face that is the placed one: the box nearest the picture's centre, if its
    centre lies on the face (a box elsewhere is a false detection, not the face).

    Args:
        boxes: detected faces in picture pixels.
        side: side of the square picture.
        face_side: side of the face centred in it.

    Returns:
        Index into ``boxes``, or None.
    """
    if not boxes:
        return None
    centre = side / 2
    offsets = [max(abs(b.centre[0] - centre), abs(b.centre[1] - centre)) for b in boxes]
    best = int(np.argmin(offsets))
    return best if offsets[best] <= face_side / 2 else None


def detection_picture(source_side: int, fraction: float, background: str) -> FaceFractionPreset:
    """The face-fraction preset whose picture keeps the face at ``source_side`` px.

    The as-is branch builds the picture at the model's input size (the same picture as a large
    one shrunk); the detector and ``crop_face`` work on the photo, so here the picture is made
    large enough for the face to keep every pixel it has, as in a photo.
    """
    canvas = max(source_side, round(source_side / math.sqrt(fraction)))
    return build_transform("face_fraction", canvas, fraction=fraction, background=background)


@dataclass
class PointEvaluator:
    """Evaluates a model on the study's faces, one grid point per call.

    Attributes:
        model: the system, in eval mode.
        faces: the test faces at the source size (:func:`load_test_faces`).
        mean: the model's input normalisation mean (0..1 scale).
        std: the model's input normalisation standard deviation.
        img_size: the input side the model was trained at (that of the prediction path).
        batch_size: images per forward pass.
        precision: the training precision (``bf16...`` evaluates under bfloat16 autocast).
        detector: the detector of the detected face-fraction curve (a name for
            :func:`agefair.inference.detect.create_detector` or an instance); None for none.
        cache_size: side of the detector's crops before the eval transform (the training
            cache's side, as in the prediction path); None means ``img_size``.
    """

    model: AgeFairModule
    faces: FaceDataset
    mean: Sequence[float]
    std: Sequence[float]
    img_size: int
    batch_size: int = 128
    precision: str = "32"
    detector: Any = None
    cache_size: int | None = None
    _predictor: Predictor | None = field(default=None, init=False, repr=False)

    def __call__(self, point: GridPoint) -> dict[str, Any]:
        """The metrics of ``point`` (see :func:`score`) and the seconds it took."""
        start = time.perf_counter()
        preds, failed = self.detected(point) if point.detect else self.as_is(point)
        row = score(preds, len(self.faces), failed)
        return {**row, "time_s": round(time.perf_counter() - start, 2)}

    def as_is(self, point: GridPoint) -> tuple[pd.DataFrame, int]:
        """Predictions on the transformed test faces, and how many pictures failed."""
        transform = build_transform(
            point.preset, point.img_size, **point.kwargs, mean=self.mean, std=self.std
        )
        dataset = _GuardedDataset(self.faces.images, self.faces.table, transform)
        loader = DataLoader(dataset, batch_size=self.batch_size, collate_fn=_collate_ok)
        preds = predict_frame(self.model, loader, self.precision, progress=False)
        return preds, dataset.failures

    def predictor(self) -> Predictor:
        """The app's prediction path around this model, made on first use.

        Raises:
            ValueError: no detector is configured.
            agefair.inference.model_files.ModelFileError: the detector's model file is missing.
        """
        if self.detector is None:
            raise ValueError("no detector configured for the detected curve")
        if self._predictor is None:
            self._predictor = Predictor(
                self.model,
                detector=self.detector,
                img_size=self.img_size,
                cache_size=self.cache_size or self.img_size,
                mean=self.mean,
                std=self.std,
                batch_size=self.batch_size,
                device=next(self.model.parameters()).device,
            )
        return self._predictor

    def detected(self, point: GridPoint) -> tuple[pd.DataFrame, int]:
        """Predictions through detection on the face-fraction pictures (found faces only), and
        how many pictures failed."""
        predictor = self.predictor()
        table, images = self.faces.table, self.faces.images
        kw = point.kwargs
        preset = detection_picture(images.shape[1], kw["fraction"], kw["background"])
        crops, found, failed = [], [], 0
        for i, row in enumerate(table["row"]):
            try:
                picture = preset.pixels(np.asarray(images[row]))
                faces = predictor.extract_faces(picture)
                k = pick_face(faces.boxes, picture.shape[0], preset.face_side)
            except Exception as err:  # one picture must not end the study
                failed += 1
                if failed <= MAX_LOGGED_FAILURES:
                    name = table["file"].iloc[i]
                    log.warning("Skipped %s: %s: %s", name, type(err).__name__, err)
                continue
            if k is not None:
                crops.append(faces.crops[k])
                found.append(i)
        predicted = predictor.predict_crops(crops)
        preds = table.iloc[found][["age", "gender", "race"]].reset_index(drop=True)
        preds["age_pred"] = [f.age for f in predicted]
        preds["gender_pred"] = [GENDERS.index(f.gender) for f in predicted]
        preds["race_pred"] = [RACES.index(f.race) for f in predicted]
        return preds, failed


def run_grid(points: Sequence[GridPoint], evaluate: Callable[[GridPoint], dict]) -> pd.DataFrame:
    """Evaluates every point, with a progress bar; one row per point.

    A point that fails as a whole (e.g. no detector model) gets its ``error`` and NaN metrics,
    and the study goes on.
    """
    rows = []
    bar = tqdm(points, desc="Robustness study", unit="point")
    for point in bar:
        bar.set_postfix_str(point.label)
        try:
            row = {**point.columns(), **evaluate(point), "error": ""}
        except Exception as err:  # noqa: BLE001 - reported in the row and the log
            log.error("Grid point %s failed: %s: %s", point.label, type(err).__name__, err)
            row = {**point.columns(), "error": f"{type(err).__name__}: {err}"}
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame[[c for c in frame.columns if c != "error"] + ["error"]]


# ---------------------------------------------------------------------------------- entry point
def model_label(model: AgeFairModule, ckpt_path: str | Path) -> str:
    """``<system>-<backbones>-<run folder>``, e.g. ``MultiTaskModule-cnn-2026-11-24_18-13-29``."""
    ckpt = Path(ckpt_path)
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    backbones = "+".join(b.name for b in model.backbones())
    return f"{type(model).__name__}-{backbones}-{run.name}"


def machine() -> str:
    """The machine in words: architecture, CPU cores and torch threads, and a GPU if used."""
    text = f"{platform.machine()}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name()}"
    return text


def _overrides() -> list[str]:
    """The command line's Hydra overrides, when run through Hydra."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def run_study(cfg: DictConfig) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Runs the study configured by ``cfg.study`` on ``cfg.ckpt_path``; writes its table
    (``robustness.csv``) and ``info.json`` into the run folder.

    Args:
        cfg: the evaluate config (``conf/eval.yaml``) with ``study`` from ``conf/study/``.

    Returns:
        The table (one row per grid point) and the run's description (``info.json``).
    """
    study = cfg.study
    if study.get("name") != "robustness":
        raise ValueError(f"unknown study {study.get('name')!r}; known: robustness")
    start = time.perf_counter()
    model, train_cfg, datamodule = load_for_evaluation(cfg)
    faces = load_test_faces(datamodule, int(study.source_size), study.get("limit"), int(study.seed))
    n_test = len(datamodule.split_table("test"))
    log.info("Robustness study on %d of %d test faces", len(faces), n_test)
    evaluator = PointEvaluator(
        model,
        faces,
        mean=tuple(datamodule.hparams.mean),
        std=tuple(datamodule.hparams.std),
        img_size=datamodule.img_size,
        batch_size=int(cfg.batch_size),
        precision=str(train_cfg.trainer.get("precision", "32")),
        detector=study.get("detector"),
        cache_size=datamodule.cache_size,
    )
    points = grid_points(OmegaConf.to_container(study, resolve=True), datamodule.img_size)
    label = study.get("label") or model_label(model, cfg.ckpt_path)
    frame = run_grid(points, evaluator)
    frame.insert(0, "model", label)
    info = {
        "model": label,
        "checkpoint": str(cfg.ckpt_path),
        "system": type(model).__name__,
        "img_size": datamodule.img_size,
        "images": len(faces),
        "test_split_images": n_test,
        "limit": study.get("limit"),
        "seed": int(study.seed),
        "source_size": int(study.source_size),
        "background": study.get("background"),
        "detector": study.get("detector"),
        "points": len(points),
        "time_s": round(time.perf_counter() - start, 1),
        "machine": machine(),
        "date": datetime.now().isoformat(timespec="seconds"),
        "overrides": _overrides(),
    }
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_dir / "robustness.csv", index=False)
    (out_dir / "info.json").write_text(json.dumps(info, indent=2, default=str))
    return frame, info


def study_summary(
    frame: pd.DataFrame, info: Mapping[str, Any], tolerance: float, out_dir: str | Path
) -> dict[str, Any]:
    """The checkpoint, model label, images, time, output folder, the clean metrics and the
    overall thresholds (``<curve>/<metric>``) of a study run, for the command's JSON line."""
    limits = thresholds(frame, tolerance, groups=("all",))
    clean = frame[frame["family"] == "clean"].iloc[0]
    return {
        "checkpoint": info["checkpoint"],
        "study": "robustness",
        "model": info["model"],
        "n": info["images"],
        "points": len(frame),
        "failed_points": int((frame["error"] != "").sum()),
        "time_s": info["time_s"],
        "out_dir": str(out_dir),
        "clean": {m: float(clean[m]) for m in ("age_mae", "age_bias", "gender_acc", "race_acc")},
        "thresholds": {
            f"{curve_name(r.family, r.variant)}/{r.metric}": format_threshold(
                r.threshold, r.first_outside, r.family, r.outside_above
            )
            for r in limits.itertuples()
        },
    }
