"""A config's system and datamodule, built so that they fit each other."""

from __future__ import annotations

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from agefair.models.base import AgeFairModule


def run_config(cfg: DictConfig) -> dict:
    """A run's config, resolved, as its checkpoints store it."""
    keys = [k for k in cfg if k != "hydra"]  # the hydra node is present only when composed
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True)


def build_system(cfg: DictConfig) -> AgeFairModule:
    """The LightningModule of ``cfg.model``, carrying its resolved config for checkpoints."""
    model: AgeFairModule = instantiate(cfg.model, _convert_="all")
    model.config = run_config(cfg)
    return model


def build_datamodule(cfg: DictConfig, model: AgeFairModule) -> pl.LightningDataModule:
    """The datamodule of ``cfg.data``, normalising and framing like the model's backbone unless
    told to."""
    norm = model.input_config
    overrides = {}
    if cfg.data.get("mean") is None:
        overrides["mean"] = list(norm.mean)
    if cfg.data.get("std") is None:
        overrides["std"] = list(norm.std)
    if cfg.data.get("framing") is None:
        overrides["framing"] = norm.framing
    return instantiate(cfg.data, _convert_="all", **overrides)
