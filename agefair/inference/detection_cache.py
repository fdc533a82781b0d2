"""A face detector's answers kept on disk, so the same photos are not detected again.

Every run of a sweep scores its model on the same unseen photos through the same detector
(:mod:`agefair.evaluation.unseen`): the faces found are the same each time, and finding them
costs more than the model does. :class:`CachedDetector` wraps any detector and keeps its boxes
in a JSON file named by the detector's settings, each answer keyed by a hash of the image's
pixels, so a changed photo or a changed setting is detected afresh and never served a stale
answer. It stores boxes only, never pixels: nothing a training set could read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from agefair.data.boxes import FaceBox
from agefair.inference.detect import FaceDetector

log = logging.getLogger(__name__)

#: Settings that do not change what a detector finds (YuNet's file is checked against one hash).
_NOT_SETTINGS = frozenset({"model_path"})


def detector_fingerprint(detector: FaceDetector) -> str:
    """A short name for a detector's kind and settings: two detectors with the same one find the
    same faces."""
    settings = sorted(
        (name, repr(value))
        for name, value in vars(detector).items()
        if not name.startswith("_") and name not in _NOT_SETTINGS
    )
    text = repr((type(detector).__module__, type(detector).__qualname__, settings))
    return f"{type(detector).__name__.lower()}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def image_key(image: np.ndarray) -> str:
    """A hash of an image's size and pixels."""
    digest = hashlib.blake2b(repr(image.shape).encode(), digest_size=16)
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()


def _box_to_json(box: FaceBox) -> list[Any]:
    marks = None if box.landmarks is None else [list(p) for p in box.landmarks]
    return [box.x0, box.y0, box.x1, box.y1, box.score, marks]


def _box_from_json(row: list[Any]) -> FaceBox:
    x0, y0, x1, y1, score, marks = row
    landmarks = None if marks is None else tuple((float(x), float(y)) for x, y in marks)
    return FaceBox(float(x0), float(y0), float(x1), float(y1), float(score), landmarks)


class CachedDetector:
    """A detector that remembers its answers in ``folder``, across runs and processes.

    Args:
        detector: The detector to ask about images not seen before.
        folder: Where the answers are kept (one file per detector setting).
    """

    def __init__(self, detector: FaceDetector, folder: str | os.PathLike[str]) -> None:
        self.detector = detector
        self.path = Path(folder) / f"{detector_fingerprint(detector)}.json"
        self._answers = self._read()
        self._new = 0

    def _read(self) -> dict[str, list[list[Any]]]:
        if not self.path.is_file():
            return {}
        try:
            answers = json.loads(self.path.read_text())
            if not isinstance(answers, dict):
                raise ValueError("not a JSON object")
            return answers
        except (OSError, ValueError) as err:
            # A damaged file costs the detections again, never the run.
            log.warning("Ignoring the detection cache %s: %s", self.path, err)
            return {}

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """The wrapped detector's boxes for ``image``, from the cache when it has seen it."""
        key = image_key(image)
        if key in self._answers:
            return [_box_from_json(row) for row in self._answers[key]]
        boxes = self.detector.detect(image)
        self._answers[key] = [_box_to_json(box) for box in boxes]
        self._new += 1
        return boxes

    def save(self) -> None:
        """Writes the answers, if any are new, with those another process saved meanwhile;
        atomically, so parallel runs never read half a file."""
        if not self._new:
            return
        self._answers = {**self._read(), **self._answers}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as out:
            json.dump(self._answers, out)
        os.replace(tmp, self.path)
        log.info("Detection cache %s: %d new photos, %d in all", self.path, self._new, len(self))
        self._new = 0

    def __len__(self) -> int:
        return len(self._answers)
