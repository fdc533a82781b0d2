"""The robustness study: its grid, scoring, thresholds, report, and the command end to end."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from agefair.data.boxes import FaceBox
from agefair.data.datamodule import FaceDataset
from agefair.data.transforms import PRESETS, EvalPreset, build_transform
from agefair.evaluation.robustness import (
    GridPoint,
    PointEvaluator,
    detection_picture,
    grid_points,
    pick_face,
    run_grid,
    score,
)
from agefair.evaluation.robustness_limits import (
    curve_name,
    format_threshold,
    read_results,
    thresholds,
)
from agefair.inference.model_files import YUNET_ENV_VAR
from agefair.labels import RACES
from agefair.models.checkpoint import load_system
from agefair.reporting.robustness import summary_markdown, update_report
from tests.conftest import evaluate_cli, yunet_path

# Small grids through the command line, so the study of a tiny model stays a few seconds.
SMALL = [
    "study=robustness",
    "study.resolutions=[8,32]",
    "study.input_scales=[2.0]",
    "study.fractions=[1.0,0.25]",
    "study.filters=[blur,noise]",
    "study.strengths=[1.0]",
]
SMALL_STUDY = {
    "families": ["resolution", "input_size", "face_fraction", "filter"],
    "resolutions": [8, 32],
    "input_scales": [2.0],
    "fractions": [1.0, 0.25],
    "filters": ["blur", "noise"],
    "strengths": [1.0],
    "detector": "centre",
}


# ------------------------------------------------------------------------------------ the grid
def test_default_grid_covers_every_family():
    points = grid_points({"detector": "yunet"}, 64)
    by_family = pd.Series([p.family for p in points]).value_counts().to_dict()
    # clean; 10 resolutions; 1.5x and 2x are not in the transforms' grids, so none by default
    assert by_family == {"clean": 1, "resolution": 10, "face_fraction": 12, "filter": 21}
    assert (points[0].label, points[0].preset, points[0].img_size) == ("clean", "eval", 64)
    fractions = [p for p in points if p.family == "face_fraction"]
    assert {p.variant for p in fractions} == {"as_is", "detected"}
    assert all(p.kwargs["background"] == "constant" for p in fractions)


def test_grid_follows_the_overrides():
    points = grid_points({**SMALL_STUDY, "detector": None}, 32)
    labels = [p.label for p in points]
    assert labels == [
        "clean",
        "resolution 8 px",
        "resolution 32 px",
        "input 64 px (2x)",
        "fraction 1 (as is)",
        "fraction 0.25 (as is)",
        "none",
        "blur 1",
        "noise 1",
    ]
    assert points[3].img_size == 64 and points[3].preset == "eval"
    with pytest.raises(ValueError, match="unknown study families"):
        grid_points({"families": ["rotation"]}, 32)


def test_pick_face_takes_the_placed_face_only():
    far = FaceBox(0, 0, 40, 40)
    near = FaceBox(180, 185, 220, 225)
    assert pick_face([far, near], side=400, face_side=200) == 1
    assert pick_face([far], side=400, face_side=200) is None  # a box off the face
    assert pick_face([], side=400, face_side=200) is None


@pytest.mark.parametrize("fraction", [0.5, 0.1, 0.02])
def test_detection_picture_gives_the_share_and_keeps_the_face(fraction):
    white = np.full((200, 200, 3), 255, np.uint8)
    picture = detection_picture(200, fraction, "constant").pixels(white)
    face = picture.min(-1) > 200  # the background is mid-grey
    assert face.mean() == pytest.approx(fraction, rel=0.03)
    rows, cols = np.nonzero(face)
    assert np.ptp(rows) + 1 == pytest.approx(200, abs=2)
    assert np.ptp(cols) + 1 == pytest.approx(200, abs=2)


def test_as_is_picture_matches_the_detection_picture_shrunk():
    # The as-is branch builds the picture at the input size; it must be the detection picture
    # (the photo) brought down to that size, so both branches see the same scene.
    face = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    small = build_transform("face_fraction", 64, fraction=0.25, background="constant").pixels(face)
    big = detection_picture(200, 0.25, "constant").pixels(face)
    shrunk = EvalPreset(64).pixels(big)
    assert np.abs(small.astype(int) - shrunk).mean() < 3


# ------------------------------------------------------------------------------------- scoring
def preds_frame(n: int = 10) -> pd.DataFrame:
    race = np.arange(n) % len(RACES)
    return pd.DataFrame(
        {
            "age": np.full(n, 30.0),
            "gender": np.arange(n) % 2,
            "race": race,
            "age_pred": np.full(n, 32.0),
            "gender_pred": np.arange(n) % 2,
            "race_pred": np.where(race == 0, 1, race),  # every White face called Black
        }
    )


def test_score_has_overall_and_per_race_columns():
    row = score(preds_frame(10), n=20, failed=1)
    assert row["n"] == 20 and row["n_scored"] == 10 and row["n_failed"] == 1
    assert row["found_rate"] == 0.5
    assert row["age_mae"] == 2.0 and row["age_bias"] == 2.0 and row["gender_acc"] == 1.0
    assert row["race_acc"] == 0.8 and row["race_acc_White"] == 0.0 and row["race_acc_Black"] == 1
    assert row["n_Asian"] == 2 and row["age_mae_Asian"] == 2.0
    empty = score(preds_frame(0), n=5)
    assert empty["found_rate"] == 0 and math.isnan(empty["age_mae"])
    assert math.isnan(empty["gender_acc_Others"])


# ---------------------------------------------------------------------------------- thresholds
def hand_made() -> pd.DataFrame:
    """A clean row and three curves whose thresholds are known by construction."""

    def row(family, variant, value, mae, gender, race, found=1.0, mae_white=5.0):
        return {
            "model": "m",
            "family": family,
            "variant": variant,
            "value": value,
            "age_mae": mae,
            "gender_acc": gender,
            "race_acc": race,
            "found_rate": found,
            "age_mae_White": mae_white,
            "error": "",
        }

    return pd.DataFrame(
        [
            row("clean", "", math.nan, 5.0, 0.9, 0.8),
            # bounds: age MAE <= 5.5, gender >= 0.81, race >= 0.72, found rate >= 0.9
            row("resolution", "", 200, 5.0, 0.9, 0.5, mae_white=5.0),  # race outside at the top
            row("resolution", "", 64, 5.2, 0.88, 0.79, mae_white=7.0),
            row("resolution", "", 32, 5.4, 0.86, 0.75, mae_white=5.0),
            row("resolution", "", 16, 6.0, 0.85, 0.70),  # MAE and race leave the bound here
            row("resolution", "", 8, 5.1, 0.84, 0.78),  # back within: the run already ended
            row("face_fraction", "as_is", 1.0, 7.0, 0.9, math.nan),  # outside everywhere
            row("face_fraction", "as_is", 0.5, 8.0, 0.9, math.nan),
            row("face_fraction", "detected", 1.0, 5.0, 0.9, 0.8, found=0.35),
            row("face_fraction", "detected", 0.5, 5.0, 0.9, 0.8, found=1.0),
            row("face_fraction", "detected", 0.1, 5.0, 0.9, 0.8, found=0.95),
            row("face_fraction", "detected", 0.02, math.nan, 0.9, 0.8, found=0.0),
        ]
    )


def test_thresholds_on_a_hand_made_frame():
    limits = thresholds(hand_made(), 0.1, groups=("all", "White"))
    got = {
        (r.variant, r.group, r.metric): format_threshold(
            r.threshold, r.first_outside, r.family, r.outside_above
        )
        for r in limits.itertuples()
    }
    assert got[("", "all", "age_mae")] == "32 px"
    assert got[("", "all", "gender_acc")] == "≤ 8 px"
    assert got[("", "all", "race_acc")] == "32 px (outside at 200)"
    assert got[("", "all", "found_rate")] == "≤ 8 px"
    assert got[("", "White", "age_mae")] == "200 px"  # 7.0 at 64 px ends the run at once
    assert got[("as_is", "all", "age_mae")] == "none"
    assert got[("as_is", "all", "race_acc")] == "none"  # a missing value is never within
    assert got[("detected", "all", "found_rate")] == "0.1 (outside at 1)"
    assert got[("detected", "all", "age_mae")] == "0.1"  # NaN at 0.02: nothing was found
    assert got[("detected", "all", "gender_acc")] == "≤ 0.02"
    resolution_mae = limits[(limits["family"] == "resolution") & (limits["metric"] == "age_mae")]
    first = resolution_mae[resolution_mae["group"] == "all"].iloc[0]
    assert first["bound"] == pytest.approx(5.5) and first["first_outside"] == 16
    assert not {("", "White", "found_rate")} & set(got)  # found rate is overall only


def test_thresholds_need_the_clean_row():
    frame = hand_made()
    with pytest.raises(ValueError, match="no clean row"):
        thresholds(frame[frame["family"] != "clean"])


# -------------------------------------------------------------------------- failures are counted
class _FailsOnDark(EvalPreset):
    """The eval preset, except that it raises on a black picture."""

    def __call__(self, image):
        if image.max() == 0:
            raise ValueError("a black picture")
        return super().__call__(image)


class _FlakyDetector:
    """One face in the middle of every picture, except where the face is black: it raises."""

    def detect(self, image):
        h, w = image.shape[:2]
        if image[h // 2, w // 2].max() == 0:
            raise RuntimeError("detector broke")
        return [FaceBox(w * 0.3, h * 0.25, w * 0.7, h * 0.75)]


@pytest.mark.slow
def test_one_bad_picture_is_counted_not_fatal(tiny_ckpt, monkeypatch):
    model, _ = load_system(tiny_ckpt)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 200, 200, 3), dtype=np.uint8)
    images[2] = 0
    table = pd.DataFrame(
        {
            "file": [f"f{i}.jpg" for i in range(6)],
            "age": 30,
            "gender": 0,
            "race": 1,
            "row": range(6),
        }
    )
    evaluator = PointEvaluator(
        model,
        FaceDataset(images, table, transform=None),
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        img_size=32,
        batch_size=4,
        detector=_FlakyDetector(),
    )
    monkeypatch.setitem(PRESETS, "fails_on_dark", _FailsOnDark)
    row = evaluator(GridPoint("clean", "", math.nan, "fails_on_dark", {}, 32))
    assert (row["n"], row["n_scored"], row["n_failed"]) == (6, 5, 1)
    assert math.isfinite(row["age_mae"])
    fraction = {"fraction": 0.25, "background": "constant"}
    row = evaluator(GridPoint("face_fraction", "detected", 0.25, "face_fraction", fraction, 32))
    assert (row["n"], row["n_scored"], row["n_failed"]) == (6, 5, 1)

    def evaluate(point: GridPoint) -> dict:
        if point.family == "resolution":
            raise RuntimeError("no such model file")
        return {"n": 6, "age_mae": 1.0}

    points = [GridPoint("clean", "", math.nan, "eval"), GridPoint("resolution", "", 8, "x")]
    frame = run_grid(points, evaluate)
    assert list(frame["error"]) == ["", "RuntimeError: no such model file"]
    assert frame["age_mae"].iloc[0] == 1.0 and math.isnan(frame["age_mae"].iloc[1])


# --------------------------------------------------------------------------------- end to end
def threshold_rows(summary: str) -> dict[tuple[str, str], list[str]]:
    """The overall thresholds table of a summary: (model, curve) -> its cells."""
    section = summary.split("### Thresholds", 1)[1].split("By race", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] not in ("model", "---"):
            rows[(cells[0], cells[1])] = cells[2:]
    return rows


@pytest.mark.slow
def test_study_command_writes_rows_plots_and_a_consistent_report(tiny_ckpt, tiny_archive, tmp_path):
    report = tmp_path / "report"
    printed, output = evaluate_cli(
        f"ckpt_path={tiny_ckpt}",
        *SMALL,
        "study.detector=centre",  # a stand-in detector: no model file needed
        f"study.report_dir={report}",
        f"paths.archive={tiny_archive}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    assert "Robustness study" in output  # the progress bar over grid points
    run = tmp_path / "eval"
    frame = read_results(run / "robustness.csv")
    expected = [p.label for p in grid_points(SMALL_STUDY, 32)]
    assert list(frame["point"]) == expected  # one row per grid point, in order
    assert (frame["error"] == "").all() and (frame["n"] == printed["n"]).all()
    assert {"age_mae_White", "gender_acc_Asian", "race_acc_Others", "n_Indian"} <= set(frame)
    as_is = frame[frame["variant"].isin(["", "as_is", "none"])]
    assert (as_is["found_rate"] == 1).all()
    plots = ("resolution.png", "face_fraction.png", "filters_age_bias.png")
    for folder in (run, report / "results"):
        assert all((folder / name).is_file() for name in (*plots, "thresholds.csv"))
    # The clean point and the points equal to it give the same numbers.
    same = frame[frame["point"].isin(["clean", "fraction 1 (as is)", "none"])]
    assert same["age_mae"].nunique() == 1

    # The summary's thresholds are those computed from the CSV.
    limits = thresholds(frame, 0.1, groups=("all",))
    table = threshold_rows((run / "summary.md").read_text())
    metrics = ["age_mae", "gender_acc", "race_acc", "found_rate"]
    for r in limits.itertuples():
        cells = table[(r.model, curve_name(r.family, r.variant))]
        expected_cell = format_threshold(r.threshold, r.first_outside, r.family, r.outside_above)
        assert cells[metrics.index(r.metric)] == expected_cell
    assert printed["thresholds"]["resolution/age_mae"] in {cells[0] for cells in table.values()}

    # A second model filed in the same report joins the README, its tables and its plots.
    readme = report / "README.md"
    assert "<!-- results:start -->" in readme.read_text()
    other = frame.assign(model="other-model", age_mae=frame["age_mae"] + 1)
    info = {"model": "other-model", "checkpoint": "b.ckpt", "images": 2, "test_split_images": 2}
    info |= {"points": len(frame), "time_s": 1.0, "machine": "test", "date": "9999"}
    update_report(report, other, info)
    text = readme.read_text()
    models = {key[0] for key in threshold_rows(text)}
    assert models == {printed["model"], "other-model"}
    assert (report / "results" / "other-model" / "robustness.csv").is_file()
    assert re.search(r"!\[.*\]\(results/resolution\.png\)", text)


@pytest.mark.slow
def test_detected_curve_with_yunet(tiny_ckpt, tiny_archive, tmp_path, monkeypatch):
    monkeypatch.setenv(YUNET_ENV_VAR, str(yunet_path()))  # skips without the model file
    printed, _ = evaluate_cli(
        f"ckpt_path={tiny_ckpt}",
        "study=robustness",
        "study.families=[face_fraction]",
        "study.fractions=[0.25]",
        f"paths.archive={tiny_archive}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    frame = read_results(tmp_path / "eval" / "robustness.csv")
    detected = frame[frame["variant"] == "detected"].iloc[0]
    # The generated "faces" are colour blobs: YuNet may well find none; either way the point
    # is scored, with its found rate, and nothing failed.
    assert detected["error"] == "" and detected["n_failed"] == 0
    assert 0 <= detected["found_rate"] <= 1 and detected["n"] == printed["n"]


def test_summary_marks_values_outside_the_bound():
    frame = hand_made().assign(age_bias=0.0, n_scored=10)
    for race in RACES:
        for metric in ("n", "age_mae", "age_bias", "gender_acc", "race_acc"):
            frame[f"{metric}_{race}"] = frame.get(f"{metric}_{race}", 1.0)
    info = {"model": "m", "checkpoint": "c", "images": 10, "test_split_images": 20}
    info |= {"points": len(frame), "time_s": 60.0, "machine": "test"}
    text = summary_markdown(frame, [info])
    assert "| m | resolution | 32 px | ≤ 8 px | 32 px (outside at 200) | ≤ 8 px |" in text
    assert "| 16 px | **6.00** |" in text  # the MAE outside its bound is bold
    assert "10 of 20" in text
