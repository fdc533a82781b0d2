"""Loading any agefair checkpoint back into its system, with errors a person can act on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from agefair.models.base import AgeFairModule

#: Modules that moved, old prefix -> new: a checkpoint's stored config names classes by their
#: import path, so a checkpoint written before a move still names the old one.
MOVED_TARGETS = {
    "agefair.callbacks.": "agefair.training.callbacks.",
}


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, not agefair's, or does not fit the system asked for."""


def _no_downloads(node: Any) -> None:
    """Sets every ``pretrained`` flag to False: the weights come from the checkpoint itself."""
    if isinstance(node, DictConfig):
        for key in list(node.keys()):
            if key == "pretrained":
                node[key] = False
            elif key == "weights_path":
                node[key] = None
            else:
                _no_downloads(node[key])


def moved_targets(node: Any) -> None:
    """Rewrites, in place, every ``_target_`` under ``node`` that names a module before a move
    (:data:`MOVED_TARGETS`)."""
    if isinstance(node, DictConfig):
        for key in list(node.keys()):
            value = node._get_node(key)._value()
            if key == "_target_" and isinstance(value, str):
                for old, new in MOVED_TARGETS.items():
                    if value.startswith(old):
                        node[key] = new + value.removeprefix(old)
            else:
                moved_targets(node[key])
    elif isinstance(node, ListConfig):
        for item in node:
            moved_targets(item)


def load_system(
    path: str | Path, expect_system: str | None = None
) -> tuple[AgeFairModule, DictConfig]:
    """Rebuilds the system a checkpoint was trained with and loads its weights.

    Args:
        path: a ``.ckpt`` written by ``agefair.train``.
        expect_system: class name the caller needs (e.g. ``MultiTaskModule``); ``None`` accepts any.

    Returns:
        The system in eval mode and the training config stored in the checkpoint.

    Raises:
        CheckpointError: missing file, a checkpoint not written by agefair, a different system
            than expected, or weights that do not fit the stored config.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train one with `make train`")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    meta = ckpt.get("agefair") if isinstance(ckpt, dict) else None
    if not meta or not meta.get("config"):
        raise CheckpointError(
            f"{path} is not an agefair checkpoint (no stored config); use one written by "
            "`python -m agefair.train`"
        )
    system = meta["system"]
    if expect_system and expect_system != system:
        raise CheckpointError(f"{path} holds a {system}, not the {expect_system} asked for")
    cfg = OmegaConf.create(meta["config"])
    moved_targets(cfg)
    _no_downloads(cfg.model)
    if "data" in cfg and "framing" not in cfg.data:
        # Written before faces were cut to a backbone's framing: they were all cut as UTKFace's.
        with open_dict(cfg):
            cfg.data.framing = 1.0
    model: AgeFairModule = instantiate(cfg.model, _convert_="all")
    if type(model).__name__ != system:
        raise CheckpointError(
            f"{path} holds a {system} but its config builds a {type(model).__name__}"
        )
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"weights in {path} do not fit its {system} config: {err}") from err
    model.config = meta["config"]
    return model.eval(), cfg
