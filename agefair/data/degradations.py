"""The study families: a face crop at a lower resolution, as a smaller part of the picture, or
through a photo filter.

``resolution``, ``face_fraction`` and ``filter`` presets are deterministic (the same picture
always gives the same output), so an evaluation under a degradation is reproducible;
:func:`study_grid` lists their default grid points. Magnitudes given in pixels (blur and
sharpening radii) are stated for a 64-px face and scale with ``img_size``, so a study point
degrades a 96-px model input as much, relative to the face, as a 64-px one.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any

import albumentations as A
import cv2
import numpy as np

from agefair.data.preset import (
    DEFAULT_MEAN,
    DEFAULT_STD,
    GREY,
    REFERENCE_SIDE,
    ApplyImage,
    Preset,
    Stats,
    check_range,
    check_size,
    resize_square,
)


# ------------------------------------------------------------------------------ study: resolution
class ResolutionPreset(Preset):
    """The face shrunk to ``resolution`` px (area) and brought back to ``img_size`` (bilinear).

    The output holds no more detail than a ``resolution``-px picture of the face: the question
    is how many pixels on the face a model needs. A resolution at or above the input's side
    leaves the eval picture.

    Args:
        img_size: side of the output, in pixels.
        resolution: side, in pixels, the face is reduced to.
        mean: per-channel normalisation mean (0..1 scale).
        std: per-channel normalisation standard deviation (0..1 scale).
    """

    def __init__(
        self,
        img_size: int,
        *,
        resolution: int,
        mean: Stats = DEFAULT_MEAN,
        std: Stats = DEFAULT_STD,
    ) -> None:
        super().__init__(img_size, mean=mean, std=std)
        self.resolution = check_size(resolution, "resolution")
        self._set_pipeline([ApplyImage(self._degrade, f"resolution={self.resolution}")])

    def _degrade(self, image: np.ndarray) -> np.ndarray:
        if self.resolution >= min(image.shape[:2]):
            return resize_square(image, self.img_size)
        # Straight from the small picture to the output size: a detour through the input size
        # would add a second interpolation blur.
        small = cv2.resize(image, (self.resolution,) * 2, interpolation=cv2.INTER_AREA)
        return resize_square(small, self.img_size)

    def _describe(self) -> dict[str, Any]:
        return {"resolution": self.resolution}


# --------------------------------------------------------------------------- study: face fraction
class FaceFractionPreset(Preset):
    """The face centred in a larger square canvas, covering ``fraction`` of its area.

    The canvas is then resized to ``img_size``, so a smaller fraction means fewer pixels on the
    face, as in a photo where the face is small: ``fraction=0.25`` makes the face half the
    side. The canvas is built directly at ``img_size`` (the face shrunk to
    ``img_size * sqrt(fraction)`` px), which gives the same picture as a huge canvas resized
    down, with one interpolation instead of two.

    Backgrounds: ``"reflect"`` mirrors the face at its borders (at small fractions the canvas
    fills with mirrored copies of the face), ``"constant"`` is mid-grey, ``"blur"`` is the
    reflection blurred so the copies become a face-coloured haze.

    Args:
        img_size: side of the output, in pixels.
        fraction: share of the canvas area the face covers, in (0, 1]; 1.0 is the eval picture.
        background: ``"reflect"``, ``"constant"`` or ``"blur"``.
        mean: per-channel normalisation mean (0..1 scale).
        std: per-channel normalisation standard deviation (0..1 scale).
    """

    BACKGROUNDS = ("reflect", "constant", "blur")

    def __init__(
        self,
        img_size: int,
        *,
        fraction: float,
        background: str = "reflect",
        mean: Stats = DEFAULT_MEAN,
        std: Stats = DEFAULT_STD,
    ) -> None:
        super().__init__(img_size, mean=mean, std=std)
        self.fraction = check_range(fraction, "fraction", 0, 1, open_lo=True)
        if background not in self.BACKGROUNDS:
            known = ", ".join(self.BACKGROUNDS)
            raise ValueError(f"unknown background {background!r}; known: {known}")
        self.background = background
        # Rounded to whole pixels; at 64 px the area share is off by at most ~3% relative.
        self.face_side = max(1, round(self.img_size * math.sqrt(self.fraction)))
        self._set_pipeline([ApplyImage(self._place, f"face_fraction={self.fraction}")])

    def _place(self, image: np.ndarray) -> np.ndarray:
        n, side = self.img_size, self.face_side
        face = resize_square(image, side)
        if side == n:
            return face
        top, left = (n - side) // 2, (n - side) // 2
        pads = (top, n - side - top, left, n - side - left)
        if self.background == "constant":
            return cv2.copyMakeBorder(face, *pads, cv2.BORDER_CONSTANT, value=GREY)
        canvas = cv2.copyMakeBorder(face, *pads, cv2.BORDER_REFLECT_101)
        if self.background == "blur":
            canvas = cv2.GaussianBlur(canvas, (0, 0), sigmaX=max(1.0, n / 16))
            canvas[top : top + side, left : left + side] = face
        return canvas

    def _describe(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "background": self.background}


# ---------------------------------------------------------------------------------- study: filters
# Every filter is f(image, strength) -> image on a uint8 picture at the model's input size,
# with strength in (0, 1]. They run after the resize, so a strength means the same on the model
# input whatever the cache size (JPEG blocks or noise made at 200 px would be averaged away by
# the downscale to 64).
def _scale(image: np.ndarray) -> float:
    return image.shape[0] / REFERENCE_SIDE


def _blend(image: np.ndarray, target: np.ndarray, s: float) -> np.ndarray:
    out = image.astype(np.float32) * (1 - s) + target * s
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)  # +0.5: round, not truncate


def _grayscale(image: np.ndarray, s: float) -> np.ndarray:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if s >= 1:
        return cv2.merge([gray, gray, gray])
    return _blend(image, gray[..., None].astype(np.float32), s)


# The classic sepia matrix (rows: output R, G, B); warm tones, and the sum of a row can exceed 1.
_SEPIA = np.array(
    [[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], dtype=np.float32
)


def _sepia(image: np.ndarray, s: float) -> np.ndarray:
    return _blend(image, np.clip(image.astype(np.float32) @ _SEPIA.T, 0, 255), s)


def _blur(image: np.ndarray, s: float) -> np.ndarray:
    # Strength 1: sigma 3 px on a 64-px face, roughly a 10-px picture's worth of detail left.
    return cv2.GaussianBlur(image, (0, 0), sigmaX=3.0 * s * _scale(image))


def _sharpen(image: np.ndarray, s: float) -> np.ndarray:
    # Unsharp mask: the picture plus 2 * s times its high-pass (picture minus a blurred copy).
    soft = cv2.GaussianBlur(image, (0, 0), sigmaX=_scale(image))
    return cv2.addWeighted(image, 1 + 2 * s, soft, -2 * s, 0)


def _jpeg(image: np.ndarray, s: float) -> np.ndarray:
    quality = round(95 - 90 * s)  # 0.5 gives quality 50, 1.0 gives 5
    # OpenCV codecs speak BGR; a swapped order would compute the chroma from the wrong channels.
    ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


@lru_cache(maxsize=64)
def _levels(gain: float, offset: float) -> np.ndarray:
    return np.clip(np.arange(256) * gain + offset + 0.5, 0, 255).astype(np.uint8)


def _brightness(image: np.ndarray, s: float) -> np.ndarray:
    return cv2.LUT(image, _levels(1.0, 100 * s))  # overexposure: highlights clip to white


def _darkness(image: np.ndarray, s: float) -> np.ndarray:
    return cv2.LUT(image, _levels(1 - 0.75 * s, 0.0))


def _contrast(image: np.ndarray, s: float) -> np.ndarray:
    gain = 1 - 0.75 * s  # every level pulled towards mid-grey
    return cv2.LUT(image, _levels(gain, 127.5 * (1 - gain)))


def _noise(image: np.ndarray, s: float, seed: int = 0) -> np.ndarray:
    # Seeded by the picture's bytes: deterministic, yet each face gets its own noise, so no
    # fixed pattern that a model could happen to be (in)sensitive to.
    rng = np.random.default_rng([seed, zlib.crc32(np.ascontiguousarray(image))])
    noise = rng.standard_normal(image.shape, dtype=np.float32) * (25.0 * s)
    return np.clip(image + noise + 0.5, 0, 255).astype(np.uint8)


@lru_cache(maxsize=16)
def _vignette_mask(h: int, w: int, s: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = max(0.5, (h - 1) / 2), max(0.5, (w - 1) / 2)
    r2 = ((yy - cy) / cy) ** 2 + ((xx - cx) / cx) ** 2
    # r2 / 2 is 1 on the corner pixels: they go black at strength 1, edge midpoints to half.
    mask = (1 - s * np.clip(r2 / 2, 0, 1))[..., None]
    mask.flags.writeable = False  # shared by every call through the cache
    return mask


def _vignette(image: np.ndarray, s: float) -> np.ndarray:
    return (image * _vignette_mask(*image.shape[:2], s) + 0.5).astype(np.uint8)


_FILTER_FUNCS: dict[str, Callable[..., np.ndarray]] = {
    "none": lambda image, s: image,
    "grayscale": _grayscale,
    "sepia": _sepia,
    "blur": _blur,
    "sharpen": _sharpen,
    "jpeg": _jpeg,
    "brightness": _brightness,
    "darkness": _darkness,
    "contrast": _contrast,
    "noise": _noise,
    "vignette": _vignette,
}
FILTERS: tuple[str, ...] = tuple(_FILTER_FUNCS)


class FilterPreset(Preset):
    """A photo filter at ``strength`` in (0, 1] (1 is strong), at the model's input size.

    Filters: ``none``; ``grayscale`` and ``sepia`` (blended with the original by strength);
    ``blur`` (Gaussian, sigma 3 px at 64 px and strength 1); ``sharpen`` (unsharp mask);
    ``jpeg`` (quality 95 - 90 * strength); ``brightness`` (+100 * strength grey levels);
    ``darkness`` (x (1 - 0.75 * strength)); ``contrast`` (lowered: levels pulled towards grey by
    0.75 * strength); ``noise`` (Gaussian, sigma 25 * strength grey levels, seeded by ``seed``
    and the picture); ``vignette`` (corners darkened, black at strength 1).

    Args:
        img_size: side of the output, in pixels.
        name: one of :data:`FILTERS`.
        strength: in (0, 1]; ignored by ``none``.
        seed: seed of the ``noise`` filter.
        mean: per-channel normalisation mean (0..1 scale).
        std: per-channel normalisation standard deviation (0..1 scale).
    """

    def __init__(
        self,
        img_size: int,
        *,
        name: str,
        strength: float = 1.0,
        seed: int = 0,
        mean: Stats = DEFAULT_MEAN,
        std: Stats = DEFAULT_STD,
    ) -> None:
        super().__init__(img_size, mean=mean, std=std)
        if name not in _FILTER_FUNCS:
            raise ValueError(f"unknown filter {name!r}; known: {', '.join(FILTERS)}")
        self.name = name
        self.strength = check_range(strength, "filter strength", 0, 1, open_lo=True)
        self.seed = seed
        fn = _FILTER_FUNCS[name]
        if name == "noise":
            fn = partial(fn, seed=seed)
        self._filter = partial(fn, s=self.strength)
        size = A.Resize(img_size, img_size, area_for_downscale="image")
        self._set_pipeline([size, ApplyImage(self._filter, f"{name}={self.strength}")])

    def _describe(self) -> dict[str, Any]:
        return {"name": self.name, "strength": self.strength}


RESOLUTIONS: tuple[int, ...] = (8, 12, 16, 24, 32, 48, 64, 96, 128, 200)
FACE_FRACTIONS: tuple[float, ...] = (1.0, 0.5, 0.25, 0.1, 0.05, 0.02)
FILTER_STRENGTHS: tuple[float, ...] = (0.5, 1.0)
STUDY_FAMILIES: tuple[str, ...] = ("resolution", "face_fraction", "filter")


def study_grid(family: str) -> list[dict[str, Any]]:
    """The default grid points of a study family.

    Args:
        family: ``"resolution"``, ``"face_fraction"`` or ``"filter"`` (the preset's name).

    Returns:
        A new list of keyword-argument dicts for the family's preset, e.g.
        ``build_transform(family, 64, **point)`` for each point.

    Raises:
        ValueError: unknown family (the message lists the known ones).
    """
    if family == "resolution":
        return [{"resolution": r} for r in RESOLUTIONS]
    if family == "face_fraction":
        return [{"fraction": f} for f in FACE_FRACTIONS]
    if family == "filter":
        filtered = [
            {"name": n, "strength": s} for n in FILTERS if n != "none" for s in FILTER_STRENGTHS
        ]
        return [{"name": "none"}, *filtered]
    raise ValueError(f"unknown study family {family!r}; known: {', '.join(STUDY_FAMILIES)}")
