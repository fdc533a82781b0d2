"""Age, gender and ethnicity for every face in a photo: the :class:`Predictor`.

    predictor = Predictor.from_checkpoint()       # newest checkpoint under outputs/
    for face in predictor("photo.jpg"):
        print(face.box, face.age, face.gender, face.race)

The path of a photo is the path the training crops took: a detector finds each face, the face
is cut out framed like UTKFace's aligned crops (:func:`agefair.data.framing.crop_face`) at the
size the training cache stored (``data.cache_size``, else ``data.img_size``), then the evaluation
transform resizes and normalises it and the model sees every face of the photo in one batch.
The network runs in torch (a checkpoint) or on ONNX Runtime (a model exported by ``agefair
export``; see :mod:`agefair.inference.runtimes`), whichever file it is given. The ``agefair
predict`` command (:mod:`agefair.inference.predict`) and the web app are thin layers over it.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from PIL import Image

from agefair.data.boxes import FaceBox
from agefair.data.framing import crop_face, crop_square, reframe
from agefair.data.transforms import build_transform
from agefair.inference.checkpoints import default_checkpoint
from agefair.inference.detect import FaceDetector, available_detectors, create_detector
from agefair.inference.imageio import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    ImageSource,
    describe_source,
    image_size,
    load_image,
)
from agefair.inference.runtimes import OnnxRuntime, TorchRuntime, is_exported
from agefair.labels import GENDERS, RACES

if TYPE_CHECKING:
    from agefair.models.base import AgeFairModule

#: What runs the network: a trained torch system or an exported model.
Runtime = TorchRuntime | OnnxRuntime

__all__ = [
    "DETECT_SIDE",
    "FaceCrops",
    "FacePrediction",
    "PhotoPrediction",
    "Predictor",
    "face_settings",
]

#: Longer side at which large photos are decoded for detection. The detectors shrink their input
#: further anyway (YuNet to 640 px), so decoding more pixels than this only costs memory and time.
DETECT_SIDE = 1600


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------
@dataclass
class FacePrediction:
    """What the model says about one face.

    Attributes:
        box: ``[x0, y0, x1, y1]`` in pixels of the original (upright) photo, clipped to it.
        det_score: The detector's confidence; None for crops given by the caller.
        age: Estimated age in years.
        age_sd: The model's own spread of the estimate in years; None if its head has none.
        gender: ``"male"`` or ``"female"``.
        gender_p: Probability of ``gender``.
        race: The most probable of ``agefair.labels.RACES``.
        race_p: Probability of each of the five ethnicity classes, by name.
    """

    box: list[int]
    det_score: float | None
    age: float
    age_sd: float | None
    gender: str
    gender_p: float
    race: str
    race_p: dict[str, float]

    @property
    def race_confidence(self) -> float:
        """Probability of ``race``."""
        return self.race_p[self.race]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields, ages to 0.01 year and probabilities to 1e-4."""
        out = asdict(self)
        out["age"] = round(self.age, 2)
        out["age_sd"] = None if self.age_sd is None else round(self.age_sd, 2)
        out["gender_p"] = round(self.gender_p, 4)
        out["race_p"] = {k: round(v, 4) for k, v in self.race_p.items()}
        return out


@dataclass
class PhotoPrediction:
    """Every face of one photo, with the photo's size and where the time went.

    Attributes:
        faces: One prediction per face, best detector score first (at most ``max_faces``).
        width: Width of the upright photo in pixels.
        height: Height of the upright photo in pixels.
        timings_ms: Milliseconds spent decoding, detecting, cropping and in the model.
        n_detected: Faces the detector found, before the ``max_faces`` cap.
    """

    faces: list[FacePrediction]
    width: int
    height: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    n_detected: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, faces included."""
        return {
            "faces": [f.to_dict() for f in self.faces],
            "width": self.width,
            "height": self.height,
            "n_faces": len(self.faces),
            "n_detected": self.n_detected,
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }


@dataclass
class FaceCrops:
    """The faces of a photo as the model sees them, before the eval transform.

    Attributes:
        boxes: Detected faces in original (upright) photo pixels, best score first.
        crops: One RGB ``uint8`` ``cache_size`` square per box, framed like UTKFace.
        width: Width of the upright photo.
        height: Height of the upright photo.
        n_detected: Faces found before the ``max_faces`` cap.
        timings_ms: Milliseconds spent per stage so far.
    """

    boxes: list[FaceBox]
    crops: list[np.ndarray]
    width: int
    height: int
    n_detected: int
    timings_ms: dict[str, float]


# --------------------------------------------------------------------------------------------
# Predictor
# --------------------------------------------------------------------------------------------
def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


class Predictor:
    """Finds the faces in photos and estimates age, gender and ethnicity for each.

    Large photos: a photo longer than ``detect_side`` is decoded for detection at the smallest
    of 1/2, 1/4 or 1/8 scale that keeps ``detect_side`` pixels (libjpeg decodes JPEGs directly
    at those scales, so a 40-megapixel JPEG never exists in memory at full size for this; the
    detectors shrink their input further anyway). The faces are then cut from the lowest of
    those scales that still gives every face crop at least ``cache_size`` pixels, the size the
    training crops had: usually the detection image itself, otherwise a second decode at the
    scale needed. More pixels would be averaged away by the resize to ``cache_size`` anyway, so
    the crops match crops of the full-size photo, while memory follows the faces' needs rather
    than the photo's size (full size only for faces whose crop is under ``cache_size`` even
    there). Whole scale steps avoid a second resampling before the crop's own resize. Photos
    with more than ``max_pixels`` pixels are refused from their header, before any decoding.

    Thread safety: one instance can serve several threads; the detectors serialise their own
    calls and the model is only read.

    Args:
        model: A trained system (see :func:`agefair.models.checkpoint.load_system`), or a
            runtime of :mod:`agefair.inference.runtimes` (an exported model on ONNX Runtime).
        detector: A detector name for :func:`agefair.inference.detect.create_detector` or an
            instance.
        img_size: The model's input side (``data.img_size`` of its training config).
        cache_size: Side the training crops were stored at before the eval transform
            (``data.cache_size``); None means ``img_size``.
        mean: Normalisation mean (0..1 scale); None takes the backbone's.
        std: Normalisation standard deviation; None takes the backbone's.
        framing: Side of each face's square in units of UTKFace's framing (``data.framing``,
            the ``zoom`` of :func:`agefair.data.framing.crop_face`); None takes the backbone's.
        max_pixels: Refuse photos with more pixels than this (decompression bombs).
        max_faces: Predict for at most this many faces per photo (the best scoring ones).
        batch_size: Most crops sent through the model at once.
        detect_side: Longer side from which photos are decoded at reduced scale for detection
            (see above).
        device: Torch device of a torch system; None picks CUDA when available, else the CPU.
    """

    def __init__(
        self,
        model: AgeFairModule | Runtime,
        *,
        detector: str | FaceDetector = "yunet",
        img_size: int,
        cache_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        framing: float | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        max_faces: int = 20,
        batch_size: int = 32,
        detect_side: int = DETECT_SIDE,
        device: str | torch.device | None = None,
    ) -> None:
        if max_faces < 1 or batch_size < 1 or detect_side < 1:
            raise ValueError("max_faces, batch_size and detect_side must be positive")
        self.runtime: Runtime = (
            TorchRuntime(model, device) if isinstance(model, torch.nn.Module) else model
        )
        self.detector: FaceDetector = (
            create_detector(detector) if isinstance(detector, str) else detector
        )
        self.detector_name = detector if isinstance(detector, str) else _detector_name(detector)
        self.img_size = int(img_size)
        self.cache_size = int(cache_size or img_size)
        norm = self.runtime.input_config
        self.mean = tuple(mean if mean is not None else norm.mean)
        self.std = tuple(std if std is not None else norm.std)
        self.framing = float(framing if framing is not None else norm.framing)
        self.transform = build_transform("eval", self.img_size, mean=self.mean, std=self.std)
        self.max_pixels = max_pixels
        self.max_faces = int(max_faces)
        self.batch_size = int(batch_size)
        self.detect_side = int(detect_side)
        self.checkpoint: Path | None = None

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str] | None = None, **kwargs: Any
    ) -> Predictor:
        """A predictor for a checkpoint written by ``agefair.train``, or a model exported from
        one by ``agefair export`` (a ``.onnx`` file, run on ONNX Runtime).

        Args:
            path: The ``.ckpt`` or ``.onnx`` file; None uses :func:`default_checkpoint`.
            **kwargs: Passed to the constructor (``detector``, ``max_faces``...); the input
                size and normalisation come from the checkpoint's training config (the
                exported model's sidecar).

        Returns:
            The predictor.

        Raises:
            CheckpointError: If there is no checkpoint, or it is not an agefair checkpoint or
                exported model.
        """
        ckpt = Path(path) if path is not None else default_checkpoint()
        if is_exported(ckpt):
            runtime = OnnxRuntime(ckpt)
            predictor = cls.for_system(runtime, runtime.spec.data, **kwargs)
        else:
            # Lightning and Hydra are imported for a checkpoint only: an exported model runs
            # without them.
            from agefair.models.checkpoint import load_system

            model, cfg = load_system(ckpt)
            predictor = cls.for_system(model, cfg.data, **kwargs)
        predictor.checkpoint = ckpt
        return predictor

    @classmethod
    def for_system(
        cls, model: AgeFairModule | Runtime, data: Mapping[str, Any], **kwargs: Any
    ) -> Predictor:
        """A predictor for a system in memory, with the input its data config trained it on.

        Args:
            model: The trained system, or a runtime.
            data: Its ``data`` config (``img_size``, ``cache_size``, ``mean``, ``std``,
                ``framing``).
            **kwargs: Passed to the constructor; they win over the data config.

        Returns:
            The predictor.
        """
        return cls(model, **{**face_settings(model, data), **kwargs})

    @property
    def system(self) -> str:
        """Class name of the model (``MultiTaskModule``...)."""
        return self.runtime.name

    @property
    def model(self) -> AgeFairModule | None:
        """The torch system; None for an exported model."""
        return getattr(self.runtime, "system", None)

    @property
    def device(self) -> torch.device:
        """Where the network runs."""
        return self.runtime.device

    # ---------------------------------------------------------------- public
    def __call__(self, image: ImageSource) -> list[FacePrediction]:
        """The faces of one photo; an empty list when there is none.

        Args:
            image: A path, bytes, a binary file object, a PIL image or an RGB(A) array.

        Returns:
            One prediction per face, best detector score first.

        Raises:
            ImageError: If the input is not a usable image or has more than ``max_pixels``.
        """
        return self.analyse(image).faces

    def analyse(self, image: ImageSource) -> PhotoPrediction:
        """Like calling the predictor, but also returns the photo's size and the timings.

        Args:
            image: A path, bytes, a binary file object, a PIL image or an RGB(A) array.

        Returns:
            The faces, the upright photo's size and milliseconds per stage.

        Raises:
            ImageError: If the input is not a usable image or has more than ``max_pixels``.
        """
        found = self.extract_faces(image)
        timings = found.timings_ms
        if not found.boxes:
            return PhotoPrediction([], found.width, found.height, timings, found.n_detected)
        start = time.perf_counter()
        batch = torch.stack([self.transform(crop) for crop in found.crops])
        timings["crop"] += _ms(start)
        start = time.perf_counter()
        outputs = self.infer_batch(batch)
        timings["model"] = _ms(start)
        faces = [
            self._face(outputs, i, _int_box(box, found.width, found.height), box.score)
            for i, box in enumerate(found.boxes)
        ]
        return PhotoPrediction(faces, found.width, found.height, timings, found.n_detected)

    def extract_faces(self, image: ImageSource) -> FaceCrops:
        """Detects the faces of a photo and cuts them out as the model's training crops were.

        Args:
            image: A path, bytes, a binary file object, a PIL image or an RGB(A) array.

        Returns:
            The boxes (original pixels), the ``cache_size`` crops, the photo's size, and the
            milliseconds spent decoding, detecting and cropping.

        Raises:
            ImageError: If the input is not a usable image or has more than ``max_pixels``.
        """
        timings = {"decode": 0.0, "detect": 0.0, "crop": 0.0, "model": 0.0}
        start = time.perf_counter()
        if hasattr(image, "read") and not isinstance(image, Image.Image | np.ndarray):
            image = image.read()  # read once: the photo may have to be decoded twice
        what = describe_source(image)
        width, height = image_size(image)
        if self.max_pixels is not None and width * height > self.max_pixels:
            raise ImageError(
                f"refusing image {what}: {width}x{height} = {width * height:,} pixels is more "
                f"than the limit of {self.max_pixels:,}"
            )
        in_memory = isinstance(image, np.ndarray | Image.Image)
        longer = max(width, height)
        if in_memory or longer <= self.detect_side:
            # Already in memory, or small: one full decode serves detection and cropping.
            full = load_image(image, max_pixels=self.max_pixels)
            seen = full
            if longer > self.detect_side:
                seen = load_image(full, max_pixels=None, max_side=self.detect_side)
        else:
            full = None
            side = _reduced_side(longer, self.detect_side)
            seen = load_image(image, max_pixels=self.max_pixels, max_side=side)
        timings["decode"] += _ms(start)

        start = time.perf_counter()
        detected = self.detector.detect(seen)
        fx, fy = width / seen.shape[1], height / seen.shape[0]
        boxes = [_rescale(box, fx, fy) for box in detected[: self.max_faces]]
        timings["detect"] = _ms(start)
        if not boxes:
            return FaceCrops([], [], width, height, len(detected), timings)

        # The crop source: the lowest resolution at which the smallest face's crop still has
        # cache_size pixels (see the class docstring).
        start = time.perf_counter()
        smallest = min(crop_square(box, zoom=self.framing)[2] for box in boxes)
        target = math.ceil(longer * min(1.0, self.cache_size / max(smallest, 1e-6)))
        if full is not None:
            source = full
        elif target <= max(seen.shape[:2]):
            source = seen
        else:
            side = _reduced_side(longer, target)
            source = load_image(image, max_pixels=self.max_pixels, max_side=side)
        timings["decode"] += _ms(start)

        start = time.perf_counter()
        sx, sy = source.shape[1] / width, source.shape[0] / height
        crops = [
            crop_face(source, _rescale(box, sx, sy), out_size=self.cache_size, zoom=self.framing)
            for box in boxes
        ]
        timings["crop"] = _ms(start)
        return FaceCrops(boxes, crops, width, height, len(detected), timings)

    def predict_crops(self, crops: Sequence[np.ndarray]) -> list[FacePrediction]:
        """Predictions for faces already cut out and aligned like UTKFace's crops.

        No detection: each crop is cut to the model's framing and resized to ``cache_size`` the
        way the training cache was built (area interpolation when shrinking), then goes through
        the eval transform.

        Args:
            crops: RGB ``uint8`` square-ish arrays, e.g. UTKFace's 200 x 200 images.

        Returns:
            One prediction per crop, in order; ``box`` is the whole crop, ``det_score`` None.
        """
        if not len(crops):
            return []
        tensors = []
        for crop in crops:
            if not isinstance(crop, np.ndarray) or crop.ndim != 3 or crop.dtype != np.uint8:
                raise ValueError("predict_crops expects RGB uint8 arrays of shape (H, W, 3)")
            crop = reframe(crop, self.framing)
            side = self.cache_size
            shrinking = max(crop.shape[:2]) > side
            resized = cv2.resize(
                crop, (side, side), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
            )
            tensors.append(self.transform(resized))
        outputs = self.infer_batch(torch.stack(tensors))
        return [
            self._face(outputs, i, [0, 0, int(c.shape[1]), int(c.shape[0])], None)
            for i, c in enumerate(crops)
        ]

    # ---------------------------------------------------------------- internals
    def infer_batch(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        """Runs the model over ``batch`` in chunks of ``batch_size``; numpy outputs."""
        parts: dict[str, list[np.ndarray]] = {}
        for chunk in torch.split(batch, self.batch_size):
            for key, value in self.runtime(chunk).items():
                parts.setdefault(key, []).append(value)
        return {key: np.concatenate(values) for key, values in parts.items()}

    @staticmethod
    def _face(
        out: dict[str, np.ndarray], i: int, box: list[int], score: float | None
    ) -> FacePrediction:
        gender_p, race_p = out["gender_p"][i], out["race_p"][i]
        g, r = int(gender_p.argmax()), int(race_p.argmax())
        return FacePrediction(
            box=box,
            det_score=None if score is None else round(float(score), 4),
            age=float(out["age"][i]),
            age_sd=float(out["age_sd"][i]) if "age_sd" in out else None,
            gender=GENDERS[g],
            gender_p=float(gender_p[g]),
            race=RACES[r],
            race_p={name: float(p) for name, p in zip(RACES, race_p, strict=True)},
        )


def face_settings(model: AgeFairModule | Runtime, data: Mapping[str, Any]) -> dict[str, Any]:
    """How a model's faces are cut and normalised: ``img_size``, ``cache_size``, ``mean``,
    ``std`` and ``framing`` from its training ``data`` config where set, else its backbone's."""
    norm = model.input_config
    img_size = int(data["img_size"])

    def given(key: str, default: Any) -> Any:
        return data[key] if data.get(key) is not None else default

    return {
        "img_size": img_size,
        "cache_size": int(given("cache_size", img_size)),
        "mean": tuple(float(v) for v in given("mean", norm.mean)),
        "std": tuple(float(v) for v in given("std", norm.std)),
        "framing": float(given("framing", norm.framing)),
    }


def _detector_name(detector: FaceDetector) -> str:
    """The registry name of a detector instance (``YuNetDetector`` -> ``yunet``) if it has one."""
    cls = type(detector).__name__
    plain = cls.removesuffix("Detector").lower()
    known = {name.replace("-", ""): name for name in available_detectors()}
    return known.get(plain, cls)


def _reduced_side(longer: int, target: int) -> int:
    """The longer side at the smallest of 1/8, 1/4, 1/2 or full scale that is >= ``target``.

    JPEGs decode at these scales for free (libjpeg's scaled IDCT), so asking ``load_image`` for
    exactly such a side avoids resampling the decoded photo a second time.
    """
    for k in (8, 4, 2):
        if longer // k >= target:
            return longer // k
    return longer


def _rescale(box: FaceBox, fx: float, fy: float) -> FaceBox:
    """``box`` with x coordinates multiplied by ``fx`` and y by ``fy`` (landmarks too)."""
    marks = None
    if box.landmarks is not None:
        marks = tuple((x * fx, y * fy) for x, y in box.landmarks)
    return FaceBox(box.x0 * fx, box.y0 * fy, box.x1 * fx, box.y1 * fy, box.score, marks)


def _int_box(box: FaceBox, width: int, height: int) -> list[int]:
    """The box as integer pixels, clipped to the photo (detectors may reach past its edge)."""
    clipped = box.clipped(width, height)
    return [
        int(round(clipped.x0)),
        int(round(clipped.y0)),
        int(round(clipped.x1)),
        int(round(clipped.y1)),
    ]
