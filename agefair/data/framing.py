"""Framing a face the way UTKFace's aligned crops frame it: one function for training and for use.

:func:`crop_face` turns a detected face (:class:`~agefair.data.boxes.FaceBox`) into a square crop
framed like the UTKFace training images, from the original full-resolution photo, turning tilted
faces upright; :func:`reframe` re-cuts a crop that is already framed so (a training image) to
another framing, e.g. the wider chip a face-pretrained backbone learned on. The constants were
measured by running YuNet on UTKFace crops pasted into larger pictures
(``experiments/crop_framing``).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from agefair.data.boxes import FaceBox

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
