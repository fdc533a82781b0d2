"""Where an evaluation's system and faces come from: a checkpoint with its datamodule on this
machine's data, the default training split, or a folder or labels CSV of other images."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from agefair.config import CONF_DIR
from agefair.data.cache import load_or_build_cache
from agefair.data.datamodule import FaceDataset
from agefair.data.other_faces import read_labels_csv
from agefair.data.utkface import scan_folder
from agefair.metrics.age_groups import parse_age_groups
from agefair.models.base import AgeFairModule
from agefair.models.checkpoint import load_system
from agefair.training.build import build_datamodule

log = logging.getLogger(__name__)


def load_for_evaluation(cfg: DictConfig) -> tuple[AgeFairModule, DictConfig, Any]:
    """The checkpoint's system, its training config and its datamodule, pointed at this machine's
    data (``paths.archive``, ``paths.data_dir``) with the evaluation's batch size and workers."""
    model, train_cfg = load_system(cfg.ckpt_path, cfg.get("expect_system"))
    point_at_local_data(train_cfg, cfg)
    model.use_views(cfg.get("tta_flip"), cfg.get("tta_scales"))
    model.use_race_prior(cfg.get("race_prior"))
    log.info(
        "Test-time views: mirror %s, zooms %s",
        "on" if model.hparams.tta_flip else "off",
        list(model.hparams.tta_scales) or "none",
    )
    log.info("Race prior: %s", model.hparams.race_prior)
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
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="train")


def training_datamodule(cfg: DictConfig) -> Any:
    """The datamodule of the default training config, on this machine's data."""
    train_cfg = compose_train_config()
    point_at_local_data(train_cfg, cfg)
    return instantiate(train_cfg.data, _convert_="all")


def external_dataset(
    root: Path, table: pd.DataFrame, size: int, cache_dir: Path, transform, framing: float = 1.0
) -> tuple[FaceDataset, pd.DataFrame]:
    """Decodes the listed images (through the cache) and drops those that cannot be read."""
    decoded = load_or_build_cache(root, table["file"].tolist(), size, cache_dir, framing=framing)
    for r in decoded.rejects:
        log.warning("Skipped %s: %s", r.file, r.reason)
    table = table.assign(row=np.arange(len(table)))[decoded.ok].reset_index(drop=True)
    return FaceDataset(decoded.images, table, transform), table


def external_faces(
    cfg: DictConfig, size: int, cache_dir: Path, transform, framing: float = 1.0
) -> tuple[FaceDataset, str, tuple[np.ndarray, np.ndarray] | None]:
    """The images of ``cfg.images`` or ``cfg.labels`` decoded at ``size`` px, cut to
    ``framing`` (:func:`agefair.data.framing.reframe`).

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
