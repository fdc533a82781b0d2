"""Shared fixtures: a tiny UTKFace-like folder and archive generated on the fly, real-data paths."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
# The Makefile points every run at the unseen faces (4,000 photos through the detector); the
# training runs of tests score them only where a test asks for it (data.unseen=...).
UNSEEN_LABELS = os.environ.pop("AGEFAIR_UNSEEN", None)

# Files the tiny data set holds beside the good ones, with the reason they must be rejected.
BAD_NAMES = {
    "39_1_20170116174525125.jpg.chip.jpg": "malformed name",  # race missing, as in the real set
    "notes.jpg": "malformed name",
    "30_0_9_20170101000000000.jpg.chip.jpg": "malformed name",  # race out of range
}
CORRUPT_NAME = "25_0_1_20170101000000001.jpg.chip.jpg"


def face_image(
    age: int, gender: int, race: int, size: int, rng: np.random.Generator
) -> Image.Image:
    """A synthetic "face" whose colour and pattern depend on the labels, so tiny nets can learn."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.array([60 + 35 * race, 120 + 100 * gender, 40 + 1.5 * age], dtype=float)
    img = base[None, None, :] * (0.7 + 0.3 * np.sin(6 * xx + 3 * gender)[..., None])
    img += rng.normal(0, 8, img.shape)
    img[(xx - 0.5) ** 2 + (yy - 0.45) ** 2 < 0.08] += 30  # a bright oval in the middle
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def write_tiny_utkface(root: Path, n: int = 80, size: int = 40, seed: int = 0) -> Path:
    """Writes ``n`` labelled JPEGs named like UTKFace, plus malformed and corrupt files."""
    folder = root / "UTKFace"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        age, gender, race = int(rng.integers(1, 90)), i % 2, (i // 2) % 5
        name = f"{age}_{gender}_{race}_2017010{i % 10}{i:09d}.jpg.chip.jpg"
        face_image(age, gender, race, size, rng).save(folder / name, quality=90)
    for name in BAD_NAMES:
        face_image(30, 0, 0, size, rng).save(folder / name)
    good = next(folder.glob("*_*_*_*.jpg.chip.jpg"))
    (folder / CORRUPT_NAME).write_bytes(good.read_bytes()[:200])  # truncated JPEG
    return root


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A folder holding ``UTKFace/`` with 80 good images and 4 bad files."""
    return write_tiny_utkface(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_archive(tiny_root: Path, tmp_path_factory) -> Path:
    """``UTKFace.tar.gz`` of the tiny folder."""
    path = tmp_path_factory.mktemp("archive") / "UTKFace.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        tf.add(tiny_root / "UTKFace", arcname="UTKFace")
    return path


def real_archive() -> Path | None:
    path = Path(os.environ.get("UTKFACE_ARCHIVE", SHARED / "data" / "UTKFace.tar.gz"))
    return path if path.exists() else None


@pytest.fixture(scope="session")
def utkface_archive() -> Path:
    """The real UTKFace archive; skips the test when it is absent."""
    path = real_archive()
    if path is None:
        pytest.skip("real UTKFace archive not found: set UTKFACE_ARCHIVE to UTKFace.tar.gz")
    return path


def load_script(relative_path: str, name: str):
    """An experiment script (``experiments/...``, not a package) as a module named ``name``."""
    spec = importlib.util.spec_from_file_location(name, REPO / relative_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it is created
    spec.loader.exec_module(module)
    return module


def run_module(module: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Runs ``python -m module args`` from the repository; fails the test if it fails."""
    cmd = [sys.executable, "-m", module, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def train_tiny_checkpoint(base: Path, archive: Path) -> Path:
    """Trains a tiny system for one epoch on the tiny archive, once per test session.

    The checkpoint is kept under pytest's session folder, so every test module asking for it
    in the same session reuses it instead of training again.
    """
    run = base / "tiny_predict_run"
    ckpt = run / "checkpoints" / "last.ckpt"
    if ckpt.is_file():
        return ckpt
    run_module(
        "agefair.train", "experiment=from_scratch", "backbone=tiny", "data.img_size=32",
        "data.batch_size=16", "trainer.max_epochs=1", "test=false",
        "callbacks.progress.refresh_rate=0", f"paths.archive={archive}",
        f"paths.data_dir={base / 'tiny_predict_data'}", f"hydra.run.dir={run}",
        timeout=300,
    )  # fmt: skip
    assert ckpt.is_file()
    return ckpt


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory, tiny_archive) -> Path:
    """A checkpoint of a tiny system trained for one epoch on the tiny archive."""
    return train_tiny_checkpoint(tmp_path_factory.getbasetemp(), tiny_archive)
