"""Which checkpoint a command uses when none is named, and a one-line description of one."""

from __future__ import annotations

import os
from pathlib import Path

from agefair.models.errors import CheckpointError

# CheckpointError is part of this module's interface: the app and the commands catch it here.
__all__ = [
    "CKPT_ENV_VAR",
    "CheckpointError",
    "NoCheckpointError",
    "default_checkpoint",
    "describe_checkpoint",
    "run_checkpoint",
]

#: Environment variable naming the checkpoint to use when none is passed.
CKPT_ENV_VAR = "AGEFAIR_CKPT"


class NoCheckpointError(CheckpointError):
    """No checkpoint was named and none was found under the outputs folder."""


def default_checkpoint(root: str | os.PathLike[str] = "outputs/train/runs") -> Path:
    """The checkpoint used when none is named.

    ``$AGEFAIR_CKPT`` if set; otherwise the newest run under ``root`` (where ``make train``
    writes; runs that finished, i.e. wrote ``results.csv``, come before unfinished ones), and in
    that run its best checkpoint (``epoch*.ckpt``, what ``ModelCheckpoint`` keeps) or else
    ``last.ckpt``.

    Args:
        root: Folder holding the training outputs.

    Returns:
        Path of an existing checkpoint file.

    Raises:
        NoCheckpointError: If ``$AGEFAIR_CKPT`` names a missing file, or ``root`` holds no
            checkpoint; the message says how to get one.
    """
    env = os.environ.get(CKPT_ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise NoCheckpointError(f"{CKPT_ENV_VAR}={env} but that file does not exist")
        return path
    root = Path(root)
    runs: dict[Path, list[Path]] = {}
    if root.is_dir():
        for ckpt in root.rglob("*.ckpt"):
            if ckpt.is_file():
                runs.setdefault(ckpt.parent, []).append(ckpt)
    if not runs:
        raise NoCheckpointError(
            f"no checkpoint found under {root.resolve()}/: train one with `make train` "
            f"(or `python -m agefair.train`), or name one with --ckpt PATH or {CKPT_ENV_VAR}"
        )

    def finished(files: list[Path]) -> bool:
        return (files[0].parent.parent / "results.csv").is_file()

    newest_run = max(runs.values(), key=lambda files: (finished(files), max(map(_mtime, files))))
    return _kept_checkpoint(newest_run)


def _mtime(path: Path) -> float:
    return path.stat().st_mtime


def _kept_checkpoint(files: list[Path]) -> Path:
    """Of one run's checkpoint files, the best one ``ModelCheckpoint`` kept, else the last."""
    best = [p for p in files if p.name.startswith("epoch")]
    last = [p for p in files if p.name == "last.ckpt"]
    return max(best or last or files, key=_mtime)


def run_checkpoint(run_dir: str | os.PathLike[str]) -> Path:
    """The checkpoint of one run folder that :func:`default_checkpoint` would pick in it.

    Raises:
        NoCheckpointError: If the folder holds no checkpoint.
    """
    files = [p for p in Path(run_dir).rglob("*.ckpt") if p.is_file()]
    if not files:
        raise NoCheckpointError(f"{run_dir} holds no checkpoint")
    return _kept_checkpoint(files)


#: Override prefixes that say where files are, not what was trained.
_PLACE_OVERRIDES = ("paths.", "hydra.", "callbacks.progress.", "data.data_dir", "data.archive")


def describe_checkpoint(path: str | os.PathLike[str]) -> str:
    """What trained a checkpoint, in words that mean something on another machine.

    Reads the Hydra record of the run the checkpoint belongs to (``<run>/.hydra``, written by
    ``agefair.train``), e.g. ``epoch015.ckpt of run default16: python -m agefair.train (default
    configuration; cnn backbone, 64 px, 16 epochs)``. Overrides that only place files are left
    out. Without that record, just the file name.

    Args:
        path: A checkpoint file.

    Returns:
        One line of text.
    """
    path = Path(path)
    run = path.parent.parent
    record = run / ".hydra"
    if not (record / "config.yaml").is_file():
        return f"{path.name}"
    from omegaconf import OmegaConf  # already loaded by load_system in practice

    cfg = OmegaConf.load(record / "config.yaml")
    overrides = []
    if (record / "overrides.yaml").is_file():
        overrides = [
            str(o)
            for o in OmegaConf.load(record / "overrides.yaml")
            if not str(o).startswith(_PLACE_OVERRIDES)
        ]
    what = f"overrides {' '.join(overrides)}" if overrides else "default configuration"
    backbone = OmegaConf.select(cfg, "backbone.name", default="?")
    size = OmegaConf.select(cfg, "data.img_size", default="?")
    epochs = OmegaConf.select(cfg, "trainer.max_epochs", default="?")
    return (
        f"{path.name} of run {run.name}: python -m agefair.train ({what}; {backbone} backbone, "
        f"{size} px, {epochs} epochs)"
    )
