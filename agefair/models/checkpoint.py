"""Loading any agefair checkpoint back into its system, with errors a person can act on.

A checkpoint is a file from anywhere (a download, a colleague, an upload to a server), so
opening one runs nothing it says: it is read with ``torch.load(weights_only=True)``, which
unpickles tensors and plain values only, and the classes its stored config names are checked
against :data:`ALLOWED_TARGETS`, agefair's own systems, networks and data module, before
anything is built.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from agefair.models.base import AgeFairModule
from agefair.models.errors import CheckpointError

# CheckpointError is part of this module's interface (``load_system`` raises it).
__all__ = [
    "ALLOWED_TARGETS",
    "CheckpointError",
    "check_targets",
    "load_system",
    "moved_targets",
    "read_checkpoint",
]

#: Modules that moved, old prefix -> new: a checkpoint's stored config names classes by their
#: import path, so a checkpoint written before a move still names the old one.
MOVED_TARGETS = {
    "agefair.callbacks.": "agefair.training.callbacks.",
}


#: What a checkpoint's stored config may build (its ``model`` and ``data`` nodes, the ones that
#: are instantiated from it): agefair's own systems, their networks, the backbone registry and
#: the data module. A new system adds its classes here; a test checks every config under
#: ``conf/model`` and ``conf/backbone`` against this list.
ALLOWED_TARGETS = frozenset(
    {
        "agefair.models.multitask.MultiTaskModule",
        "agefair.models.multitask.MultiTaskNet",
        "agefair.models.joint.JointModule",
        "agefair.models.joint.JointNet",
        "agefair.models.separate.SeparateModule.from_config",
        "agefair.models.backbones.create_backbone",
        "agefair.data.datamodule.UTKFaceDataModule",
    }
)
#: The nodes of a stored config that are instantiated from a checkpoint.
BUILT_NODES = ("model", "data")


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


def moved_targets(node: Any) -> Any:
    """A stored config (plain dicts and lists) with every ``_target_`` that names a module before
    a move (:data:`MOVED_TARGETS`) renamed to today's."""
    if isinstance(node, list):
        return [moved_targets(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: moved_targets(value) for key, value in node.items()}
    target = out.get("_target_")
    for old, new in MOVED_TARGETS.items():
        if isinstance(target, str) and target.startswith(old):
            out["_target_"] = new + target.removeprefix(old)
    return out


def targets(node: Any) -> list[str]:
    """Every ``_target_`` in a stored config (plain dicts and lists), as written."""
    if isinstance(node, list):
        return [t for item in node for t in targets(item)]
    if not isinstance(node, dict):
        return []
    own = [str(node["_target_"])] if "_target_" in node else []
    return own + [t for key, value in node.items() if key != "_target_" for t in targets(value)]


def check_targets(config: dict, where: str) -> None:
    """Refuses a stored config that would build anything outside :data:`ALLOWED_TARGETS`."""
    for name in BUILT_NODES:
        foreign = sorted({t for t in targets(config.get(name)) if t not in ALLOWED_TARGETS})
        if foreign:
            raise CheckpointError(
                f"{where}: its config would build {', '.join(foreign)}, which is not one of "
                "agefair's own classes; refused without building anything. Only checkpoints "
                "written by `python -m agefair.train` load"
            )


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The contents of an agefair checkpoint, read without running anything it holds.

    Raises:
        CheckpointError: a missing file, one that is not a torch file, one holding objects
            other than tensors and plain values, or one not written by ``agefair.train``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train one with `make train`")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch names the first object it would not unpickle: "... unsupported GLOBAL os.system"
        code = re.search(r"unsupported global[^\n]*", str(err), re.IGNORECASE)
        if code is None:
            raise CheckpointError(f"cannot read checkpoint {path}: not a torch file") from err
        raise CheckpointError(
            f"{path} holds objects other than tensors and plain values ({code.group(0)}); "
            "refused, since unpickling them could run code. Only checkpoints written by "
            "`python -m agefair.train` load"
        ) from err
    except Exception as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    meta = ckpt.get("agefair") if isinstance(ckpt, dict) else None
    if not meta or not meta.get("config"):
        raise CheckpointError(
            f"{path} is not an agefair checkpoint (no stored config); use one written by "
            "`python -m agefair.train`"
        )
    return ckpt


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
        CheckpointError: missing file, a checkpoint not written by agefair, one holding
            objects other than tensors and plain values, or a config naming classes outside
            :data:`ALLOWED_TARGETS`, a different system than expected, or weights that do not
            fit the stored config.
    """
    path = Path(path)
    ckpt = read_checkpoint(path)
    meta = ckpt["agefair"]
    system = meta["system"]
    if expect_system and expect_system != system:
        raise CheckpointError(f"{path} holds a {system}, not the {expect_system} asked for")
    config = moved_targets(meta["config"])
    check_targets(config, str(path))
    cfg = OmegaConf.create(config)
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
    model.config = config
    return model.eval(), cfg
