"""The unseen-faces report (experiments/unseen/run.py): its tables from hand-made predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import load_script

report = load_script("experiments/unseen/run.py", "unseen_report")


def test_the_age_group_table_says_where_the_estimates_fall():
    """Below, inside (a whole year rounds in: 19.6 is in 20-29) or above each labelled group,
    groups in age order, and a missed face (no estimate) counted apart."""
    p = pd.DataFrame(
        {
            "age_group": ["20-29"] * 3 + ["3-9"] * 4,
            "age_pred": [25.0, 19.6, 30.0, 2.0, 5.0, 10.0, np.nan],
        }
    )
    bounds = report.parse_age_groups(p["age_group"])
    table = report.age_group_table(p, *bounds).splitlines()
    assert table[0].startswith("| age group | n | missed | estimate below | estimate inside |")
    assert table[2] == "| 3-9 | 4 | 1 | 33.3% | 33.3% | 33.3% | 5.0 |"
    assert table[3] == "| 20-29 | 3 | 0 | 0.0% | 66.7% | 33.3% | 25.0 |"


per_task = load_script("experiments/unseen/per_task_epoch.py", "unseen_per_task_epoch")


def test_each_task_takes_the_epoch_of_its_own_best_validation_figure():
    history = pd.DataFrame(
        {
            "epoch": [0, 1, 2, 3],
            "val/age_mae": [6.0, 5.0, 4.5, 4.5],  # equals: the first to reach it
            "val/gender_acc": [0.90, 0.93, 0.92, 0.91],
            "val/race_acc_balanced": [0.70, 0.71, 0.72, 0.73],
            "val/loss": [2.0, 1.8, 1.7, 1.75],
        }
    )
    assert per_task.chosen_epochs(history) == {"age": 2, "gender": 1, "race": 3, "all": 2}


def test_the_combined_predictions_take_each_task_from_its_own_checkpoint():
    """Age from one frame, gender and race from others; a missed face (no estimate, MISSED
    codes) is wrong for every task."""

    def frame(age, gender, race):
        return pd.DataFrame(
            {
                "age_group": ["20-29", "3-9", "20-29"],
                "gender": [0, 1, 1],
                "race": [4, 0, 4],
                "age_pred": age,
                "gender_pred": gender,
                "gender_p": [0.9] * 3,
                "race_pred": race,
                "race_p": [0.8] * 3,
                "found": [True, True, False],
            }
        )

    frames = {
        "age": frame([25.0, 12.0, np.nan], [1, 0, -1], [0, 1, -1]),
        "gender": frame([40.0, 5.0, np.nan], [0, 1, -1], [1, 1, -1]),
        "race": frame([40.0, 5.0, np.nan], [1, 0, -1], [4, 0, -1]),
    }
    both = per_task.combined(frames)
    assert both["age_pred"].tolist()[:2] == [25.0, 12.0]
    assert both["gender_pred"].tolist() == [0, 1, -1]
    assert both["race_pred"].tolist() == [4, 0, -1]
    test = frame([20.0, 5.0, 30.0], [0, 1, 0], [4, 0, 0]).assign(age=[22, 5, 30])
    f = per_task.figures(test, both)
    assert f["UTK age MAE"] == "0.67"
    assert (f["UTK gender"], f["UTK race"]) == ("66.7", "66.7")
    assert (f["unseen gender"], f["unseen race"]) == ("66.7", "66.7")
    # White: 1 of 1; Others: 1 of 2. Balanced race is their mean.
    assert (f["unseen race (balanced)"], f["unseen 'Others' recall"]) == ("75.0", "50.0")
    assert f["unseen age group"] == "33.3"  # 25 is in 20-29; 12 is not in 3-9; a miss
    assert f["unseen worst race's gender"] == "50.0"
    assert f["missed"] == "1/3"
    frames["race"] = frames["race"].iloc[::-1]  # another order: not the same faces row by row
    with pytest.raises(SystemExit, match="not of the same faces"):
        per_task.combined(frames)
