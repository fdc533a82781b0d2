"""Backbones, heads and the LightningModule systems built from them."""
