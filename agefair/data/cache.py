"""The decoded-image cache: every image decoded and resized once into a memory-mapped uint8 array.

Decoding a 200x200 JPEG costs more than a small CNN's step on two cores, so training reads
from this array instead. The cache is keyed by the file list, each file's size and mtime, the
image size, the framing and the cache format, so it is reused by later runs and by every member
of a sweep, and rebuilt when any of those change. Images that cannot be decoded are recorded as
rejects in the cache's metadata, so later runs report them without decoding again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from agefair.data.framing import reframe
from agefair.data.utkface import Reject

log = logging.getLogger(__name__)

CACHE_VERSION = 1


@dataclass
class DecodedImages:
    """Images of ``files`` (in that order) as an ``N x size x size x 3`` uint8 array.

    ``ok[i]`` is False for files that could not be decoded; their rows are zeros.
    """

    files: list[str]
    images: np.ndarray
    ok: np.ndarray
    rejects: list[Reject]
    path: Path


def decode_image(path: str | Path, size: int, framing: float = 1.0) -> np.ndarray:
    """Decodes one image to RGB uint8 ``size x size x 3``.

    ``framing`` re-cuts the image about its centre first
    (:func:`agefair.data.framing.reframe`): a backbone pretrained on faces framed otherwise
    than UTKFace's crops gets its own framing.

    Raises:
        OSError or ValueError: for unreadable, truncated or non-image files.
    """
    with Image.open(path) as im:
        # draft() lets libjpeg decode at 1/2, 1/4 or 1/8 scale directly: much faster when the
        # target is far smaller than 200 px, and never smaller than ``size``.
        if im.format == "JPEG":
            im.draft("RGB", (size, size))
        im = im.convert("RGB")  # forces a full decode: truncated files raise here
        arr = reframe(np.asarray(im), framing)
    if arr.shape[:2] != (size, size):
        shrinking = arr.shape[0] > size
        arr = cv2.resize(
            arr, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        )
    return arr


def _cache_key(root: Path, files: Sequence[str], size: int, framing: float) -> str:
    # Framing 1 keeps the key it had before framings existed, so those caches stay valid.
    h = hashlib.sha1(f"v{CACHE_VERSION}:{size}{'' if framing == 1 else f':{framing}'}".encode())
    for f in files:
        st = (root / f).stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _decode_into(
    out: np.ndarray,
    root: Path,
    files: list[str],
    size: int,
    framing: float,
    threads: int | None,
    progress: bool,
) -> tuple[np.ndarray, list[Reject]]:
    """Decodes ``files`` into the rows of ``out``; returns which succeeded and the rejects."""
    ok = np.zeros(len(files), bool)
    rejects: list[Reject] = []

    def work(i: int) -> str | None:
        try:
            out[i] = decode_image(root / files[i], size, framing)
            return None
        except (OSError, ValueError, SyntaxError) as err:  # PIL raises all three on bad files
            return f"unreadable image: {type(err).__name__}: {err}"

    with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
        results = pool.map(work, range(len(files)), chunksize=64)
        bar = tqdm(
            results, total=len(files), desc=f"Decoding images at {size}px", disable=not progress
        )
        for i, err in enumerate(bar):
            if err is None:
                ok[i] = True
            else:
                rejects.append(Reject(files[i], err))
    return ok, rejects


def load_or_build_cache(
    root: str | Path,
    files: Sequence[str],
    size: int,
    cache_dir: str | Path,
    *,
    framing: float = 1.0,
    threads: int | None = None,
    progress: bool = True,
) -> DecodedImages:
    """Returns the decoded images of ``files`` (relative to ``root``), building the cache if needed.

    Args:
        root: folder the file names are relative to.
        files: the images to decode, in the order of the array's rows.
        size: side of the square images in the cache.
        cache_dir: where the ``.npy`` array and its ``.json`` metadata live.
        framing: side of each image's square in units of its own (:func:`decode_image`).
        threads: decoding threads (Pillow releases the GIL while decoding); default: all cores.
        progress: show a progress bar while building.
    """
    root, cache_dir = Path(root), Path(cache_dir)
    files = list(files)
    if not framing > 0:
        raise ValueError(f"framing must be positive, got {framing}")
    key = _cache_key(root, files, size, framing)
    # No dot in the name: with_suffix below would cut it there.
    framed = "" if framing == 1 else f"_framing{framing:g}".replace(".", "p")
    stem = cache_dir / f"images_{size}px{framed}_{key}"
    npy, meta_path = stem.with_suffix(".npy"), stem.with_suffix(".json")
    if npy.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        images = np.load(npy, mmap_mode="r")
        rejects = [Reject(**r) for r in meta["rejects"]]
        log.info("Reusing decoded cache %s (%d images at %d px)", npy, len(files), size)
        return DecodedImages(files, images, np.asarray(meta["ok"], bool), rejects, npy)

    cache_dir.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name and renamed when complete, so concurrent sweep members
    # never read a half-written cache and an interrupted build leaves nothing that looks valid.
    tmp_npy = cache_dir / f".{npy.name}.{os.getpid()}.tmp"
    out = np.lib.format.open_memmap(
        tmp_npy, mode="w+", dtype=np.uint8, shape=(len(files), size, size, 3)
    )
    ok, rejects = _decode_into(out, root, files, size, framing, threads, progress)
    out.flush()
    del out  # closes the memory map before the rename
    os.replace(tmp_npy, npy)
    meta = {
        "version": CACHE_VERSION,
        "size": size,
        "framing": framing,
        "files": len(files),
        "ok": ok.tolist(),
        "rejects": [r.__dict__ for r in rejects],
    }
    tmp_meta = meta_path.with_suffix(f".{os.getpid()}.tmp")
    tmp_meta.write_text(json.dumps(meta))
    os.replace(tmp_meta, meta_path)
    return DecodedImages(files, np.load(npy, mmap_mode="r"), ok, rejects, npy)
