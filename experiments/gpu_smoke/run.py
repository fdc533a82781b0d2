"""Trains the default model on a GPU on generated faces: does it run, and how fast per setting.

    python experiments/gpu_smoke/run.py                      # workers 0,4,8 x fp32/bf16
    python experiments/gpu_smoke/run.py --workers 4 --precision bf16-mixed

Needs CUDA; generates its own UTKFace-named images (no data set needed), trains each setting
for a few epochs with ``trainer=gpu`` and prints the training images/s of each.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from tests.conftest import write_tiny_utkface  # noqa: E402


def synthetic_archive(folder: Path, n: int) -> Path:
    """A UTKFace-like ``.tar.gz`` of ``n`` generated 64 px faces."""
    root = write_tiny_utkface(folder / "faces", n=n, size=64)
    archive = folder / "UTKFace.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(root / "UTKFace", arcname="UTKFace")
    return archive


def train_images_per_s(archive: Path, work: Path, workers: int, precision: str, epochs: int):
    """Trains one setting; returns its training images/s (validation included in the time)."""
    run = work / f"run_w{workers}_{precision}"
    subprocess.run(
        [sys.executable, "-m", "agefair.train", "trainer=gpu", f"trainer.precision={precision}",
         f"trainer.max_epochs={epochs}", f"data.num_workers={workers}", "data.batch_size=256",
         f"paths.archive={archive}", f"paths.data_dir={work / 'data'}",
         "callbacks.progress.refresh_rate=0", f"hydra.run.dir={run}"],
        check=True, cwd=REPO, capture_output=True,
    )  # fmt: skip
    row = pd.read_csv(run / "results.csv").iloc[0]
    return row["examples_seen"] / row["train_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 4, 8])
    parser.add_argument("--precision", nargs="+", default=["32-true", "bf16-mixed"])
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this smoke test needs a GPU")
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        archive = synthetic_archive(work, args.images)
        for workers in args.workers:
            for precision in args.precision:
                rate = train_images_per_s(archive, work, workers, precision, args.epochs)
                print(f"workers {workers}  {precision:>10}  {rate:6.0f} training images/s")


if __name__ == "__main__":
    main()
