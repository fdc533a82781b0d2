"""Where agefair's Hydra configs live: every entry point composes from this one folder.

The folder is inside the package (``agefair/conf``, shipped in the wheel), so an installed
agefair trains and evaluates as a checkout does; ``conf/`` at the top of a checkout points at it.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

#: ``agefair/conf``. An absolute path, so that Hydra finds it by file whichever module an entry
#: point's ``main`` is imported from.
CONF_DIR = str(Path(__file__).resolve().parent / "conf")


def existing_dir(path: str) -> str:
    """``path``, created if missing: for settings that name a file in a folder nothing has
    made yet (the Optuna search's database in its sweep folder, before any trial runs)."""
    Path(path).mkdir(parents=True, exist_ok=True)
    return path


# ``${agefair.dir:PATH}`` in a config; registered on import, before Hydra reads a config.
OmegaConf.register_new_resolver("agefair.dir", existing_dir, replace=True)
