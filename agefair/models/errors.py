"""The error a model file raises: defined apart from the loaders, so that code which only catches
it (the app, the commands, the ONNX runtime) imports neither Lightning nor Hydra."""

from __future__ import annotations


class CheckpointError(RuntimeError):
    """A model file (a checkpoint or an exported model) that is missing, not agefair's, or does
    not fit what was asked of it."""
