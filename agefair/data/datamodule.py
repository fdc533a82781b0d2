"""``UTKFaceDataModule``: archive, safe extraction, scan, decoded cache, split, loaders."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from filelock import FileLock
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from agefair.data.cache import DecodedImages, load_or_build_cache
from agefair.data.other_faces import check_disjoint
from agefair.data.transforms import build_transform
from agefair.data.utkface import (
    Reject,
    find_image_root,
    load_or_make_manifest,
    safe_extract,
    scan_folder,
)
from agefair.labels import RACES

log = logging.getLogger(__name__)

UTKFACE_URL = "https://susanqq.github.io/UTKFace/"
#: Seeds the validation split's order apart from the split itself (same ``seed``).
VAL_ORDER_STREAM = 1


class MissingDataError(FileNotFoundError):
    """The UTKFace archive or folder is not where the configuration points."""


def missing_archive_message(archive: Path) -> str:
    return (
        f"UTKFace not found at {archive}. Download the aligned & cropped faces archive "
        f"'UTKFace.tar.gz' from {UTKFACE_URL} and put it at {archive}, or point the environment "
        "variable UTKFACE_ARCHIVE (or data.archive=...) at the archive or its extracted folder."
    )


@dataclass
class PreparedData:
    """Everything ``prepare_data`` leaves on disk, loaded back."""

    decoded: DecodedImages
    manifest: pd.DataFrame
    manifest_path: Path
    rejects: list[Reject]
    image_root: Path


class FaceDataset(Dataset):
    """Rows of the decoded cache with their labels, passed through an image transform."""

    def __init__(self, images: np.ndarray, table: pd.DataFrame, transform: Callable) -> None:
        self.images = images
        self.table = table
        self.rows = table["row"].to_numpy()
        self.labels = table[["age", "gender", "race"]].to_numpy(np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        age, gender, race = self.labels[i]
        return {
            "image": self.transform(np.asarray(self.images[self.rows[i]])),
            "age": age,
            "gender": gender,
            "race": race,
            "index": i,  # lets a system look up features it computed once (frozen backbone)
        }


class UTKFaceDataModule(pl.LightningDataModule):
    """UTKFace as a LightningDataModule.

    ``prepare_data`` extracts the archive safely (once), scans the file names, decodes every
    image once into the cache and writes the split manifest; each step reuses what an earlier
    run left. Files with malformed names or unreadable images are reported by name, with the
    reason, on every run, and skipped.

    Args:
        archive: ``UTKFace.tar.gz`` (or ``.zip``), or an already extracted folder.
        data_dir: where extracted images, the cache and split manifests are kept.
        img_size: side of the square model input.
        cache_size: side of the images in the cache (default ``img_size``); larger leaves room
            for studies that shrink or re-frame the face.
        train_size: side of the (augmented) training images, default ``img_size``. Smaller
            suits a fused backbone (``agefair.models.fused``): its frozen part reads the
            training images once, at ``img_size``, and its learned part trains at its own size.
        framing: side of the square each image is cut to, in units of UTKFace's crop, before it
            is cached (:func:`agefair.data.framing.reframe`; past the crop's edges its border is
            replicated); 1 or None keeps UTKFace's framing. The predictor cuts faces out of
            photos the same way (``crop_face(zoom=framing)``).
        batch_size: images per batch.
        num_workers: DataLoader worker processes.
        split: train/val/test fractions.
        seed: seed of the split.
        augment: keyword arguments of the ``train`` transform preset; ``None`` disables it.
        eval_transform: the preset for val/test/predict and its keyword arguments
            (``{"preset": "eval"}`` by default; studies pass e.g.
            ``{"preset": "filter", "name": "sepia", "strength": 1.0}``).
        mean, std: normalisation of the model's input.
        age_range: keep only faces with ``lo <= age <= hi``.
        races: keep only these races (names or indices).
        balance: ``"race_gender"`` samples training images so every race x gender group is drawn
            equally often; ``None`` samples uniformly.
        pin_memory: forwarded to the loaders.
        unseen: a labels CSV of faces from another data set that every run scores its model on
            (``agefair.evaluation.unseen``); ``prepare_data`` refuses training images that are among
            them. None: no such set.
        unseen_limit: score at most this many of them (a seeded sample; None: all).
    """

    def __init__(
        self,
        archive: str | Path = "data/UTKFace.tar.gz",
        data_dir: str | Path = "data",
        img_size: int = 64,
        cache_size: int | None = None,
        train_size: int | None = None,
        framing: float | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        split: Sequence[float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        augment: dict | None = None,
        eval_transform: dict | None = None,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        age_range: Sequence[int] | None = None,
        races: Sequence[str | int] | None = None,
        balance: str | None = None,
        pin_memory: bool = False,
        unseen: str | Path | None = None,
        unseen_limit: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.archive = Path(archive)
        self.data_dir = Path(data_dir)
        self.img_size = img_size
        self.cache_size = cache_size or img_size
        self.framing = 1.0 if framing is None else float(framing)
        self.datasets: dict[str, FaceDataset] = {}
        self.prepared: PreparedData | None = None
        if balance not in (None, "race_gender"):
            raise ValueError(f"balance must be null or 'race_gender', got {balance!r}")

    # ------------------------------------------------------------------ preparation
    def _image_root(self) -> Path:
        if self.archive.is_dir():
            return find_image_root(self.archive)
        if not self.archive.is_file():
            raise MissingDataError(missing_archive_message(self.archive))
        name = self.archive.name.split(".")[0]
        dest = self.data_dir / "extracted" / f"{name}-{self.archive.stat().st_size}"
        return find_image_root(safe_extract(self.archive, dest))

    def prepare(self, report: bool = False) -> PreparedData:
        """Extracts, scans, decodes and splits (each reused when done before); loads the result.

        Under a lock on the data folder: members of a parallel sweep starting on a fresh folder
        wait for the first to finish instead of each extracting and decoding the archive.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(self.data_dir / ".prepare.lock"):
            return self._prepare(report)

    def _prepare(self, report: bool) -> PreparedData:
        root = self._image_root()
        records, name_rejects = scan_folder(root)
        decoded = load_or_build_cache(
            root,
            [r.file for r in records],
            self.cache_size,
            self.data_dir / "cache",
            framing=self.framing,
        )
        good = [r for r, ok in zip(records, decoded.ok, strict=True) if ok]
        if self.hparams.unseen:
            check_disjoint(root, [r.file for r in good], self.hparams.unseen)
        manifest, manifest_path = load_or_make_manifest(
            good, self.data_dir / "splits", self.hparams.split, self.hparams.seed
        )
        row_of = {f: i for i, f in enumerate(decoded.files)}
        manifest["row"] = manifest["file"].map(row_of)
        rejects = name_rejects + decoded.rejects
        if report:
            self._report(root, len(good), rejects, manifest_path)
        return PreparedData(decoded, manifest, manifest_path, rejects, root)

    @staticmethod
    def _report(root: Path, kept: int, rejects: list[Reject], manifest_path: Path) -> None:
        log.info("UTKFace at %s: %d images kept, %d rejected", root, kept, len(rejects))
        for r in rejects:
            log.warning("Rejected %s: %s", r.file, r.reason)
        log.info("Split manifest: %s", manifest_path)

    def prepare_data(self) -> None:
        # Kept when run in this process (the usual single-device case), so setup() and later
        # fit/test calls neither scan again nor repeat the report.
        if self.prepared is None:
            self.prepared = self.prepare(report=True)

    # ------------------------------------------------------------------ datasets
    def _filter(self, table: pd.DataFrame) -> pd.DataFrame:
        if self.hparams.age_range is not None:
            lo, hi = self.hparams.age_range
            table = table[(table["age"] >= lo) & (table["age"] <= hi)]
        if self.hparams.races is not None:
            wanted = [RACES.index(r) if isinstance(r, str) else int(r) for r in self.hparams.races]
            table = table[table["race"].isin(wanted)]
        return table.reset_index(drop=True)

    def transform(self, stage: str) -> Callable:
        """The image transform used for a split: augmentation for training, else evaluation."""
        norm = {"mean": tuple(self.hparams.mean), "std": tuple(self.hparams.std)}
        if stage == "train" and self.hparams.augment is not None:
            size = self.hparams.train_size or self.img_size
            return build_transform("train", size, **self.hparams.augment, **norm)
        spec = dict(self.hparams.eval_transform or {"preset": "eval"})
        return build_transform(spec.pop("preset"), self.img_size, **spec, **norm)

    def setup(self, stage: str | None = None) -> None:
        if self.prepared is None:
            self.prepared = self.prepare()
        images = self.prepared.decoded.images
        for split in ("train", "val", "test"):
            table = self.split_table(split)
            self.datasets[split] = FaceDataset(images, table, self.transform(split))

    def split_table(self, split: str) -> pd.DataFrame:
        """The manifest rows of one split after the age and race filters, in its loader's order."""
        assert self.prepared is not None, "call setup() first"
        manifest = self._filter(self.prepared.manifest)
        table = manifest[manifest["split"] == split].reset_index(drop=True)
        if split == "val":
            # The manifest is sorted by file name, and names begin with the age: a validation
            # limited to its first batches (trainer.limit_val_batches) would hold the faces whose
            # ages sort first (1, 10-19, 100+, 2, 20-...) and choose checkpoints on them. In one
            # fixed seeded order, any first part of it is a fair sample of the split.
            order = np.random.default_rng([self.hparams.seed, VAL_ORDER_STREAM])
            table = table.iloc[order.permutation(len(table))].reset_index(drop=True)
        return table

    def training_race_counts(self) -> np.ndarray:
        """How many faces of each race an epoch of training draws, in expectation.

        The training split's counts; with ``balance`` the sampler draws every race x gender
        group alike, so every race present in the split equally often.
        """
        counts = np.bincount(self.split_table("train")["race"], minlength=len(RACES))
        if self.hparams.balance == "race_gender":
            present = counts > 0
            counts = np.where(present, counts.sum() / present.sum(), 0.0)
        return counts.astype(np.float64)

    # ------------------------------------------------------------------ loaders
    def _loader(self, split: str, train: bool = False) -> DataLoader:
        ds = self.datasets[split]
        sampler = None
        if train and self.hparams.balance == "race_gender":
            groups = ds.labels[:, 2] * 2 + ds.labels[:, 1]
            counts = np.bincount(groups, minlength=10)
            weights = 1.0 / counts[groups]
            generator = torch.Generator().manual_seed(self.hparams.seed)
            sampler = WeightedRandomSampler(weights, len(ds), replacement=True, generator=generator)
        workers = self.hparams.num_workers
        return DataLoader(
            ds,
            batch_size=self.hparams.batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            drop_last=train and len(ds) > self.hparams.batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self.hparams.pin_memory,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")
