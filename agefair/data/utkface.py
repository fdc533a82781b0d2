"""UTKFace on disk: file-name labels, safe archive extraction, folder scans and the split manifest.

UTKFace names its aligned crops ``<age>_<gender>_<race>_<datetime>.jpg.chip.jpg``; the labels
live only in the name, so parsing is strict and every file that cannot be used is reported with
its reason instead of being dropped silently.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from agefair.labels import MAX_AGE, RACES, age_band

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "val", "test")
MANIFEST_VERSION = 1


class LabelError(ValueError):
    """A file name that does not carry valid UTKFace labels."""


class UnsafeArchiveError(RuntimeError):
    """An archive member would land outside the target folder, or is a link or device."""


@dataclass(frozen=True)
class Record:
    """One labelled face image; ``file`` is relative to the data folder."""

    file: str
    age: int
    gender: int
    race: int


@dataclass(frozen=True)
class Reject:
    """A file that was skipped, and why."""

    file: str
    reason: str


def parse_name(name: str) -> tuple[int, int, int]:
    """Reads ``(age, gender, race)`` from a UTKFace file name.

    Raises:
        LabelError: with a reason a person can act on (missing field, not a number, out of range).
    """
    stem = Path(name).name.split(".", 1)[0]
    fields = stem.split("_")
    if len(fields) != 4:
        raise LabelError(
            f"expected 4 fields age_gender_race_datetime, found {len(fields)} in {stem!r}"
        )
    try:
        age, gender, race = (int(f) for f in fields[:3])
    except ValueError:
        raise LabelError(f"age, gender and race must be integers in {stem!r}") from None
    if not 0 <= age <= MAX_AGE:
        raise LabelError(f"age {age} outside 0-{MAX_AGE}")
    if gender not in (0, 1):
        raise LabelError(f"gender {gender} is not 0 (male) or 1 (female)")
    if not 0 <= race < len(RACES):
        raise LabelError(f"race {race} outside 0-{len(RACES) - 1}")
    return age, gender, race


def scan_folder(folder: str | Path) -> tuple[list[Record], list[Reject]]:
    """Lists the labelled images below ``folder`` (sorted) and the files rejected by name.

    Image contents are not decoded here: the cache builder decodes every image once and
    reports unreadable ones, so a scan stays cheap.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder {folder} does not exist")
    records: list[Record] = []
    rejects: list[Reject] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if not path.name.lower().endswith(IMAGE_SUFFIXES):
            continue
        try:
            age, gender, race = parse_name(path.name)
        except LabelError as err:
            rejects.append(Reject(rel, f"malformed name: {err}"))
            continue
        records.append(Record(rel, age, gender, race))
    return records, rejects


def _check_member(name: str, dest: Path, is_safe_type: bool) -> Path:
    target = (dest / name).resolve()
    if not is_safe_type:
        raise UnsafeArchiveError(f"refusing archive member {name!r}: links and devices not allowed")
    if Path(name).is_absolute() or not target.is_relative_to(dest.resolve()):
        raise UnsafeArchiveError(f"refusing archive member {name!r}: it would land outside {dest}")
    return target


def safe_extract(archive: str | Path, dest: str | Path) -> Path:
    """Extracts a ``.tar(.gz)`` or ``.zip`` archive into ``dest`` once.

    Every member is checked before anything is written: a member with an absolute path,
    ``..`` components, or that is a link or device refuses the whole archive. Extraction goes
    to a temporary sibling folder renamed into place at the end, so an interrupted run never
    leaves a half-extracted folder that a later run would mistake for a finished one.

    Returns:
        ``dest``, which afterwards holds the archive's contents. If ``dest`` already exists it is
        reused as it is.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.is_dir():
        return dest
    if not archive.is_file():
        raise FileNotFoundError(archive)
    tmp = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    # Unix symlinks in zips are stored as files with the S_IFLNK mode bits.
                    is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
                    _check_member(info.filename, tmp, not is_link)
                zf.extractall(tmp)
        else:
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                for m in members:
                    _check_member(m.name, tmp, m.isfile() or m.isdir())
                tf.extractall(tmp, members=members, filter="data")
        try:
            tmp.rename(dest)
        except OSError:
            if not dest.is_dir():
                raise
            # Another process extracted the same archive meanwhile: keep its folder.
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def find_image_root(folder: Path) -> Path:
    """The folder holding the images: ``folder/UTKFace`` as in the official archive, or itself."""
    nested = folder / "UTKFace"
    return nested if nested.is_dir() else folder


def files_digest(files: Iterable[str]) -> str:
    """A short digest of a list of file names, to key manifests and caches to their contents."""
    h = hashlib.sha1()
    for f in files:
        h.update(f.encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


def make_split(
    records: Sequence[Record], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> pd.DataFrame:
    """A deterministic train/val/test split, stratified by age band x gender x race.

    Within each stratum files are sorted, shuffled with a generator seeded by ``seed`` and the
    stratum's key, and cut by cumulative rounding, so the split of one stratum does not
    depend on which other strata exist and adding a file moves at most one neighbour.

    Returns:
        The manifest: columns ``file, age, gender, race, split``, sorted by file.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1):
        raise ValueError(
            f"split fractions must be three non-negative numbers summing to 1, got {fractions}"
        )
    df = pd.DataFrame([r.__dict__ for r in records], columns=["file", "age", "gender", "race"])
    df = df.sort_values("file", ignore_index=True)
    df["split"] = ""
    strata = age_band(df["age"].to_numpy()) * 100 + df["gender"] * 10 + df["race"]
    cum = np.cumsum(fractions)
    for key, idx in df.groupby(strata).groups.items():
        idx = np.asarray(idx)
        rng = np.random.default_rng([seed, int(key)])
        idx = idx[rng.permutation(len(idx))]
        bounds = np.round(cum * len(idx)).astype(int)
        for name, lo, hi in zip(SPLITS, np.r_[0, bounds[:-1]], bounds, strict=True):
            df.loc[idx[lo:hi], "split"] = name
    return df


def load_or_make_manifest(
    records: Sequence[Record], out_dir: str | Path, fractions: Sequence[float], seed: int
) -> tuple[pd.DataFrame, Path]:
    """Reads the split manifest for these records and settings, writing it on first use.

    The file name carries the manifest version, the settings and a digest of the file list, so
    a changed data set or setting gets its own manifest and an existing one is never rewritten.
    """
    digest = files_digest(sorted(r.file for r in records))
    frac = "-".join(f"{f:g}" for f in fractions)
    path = Path(out_dir) / f"split_v{MANIFEST_VERSION}_{frac}_seed{seed}_{digest}.csv"
    if path.is_file():
        return pd.read_csv(path), path
    df = make_split(records, fractions, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return df, path
