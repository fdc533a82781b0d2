"""What averaging two runs' predictions buys, on UTKFace's test split and on unseen faces.

    python experiments/unseen/ensemble.py outputs/unseen/<run> outputs/unseen/<run> [...]

The runs' own prediction files (``predictions_test.csv``, ``predictions_unseen.csv``) are
averaged with equal weights (nothing is fitted on the unseen faces): the age estimates, and the
probability of each gender, rebuilt from the predicted class and its probability. Race is left
out: the files keep only the top class's probability, which cannot be averaged over five
classes. The table goes into this folder's README between the ``ensemble`` markers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from agefair.metrics.age_groups import age_group_distance, parse_age_groups
from agefair.reporting.tables import replace_section, to_markdown

README = Path(__file__).resolve().parent / "README.md"
KEYS = {"test": ["age", "gender", "race"], "unseen": ["file"]}


def female_probability(p: pd.DataFrame) -> np.ndarray:
    """P(gender = 1) from the predicted gender and its probability (NaN for a missed face)."""
    top = p["gender_p"].to_numpy()
    return np.where(p["gender_pred"].to_numpy() == 1, top, 1 - top)


def average(frames: list[pd.DataFrame], split: str) -> pd.DataFrame:
    """The runs' mean age and gender predictions, checked to be of the same faces."""
    first = frames[0]
    for other in frames[1:]:
        if not (other[KEYS[split]].to_numpy() == first[KEYS[split]].to_numpy()).all():
            raise SystemExit(f"the runs' {split} predictions are not of the same faces")
    out = first.copy()
    out["age_pred"] = np.mean([f["age_pred"].to_numpy() for f in frames], axis=0)
    p_female = np.mean([female_probability(f) for f in frames], axis=0)
    # A missed face (no probability) is wrong, as in the runs' own metrics.
    right = (p_female > 0.5) == (first["gender"].to_numpy() == 1)
    out["gender_ok"] = right & ~np.isnan(p_female)
    return out


def scores(test: pd.DataFrame, unseen: pd.DataFrame) -> dict[str, str]:
    lo, hi = parse_age_groups(unseen["age_group"].astype(str))
    group_ok = age_group_distance(lo, hi, unseen["age_pred"].to_numpy()) == 0
    return {
        "UTK age MAE": f"{(test['age_pred'] - test['age']).abs().mean():.2f}",
        "UTK gender": f"{100 * test['gender_ok'].mean():.1f}",
        "unseen gender": f"{100 * unseen['gender_ok'].mean():.1f}",
        "unseen age group": f"{100 * np.mean(group_ok):.1f}",
    }


def row(runs: list[Path]) -> dict[str, str]:
    frames = {s: [pd.read_csv(r / f"predictions_{s}.csv") for r in runs] for s in KEYS}
    return {
        "runs": " + ".join(r.name for r in runs),
        **scores(average(frames["test"], "test"), average(frames["unseen"], "unseen")),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if len(args.runs) < 2:
        parser.error("an ensemble needs two runs or more")
    rows = [row([r]) for r in args.runs] + [row(args.runs)]
    if len(args.runs) > 2:
        rows += [row([a, b]) for i, a in enumerate(args.runs) for b in args.runs[i + 1 :]]
    table = to_markdown(pd.DataFrame(rows))
    replace_section(README, "ensemble", table)
    print(table)


if __name__ == "__main__":
    main()
