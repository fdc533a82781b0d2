"""A photo with its faces' boxes and labels drawn on it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from agefair.inference.predictor import FacePrediction


def format_label(face: FacePrediction) -> str:
    """The one-line label of a face, e.g. ``31 ± 4 · female 97% · Asian 88%``."""
    age = f"{face.age:.0f}" if face.age_sd is None else f"{face.age:.0f} ± {face.age_sd:.0f}"
    return f"{age} · {face.gender} {face.gender_p:.0%} · {face.race} {face.race_confidence:.0%}"


_COLOURS = [(255, 196, 0), (0, 200, 255), (255, 80, 160), (120, 230, 90), (200, 140, 255)]


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def draw_predictions(image: np.ndarray, preds: Sequence[FacePrediction]) -> np.ndarray:
    """Draws each face's box and label on a copy of the photo.

    Args:
        image: The RGB ``uint8`` photo the predictions were made on (original size).
        preds: Its predictions.

    Returns:
        A new RGB ``uint8`` array of the same size.
    """
    canvas = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(canvas)
    width, height = canvas.size
    # Line width and font grow with the photo so labels stay readable on 40 MP and 300 px alike.
    unit = max(1.0, max(width, height) / 800)
    font = ImageFont.load_default(size=max(10, round(14 * unit)))
    line = max(2, round(2 * unit))
    pad = round(3 * unit)
    for i, face in enumerate(preds):
        draw.rectangle(face.box, outline=_COLOURS[i % len(_COLOURS)], width=line)
    placed: list[tuple[int, int, int, int]] = []
    for i, face in enumerate(preds):
        x0, y0, _, y1 = face.box
        text = f"{i + 1}: {format_label(face)}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left + 2 * pad, bottom - top + 2 * pad
        tx = min(max(0, x0), max(0, width - tw))
        # Above the box, else inside its top edge, else below it: the first spot that does not
        # cover an earlier label (faces side by side in group photos have wide labels).
        spots = [y for y in (y0 - th, y0, y1) if 0 <= y <= height - th] or [max(0, y0 - th)]
        ty = next(
            (y for y in spots if not any(_overlap((tx, y, tx + tw, y + th), o) for o in placed)),
            spots[0],
        )
        placed.append((tx, ty, tx + tw, ty + th))
        draw.rectangle(placed[-1], fill=_COLOURS[i % len(_COLOURS)])
        draw.text((tx + pad - left, ty + pad - top), text, fill=(0, 0, 0), font=font)
    return np.asarray(canvas).copy()
