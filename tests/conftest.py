"""Shared fixtures and helpers: a tiny UTKFace-like folder and archive generated on the fly,
the tiny checkpoint, real-data paths, the tiny training overrides, generated pictures."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from PIL import Image

from agefair.inference.model_files import YUNET_ENV_VAR, YUNET_FILENAME

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


def hide_package(monkeypatch, package: str) -> None:
    """Makes ``importlib.util.find_spec(package)`` find nothing, as if it were not installed."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == package else find_spec(name, *args),
    )


def load_script(relative_path: str, name: str):
    """An experiment script (``experiments/...``, not a package) as a module named ``name``;
    its folder is on the path while it loads, as when it runs, so it imports its siblings."""
    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it is created
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
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


# --------------------------------------------------------------------------------------------
# Helpers shared by several test modules
# --------------------------------------------------------------------------------------------
TINY = [
    "experiment=from_scratch",
    "backbone=tiny",
    "data.img_size=32",
    "data.batch_size=16",
    "callbacks.progress.refresh_rate=0",
]


def compose_train(overrides: list[str], out_dir: Path):
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir)
        cfg.hydra.runtime.output_dir = str(out_dir)
    HydraConfig.instance().set_config(cfg)
    return cfg


def evaluate_cli(*args: str) -> tuple[dict, str]:
    """Runs ``python -m agefair.evaluate``; returns its last-line JSON and all its output."""
    cmd = [sys.executable, "-m", "agefair.evaluate", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stdout + proc.stderr


PHOTOS = Path(os.environ.get("AGEFAIR_PHOTOS", SHARED / "photos"))
YUNET = Path(os.environ.get(YUNET_ENV_VAR, SHARED / "models" / YUNET_FILENAME))


def photos_dir() -> Path:
    """The real test photos; skips when they are absent."""
    if not (PHOTOS / "two_people.jpg").is_file():
        pytest.skip(f"real test photos not found in {PHOTOS}: set AGEFAIR_PHOTOS")
    return PHOTOS


def yunet_path() -> Path:
    """The YuNet model file; skips when it is absent."""
    if not YUNET.is_file():
        pytest.skip(f"YuNet model not found at {YUNET}: set {YUNET_ENV_VAR}")
    return YUNET


def textured(width: int, height: int, seed: int = 0, grain: int | None = None) -> np.ndarray:
    """A smooth random picture with detail about ``grain`` pixels across (default: coarse)."""
    rng = np.random.default_rng(seed)
    shape = (24, 36, 3) if grain is None else (height // grain, width // grain, 3)
    small = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
    return np.asarray(small.resize((width, height), Image.Resampling.BICUBIC))


def jpeg_bytes(image: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    return buf.getvalue()
