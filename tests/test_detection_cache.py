"""The detector's answers kept on disk: served again only for the same pixels and settings."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from agefair.data.boxes import FaceBox
from agefair.evaluation.unseen import score_unseen
from agefair.inference.detect import CentreDetector
from agefair.inference.detection_cache import CachedDetector, detector_fingerprint
from agefair.inference.predictor import Predictor
from tests.test_unseen import noise_photo, write_labels


class CountingDetector(CentreDetector):
    """A centred face with landmarks, counting the photos it was asked about."""

    def __init__(self, score: float = 0.99) -> None:
        super().__init__(score)
        self._calls = 0

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        self._calls += 1
        (box,) = super().detect(image)
        marks = ((1.5, 2.25), (3.0, 2.0), (2.5, 3.0), (1.75, 4.0), (3.25, 4.125))
        return [FaceBox(box.x0, box.y0, box.x1, box.y1, box.score, marks)]


def photo(seed: int = 0) -> np.ndarray:
    return noise_photo(np.random.default_rng(seed), 64)


def test_the_same_photo_is_detected_once_across_runs(tmp_path):
    first = CachedDetector(CountingDetector(), tmp_path)
    boxes = first.detect(photo())
    assert first.detect(photo()) == boxes and first.detector._calls == 1
    first.save()

    again = CachedDetector(CountingDetector(), tmp_path)  # another run, same settings
    assert again.detect(photo()) == boxes  # landmarks and all, to the last bit
    assert again.detector._calls == 0


def test_other_pixels_or_other_settings_are_detected_afresh(tmp_path):
    cached = CachedDetector(CountingDetector(), tmp_path)
    cached.detect(photo(0))
    changed = photo(0)
    changed[0, 0] ^= 1
    cached.detect(changed)
    assert cached.detector._calls == 2
    cached.save()

    stricter = CachedDetector(CountingDetector(score=0.5), tmp_path)
    assert detector_fingerprint(stricter.detector) != detector_fingerprint(cached.detector)
    assert stricter.detect(photo(0))[0].score == 0.5 and stricter.detector._calls == 1


def test_parallel_runs_keep_each_others_answers(tmp_path):
    a = CachedDetector(CountingDetector(), tmp_path)
    b = CachedDetector(CountingDetector(), tmp_path)
    a.detect(photo(1))
    b.detect(photo(2))
    a.save()
    b.save()
    assert len(CachedDetector(CountingDetector(), tmp_path)) == 2


def test_a_damaged_cache_costs_detections_not_the_run(tmp_path, caplog):
    cached = CachedDetector(CountingDetector(), tmp_path)
    cached.path.write_text('{"truncated": [[1, 2')
    again = CachedDetector(CountingDetector(), tmp_path)
    assert "Ignoring the detection cache" in caplog.text
    assert len(again.detect(photo())) == 1 and again.detector._calls == 1
    again.save()
    assert len(CachedDetector(CountingDetector(), tmp_path)) == 1


def test_scoring_again_gives_the_same_figures_without_detecting(tmp_path, tiny_ckpt):
    rng = np.random.default_rng(3)
    rows = []
    for i in range(5):
        Image.fromarray(noise_photo(rng, 96)).save(tmp_path / f"{i}.jpg")
        rows.append({"file": f"{i}.jpg", "age_group": "20-29", "gender": i % 2, "race": i % 5})
    labels = write_labels(tmp_path, rows)
    detector = CountingDetector()
    predictor = Predictor.from_checkpoint(tiny_ckpt, detector=detector)
    folder = tmp_path / "detections"

    first = score_unseen(predictor, labels, tmp_path / "a", progress=False, detections=folder)
    assert detector._calls == 5 and predictor.detector is detector  # the caller's is unchanged
    second = score_unseen(predictor, labels, tmp_path / "b", progress=False, detections=folder)
    assert detector._calls == 5
    assert first == second
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "a" / "predictions_unseen.csv"),
        pd.read_csv(tmp_path / "b" / "predictions_unseen.csv"),
    )
