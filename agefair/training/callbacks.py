"""Training callbacks: freezing a pretrained backbone, then fine-tuning it; weight averaging;
smaller training images in the first epochs."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import BaseFinetuning, EMAWeightAveraging
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from agefair.data.datamodule import FaceDataset

log = logging.getLogger(__name__)


@torch.no_grad()
def plain_training_features(
    trainer: pl.Trainer,
    pl_module: pl.LightningModule,
    network: nn.Module,
    features: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``network``'s features of every training image without augmentation, in the training
    set's order (a batch's ``index`` picks its rows): what a frozen network gives each epoch.
    ``features`` computes them in place of calling ``network`` (which is put in eval mode)."""
    dm = trainer.datamodule
    train = dm.datasets["train"]
    plain = FaceDataset(train.images, train.table, dm.transform("val"))
    loader = DataLoader(plain, batch_size=dm.hparams.batch_size, num_workers=0)
    was_training = network.training
    network.eval()
    features = features or network
    feats = [
        features(pl_module._prepare(b["image"].to(pl_module.device)))
        for b in tqdm(loader, desc="Frozen features", leave=False)
    ]
    network.train(was_training)
    log.info("Computed frozen features of %d training images once", len(plain))
    return torch.cat(feats)


class FreezeBackbone(BaseFinetuning):
    """Keeps the system's backbones frozen for the first ``unfreeze_at_epoch`` epochs.

    Heads first learn on fixed pretrained features; then the backbone is unfrozen. The backbone
    already sits in the optimizer in its own parameter group with a lower learning rate
    (``backbone_lr_factor`` of the system), so the learning-rate schedule covers it from the
    start and unfreezing only turns its gradients on.
    """

    def __init__(
        self, unfreeze_at_epoch: int = 2, train_bn: bool = False, cache_features: bool = False
    ) -> None:
        super().__init__()
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.train_bn = train_bn
        self.cache_features = cache_features

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        frozen = trainer.current_epoch < self.unfreeze_at_epoch
        if not hasattr(pl_module, "cached_features"):
            return  # systems without a single backbone + heads split run the frozen forward
        if frozen and self.cache_features and pl_module.cached_features is None:
            pl_module.cached_features = self._features(trainer, pl_module)
        elif not frozen:
            pl_module.cached_features = None

    @staticmethod
    def _features(trainer: pl.Trainer, pl_module: pl.LightningModule) -> torch.Tensor:
        """Backbone features of every training image, computed once without augmentation.

        A frozen backbone gives the same features every epoch, so the heads can train on them
        at a fraction of the cost (VGG-16 runs ~2 images/s at 224 px on two cores).
        """
        return plain_training_features(trainer, pl_module, pl_module.net.backbone)

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        if self.unfreeze_at_epoch > 0:
            self.freeze(pl_module.backbones(), train_bn=self.train_bn)

    def finetune_function(
        self, pl_module: pl.LightningModule, epoch: int, optimizer: Optimizer
    ) -> None:
        if epoch == self.unfreeze_at_epoch and self.unfreeze_at_epoch > 0:
            self.make_trainable(pl_module.backbones())
            log.info("Epoch %d: backbone unfrozen", epoch)


class EMA(EMAWeightAveraging):
    """An exponential moving average of the weights, used for validation, checkpoints and tests.

    Checkpoints hold the averaged weights, so whatever loads one (testing, the app) gets them.
    A lever of the ablation (``ablation=full``): with a one-cycle schedule, which already anneals
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
