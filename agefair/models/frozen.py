"""Frozen networks in training: a pretrained backbone kept frozen for the first epochs, and the
features a frozen network gives every training image, computed once.

Systems configure :class:`FreezeBackbone` themselves (``freeze_backbone_epochs``), so it sits
with the models rather than with the callbacks a recipe picks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BaseFinetuning
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
