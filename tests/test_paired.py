"""Paired differences between configurations, on the same faces, with bootstrap intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agefair.reporting.paired import (
    load_predictions,
    mean_ci,
    paired_differences,
    paired_table,
)
from agefair.reporting.studies import family_rivals, size_steps


def member(folder: Path, gender_right: np.ndarray, age_error: float, unseen: bool = True) -> Path:
    """A member folder whose test predictions get gender right where ``gender_right`` says and
    miss every age by ``age_error`` years; its unseen predictions equal its test ones."""
    folder.mkdir(parents=True)
    n = len(gender_right)
    preds = pd.DataFrame(
        {
            "age": np.full(n, 30.0),
            "gender": np.zeros(n, int),
            "race": np.zeros(n, int),
            "age_pred": np.full(n, 30.0 + age_error),
            "gender_pred": np.where(gender_right, 0, 1),
            "race_pred": np.zeros(n, int),
        }
    )
    preds.to_csv(folder / "predictions_test.csv", index=False)
    if unseen:
        preds.to_csv(folder / "predictions_unseen.csv", index=False)
    return folder


def test_a_paired_difference_and_its_interval(tmp_path):
    n = 1000
    better = np.arange(n) < 900  # 90% right
    worse = np.arange(n) < 850  # the same faces right, and 50 fewer
    a = [member(tmp_path / f"a{s}", better, 4.0) for s in range(2)]
    b = [member(tmp_path / f"b{s}", worse, 5.0) for s in range(2)]
    diffs = paired_differences(load_predictions(a), load_predictions(b))
    value, low, high = diffs["test/gender_acc"]
    assert value == pytest.approx(0.05) and 0.03 < low < 0.05 < high < 0.07
    assert diffs["test/age_mae"] == pytest.approx((-1.0, -1.0, -1.0))
    assert diffs["test/race_acc"] == (0.0, 0.0, 0.0)
    assert diffs["unseen/gender_acc"][0] == pytest.approx(0.05)


def test_seeds_are_averaged_per_face_and_missing_predictions_leave_a_figure_out(tmp_path):
    n = 400
    a = [member(tmp_path / "a0", np.ones(n, bool), 0, unseen=False),
         member(tmp_path / "a1", np.zeros(n, bool), 0, unseen=False)]  # fmt: skip
    b = [member(tmp_path / "b0", np.arange(n) < 200, 0)]
    diffs = paired_differences(load_predictions(a), load_predictions(b))
    assert diffs["test/gender_acc"][0] == pytest.approx(0.0)  # a's mean per face: 0.5
    assert "unseen/gender_acc" not in diffs  # a kept no unseen predictions


def test_the_table_compares_each_finished_configuration_with_the_reference(tmp_path):
    n = 500
    member(tmp_path / "s" / "0", np.arange(n) < 450, 5.0)
    member(tmp_path / "s" / "1", np.arange(n) < 400, 5.5)
    members = pd.DataFrame(
        {"label": ["one", "two"], "status": ["ok", "ok"], "sweep": [str(tmp_path / "s")] * 2,
         "member": ["0", "1"]}
    )  # fmt: skip
    table = paired_table(members, members, members.iloc[0])
    assert table["config"].tolist() == ["two"]
    assert table["Δ gender acc"].iloc[0].startswith("-10.00 (")
    assert table["Δ age MAE"].iloc[0] == "+0.50 (+0.50 to +0.50)"


def test_mean_ci_of_nothing_is_unknown():
    assert all(np.isnan(mean_ci(np.array([]))))


def test_each_size_is_compared_with_the_next_smaller_one(tmp_path):
    """The complexity report's steps: within a family, ordered by FLOPs whatever the row order,
    a member without FLOPs or unfinished left out."""
    n = 400
    right = {"big": 360, "small": 300, "mid": 340, "unmeasured": 100, "failed": 0, "other": 10}
    for i, name in enumerate(right):
        member(tmp_path / "s" / str(i), np.arange(n) < right[name], 5.0 - i)
    configs = pd.DataFrame(
        {"label": list(right), "status": ["ok", "ok", "ok", "ok", "failed", "ok"],
         "flops_per_image": [3e6, 1e6, 2e6, np.nan, 1.5e6, 1.8e6], "params": [3, 1, 2, 1, 1, 2],
         "backbone": ["cnn"] * 5 + ["timm"], "cfg/backbone.depth": [4, 4, 4, 4, 4, np.nan],
         "sweep": [str(tmp_path / "s")] * 6, "member": ["0", "1", "2", "3", "4", "5"]}
    )  # fmt: skip
    steps = size_steps(configs, configs)
    assert steps[["config", "against"]].values.tolist() == [["mid", "small"], ["big", "mid"]]
    gender = [text.split(" (")[0] for text in steps["Δ gender acc"]]
    assert gender == ["+10.00", "+5.00"]
    assert steps["Δ age MAE"].tolist() == ["-1.00 (-1.00 to -1.00)", "+2.00 (+2.00 to +2.00)"]


def test_another_family_is_paired_with_the_plain_cnn_nearest_in_flops(tmp_path):
    """On a log scale of FLOPs: 5 M is nearer 8 M than 1 M; the CNN is the most swept backbone."""
    n = 400
    right = {"cnn1": 300, "cnn8": 340, "cnn64": 360, "timm5": 330, "timm100": 370}
    for i, name in enumerate(right):
        member(tmp_path / "s" / str(i), np.arange(n) < right[name], 5.0)
    configs = pd.DataFrame(
        {"label": list(right), "status": ["ok"] * 5,
         "flops_per_image": [1e6, 8e6, 64e6, 5e6, 100e6], "params": [1, 2, 3, 2, 3],
         "backbone": ["cnn", "cnn", "cnn", "timm:a", "timm:b"],
         "sweep": [str(tmp_path / "s")] * 5, "member": ["0", "1", "2", "3", "4"]}
    )  # fmt: skip
    rivals = family_rivals(configs, configs)
    assert rivals[["config", "against", "FLOPs ratio"]].values.tolist() == [
        ["timm5", "cnn8", "0.62x"],
        ["timm100", "cnn64", "1.56x"],
    ]
    assert [text.split(" (")[0] for text in rivals["Δ gender acc"]] == ["-2.50", "+2.50"]
    assert family_rivals(configs[configs["backbone"] == "cnn"], configs).empty
