"""A face found in a picture: its box, score and five landmarks, in the picture's pixels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
