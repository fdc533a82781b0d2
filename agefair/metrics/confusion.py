"""Confusion matrices of a classification task: the counts and their figure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def confusion_matrix(true: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of (true, predicted) class pairs.

    Args:
        true: True class per image, ints in ``[0, n_classes)``.
        pred: Predicted class per image, same range.
        n_classes: Number of classes.

    Returns:
        An ``(n_classes, n_classes)`` int64 array; rows are true classes, columns predictions.

    Raises:
        ValueError: Length mismatch or a class outside the range.
    """
    true = np.asarray(true).astype(np.int64).ravel()
    pred = np.asarray(pred).astype(np.int64).ravel()
    if true.shape != pred.shape:
        raise ValueError(f"true and pred differ in length: {true.size} vs {pred.size}")
    for name, x in (("true", true), ("pred", pred)):
        if x.size and (x.min() < 0 or x.max() >= n_classes):
            raise ValueError(f"{name} has classes outside 0-{n_classes - 1}")
    flat = np.bincount(true * n_classes + pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def plot_confusion(cm: np.ndarray, labels: Sequence[str], title: str, path: str | Path) -> Path:
    """Writes a confusion matrix as a PNG: colours are row-normalised, cells show counts.

    Row normalisation makes the colour of a cell the share of that true class predicted as the
    column class (a recall view), so small classes are as readable as large ones; the annotated
    counts keep the absolute sizes visible.

    Args:
        cm: Square count matrix from :func:`confusion_matrix` (rows true, columns predicted).
        labels: Class names, one per row.
        title: Figure title.
        path: Output file; parent folders are created.

    Returns:
        The path written.
    """
    # Figure without pyplot: no global backend switch and no figure registry to leak, which
    # matters when this runs inside training processes or web servers.
    from matplotlib.figure import Figure

    cm = np.asarray(cm)
    k = cm.shape[0]
    if cm.shape != (k, k) or len(labels) != k:
        raise ValueError(f"cm must be square with one label per row; got {cm.shape}, {len(labels)}")
    row_sums = cm.sum(axis=1, keepdims=True)
    shares = np.divide(cm, row_sums, out=np.zeros(cm.shape, dtype=float), where=row_sums > 0)

    size = 1.2 + 0.9 * k
    fig = Figure(figsize=(size + 1.0, size))
    ax = fig.add_subplot()
    im = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_xticks(range(k), labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(range(k), labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(k):
        for j in range(k):
            color = "white" if shares[i, j] > 0.5 else "black"
            text = f"{cm[i, j]}\n{shares[i, j]:.0%}"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
