"""The face detector's model file: where it is looked for, its download, its checksum."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

YUNET_FILENAME = "face_detection_yunet_2023mar.onnx"
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
#: Public origin: the opencv_zoo repository (MIT licence).
YUNET_URL = (
    "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/" + YUNET_FILENAME
)
#: Environment variable naming the model file, checked when no path is passed.
YUNET_ENV_VAR = "AGEFAIR_YUNET_MODEL"


class ModelFileError(RuntimeError):
    """A detector's model file is missing, cannot be downloaded, or fails its checksum."""


def default_yunet_path() -> Path:
    """``~/.cache/agefair/face_detection_yunet_2023mar.onnx``, where a download is stored."""
    return Path.home() / ".cache" / "agefair" / YUNET_FILENAME


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download(url: str, dest: Path, timeout: float = 30.0) -> None:
    """Downloads ``url`` to ``dest`` through a temporary file, so a failure leaves no stub."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(1 << 16):
                out.write(chunk)
        data = Path(tmp).read_bytes()
        if _sha256(data) != YUNET_SHA256:
            raise ModelFileError(
                f"the file downloaded from {url} has SHA-256 {_sha256(data)}, expected "
                f"{YUNET_SHA256}; not saving it"
            )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _missing_message(reason: str) -> str:
    return (
        f"{reason}. Get {YUNET_FILENAME} (SHA-256 {YUNET_SHA256}) from {YUNET_URL} and either put "
        f"it at {default_yunet_path()}, or set the environment variable {YUNET_ENV_VAR} to its "
        "path, or pass model_path=... to YuNetDetector."
    )


def resolve_yunet_model(model_path: str | os.PathLike[str] | None = None) -> Path:
    """Finds the YuNet model file, downloading it to the cache if needed.

    Order: ``model_path`` if given, else the environment variable ``AGEFAIR_YUNET_MODEL``, else
    :func:`default_yunet_path`. Only the default cache location is filled by a download (from
    :data:`YUNET_URL`); an explicitly named file that is missing is an error, so a typo is not
    papered over by a silent download.

    Args:
        model_path: Explicit path to the ONNX file, or None.

    Returns:
        The path of an existing model file (not yet checksum-verified; loading verifies it).

    Raises:
        ModelFileError: If the file is missing and cannot be downloaded; the message names the
            file, the environment variable and where to put the file.
    """
    if model_path is not None:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise ModelFileError(_missing_message(f"YuNet model file {path} does not exist"))
        return path
    env = os.environ.get(YUNET_ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ModelFileError(
                _missing_message(f"{YUNET_ENV_VAR}={env} but that file does not exist")
            )
        return path
    path = default_yunet_path()
    if path.is_file():
        return path
    try:
        _download(YUNET_URL, path)
    except ModelFileError:
        raise
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise ModelFileError(
            _missing_message(f"YuNet model file not found and downloading it failed ({exc})")
        ) from exc
    return path


def verified_yunet_model(model_path: str | os.PathLike[str] | None = None) -> tuple[Path, bytes]:
    """The YuNet model file (:func:`resolve_yunet_model`) and its bytes, checked by SHA-256.

    Raises:
        ModelFileError: The file is missing and cannot be downloaded, or its SHA-256 does not
            match :data:`YUNET_SHA256`.
    """
    path = resolve_yunet_model(model_path)
    data = path.read_bytes()
    digest = _sha256(data)
    if digest != YUNET_SHA256:
        raise ModelFileError(
            f"YuNet model file {path} has SHA-256 {digest}, expected "
            f"{YUNET_SHA256}: the file is corrupt or a different model. Replace it with "
            f"{YUNET_FILENAME} from {YUNET_URL}."
        )
    return path, data
