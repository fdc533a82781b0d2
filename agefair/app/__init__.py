"""The web app: one page to upload a photo, and a JSON API over
:class:`agefair.inference.predictor.Predictor`.

    agefair serve                      # http://127.0.0.1:8000, newest checkpoint under outputs/

Needs the ``app`` extra (``pip install 'agefair[app]'``: FastAPI, uvicorn, python-multipart).
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so `import agefair.app` works (and says what is missing) without
    # FastAPI installed.
    if name in __all__:
        from agefair.app import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
