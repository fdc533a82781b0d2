"""Image transform presets: training augmentation, evaluation, and the three study families.

Every preset maps a uint8 ``H x W x 3`` RGB face crop (a row of the decoded cache, square, at the
cache size) to a normalised float32 tensor ``3 x img_size x img_size``. ``pixels(image)`` gives
the uint8 picture just before normalisation, for sample grids and tests.

* ``eval``: resize only (area interpolation when shrinking).
* ``train``: flip, a small similarity jitter (shift, scale, rotation; reflected border) and colour
  jitter, every magnitude scaled by one ``strength`` knob for hyperparameter searches.
* ``resolution``, ``face_fraction``, ``filter``: the study families. They are deterministic (the
  same picture always gives the same output), so an evaluation under a degradation is
  reproducible; :func:`study_grid` lists their default grid points.

The recipes are small classes with keyword-only arguments, in the style of the torchvision
references, so the datamodule only names a preset and passes its arguments through
:func:`build_transform`::

    tf = build_transform("filter", 64, name="jpeg", strength=0.5)
    tensor = tf(image)  # 3 x 64 x 64 float32
    picture = tf.pixels(image)  # 64 x 64 x 3 uint8

Magnitudes given in pixels (blur and sharpening radii) are stated for a 64-px face and scale with
``img_size``, so a study point degrades a 96-px model input as much, relative to the face, as a
64-px one.
"""

from __future__ import annotations

import inspect
import math
import zlib
from collections.abc import Callable, Sequence
from functools import lru_cache, partial
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch

from agefair.registry import Registry

__all__ = [
    "FACE_FRACTIONS",
    "FILTERS",
    "FILTER_STRENGTHS",
    "PRESETS",
    "RESOLUTIONS",
    "STUDY_FAMILIES",
    "EvalPreset",
    "FaceFractionPreset",
    "FilterPreset",
    "Preset",
    "ResolutionPreset",
    "TrainPreset",
    "build_transform",
    "study_grid",
]

Stats = Sequence[float]
DEFAULT_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
DEFAULT_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)
# Pixel magnitudes (blur sigma, sharpening radius) are stated for a face this many pixels wide.
REFERENCE_SIDE = 64
# Canvas colour of the "constant" face-fraction background: mid-grey normalises to about zero.
GREY = (128, 128, 128)


# ------------------------------------------------------------------------------------ helpers
def _check_image(image: np.ndarray) -> None:
    # A cheap guard: a float or BGRA array would otherwise fail deep inside OpenCV, or worse,
    # be normalised as if it held 0..255 values.
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"expected an H x W x 3 RGB array, got {type(image).__name__} {shape}")
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {image.dtype}")


def _check_size(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {value!r}")
    return int(value)


def _check_range(value: float, what: str, lo: float, hi: float, *, open_lo: bool = False) -> float:
    ok = (lo < value if open_lo else lo <= value) and value <= hi
    if not ok:
        bracket = "(" if open_lo else "["
        raise ValueError(f"{what} must be in {bracket}{lo:g}, {hi:g}], got {value!r}")
    return float(value)


def _check_stats(values: Stats, what: str) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if len(values) != 3:
        raise ValueError(f"{what} needs one value per RGB channel, got {values}")
    if what == "std" and min(values) <= 0:
        raise ValueError(f"std must be positive, got {values}")
    return values


def _resize(image: np.ndarray, side: int) -> np.ndarray:
    """Square resize: area interpolation when shrinking (no aliasing), bilinear when enlarging."""
    h, w = image.shape[:2]
    if h == w == side:
        return image
    interpolation = cv2.INTER_AREA if side < max(h, w) else cv2.INTER_LINEAR
    return cv2.resize(image, (side, side), interpolation=interpolation)


class _Apply(A.ImageOnlyTransform):
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
        self.img_size = _check_size(img_size, "img_size")
        self.mean, self.std = _check_stats(mean, "mean"), _check_stats(std, "std")
        # Per channel, on the 0..255 scale, shaped for a 3 x H x W array.
        self._offset = (np.asarray(self.mean, np.float32) * 255)[:, None, None]
        self._inv_scale = (1 / (np.asarray(self.std, np.float32) * 255))[:, None, None]
        self._pipeline = A.Compose([A.Resize(img_size, img_size, area_for_downscale="image")])

    def _set_pipeline(self, ops: list[A.BasicTransform]) -> None:
        self._pipeline = A.Compose(ops)

    def _run(self, image: np.ndarray) -> np.ndarray:
        _check_image(image)
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


class EvalPreset(Preset):
    """Resize to ``img_size`` (area interpolation when shrinking) and normalise.

    Args:
        img_size: side of the output, in pixels.
        mean: per-channel normalisation mean (0..1 scale).
        std: per-channel normalisation standard deviation (0..1 scale).
    """

    def __init__(
        self, img_size: int, *, mean: Stats = DEFAULT_MEAN, std: Stats = DEFAULT_STD
    ) -> None:
        super().__init__(img_size, mean=mean, std=std)


class _FlipSimilarity(A.ImageOnlyTransform):
    """Random horizontal flip and similarity jitter (shift, scale, rotation) as one warp.

    ``A.Affine`` does the same job but costs about 4x a bare ``cv2.warpAffine`` at 64 px (it
    builds projective matrices for boxes and keypoints we never have), which alone would halve
    the training throughput on two cores. Folding the flip into the warp matrix saves a copy.
    """

    def __init__(self, hflip: float, shift: float, scale: float, rotate: float) -> None:
        super().__init__(p=1.0)
        self.hflip, self.shift, self.scale, self.rotate = hflip, shift, scale, rotate

    def get_params(self) -> dict[str, Any]:
        r = self.py_random
        return {
            "flip": r.random() < self.hflip,
            "dx": r.uniform(-self.shift, self.shift),
            "dy": r.uniform(-self.shift, self.shift),
            "zoom": r.uniform(1 - self.scale, 1 + self.scale),
            "angle": r.uniform(-self.rotate, self.rotate),
        }

    def apply(
        self, img: np.ndarray, flip: bool, dx: float, dy: float, zoom: float, angle: float, **_: Any
    ) -> np.ndarray:
        h, w = img.shape[:2]
        if not (self.shift or self.scale or self.rotate):
            return cv2.flip(img, 1) if flip else img
        m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, zoom)
        if flip:  # warp(flip(x)): the flip x -> w - 1 - x applied before the similarity
            m = m @ np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        m[0, 2] += dx * w
        m[1, 2] += dy * h
        # Reflection, not a black border: a black wedge would be an easy cue unrelated to faces.
        return cv2.warpAffine(
            img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("hflip", "shift", "scale", "rotate")


class TrainPreset(Preset):
    """Training augmentation: flip, small similarity jitter, colour jitter.

    The picture is resized to ``img_size`` first and augmented there: cheaper when the cache is
    larger than the model input, and the same result to the eye. UTKFace crops are aligned, so
    the geometric jitter stays small: it teaches tolerance to the framing of a detector's crop
    without moving the face out of the picture. Hue and saturation jitter is off by default
    because skin tone carries part of the ethnicity label.

    ``strength`` multiplies every magnitude (shift, scale, rotation, brightness/contrast,
    hue/saturation, and the probabilities of grayscale and blur), so a search can tune one knob.
    The flip is not a magnitude: it stays at ``hflip`` for any strength > 0, and
    ``strength=0`` gives exactly the eval pipeline.

    Each ``DataLoader`` worker reseeds the pipeline from its worker seed: albumentations 2.0
    does not, so forked workers would otherwise replay identical augmentation sequences.

    Args:
        img_size: side of the output, in pixels.
        hflip: probability of a horizontal flip.
        shift: largest shift, as a fraction of the side, in each direction.
        scale: largest relative zoom in or out (0.08: factor in [0.92, 1.08]).
        rotate: largest rotation, in degrees.
        brightness_contrast: largest relative brightness and contrast change.
        hue_saturation: hue/saturation jitter; 1.0 gives hue ±18° and saturation ±40 (of 255).
        grayscale: probability of turning the picture grey.
        blur: probability of a Gaussian blur with sigma up to 1.5 px (at 64 px).
        strength: multiplier of every magnitude above except the flip; 0 is the eval pipeline.
        seed: seed of the augmentation sequence; None draws a fresh one.
        mean: per-channel normalisation mean (0..1 scale).
        std: per-channel normalisation standard deviation (0..1 scale).
    """

    def __init__(
        self,
        img_size: int,
        *,
        hflip: float = 0.5,
        shift: float = 0.06,
        scale: float = 0.08,
        rotate: float = 10.0,
        brightness_contrast: float = 0.2,
        hue_saturation: float = 0.0,
        grayscale: float = 0.0,
        blur: float = 0.0,
        strength: float = 1.0,
        seed: int | None = None,
        mean: Stats = DEFAULT_MEAN,
        std: Stats = DEFAULT_STD,
    ) -> None:
        super().__init__(img_size, mean=mean, std=std)
        for what, value in [("hflip", hflip), ("grayscale", grayscale), ("blur", blur)]:
            _check_range(value, what, 0, 1)
        for what, value in [
            ("shift", shift),
            ("scale", scale),
            ("rotate", rotate),
            ("brightness_contrast", brightness_contrast),
            ("hue_saturation", hue_saturation),
            ("strength", strength),
        ]:
            _check_range(value, what, 0, math.inf)
        s = float(strength)
        if scale * s >= 1:  # the zoom factor 1 - scale * strength must stay positive
            raise ValueError(f"scale * strength must be < 1, got {scale} * {strength}")
        self.settings = {
            "hflip": hflip,
            "shift": shift,
            "scale": scale,
            "rotate": rotate,
            "brightness_contrast": brightness_contrast,
            "hue_saturation": hue_saturation,
            "grayscale": grayscale,
            "blur": blur,
            "strength": strength,
        }
        self.seed = seed
        self._worker_seed: int | None = None

        ops: list[A.BasicTransform] = [A.Resize(img_size, img_size, area_for_downscale="image")]
        if s > 0:
            if hflip or shift or scale or rotate:
                ops.append(_FlipSimilarity(hflip, shift * s, scale * s, rotate * s))
            if brightness_contrast:
                lim = brightness_contrast * s
                ops.append(A.RandomBrightnessContrast(lim, lim, p=1.0))
            if hue_saturation:
                lim = hue_saturation * s
                ops.append(A.HueSaturationValue(18 * lim, 40 * lim, 0, p=1.0))
            if grayscale:
                ops.append(A.ToGray(p=min(1.0, grayscale * s)))
            if blur:
                sigma = 1.5 * img_size / REFERENCE_SIDE
                ops.append(A.GaussianBlur(sigma_limit=(0.1, sigma), p=min(1.0, blur * s)))
        self._pipeline = A.Compose(ops, seed=seed)

    def _run(self, image: np.ndarray) -> np.ndarray:
        info = torch.utils.data.get_worker_info()
        if info is not None and info.seed != self._worker_seed:
            self._worker_seed = info.seed
            mixed = np.random.SeedSequence([self.seed or 0, info.seed]).generate_state(1)[0]
            self._pipeline.set_random_seed(int(mixed))
        return super()._run(image)

    def _describe(self) -> dict[str, Any]:
        return self.settings


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
        self.resolution = _check_size(resolution, "resolution")
        self._set_pipeline([_Apply(self._degrade, f"resolution={self.resolution}")])

    def _degrade(self, image: np.ndarray) -> np.ndarray:
        if self.resolution >= min(image.shape[:2]):
            return _resize(image, self.img_size)
        # Straight from the small picture to the output size: a detour through the input size
        # would add a second interpolation blur.
        small = cv2.resize(image, (self.resolution,) * 2, interpolation=cv2.INTER_AREA)
        return _resize(small, self.img_size)

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
        self.fraction = _check_range(fraction, "fraction", 0, 1, open_lo=True)
        if background not in self.BACKGROUNDS:
            known = ", ".join(self.BACKGROUNDS)
            raise ValueError(f"unknown background {background!r}; known: {known}")
        self.background = background
        # Rounded to whole pixels; at 64 px the area share is off by at most ~3% relative.
        self.face_side = max(1, round(self.img_size * math.sqrt(self.fraction)))
        self._set_pipeline([_Apply(self._place, f"face_fraction={self.fraction}")])

    def _place(self, image: np.ndarray) -> np.ndarray:
        n, side = self.img_size, self.face_side
        face = _resize(image, side)
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
        self.strength = _check_range(strength, "filter strength", 0, 1, open_lo=True)
        self.seed = seed
        fn = _FILTER_FUNCS[name]
        if name == "noise":
            fn = partial(fn, seed=seed)
        self._filter = partial(fn, s=self.strength)
        size = A.Resize(img_size, img_size, area_for_downscale="image")
        self._set_pipeline([size, _Apply(self._filter, f"{name}={self.strength}")])

    def _describe(self) -> dict[str, Any]:
        return {"name": self.name, "strength": self.strength}


# ----------------------------------------------------------------------------- registry, grids
PRESETS: Registry[type[Preset]] = Registry(
    "transform preset",
    {
        "train": TrainPreset,
        "eval": EvalPreset,
        "resolution": ResolutionPreset,
        "face_fraction": FaceFractionPreset,
        "filter": FilterPreset,
    },
)


def build_transform(name: str, img_size: int, /, **kwargs: Any) -> Preset:
    """Builds a preset by name.

    ``name`` and ``img_size`` are positional-only, so the filter preset's own ``name`` argument
    passes through: ``build_transform("filter", 64, name="blur", strength=0.5)``.

    Args:
        name: a key of :data:`PRESETS`.
        img_size: side of the output, in pixels.
        **kwargs: the preset's keyword arguments.

    Returns:
        The preset, a callable from a uint8 RGB array to a normalised tensor.

    Raises:
        ValueError: unknown preset name (the message lists the known ones) or a bad value.
        TypeError: an argument the preset does not take, or a required one missing (the message
            lists the arguments the preset takes).
    """
    cls = PRESETS.lookup(name)
    params = list(inspect.signature(cls.__init__).parameters.values())[2:]  # past self, img_size
    accepted = [p.name for p in params]
    unknown = sorted(set(kwargs) - set(accepted))
    missing = [p.name for p in params if p.default is p.empty and p.name not in kwargs]
    if unknown or missing:
        problem = f"unexpected {unknown}" if unknown else f"missing {missing}"
        raise TypeError(f"preset {name!r}: {problem}; it takes: {', '.join(accepted)}")
    return cls(img_size, **kwargs)


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
