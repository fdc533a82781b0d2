"""Training callbacks: freezing a pretrained backbone, then fine-tuning it."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BaseFinetuning
from torch.optim import Optimizer

log = logging.getLogger(__name__)


class FreezeBackbone(BaseFinetuning):
    """Keeps the system's backbones frozen for the first ``unfreeze_at_epoch`` epochs.

    Heads first learn on fixed pretrained features; then the backbone is unfrozen. The backbone
    already sits in the optimizer in its own parameter group with a lower learning rate
    (``backbone_lr_factor`` of the system), so the learning-rate schedule covers it from the
    start and unfreezing only turns its gradients on.
    """

    def __init__(self, unfreeze_at_epoch: int = 2, train_bn: bool = False) -> None:
        super().__init__()
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.train_bn = train_bn

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        if self.unfreeze_at_epoch > 0:
            self.freeze(pl_module.backbones(), train_bn=self.train_bn)

    def finetune_function(
        self, pl_module: pl.LightningModule, epoch: int, optimizer: Optimizer
    ) -> None:
        if epoch == self.unfreeze_at_epoch and self.unfreeze_at_epoch > 0:
            self.make_trainable(pl_module.backbones())
            log.info("Epoch %d: backbone unfrozen", epoch)
