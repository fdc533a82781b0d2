"""What every image transform preset is: a uint8 face crop in, a normalised tensor out.

A :class:`Preset` maps a uint8 ``H x W x 3`` RGB face crop (a row of the decoded cache, square,
at the cache size) to a normalised float32 tensor ``3 x img_size x img_size``; ``pixels(image)``
gives the uint8 picture just before normalisation, for sample grids and tests. The training and
evaluation presets are in :mod:`agefair.data.transforms`, the study degradations in
:mod:`agefair.data.degradations`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch

Stats = Sequence[float]
DEFAULT_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
DEFAULT_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)
# Pixel magnitudes (blur sigma, sharpening radius) are stated for a face this many pixels wide.
REFERENCE_SIDE = 64
# Canvas colour of the "constant" face-fraction background: mid-grey normalises to about zero.
GREY = (128, 128, 128)


# ------------------------------------------------------------------------------------ helpers
def check_image(image: np.ndarray) -> None:
    # A cheap guard: a float or BGRA array would otherwise fail deep inside OpenCV, or worse,
    # be normalised as if it held 0..255 values.
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"expected an H x W x 3 RGB array, got {type(image).__name__} {shape}")
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {image.dtype}")


def check_size(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {value!r}")
    return int(value)


def check_range(value: float, what: str, lo: float, hi: float, *, open_lo: bool = False) -> float:
    ok = (lo < value if open_lo else lo <= value) and value <= hi
    if not ok:
        bracket = "(" if open_lo else "["
        raise ValueError(f"{what} must be in {bracket}{lo:g}, {hi:g}], got {value!r}")
    return float(value)


def check_stats(values: Stats, what: str) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if len(values) != 3:
        raise ValueError(f"{what} needs one value per RGB channel, got {values}")
    if what == "std" and min(values) <= 0:
        raise ValueError(f"std must be positive, got {values}")
    return values


def resize_square(image: np.ndarray, side: int) -> np.ndarray:
    """Square resize: area interpolation when shrinking (no aliasing), bilinear when enlarging."""
    h, w = image.shape[:2]
    if h == w == side:
        return image
    interpolation = cv2.INTER_AREA if side < max(h, w) else cv2.INTER_LINEAR
    return cv2.resize(image, (side, side), interpolation=interpolation)


class ApplyImage(A.ImageOnlyTransform):
    """A deterministic image function as a transform; unlike A.Lambda, it takes just the image."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], name: str) -> None:
        super().__init__(p=1.0)
        self.fn, self.name = fn, name

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return self.fn(img)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("name",)


# ------------------------------------------------------------------------------------ presets
class Preset:
    """Base class: a uint8 pixel pipeline, then normalisation and conversion to a tensor.

    Subclasses build the pixel pipeline (an ``A.Compose`` that ends at ``img_size``) and pass it
    to :meth:`_set_pipeline`.

    Args:
        img_size: side of the output, in pixels.
        mean: per-channel mean of the normalisation, on the 0..1 scale.
        std: per-channel standard deviation of the normalisation, on the 0..1 scale.
    """

    def __init__(
        self, img_size: int, *, mean: Stats = DEFAULT_MEAN, std: Stats = DEFAULT_STD
    ) -> None:
        self.img_size = check_size(img_size, "img_size")
        self.mean, self.std = check_stats(mean, "mean"), check_stats(std, "std")
        # Per channel, on the 0..255 scale, shaped for a 3 x H x W array.
        self._offset = (np.asarray(self.mean, np.float32) * 255)[:, None, None]
        self._inv_scale = (1 / (np.asarray(self.std, np.float32) * 255))[:, None, None]
        self._pipeline = A.Compose([A.Resize(img_size, img_size, area_for_downscale="image")])

    def _set_pipeline(self, ops: list[A.BasicTransform]) -> None:
        self._pipeline = A.Compose(ops)

    def _run(self, image: np.ndarray) -> np.ndarray:
        check_image(image)
        return self._pipeline(image=image)["image"]

    def pixels(self, image: np.ndarray) -> np.ndarray:
        """The transformed picture before normalisation.

        Args:
            image: uint8 ``H x W x 3`` RGB array; it is never modified.

        Returns:
            A new uint8 ``img_size x img_size x 3`` array.
        """
        out = self._run(image)
        # A pipeline with nothing to do hands the input back; callers may draw on the result.
        return out.copy() if np.may_share_memory(out, image) else out

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """The model input: float32 ``3 x img_size x img_size``, normalised with mean and std."""
        # Transposed while still uint8, then normalised in place: the same numbers as
        # albumentations' Normalize + ToTensorV2 at a quarter of the cost, which matters
        # because the training loop runs this for every image of every epoch.
        chw = np.ascontiguousarray(self._run(image).transpose(2, 0, 1)).astype(np.float32)
        chw -= self._offset
        chw *= self._inv_scale
        return torch.from_numpy(chw)

    def _describe(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._describe().items())
        return f"{type(self).__name__}({self.img_size}{', ' if args else ''}{args})"
