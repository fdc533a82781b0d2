"""Test-time augmentation: the views of a batch whose predictions a system averages."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F


def zoom(images: torch.Tensor, factor: float) -> torch.Tensor:
    """The batch zoomed about its centre, same size: ``factor`` > 1 moves closer (crops),
    < 1 moves back (the border is mirrored, as the training augmentation's is)."""
    if factor <= 0:
        raise ValueError(f"zoom factor must be positive, got {factor}")
    side = images.shape[-1]
    scaled = F.interpolate(
        images, scale_factor=factor, mode="bilinear", antialias=True, align_corners=False
    )
    extra = scaled.shape[-1] - side
    if extra >= 0:
        lo = extra // 2
        return scaled[..., lo : lo + side, lo : lo + side]
    pad = -extra
    return F.pad(scaled, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2), mode="reflect")


def view_count(tta_flip: bool, tta_scales: Sequence[float]) -> int:
    """Forward passes per face: the face and each zoom, each twice with the mirror."""
    return (1 + len(tta_scales)) * (2 if tta_flip else 1)


def views(images: torch.Tensor, flip: bool, scales: Sequence[float]) -> Iterator[torch.Tensor]:
    """The batch as given, each zoom of it by ``scales``, and each of those mirrored if
    ``flip``; the first view is the batch itself."""
    for scale in (1.0, *scales):
        view = images if scale == 1.0 else zoom(images, scale)
        yield view
        if flip:
            yield view.flip(-1)
