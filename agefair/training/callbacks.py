"""Training callbacks a recipe chooses in its config: weight averaging, smaller training images
in the first epochs. (Freezing a pretrained backbone is the system's own, in
:mod:`agefair.models.frozen`.)"""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch.nn.functional as F
from pytorch_lightning.callbacks import EMAWeightAveraging
from pytorch_lightning.trainer.states import TrainerFn

log = logging.getLogger(__name__)


class EMA(EMAWeightAveraging):
    """An exponential moving average of the weights, used for validation, checkpoints and tests.

    Checkpoints hold the averaged weights, so whatever loads one (testing, the app) gets them.
    A lever of the ablation (``ablation=ema``): with a one-cycle schedule, which already anneals
    the weights, the average lags a model that improves to the last step, and at CPU budgets
    it lost accuracy (``experiments/best_cpu``), so the default recipe leaves it out.

    Args:
        decay: weight of the running average per step.
    """

    def __init__(self, decay: float = 0.998) -> None:
        super().__init__(decay=decay)

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict
    ) -> None:
        # Only resuming a fit needs the live (non-averaged) weights back; Lightning's callback
        # would restore them for a test after the fit as well, testing the wrong model.
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)


class ProgressiveResize(pl.Callback):
    """Trains the first epochs on downscaled images, the rest at the full input size.

    A plain CNN with global pooling takes any input size, and a step on 48-px images costs
    about 60% of one on 64-px images, so the early epochs, where the learning rate is high and
    the network learns coarse features, run faster; the last epochs, at a low learning rate,
    fit the full-size details the model is evaluated on. Validation, tests and inference always
    see full-size images.

    Args:
        size: side of the training images in the first epochs (pixels).
        share: share of ``max_epochs`` trained at ``size`` (0: none, 1: all).
    """

    def __init__(self, size: int = 48, share: float = 0.5) -> None:
        super().__init__()
        if size < 8 or not 0.0 <= share <= 1.0:
            raise ValueError(f"need size >= 8 and 0 <= share <= 1, got size={size}, share={share}")
        self.size = size
        self.share = share

    def small_epochs(self, trainer: pl.Trainer) -> int:
        """How many epochs are trained at ``size``."""
        if trainer.max_epochs is None or trainer.max_epochs < 0:
            raise ValueError("ProgressiveResize needs trainer.max_epochs to place its switch")
        return round(self.share * trainer.max_epochs)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        log.info(
            "Training images at %d px for the first %d epochs, then at full size",
            self.size,
            self.small_epochs(trainer),
        )

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: dict, batch_idx: int
    ) -> None:
        images = batch["image"]
        if trainer.current_epoch >= self.small_epochs(trainer) or images.shape[-1] <= self.size:
            return
        # The batch dict is the one the training step receives, so replacing its image
        # tensor is enough; antialiasing keeps the small images close to real low-res photos.
        batch["image"] = F.interpolate(
            images, size=(self.size, self.size), mode="bilinear", antialias=True
        )
