"""Where agefair's Hydra configs live: every entry point composes from this one folder."""

from __future__ import annotations

from pathlib import Path

#: ``conf/`` beside the package. An absolute path, so that Hydra finds it by file whichever
#: module an entry point's ``main`` is imported from.
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
