"""Image transform presets by name: training augmentation, evaluation, and the study families.

Every preset maps a uint8 ``H x W x 3`` RGB face crop (a row of the decoded cache, square, at the
cache size) to a normalised float32 tensor ``3 x img_size x img_size``. ``pixels(image)`` gives
the uint8 picture just before normalisation, for sample grids and tests.

* ``eval``: resize only (area interpolation when shrinking).
* ``train``: flip, a small similarity jitter (shift, scale, rotation; reflected border) and colour
  jitter, every magnitude scaled by one ``strength`` knob for hyperparameter searches.
* ``resolution``, ``face_fraction``, ``filter``: the study families
  (:mod:`agefair.data.degradations`), deterministic, for evaluations under a degradation.

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
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch

from agefair.data.degradations import FaceFractionPreset, FilterPreset, ResolutionPreset
from agefair.data.preset import (
    DEFAULT_MEAN,
    DEFAULT_STD,
    REFERENCE_SIDE,
    Preset,
    Stats,
    check_range,
)
from agefair.registry import Registry

__all__ = ["PRESETS", "EvalPreset", "TrainPreset", "build_transform"]


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
    hue/saturation, and the probabilities of grayscale, blur, downscaling and JPEG), so a search
    can tune one knob. The flip is not a magnitude: it stays at ``hflip`` for any strength > 0, and
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
        downscale: probability of shrinking the picture to between 35% and 90% of its side and
            back, as a face photographed small.
        jpeg: probability of re-encoding the picture as JPEG at quality 30 to 90.
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
        downscale: float = 0.0,
        jpeg: float = 0.0,
        strength: float = 1.0,
        seed: int | None = None,
        mean: Stats = DEFAULT_MEAN,
        std: Stats = DEFAULT_STD,
    ) -> None:
        super().__init__(img_size, mean=mean, std=std)
        probabilities = {
            "hflip": hflip, "grayscale": grayscale, "blur": blur, "downscale": downscale,
            "jpeg": jpeg,
        }  # fmt: skip
        for what, value in probabilities.items():
            check_range(value, what, 0, 1)
        for what, value in [
            ("shift", shift),
            ("scale", scale),
            ("rotate", rotate),
            ("brightness_contrast", brightness_contrast),
            ("hue_saturation", hue_saturation),
            ("strength", strength),
        ]:
            check_range(value, what, 0, math.inf)
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
            "downscale": downscale,
            "jpeg": jpeg,
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
            if downscale:
                inter = {"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR}
                ops.append(A.Downscale((0.35, 0.9), inter, p=min(1.0, downscale * s)))
            if jpeg:
                ops.append(A.ImageCompression(quality_range=(30, 90), p=min(1.0, jpeg * s)))
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
