"""agefair: age, gender and ethnicity from face photos, compared honestly.

    from agefair import UTKFaceDataModule, MultiTaskModule, JointModule, SeparateModule
    from agefair import create_backbone, load_system, Predictor

Names are imported on first use, so ``import agefair`` stays cheap for the command line.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "UTKFaceDataModule": "agefair.data.datamodule",
    "build_transform": "agefair.data.transforms",
    "create_backbone": "agefair.models.backbones",
    "list_backbones": "agefair.models.backbones",
    "MultiTaskModule": "agefair.models.multitask",
    "MultiTaskNet": "agefair.models.multitask",
    "JointModule": "agefair.models.joint",
    "JointNet": "agefair.models.joint",
    "SeparateModule": "agefair.models.separate",
    "load_system": "agefair.models.checkpoint",
    "Predictor": "agefair.inference.predictor",
    "create_detector": "agefair.inference.detect",
    "measure_complexity": "agefair.training.complexity",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'agefair' has no attribute {name!r}")
