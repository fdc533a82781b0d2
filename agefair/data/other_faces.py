"""Labelled photos of another data set: reading their labels, and keeping them out of training.

A ``labels.csv`` beside the photos names each one and its labels (:func:`read_labels_csv`);
:mod:`agefair.evaluation.unseen` scores a model on them. Such a set chooses between models, so it
must never be trained on: :func:`check_disjoint` refuses a training set that holds any of its
images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from agefair.labels import GENDERS, RACES


class UnseenDataError(ValueError):
    """The unseen-faces labels file is missing, malformed, or overlaps the training images."""


def read_labels_csv(path: str | Path) -> pd.DataFrame:
    """Reads a labels CSV of another data set.

    Columns: ``file`` (relative to the CSV's folder), ``gender`` and ``race`` (UTKFace's codes
    or names: ``female``, ``Asian``) and ``age`` (years) or ``age_group`` (``20-29``, ``70+``;
    a predicted age is scored by the group it falls in). A missing ``age`` becomes -1.

    Raises:
        UnseenDataError: If the file is missing, lacks a column or holds an unknown label.
    """
    path = Path(path)
    if not path.is_file():
        raise UnseenDataError(f"labels file {path} not found")
    table = pd.read_csv(path)
    missing = {"file", "gender", "race"} - set(table.columns)
    if missing or not ({"age", "age_group"} & set(table.columns)):
        raise UnseenDataError(
            f"{path}: needs columns file, gender, race and age or age_group; missing "
            f"{sorted(missing) or ['age or age_group']}"
        )
    for col, names in (("gender", GENDERS), ("race", RACES)):
        if not pd.api.types.is_numeric_dtype(table[col]):  # names ("female", "Asian") work too
            lookup = {n.lower(): i for i, n in enumerate(names)}
            table[col] = table[col].astype(str).str.lower().map(lookup)
        bad = table[col].isna() | ~table[col].isin(range(len(names)))
        if bad.any():
            raise UnseenDataError(
                f"{path}: unknown values in column {col!r} (row {int(bad.idxmax()) + 2}; use "
                f"0-{len(names) - 1} or {list(names)})"
            )
        table[col] = table[col].astype(np.int64)
    if "age" not in table.columns or table["age"].isna().all():
        table["age"] = -1  # only the group is known
    return table


def _file_digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def check_disjoint(train_root: Path, train_files: Iterable[str], labels: str | Path) -> None:
    """Refuses a training set that holds any image of the unseen set.

    The folders must not contain one another, and no training file may have the bytes of an
    unseen image (compared by size first, so only same-sized files are hashed).

    Raises:
        UnseenDataError: If they overlap.
    """
    unseen_root = Path(labels).resolve().parent
    train_root = Path(train_root).resolve()
    if unseen_root.is_relative_to(train_root) or train_root.is_relative_to(unseen_root):
        raise UnseenDataError(
            f"the training images ({train_root}) and the unseen faces ({unseen_root}) share a "
            "folder: the unseen set must never be trained on. Keep them apart."
        )
    unseen = [unseen_root / f for f in read_labels_csv(labels)["file"]]
    by_size: dict[int, set[str]] = {}
    for p in unseen:
        if p.is_file():
            by_size.setdefault(p.stat().st_size, set()).add(_file_digest(p))
    for name in train_files:
        path = train_root / name
        digests = by_size.get(path.stat().st_size)
        if digests and _file_digest(path) in digests:
            raise UnseenDataError(
                f"training image {path} is also in the unseen faces ({labels}): the unseen set "
                "must never be trained on. Remove it from the training data."
            )


def select(table: pd.DataFrame, limit: int | None, seed: int = 0) -> pd.DataFrame:
    """At most ``limit`` rows, drawn at random (seeded) so a quick look is still a fair sample."""
    if limit is None or limit >= len(table):
        return table.reset_index(drop=True)
    return table.sample(n=int(limit), random_state=seed).sort_index().reset_index(drop=True)
