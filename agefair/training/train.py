"""Train a system on UTKFace, then test its best checkpoint.

    python -m agefair.train                                   # the default experiment
    python -m agefair.train trainer.fast_dev_run=true         # one batch of each loop
    python -m agefair.train ckpt_path=outputs/.../last.ckpt   # resume
    python -m agefair.train -m model=multitask,separate       # a sweep

A sweep run again with the same command and ``hydra.sweep.dir`` trains only the members that have
no ok results row yet (``skip_finished``), and a member that was stopped part-way goes on from its
``last.ckpt``: a long sweep can be stopped and resumed at any time, losing at most an epoch.
The run folder (printed at the start) gets TensorBoard logs, checkpoints, ``metrics.json``,
per-group CSVs, confusion matrices and a one-row ``results.csv`` (see
``agefair.training.results``).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from agefair.config import CONF_DIR
from agefair.metrics.tasks import combined_objective
from agefair.models.base import AgeFairModule
from agefair.models.checkpoint import CheckpointError, read_checkpoint
from agefair.training.build import build_datamodule, build_system, run_config
from agefair.training.complexity import measure_complexity
from agefair.training.results import (
    NOT_TRAINED,
    config_hash,
    format_group_table,
    read_ok_row,
    trains_alike,
    without_keys,
    write_results_row,
    write_split_outputs,
)

log = logging.getLogger(__name__)


def naive_baselines(datamodule: pl.LightningDataModule) -> dict[str, float]:
    """What label statistics alone reach on the test split: the floor any model must clear.

    Predicting the training split's mean age for everyone, and its most common gender and race.
    """
    train, test = datamodule.split_table("train"), datamodule.split_table("test")
    return {
        "baseline_age_mae_train_mean": float((test["age"] - train["age"].mean()).abs().mean()),
        "baseline_gender_acc_majority": float((test["gender"] == train["gender"].mode()[0]).mean()),
        "baseline_race_acc_majority": float((test["race"] == train["race"].mode()[0]).mean()),
    }


def pretrained_from(model: AgeFairModule) -> str:
    """The backbones that started from pretrained weights, by registry name ("" for none)."""
    names = [b.name for b in model.backbones() if getattr(b, "pretrained", False)]
    return ",".join(n for n in names if n != "fused")  # a fused one is pretrained via its part


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def score_unseen_faces(
    model: AgeFairModule, cfg: DictConfig, out_dir: Path, logger: Any
) -> dict[str, Any]:
    """Scores the tested model on ``data.unseen`` through the app's path
    (:mod:`agefair.evaluation.unseen`), logs ``unseen/...`` to TensorBoard and prints the figures;
    {} when it cannot be scored."""
    from agefair.evaluation.unseen import score_unseen, summary_line
    from agefair.inference.model_files import (
        ModelFileError,  # the inference stack, only when asked for
    )
    from agefair.inference.predictor import Predictor

    try:
        predictor = Predictor.for_system(model, cfg.data)
    except ModelFileError as err:
        # The trained model is kept: a missing detector file must not lose the run.
        log.error("Unseen faces not scored: %s", err)
        return {}
    metrics = score_unseen(
        predictor,
        cfg.data.unseen,
        out_dir,
        limit=cfg.data.get("unseen_limit"),
        detections=cfg.paths.get("detections"),
        progress=_shows_progress(model),
    )
    log.info("Unseen faces (%s): %s", cfg.data.unseen, summary_line(metrics))
    if isinstance(logger, pl.loggers.Logger):
        logger.log_metrics({f"unseen/{k}": v for k, v in metrics.items() if _is_number(v)})
    return metrics


def _shows_progress(model: AgeFairModule) -> bool:
    """Whether the run shows progress bars: a sweep's log (callbacks.progress.refresh_rate=0)
    gets no bar from the unseen scoring either."""
    bar = model._trainer.progress_bar_callback if model._trainer is not None else None
    return bar is not None and not getattr(bar, "is_disabled", False)


def training_machine(trainer: pl.Trainer) -> str:
    """Where a run trained, for its results row: a report says which rows ran where."""
    text = f"{platform.machine()}, {os.cpu_count()} CPU cores"
    device = trainer.strategy.root_device
    if device.type == "cuda":
        text += f", {torch.cuda.get_device_name(device)} x{trainer.num_devices}"
    return text


def torch_threads(cfg: DictConfig) -> int | None:
    """The run's torch threads: ``threads`` if set; for a member of a sweep whose launcher runs
    ``n_jobs`` members at once (joblib), the cores shared between them; else torch's default."""
    if cfg.get("threads"):
        return int(cfg.threads)
    if not HydraConfig.initialized():
        return None
    launcher = HydraConfig.get().launcher
    jobs = launcher.get("n_jobs") if "joblib" in str(launcher.get("_target_", "")) else None
    if not jobs:
        return None
    cores = os.cpu_count() or 1
    members = cores if jobs < 0 else min(int(jobs), cores)  # joblib: -1 is a member per core
    return max(1, cores // members)


def launch_ranks_as_this_member(trainer: pl.Trainer) -> None:
    """Makes a member of a multirun start its other DDP ranks as itself.

    Lightning's DDP launcher starts the other ranks with this process's command line and
    ``hydra.run.dir``, the way Lightning documents for Hydra; under ``-m`` that command line is
    the whole sweep, and each rank would start one of its own. The member's own overrides and
    folder are given to the launcher instead (:func:`own_process_group` puts the command line
    back). Nothing changes for one process or outside a multirun.
    """
    if trainer.world_size == 1 or not HydraConfig.initialized():
        return
    if HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    hydra_cfg = HydraConfig.get()
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
    with read_write(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir


#: What Lightning's DDP launcher leaves in the environment of the process that starts the ranks.
_LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextmanager
def own_process_group() -> Iterator[None]:
    """Leaves no DDP state behind a run: its process group is closed and the environment and
    command line the launcher used are restored, so that the next member of a sweep, in the
    same process, starts its own ranks instead of waiting for the last member's."""
    saved = {key: os.environ.get(key) for key in _LAUNCHER_ENV}
    argv = list(sys.argv)
    try:
        yield
    finally:
        sys.argv = argv
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def fit_and_test(cfg: DictConfig) -> dict[str, Any]:
    """Fits, tests the best checkpoint, writes the run outputs; returns the results row."""
    threads = torch_threads(cfg)
    if threads:
        torch.set_num_threads(threads)
    pl.seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.paths.output_dir)

    model = build_system(cfg)
    datamodule = build_datamodule(cfg, model)
    # A callback set to null (``callbacks.ema=null``) is switched off.
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)

    img = cfg.data.img_size
    costs = measure_complexity(model, (3, img, img))
    log.info("Model: %s", json.dumps(costs))
    log.info("Pretrained weights: %s", pretrained_from(model) or "none, trained from scratch")

    start = time.perf_counter()
    launch_ranks_as_this_member(trainer)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    train_time = time.perf_counter() - start

    row: dict[str, Any] = {
        "status": "ok",
        "system": type(model).__name__,
        "model": HydraConfig.get().runtime.choices.get("model"),
        "ablation": HydraConfig.get().runtime.choices.get("ablation"),
        "transfer": HydraConfig.get().runtime.choices.get("transfer"),
        "experiment": HydraConfig.get().runtime.choices.get("experiment"),
        "backbone": ",".join(b.name for b in model.backbones()),
        "pretrained": any(getattr(b, "pretrained", False) for b in model.backbones()),
        "pretrained_from": pretrained_from(model),
        "age_head": OmegaConf.select(cfg, "model.net.age_head", default=None),
        "img_size": img,
        "framing": datamodule.framing,
        "seed": cfg.seed,
        "threads": torch.get_num_threads(),
        "machine": training_machine(trainer),
        **costs,
        # Over every process that trained it, when it resumed a stopped run (NaN: unknown).
        "train_time_s": round(model.earlier_fit_seconds + train_time, 1),
        "epochs": trainer.current_epoch,
        "examples_seen": int(model.examples_seen),
        "config_hash": config_hash(model.config),
        "overrides": member_overrides(),
        "output_dir": str(out_dir),
    }
    row.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")})
    if "val/age_mae" in row:
        row["val/objective"] = combined_objective(row)
    if cfg.get("test"):
        ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        trainer.test(model, datamodule=datamodule, ckpt_path=ckpt or None)
        log.info("Tested checkpoint: %s", ckpt or "(the final weights)")
    if not trainer.is_global_zero:
        return row  # the other ranks' share ends with the test; rank zero writes the outputs
    if cfg.get("test"):
        metrics = write_split_outputs(out_dir, "test", model.results["test_predictions"])
        metrics.update(naive_baselines(datamodule))
        row["checkpoint"] = ckpt
        row.update({f"test/{k}": v for k, v in metrics.items() if not k.endswith("_ci")})
        log.info("Per-group test metrics:\n%s", format_group_table(model.results["test_groups"]))
        log.info("Test metrics: %s", json.dumps({k: metrics[k] for k in sorted(metrics)}))
        if datamodule.hparams.unseen:
            unseen = score_unseen_faces(model, cfg, out_dir, trainer.logger)
            row.update({f"unseen/{k}": v for k, v in unseen.items() if _is_number(v)})
            metrics.update({f"unseen/{k}": v for k, v in unseen.items()})
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if model.history:
        pd.DataFrame(model.history).to_csv(out_dir / "history.csv", index=False)
    if "val_predictions" in model.results:
        write_split_outputs(out_dir, "val", model.results["val_predictions"])
    if isinstance(trainer.logger, pl.loggers.TensorBoardLogger):
        hp = {k: v for k, v in row.items() if isinstance(v, (int, float, str)) and "/" not in k}
        trainer.logger.log_hyperparams(hp, {k: v for k, v in row.items() if "/" in k})
    write_results_row(out_dir, row)
    return row


def member_overrides() -> str:
    """The command-line overrides of this run, as its results row records them."""
    return " ".join(HydraConfig.get().overrides.task) if HydraConfig.initialized() else ""


def member_settings(overrides: str) -> list[str]:
    """A member's overrides as a sorted list, less those that train alike
    (:func:`~agefair.training.results.trains_alike`): equal for one member run again however
    its command was written."""
    return sorted(o for o in overrides.split() if not trains_alike(o))


def finished_row(out_dir: Path, overrides: str) -> dict[str, Any] | None:
    """The results row a member already wrote in ``out_dir`` with the same ``overrides`` (in any
    order; :func:`member_settings`) and status ``ok``; None when it has to train (no row, a
    failed one, or another member's)."""
    row = read_ok_row(out_dir)
    if row is None:
        return None
    if member_settings(str(row.get("overrides"))) != member_settings(overrides):
        return None
    return row


#: Settings that do not change what a run learns: a checkpoint written under other values of
#: these is still the same run's, so a stopped member resumes from it.
NOT_LEARNED = ("ckpt_path", "skip_finished", "callbacks.model_checkpoint", *NOT_TRAINED)


def stopped_checkpoint(out_dir: Path, cfg: DictConfig) -> Path | None:
    """``out_dir``'s ``checkpoints/last.ckpt`` when it was written by this same run (equal
    settings, :data:`NOT_LEARNED` aside) and stopped before it finished; None otherwise."""
    path = out_dir / "checkpoints" / "last.ckpt"
    if not path.is_file():
        return None
    try:
        stored = read_checkpoint(path)["agefair"]["config"]
    except CheckpointError as err:
        log.warning("%s cannot be resumed (%s): the member trains from the start", path, err)
        return None
    theirs, ours = (config_hash(without_keys(c, NOT_LEARNED)) for c in (stored, run_config(cfg)))
    if theirs != ours:
        log.warning("%s was trained with other settings: the member trains from the start", path)
        return None
    return path


def _objective(cfg: DictConfig, row: dict[str, Any]) -> float | None:
    value = row.get(cfg.get("optimized_metric") or "")
    return float(value) if _is_number(value) else None


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns ``cfg.optimized_metric`` for sweepers."""
    if cfg.get("skip_finished") and HydraConfig.get().mode == RunMode.MULTIRUN:
        out_dir = Path(cfg.paths.output_dir)
        done = finished_row(out_dir, member_overrides())
        if done is not None:
            log.info("Member already finished in %s (results.csv ok): not trained again", out_dir)
            return _objective(cfg, done)
        if cfg.get("ckpt_path") is None and (stopped := stopped_checkpoint(out_dir, cfg)):
            log.info("Member stopped part-way: resumed from %s", stopped)
            with open_dict(cfg):
                cfg.ckpt_path = str(stopped)
    try:
        with own_process_group():
            row = fit_and_test(cfg)
    except Exception as err:
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            raise
        # In a sweep one failing member must not stop the others: record it and go on.
        log.exception("Run failed")
        out_dir = Path(cfg.paths.output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_results_row(
            out_dir,
            {
                "status": "failed",
                "model": HydraConfig.get().runtime.choices.get("model"),
                "error": f"{type(err).__name__}: {err}",
                "overrides": member_overrides(),
                "output_dir": str(out_dir),
            },
        )
        (out_dir / "error.txt").write_text(traceback.format_exc())
        return None  # sweepers record the member as failed (Optuna: a failed trial)
    # A member that failed before and was run again leaves no stale error beside its results.
    (Path(cfg.paths.output_dir) / "error.txt").unlink(missing_ok=True)
    return _objective(cfg, row)


if __name__ == "__main__":
    main()
