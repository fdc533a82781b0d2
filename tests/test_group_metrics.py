"""Tests for agefair.metrics on small hand-computed and generated prediction tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from agefair.labels import RACES, age_band
from agefair.metrics.age_groups import age_group_metrics, parse_age_group, parse_age_groups
from agefair.metrics.bootstrap import bootstrap_ci
from agefair.metrics.confusion import confusion_matrix, plot_confusion
from agefair.metrics.groups import (
    BOOTSTRAP_METRICS,
    GROUP_TYPES,
    TABLE_METRICS,
    flat_group_metrics,
    group_gaps,
    group_table,
    headline_metrics,
)


def _preds(**cols: list) -> pd.DataFrame:
    return pd.DataFrame(cols)


@pytest.fixture
def small() -> pd.DataFrame:
    """Four images whose metrics are easy to work out by hand."""
    return _preds(
        age=[10, 30, 50, 70],
        age_pred=[12.0, 25.0, 50.0, 80.0],  # errors +2, -5, 0, +10
        gender=[0, 1, 1, 0],
        gender_pred=[0, 1, 0, 0],  # one wrong (row 2)
        race=[0, 0, 0, 2],
        race_pred=[0, 1, 1, 2],  # White recall 1/3, Asian recall 1
        file=["a", "b", "c", "d"],  # extra columns are ignored
    )


def _random_preds(n: int, seed: int = 0) -> pd.DataFrame:
    """Generated predictions with group-dependent quality, so groups actually differ."""
    rng = np.random.default_rng(seed)
    age = rng.integers(0, 100, n)
    gender = rng.integers(0, 2, n)
    race = rng.choice(5, n, p=[0.45, 0.2, 0.15, 0.15, 0.05])
    noise = rng.normal(0, 3 + 2 * race, n)  # worse age estimates for higher race codes
    gender_flip = rng.random(n) < 0.05 + 0.05 * race
    race_flip = rng.random(n) < 0.1 + 0.1 * (race == 4)
    return _preds(
        age=age,
        age_pred=age + noise + 0.5,
        gender=gender,
        gender_pred=np.where(gender_flip, 1 - gender, gender),
        race=race,
        race_pred=np.where(race_flip, (race + 1) % 5, race),
    )


# ------------------------------------------------------------------------------------------
# headline_metrics
# ------------------------------------------------------------------------------------------


def test_headline_metrics_hand_computed(small: pd.DataFrame) -> None:
    m = headline_metrics(small)
    assert m["age_mae"] == pytest.approx(17 / 4)
    assert m["age_bias"] == pytest.approx(7 / 4)
    assert m["age_cs5"] == pytest.approx(3 / 4)  # |-5| <= 5 counts
    assert m["gender_acc"] == pytest.approx(3 / 4)
    assert m["race_acc"] == pytest.approx(2 / 4)
    assert m["race_recall_White"] == pytest.approx(1 / 3)
    assert m["race_recall_Asian"] == pytest.approx(1.0)
    assert math.isnan(m["race_recall_Black"])
    # Balanced accuracy averages only the races present (White, Asian).
    assert m["race_acc_balanced"] == pytest.approx((1 / 3 + 1) / 2)
    assert set(m) == {
        "age_mae",
        "age_bias",
        "age_cs5",
        "gender_acc",
        "race_acc",
        "race_acc_balanced",
    } | {f"race_recall_{r}" for r in RACES}


def test_headline_metrics_empty_and_bad_input(small: pd.DataFrame) -> None:
    empty = headline_metrics(small.iloc[:0])
    assert all(math.isnan(v) for v in empty.values())
    with pytest.raises(KeyError, match="race_pred"):
        headline_metrics(small.drop(columns="race_pred"))
    with pytest.raises(ValueError, match="race"):
        headline_metrics(small.assign(race=[0, 0, 0, 7]))


# ------------------------------------------------------------------------------------------
# group_table
# ------------------------------------------------------------------------------------------


def test_group_table_hand_computed(small: pd.DataFrame) -> None:
    t = group_table(small).set_index(["group_type", "group"])
    assert list(t.columns) == ["n", "age_mae", "age_bias", "gender_acc", "race_acc"]
    assert t.loc[("all", "all"), "n"] == 4
    white = t.loc[("race", "White")]
    assert white["n"] == 3
    assert white["age_mae"] == pytest.approx(7 / 3)
    assert white["age_bias"] == pytest.approx(-3 / 3)
    assert white["gender_acc"] == pytest.approx(2 / 3)
    assert white["race_acc"] == pytest.approx(1 / 3)
    female = t.loc[("gender", "female")]
    assert female["n"] == 2 and female["gender_acc"] == pytest.approx(0.5)
    wf = t.loc[("race_gender", "White/female")]
    assert wf["n"] == 2 and wf["age_mae"] == pytest.approx(2.5)
    # Age bands: 10 -> 0-12, 30 -> 20-39, 50 -> 40-59, 70 -> 60+; 13-19 is empty but listed.
    bands = t.loc["age_band"]
    assert list(bands.index) == ["0-12", "13-19", "20-39", "40-59", "60+"]
    assert list(bands["n"]) == [1, 0, 1, 1, 1]
    assert math.isnan(bands.loc["13-19", "age_mae"])
    assert bands.loc["60+", "age_bias"] == pytest.approx(10.0)
    # Every group is listed even when empty: 1 + 5 + 2 + 10 + 5 rows.
    assert len(t) == 23


def test_age_band_edges() -> None:
    assert list(age_band(np.array([0, 12, 12.5, 13, 19, 20, 39, 40, 59, 60, 116]))) == [
        0,
        0,
        1,
        1,
        1,
        2,
        2,
        3,
        3,
        4,
        4,
    ]


@pytest.mark.parametrize("group_type", GROUP_TYPES)
def test_group_partition_sums_to_overall(group_type: str) -> None:
    preds = _random_preds(500, seed=1)
    table = group_table(preds)
    overall = table[table["group_type"] == "all"].iloc[0]
    part = table[(table["group_type"] == group_type) & (table["n"] > 0)]
    assert part["n"].sum() == overall["n"] == len(preds)
    for metric in TABLE_METRICS:
        weighted = (part[metric] * part["n"]).sum() / part["n"].sum()
        assert weighted == pytest.approx(overall[metric], rel=1e-12, abs=1e-12), metric
    head = headline_metrics(preds)
    for metric in TABLE_METRICS:
        assert overall[metric] == pytest.approx(head[metric])


# ------------------------------------------------------------------------------------------
# group_gaps and flat_group_metrics
# ------------------------------------------------------------------------------------------


@pytest.fixture
def gap_preds() -> pd.DataFrame:
    """White: perfect; Black: age off by +4, gender always wrong; Asian: age off by -6.

    One Indian image is terrible at everything, to check that ``min_n`` drops it.
    """
    rows = []
    for _ in range(4):
        rows.append((30, 30.0, 0, 0, 0, 0))  # White, perfect
        rows.append((30, 34.0, 1, 0, 1, 1))  # Black, +4 years, gender wrong
        rows.append((30, 24.0, 0, 0, 2, 2))  # Asian, -6 years
    rows.append((30, 80.0, 1, 0, 3, 0))  # Indian: +50 years, gender and race wrong
    cols = ["age", "age_pred", "gender", "gender_pred", "race", "race_pred"]
    return pd.DataFrame(rows, columns=cols)


def test_group_gaps_pick_worst(gap_preds: pd.DataFrame) -> None:
    table = group_table(gap_preds)
    gaps = group_gaps(table).set_index(["group_type", "metric"])
    assert set(gaps.index.get_level_values(0)) == set(GROUP_TYPES)
    mae = gaps.loc[("race", "age_mae")]
    assert mae["worst_group"] == "Indian" and mae["worst"] == pytest.approx(50.0)
    assert mae["best_group"] == "White" and mae["gap"] == pytest.approx(50.0)
    # "Others" is empty and never chosen; 4 races qualify.
    assert mae["n_groups"] == 4
    acc = gaps.loc[("race", "gender_acc")]
    assert acc["worst"] == pytest.approx(0.0) and acc["worst_group"] == "Black"  # first tie
    assert acc["best"] == pytest.approx(1.0) and acc["gap"] == pytest.approx(1.0)

    gaps2 = group_gaps(table, min_n=2).set_index(["group_type", "metric"])
    mae2 = gaps2.loc[("race", "age_mae")]
    assert mae2["worst_group"] == "Asian" and mae2["worst"] == pytest.approx(6.0)
    assert mae2["n_groups"] == 3
    # Bias: worst is the largest absolute bias (Asian, -6), gap the signed spread (4 - -6).
    bias2 = gaps2.loc[("race", "age_bias")]
    assert bias2["worst_group"] == "Asian" and bias2["worst"] == pytest.approx(-6.0)
    assert bias2["best_group"] == "White" and bias2["gap"] == pytest.approx(10.0)
    race2 = gaps2.loc[("race", "race_acc")]
    assert race2["worst"] == pytest.approx(1.0) and race2["gap"] == pytest.approx(0.0)


def test_group_gaps_no_qualifying_group(gap_preds: pd.DataFrame) -> None:
    gaps = group_gaps(group_table(gap_preds), min_n=1000)
    assert (gaps["n_groups"] == 0).all()
    assert gaps["worst_group"].isna().all() and gaps["gap"].isna().all()


def test_flat_group_metrics(gap_preds: pd.DataFrame) -> None:
    table = group_table(gap_preds)
    flat = flat_group_metrics(table, group_gaps(table))
    assert flat["group/race=Asian/age_mae"] == pytest.approx(6.0)
    assert flat["group/race=Black/gender_acc"] == pytest.approx(0.0)
    assert flat["group/all/n"] == 13
    assert flat["group/race_gender=White/male/age_mae"] == pytest.approx(0.0)
    assert flat["gap/race/age_mae"] == pytest.approx(50.0)
    assert flat["worst/race/gender_acc"] == pytest.approx(0.0)
    assert flat["best/age_band/age_mae"] == pytest.approx(90 / 13)
    assert "group/race=Others/age_mae" not in flat  # empty group: NaN dropped
    assert all(isinstance(v, float) and not math.isnan(v) for v in flat.values())
    assert not any(k.startswith("gap/") for k in flat_group_metrics(table))


# ------------------------------------------------------------------------------------------
# bootstrap_ci
# ------------------------------------------------------------------------------------------


def test_bootstrap_contains_point_and_is_deterministic() -> None:
    preds = _random_preds(400, seed=2)
    head = headline_metrics(preds)
    ci = bootstrap_ci(preds, n_boot=500, seed=3)
    assert set(ci) == set(BOOTSTRAP_METRICS)
    for name, (low, high) in ci.items():
        assert low < head[name] < high, name
    assert bootstrap_ci(preds, n_boot=500, seed=3) == ci
    assert bootstrap_ci(preds, n_boot=500, seed=4) != ci


def test_bootstrap_narrows_with_more_samples() -> None:
    small = bootstrap_ci(_random_preds(100, seed=5), n_boot=300)
    large = bootstrap_ci(_random_preds(5000, seed=5), n_boot=300)
    for name in BOOTSTRAP_METRICS:
        assert large[name][1] - large[name][0] < 0.5 * (small[name][1] - small[name][0]), name


def test_bootstrap_matches_naive_recomputation() -> None:
    """The vectorised replicates equal headline_metrics on the same resamples."""
    preds = _random_preds(60, seed=6)
    n_boot, seed, alpha = 40, 7, 0.1
    metrics = [*BOOTSTRAP_METRICS, "age_bias", "age_cs5", "race_recall_Others"]
    ci = bootstrap_ci(preds, metrics, n_boot=n_boot, alpha=alpha, seed=seed)
    idx = np.random.default_rng(seed).integers(0, len(preds), size=(n_boot, len(preds)))
    reps = [headline_metrics(preds.iloc[row]) for row in idx]
    for m in metrics:
        values = np.array([r[m] for r in reps])
        values = values[~np.isnan(values)]
        expected = np.quantile(values, [alpha / 2, 1 - alpha / 2])
        assert ci[m] == pytest.approx(tuple(expected)), m


def test_bootstrap_errors_and_empty(small: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="unknown"):
        bootstrap_ci(small, ["age_rmse"])
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci(small, alpha=1.5)
    empty = bootstrap_ci(small.iloc[:0])
    assert all(math.isnan(lo) and math.isnan(hi) for lo, hi in empty.values())


# ------------------------------------------------------------------------------------------
# Confusion matrices
# ------------------------------------------------------------------------------------------


def test_confusion_matrix_counts() -> None:
    cm = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert confusion_matrix(np.array([], int), np.array([], int), 2).tolist() == [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match="pred"):
        confusion_matrix(np.array([0]), np.array([3]), 3)
    with pytest.raises(ValueError, match="length"):
        confusion_matrix(np.array([0, 1]), np.array([0]), 3)


def test_plot_confusion_writes_png(tmp_path) -> None:
    preds = _random_preds(200, seed=8)
    cm = confusion_matrix(preds["race"], preds["race_pred"], len(RACES))
    cm[4] = 0  # an empty row must not divide by zero
    path = plot_confusion(cm, RACES, "race", tmp_path / "sub" / "race_cm.png")
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        plot_confusion(cm, RACES[:3], "bad", tmp_path / "bad.png")


# ------------------------------------------------------------------------------------------
# Age groups
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("20-29", (20, 29)),
        ("0-2", (0, 2)),
        ("70+", (70, math.inf)),
        (" 60 + ", (60, math.inf)),
        ("(25, 32)", (25, 32)),  # Adience
        ("more than 70", (70, math.inf)),  # FairFace
        ("3–9", (3, 9)),  # en dash
        ("25", (25, 25)),
        (25, (25, 25)),
    ],
)
def test_parse_age_group(label: str | int, expected: tuple[float, float]) -> None:
    assert parse_age_group(label) == expected


@pytest.mark.parametrize("label", ["", "adult", "29-20", "20-", "-5"])
def test_parse_age_group_rejects(label: str) -> None:
    with pytest.raises(ValueError):
        parse_age_group(label)


def test_age_group_metrics() -> None:
    lo, hi = parse_age_groups(["20-29", "70+", "0-2", "30-39"])
    assert lo.tolist() == [20, 70, 0, 30] and hi[1] == math.inf
    pred = [29.4, 65.0, 5.0, 29.6]
    m = age_group_metrics(lo, hi, pred)
    # 29.4 rounds into 20-29; 65 is 4.5 below 69.5; 5 is 2.5 above 2.5; 29.6 rounds into 30-39.
    assert m["age_group_acc"] == pytest.approx(2 / 4)
    assert m["age_group_mae"] == pytest.approx((4.5 + 2.5) / 4)
    assert m["n"] == 4
    strict = age_group_metrics(lo, hi, pred, margin=0.0)
    assert strict["age_group_acc"] == pytest.approx(0.0)
    empty = age_group_metrics([], [], [])
    assert math.isnan(empty["age_group_acc"]) and empty["n"] == 0
    with pytest.raises(ValueError, match="shape"):
        age_group_metrics([0], [1], [1, 2])
