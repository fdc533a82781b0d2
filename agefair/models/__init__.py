"""The networks and the LightningModule systems built from them.

Backbones come from one registry (:mod:`~agefair.models.backbones`) and keep one contract
(:mod:`~agefair.models.backbone`): images to pooled features, with the input they expect. Heads
(:mod:`~agefair.models.heads`) sit on any backbone; the systems (multitask, joint, separate) share
one base (:mod:`~agefair.models.base`) that owns the losses, metrics, logging, test-time views
and optimisers, so every system is trained and measured alike. :mod:`~agefair.models.checkpoint`
rebuilds any system from its checkpoint. Models know the data layer and the metrics, never the
training, evaluation or inference code.
"""
