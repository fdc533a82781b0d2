"""The logic every system shares: inference with flip averaging, metrics, logging, optimizers.

A system subclasses :class:`AgeFairModule` and provides two things: ``forward(images)`` returning
a dict with ``age`` (years) and ``gender_logits`` / ``race_logits`` (or ``gender_p`` /
``race_p`` when it produces probabilities directly), and ``compute_loss(out, batch)`` returning a
dict of losses with the total under ``loss``. Everything else lives here, so every system is
trained, evaluated and logged the same way.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn
from torchmetrics import MeanMetric

from agefair.labels import RACES
from agefair.metrics.groups import flat_group_metrics, group_gaps, group_table
from agefair.metrics.tasks import HIGHER_IS_BETTER, TaskMetrics
from agefair.models.backbone import Backbone, InputConfig
from agefair.models.frozen import FreezeBackbone
from agefair.models.tta import view_count, views

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def probabilities(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Gender and race probabilities from a system's raw outputs."""
    res = {}
    for task in ("gender", "race"):
        res[f"{task}_p"] = (
            out[f"{task}_p"] if f"{task}_p" in out else out[f"{task}_logits"].float().softmax(-1)
        )
    return res


def prediction_frame(
    batch: dict, pred: dict[str, torch.Tensor], index: bool = False
) -> pd.DataFrame:
    """One row per image: true labels, predictions and their confidences (for group metrics)."""

    def numpy(t: torch.Tensor):
        return t.detach().float().cpu().numpy() if t.is_floating_point() else t.cpu().numpy()

    # With ``index``: the dataset index of each row, to put rows gathered from ranks in order.
    index = {"index": numpy(torch.as_tensor(batch["index"]))} if index and "index" in batch else {}
    return pd.DataFrame(
        {
            **index,
            "age": numpy(batch["age"]),
            "gender": numpy(batch["gender"]),
            "race": numpy(batch["race"]),
            "age_pred": numpy(pred["age"]),
            "gender_pred": numpy(pred["gender_p"].argmax(-1)),
            "race_pred": numpy(pred["race_p"].argmax(-1)),
            "gender_p": numpy(pred["gender_p"].max(-1).values),
            "race_p": numpy(pred["race_p"].max(-1).values),
        }
    )


#: What ``race_prior`` may be (see :class:`AgeFairModule`).
RACE_PRIORS = ("training", "uniform")


def race_log_prior(counts: np.ndarray) -> torch.Tensor:
    """Log share of each race given its count of faces; a race without faces counts as one."""
    counts = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    return torch.as_tensor(np.log(counts / counts.sum()), dtype=torch.float32)


def checked_race_prior(race_prior: str) -> str:
    """``race_prior`` if it is one of :data:`RACE_PRIORS`.

    Raises:
        ValueError: It is not.
    """
    if race_prior not in RACE_PRIORS:
        raise ValueError(f"race_prior must be one of {RACE_PRIORS}, got {race_prior!r}")
    return race_prior


def _race_prior_unknown_before_saved(
    module: nn.Module, state_dict: dict, prefix: str, *args: Any
) -> None:
    """Loads checkpoints written before ``race_log_prior`` was saved: their prior is unknown
    (NaN), which ``race_prior=training`` never reads and ``uniform`` refuses."""
    key = f"{prefix}race_log_prior"
    if key not in state_dict:
        state_dict[key] = torch.full((len(RACES),), math.nan)


def race_class_weights(counts: np.ndarray, power: float) -> torch.Tensor:
    """Weights ``n_c ** -power`` per race given its count of faces, scaled so the average
    training image weighs 1; a race without faces weighs nothing."""
    counts = np.asarray(counts, dtype=np.float64)
    weights = np.where(counts > 0, np.maximum(counts, 1) ** -power, 0.0)
    weights *= counts.sum() / (weights * counts).sum()
    return torch.as_tensor(weights, dtype=torch.float32)


class AgeFairModule(pl.LightningModule):
    """Base LightningModule for age / gender / race systems.

    Args:
        lr: peak learning rate.
        weight_decay: AdamW weight decay (not applied to norms and biases).
        scheduler: ``onecycle``, ``cosine`` or ``none``.
        warmup: share of steps spent warming up (``onecycle``).
        loss_weights: weight of each task's loss in the total.
        tta_flip: average predictions over the image and its mirror at evaluation.
        tta_scales: also average over the image zoomed by each of these factors (1.06 a little
            closer, 0.94 a little farther), each with its mirror if ``tta_flip``. Used by tests,
            evaluation and inference; the validation epochs of a fit keep to the flip, since
            their cost counts against the training budget.
        channels_last: NHWC memory layout, faster for small CNNs on CPU.
        backbone_lr_factor: learning rate of the backbone relative to ``lr`` (below 1 when
            fine-tuning a pretrained backbone).
        freeze_backbone_epochs: keep the backbone frozen for this many epochs, then fine-tune.
        cache_frozen_features: while the backbone is frozen, compute its features of the
            training images once and train the heads on them (see ``FreezeBackbone``).
        race_weighting: exponent ``p`` of the race loss's class weights, ``n_c ** -p`` for a
            race with ``n_c`` training images (0: unweighted, 0.5: inverse square root, 1:
            inverse frequency). Raises the recall of rare races, "Others" above all.
        race_prior: how likely each race is before the face is seen, in the race
            probabilities the system reports: ``training`` (the training split's mix, what the
            loss learned, less what ``race_weighting`` takes off) or ``uniform`` (every race
            alike: the learned probabilities divided by the prior they carry,
            ``n_c ** (1 - p)``, and renormalised). The loss is the same either way; only the
            reported probabilities and decisions differ.
    """

    def __init__(
        self,
        lr: float = 3e-3,
        weight_decay: float = 0.05,
        scheduler: str = "onecycle",
        warmup: float = 0.15,
        loss_weights: dict[str, float] | None = None,
        tta_flip: bool = True,
        tta_scales: Sequence[float] = (),
        channels_last: bool = True,
        backbone_lr_factor: float = 1.0,
        freeze_backbone_epochs: int = 0,
        cache_frozen_features: bool = False,
        race_weighting: float = 0.0,
        race_prior: str = "training",
    ) -> None:
        super().__init__()
        # Collects the arguments of every __init__ up the class hierarchy (the system's and
        # this one's); the network is a module, saved in the state dict instead.
        self.save_hyperparameters(ignore=["net", "nets"])
        if scheduler not in ("onecycle", "cosine", "none"):
            raise ValueError(f"scheduler must be onecycle, cosine or none, got {scheduler!r}")
        checked_race_prior(race_prior)
        self.loss_weights = {"age": 1.0, "gender": 1.0, "race": 1.0, **(loss_weights or {})}
        # one torchmetrics object per split, as attributes so Lightning moves them with the model
        self.train_metrics, self.val_metrics, self.test_metrics = (TaskMetrics() for _ in SPLITS)
        self.eval_loss = nn.ModuleDict({s: MeanMetric() for s in ("val", "test")})
        self.best: dict[str, float] = {}
        self.predictions: dict[str, list[pd.DataFrame]] = {"val": [], "test": []}
        self.results: dict[str, pd.DataFrame] = {}
        # One row per training epoch (train and val metrics): the learning curves.
        self.history: list[dict[str, float]] = []
        self._last_val: dict[str, float] = {}
        # Seconds of fitting before this process's, when it resumed a checkpoint; NaN when that
        # checkpoint did not record them.
        self.earlier_fit_seconds = 0.0
        self._fit_started: float | None = None
        self.register_buffer("examples_seen", torch.zeros((), dtype=torch.long))
        # Computed from the training split in setup(); not saved, so any checkpoint loads.
        self.register_buffer("race_class_weights", torch.ones(len(RACES)), persistent=False)
        # Log share of each race in the training split, set in setup() and saved, so a
        # checkpoint can report under either race_prior. Zeros until then (nothing to undo).
        self.register_buffer("race_log_prior", torch.zeros(len(RACES)))
        self.register_load_state_dict_pre_hook(_race_prior_unknown_before_saved)
        self.config: dict | None = None  # the build config, stored in checkpoints by train.py

    # ------------------------------------------------------------------ to implement
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def compute_loss(self, out: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @property
    def input_config(self) -> InputConfig:
        """Normalisation and input size of the (first) backbone."""
        for m in self.modules():
            if isinstance(m, Backbone):
                return m.input_config
        return InputConfig()

    # ------------------------------------------------------------------ inference
    @functools.cached_property
    def channels_last(self) -> bool:
        """Whether the NHWC layout is used: as configured, unless a pointwise convolution has
        fewer than 5 channels. oneDNN's channels-last backward of such a 1x1 convolution can
        hang forever (seen with torch 2.14 on AVX2 CPUs), so those tiny models stay NCHW.
        Computed once: the layers are fixed at construction and this runs in every step."""
        if not self.hparams.channels_last:
            return False
        return not any(
            isinstance(m, nn.Conv2d)
            and m.kernel_size == (1, 1)
            and min(m.in_channels, m.out_channels) < 5
            for m in self.modules()
        )

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    @torch.no_grad()
    def infer(
        self,
        images: torch.Tensor,
        tta_flip: bool | None = None,
        tta_scales: Sequence[float] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Predictions in the units people read: ``age`` (years), ``age_sd`` where the head has
        a spread, ``gender_p`` and ``race_p`` probabilities."""
        images = self._prepare(images)
        return self._readable(self(images), images, tta_flip, tta_scales)

    def use_views(
        self, tta_flip: bool | None = None, tta_scales: Sequence[float] | None = None
    ) -> None:
        """Replaces the test-time views this system averages, where given (``None`` keeps
        them): to score a checkpoint under other views than it was trained with."""
        if tta_flip is not None:
            self.hparams.tta_flip = bool(tta_flip)
        if tta_scales is not None:
            self.hparams.tta_scales = tuple(float(s) for s in tta_scales)

    def use_race_prior(self, race_prior: str | None) -> None:
        """Replaces the race prior the system reports under, where given (``None`` keeps it)."""
        if race_prior is None:
            return
        if checked_race_prior(race_prior) == "uniform" and torch.isnan(self.race_log_prior).any():
            raise ValueError(
                "race_prior=uniform needs the training split's race mix, which this checkpoint "
                "predates; keep race_prior=training or train it again"
            )
        self.hparams.race_prior = race_prior

    @property
    def view_count(self) -> int:
        """Forward passes per face at test time."""
        return view_count(self.hparams.tta_flip, self.hparams.tta_scales)

    def _readable(
        self,
        out: dict[str, torch.Tensor],
        images: torch.Tensor,
        tta_flip: bool | None = None,
        tta_scales: Sequence[float] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Raw outputs to readable predictions, averaged over the test-time views asked for
        (the system's own ``tta_flip`` and ``tta_scales`` unless given); ``out`` is the
        output on ``images`` themselves, the first view."""
        flip = self.hparams.tta_flip if tta_flip is None else tta_flip
        scales = self.hparams.tta_scales if tta_scales is None else tta_scales
        batch_views = views(images, flip, tuple(scales))
        next(batch_views)  # the images themselves: ``out``
        outputs = [out, *(self(self._prepare(view)) for view in batch_views)]
        res: dict[str, torch.Tensor] = {}
        for view in outputs:
            parts = {"age": view["age"].float(), **probabilities(view)}
            if "age_sd" in view:
                parts["age_sd"] = view["age_sd"].float()
            for k, v in parts.items():
                res[k] = res[k] + v / len(outputs) if k in res else v / len(outputs)
        if self.hparams.race_prior == "uniform":
            res["race_p"] = self._without_training_prior(res["race_p"])
        return res

    def _without_training_prior(self, race_p: torch.Tensor) -> torch.Tensor:
        """Race probabilities as if every race were equally common in training.

        A loss weighted by ``n_c ** -p`` learns probabilities proportional to
        ``n_c ** (1 - p) * likelihood``: dividing that prior out leaves the likelihood, each
        race alike beforehand (logit adjustment, Menon et al., ICLR 2021).
        """
        residual = 1.0 - float(self.hparams.race_weighting)
        adjusted = race_p * torch.exp(-residual * self.race_log_prior.to(race_p))
        return adjusted / adjusted.sum(-1, keepdim=True)

    def setup(self, stage: str) -> None:
        if self.channels_last:
            self.to(memory_format=torch.channels_last)
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if stage != "fit" or datamodule is None:
            return
        # Both from what training draws (equal counts under a balanced sampler), so that the
        # weights and the prior they leave over (see _without_training_prior) agree.
        counts = datamodule.training_race_counts()
        self.race_log_prior.copy_(race_log_prior(counts))
        if self.hparams.race_weighting:
            self.race_class_weights.copy_(race_class_weights(counts, self.hparams.race_weighting))
            weights = dict(zip(RACES, self.race_class_weights.tolist(), strict=True))
            log.info("Race loss weights: %s", weights)

    @property
    def class_weights(self) -> dict[str, torch.Tensor]:
        """Per-class loss weights by task, for the systems' ``task_losses``."""
        return {"race": self.race_class_weights} if self.hparams.race_weighting else {}

    # ------------------------------------------------------------------ training
    def training_forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """The forward pass of a training step; systems may serve it from cached features."""
        return self(self._prepare(batch["image"]))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self.training_forward(batch)
        losses = self.compute_loss(out, batch)
        # Every rank sees a batch this size at each step (DistributedSampler evens them out).
        self.examples_seen += batch["image"].shape[0] * self.world_size
        # The total per step (for the progress bar and curves); the parts per epoch only, since
        # every logged value costs a little in each step.
        self.log("train/loss", losses["loss"], on_step=True, on_epoch=True, prog_bar=True)
        parts = {f"train/{k}": v for k, v in losses.items() if k != "loss"}
        self.log_dict(parts, on_step=False, on_epoch=True)
        with torch.no_grad():
            self.train_metrics.update({"age": out["age"].detach(), **probabilities(out)}, batch)
        return losses["loss"]

    def on_train_epoch_end(self) -> None:
        train = self._log_split("train")
        self.log("trainer/examples_seen", self.examples_seen.float())
        self.log("trainer/epoch", float(self.current_epoch))
        # Lightning runs the epoch's validation before this hook, so both are at hand.
        self.history.append(
            {
                "epoch": self.current_epoch,
                "examples_seen": int(self.examples_seen),
                **{f"train/{k}": v for k, v in train.items()},
                **{f"val/{k}": v for k, v in self._last_val.items()},
            }
        )

    def _eval_step(self, split: str, batch: dict) -> None:
        images = self._prepare(batch["image"])
        out = self(images)
        self.eval_loss[split].update(self.compute_loss(out, batch)["loss"].detach())
        # Validation inside a fit keeps to the mirror: its cost counts against the training budget.
        fitting = self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING
        pred = self._readable(out, images, tta_scales=() if fitting else None)
        self.split_metrics(split).update(pred, batch)
        self.predictions[split].append(prediction_frame(batch, pred, index=True))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("test", batch)

    def on_validation_epoch_start(self) -> None:
        self.predictions["val"].clear()

    def on_test_epoch_start(self) -> None:
        self.predictions["test"].clear()

    def on_validation_epoch_end(self) -> None:
        values = self._log_split("val")
        if self.trainer.sanity_checking:
            return
        self._last_val = values
        for name, v in values.items():
            better = max if HIGHER_IS_BETTER.get(name, False) else min
            self.best[name] = better(self.best.get(name, v), v)
            self.log(f"val/{name}_best", self.best[name])
        self._log_groups("val")
        shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
        log.info(
            "Epoch %d (%d examples seen): val %s", self.current_epoch, self.examples_seen, shown
        )

    def on_test_epoch_end(self) -> None:
        self._log_split("test")
        self._log_groups("test")

    def split_metrics(self, split: str) -> TaskMetrics:
        return getattr(self, f"{split}_metrics")

    def _log_split(self, split: str) -> dict[str, float]:
        values = {k: float(v) for k, v in self.split_metrics(split).compute().items()}
        self.split_metrics(split).reset()
        if split in self.eval_loss:
            values["loss"] = float(self.eval_loss[split].compute())
            self.eval_loss[split].reset()
        self.log_dict({f"{split}/{k}": v for k, v in values.items()})
        return values

    def _log_groups(self, split: str) -> None:
        """Per-group metrics of a whole evaluation pass; kept in ``self.results`` for reports."""
        if not self.predictions[split]:
            return
        preds = self.gathered(pd.concat(self.predictions[split], ignore_index=True))
        table = group_table(preds)
        gaps = group_gaps(table)
        self.results[f"{split}_predictions"] = preds
        self.results[f"{split}_groups"] = table
        self.results[f"{split}_gaps"] = gaps
        flat = flat_group_metrics(table, gaps)
        # Straight to the logger: through self.log these would flood the console summary.
        if self.logger is not None and not self.trainer.sanity_checking:
            metrics = {f"{split}/{k}": float(v) for k, v in flat.items()}
            self.logger.log_metrics(metrics, step=self.global_step)

    @property
    def world_size(self) -> int:
        """Processes training together (1 outside distributed training)."""
        return self.trainer.world_size if self._trainer is not None else 1

    def gathered(self, preds: pd.DataFrame) -> pd.DataFrame:
        """Every rank's prediction rows, each image once, in the dataset's order.

        Under DDP each rank predicts its share of the split, and DistributedSampler repeats a
        few images to even the shares out: the rows are gathered from every rank and the
        repeats dropped by the dataset index, so group tables and metrics are the whole split's.
        """
        if self.world_size > 1:
            frames: list[pd.DataFrame | None] = [None] * self.world_size
            torch.distributed.all_gather_object(frames, preds)
            preds = pd.concat(frames, ignore_index=True)
        if "index" in preds:
            preds = preds.drop_duplicates("index").sort_values("index", kind="stable")
            preds = preds.drop(columns="index").reset_index(drop=True)
        return preds

    # ------------------------------------------------------------------ optimisation
    def backbones(self) -> list[Backbone]:
        """The system's backbones (several for ``SeparateModule``)."""
        return [m for m in self.modules() if isinstance(m, Backbone)]

    def configure_optimizers(self) -> Any:
        # Every parameter goes in, frozen ones too (AdamW skips parameters without gradients),
        # so unfreezing a backbone later needs no new parameter group and the schedule covers it.
        lr, weight_decay = self.hparams.lr, self.hparams.weight_decay
        # Each parameter's learning rate relative to lr; the outermost backbone's word counts
        # (modules() lists a backbone before the backbones inside it).
        factors: dict[int, float] = {}
        for backbone in self.backbones():
            for params, factor in backbone.lr_groups():
                for p in params:
                    factors.setdefault(id(p), self.hparams.backbone_lr_factor * factor)
        groups: dict[tuple[float, bool], list] = {}
        for p in self.parameters():
            groups.setdefault((factors.get(id(p), 1.0), p.dim() > 1), []).append(p)
        opt = torch.optim.AdamW(
            [
                {
                    "params": params,
                    "lr": lr * factor,
                    "weight_decay": weight_decay if decays else 0.0,
                }
                for (factor, decays), params in groups.items()
            ],
            lr=lr,
        )
        total = self.trainer.estimated_stepping_batches
        # No steps at all (limit_train_batches=0: an evaluation of the initial weights) or an
        # unknown count: a constant rate.
        if self.hparams.scheduler == "none" or not 1 <= total < float("inf"):
            return opt
        if self.hparams.scheduler == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt,
                max_lr=[g["lr"] for g in opt.param_groups],
                total_steps=int(total),
                pct_start=self.hparams.warmup,
            )
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def configure_callbacks(self) -> list[pl.Callback]:
        if self.hparams.freeze_backbone_epochs > 0:
            return [
                FreezeBackbone(
                    self.hparams.freeze_backbone_epochs,
                    cache_features=self.hparams.cache_frozen_features,
                )
            ]
        return []

    # ------------------------------------------------------------------ checkpoints
    def on_fit_start(self) -> None:
        self._fit_started = time.perf_counter()

    @property
    def fit_seconds(self) -> float:
        """Seconds spent fitting, over every process that resumed this run."""
        now = time.perf_counter() - self._fit_started if self._fit_started is not None else 0.0
        return self.earlier_fit_seconds + now

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        trainer = self._trainer
        if trainer is None or not trainer.training:
            return  # testing a checkpoint keeps this run's own curves
        # A resumed run goes on with its learning curves, best values and clock.
        meta = checkpoint.get("agefair") or {}
        self.history = list(meta.get("history", []))
        self.best = dict(meta.get("best", {}))
        self.earlier_fit_seconds = float(meta.get("fit_seconds", math.nan))
        # Resuming with a longer budget (a larger max_epochs) stretches the one-cycle schedule
        # to the new length instead of failing once the old step count is passed.
        total = trainer.estimated_stepping_batches
        for state in checkpoint.get("lr_schedulers", []):
            if "total_steps" in state and total and total != float("inf"):
                state["total_steps"] = max(int(total), state.get("last_epoch", 0) + 1)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["agefair"] = {
            "system": type(self).__name__,
            "config": self.config,
            "history": self.history,
            "best": self.best,
            "fit_seconds": self.fit_seconds,
        }
