"""The unseen-faces report (experiments/unseen/run.py): its tables from hand-made predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd

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
