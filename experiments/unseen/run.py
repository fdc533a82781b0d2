"""Writes the unseen-faces report: each lever's UTKFace test and unseen-faces columns side by
side, and per-group tables with 95% intervals for the chosen run.

    python experiments/unseen/run.py outputs/unseen/<run> [outputs/unseen/<run> ...] \\
        --chosen outputs/unseen/<run> \\
        [--default outputs/unseen/<run> ... --from-scratch outputs/unseen/<run> ...]

Each run folder is one ``python -m agefair.train ... data.unseen=<labels.csv>`` run (its
overrides name the lever). Every figure comes from the runs' own files (``results.csv``,
``predictions_unseen.csv``, ``.hydra/overrides.yaml``); the tables go into this folder's README
between markers, and with ``--default`` and ``--from-scratch`` the headline table (the default
recipe's runs and the from-scratch CNN's) into the repository's README. Levers whose run folders
are gone stay in the table as the report recorded them (``recorded.csv``, to the digits it
showed); ``--default`` and ``--from-scratch`` may name such a run.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from agefair.labels import GENDERS, RACES
from agefair.metrics.age_groups import age_group_distance, parse_age_groups
from agefair.metrics.bootstrap import proportion_ci
from agefair.reporting.tables import replace_section, to_markdown, with_ci

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
REPO_README = HERE.parents[1] / "README.md"
#: Lever runs whose folders are gone, as the report recorded them.
RECORDED = HERE / "recorded.csv"

#: The columns of the lever table: (results.csv column, heading, shown as a percentage).
COLUMNS = (
    ("test/age_mae", "UTK age MAE", False),
    ("test/gender_acc", "UTK gender", True),
    ("test/race_acc", "UTK race", True),
    ("unseen/gender_acc", "unseen gender", True),
    ("unseen/race_acc", "unseen race", True),
    ("unseen/race_acc_balanced", "unseen race (balanced)", True),
    ("unseen/race_recall_Others", "unseen 'Others' recall", True),
    ("unseen/age_group_acc", "unseen age group", True),
    ("unseen/worst_race_gender_acc", "unseen worst race's gender", True),
)


def overrides(run: Path) -> str:
    """What a run's lever is: its experiment, then its other command-line overrides.

    A run from before the from-scratch recipe became ``experiment=from_scratch`` recorded no
    experiment (it was the root config's groups alone, which that experiment is).
    """
    hydra = run / ".hydra"
    choice = OmegaConf.select(
        OmegaConf.load(hydra / "hydra.yaml"), "hydra.runtime.choices.experiment"
    )
    skip = ("hydra.", "data.unseen=", "paths.", "experiment=", "callbacks.progress")
    kept = [o for o in OmegaConf.load(hydra / "overrides.yaml") if not str(o).startswith(skip)]
    return " ".join(f"`{o}`" for o in [f"experiment={choice or 'from_scratch'}", *kept])


def cells(r: pd.Series) -> dict[str, str]:
    """A results row's figures in the table's columns (blank where a run has none)."""
    out = {}
    for col, head, pct in COLUMNS:
        v = r.get(col)
        out[head] = "" if v is None or pd.isna(v) else (f"{100 * v:.1f}" if pct else f"{v:.2f}")
    out["missed"] = f"{int(r['unseen/missed'])}/{int(r['unseen/n'])}"
    return out


def recorded() -> pd.DataFrame:
    """The recorded levers (``recorded.csv``), indexed by run name."""
    return pd.read_csv(RECORDED, index_col="run") if RECORDED.is_file() else pd.DataFrame()


def run_results(run: Path) -> tuple[pd.Series, str, int]:
    """A run's results row, its overrides (as the lever table shows them) and its seed, from
    its folder, or from ``recorded.csv`` when only the record is left."""
    if (run / "results.csv").is_file():
        config = OmegaConf.load(run / ".hydra" / "config.yaml")
        r = pd.read_csv(run / "results.csv").iloc[0].copy()
        # A fused backbone's blocks that learned (0 for runs from before they could).
        if OmegaConf.select(config, "backbone.name") == "fused":
            r["tuned_blocks"] = OmegaConf.select(config, "backbone.tuned_blocks", default=0)
        r["race_prior"] = OmegaConf.select(config, "model.race_prior", default="training")
        return r, overrides(run), int(config.seed)
    table = recorded()
    if run.name not in table.index:
        raise FileNotFoundError(f"{run} has no results.csv and {RECORDED.name} has no {run.name}")
    r = table.loc[run.name]
    return r, " ".join(f"`{o}`" for o in r["overrides"].split()), int(r["seed"])


def lever_table(runs: list[Path]) -> str:
    names = [run.name for run in runs]
    gone = [Path(name) for name in recorded().index if name not in names]
    rows = []
    for run in gone + runs:
        r, lever, _ = run_results(run)
        # Runs from before framings existed cut faces as UTKFace does.
        framing = r.get("framing", 1.0)
        tuned = r.get("tuned_blocks")
        row = {"run": run.name, "overrides": lever, "framing": f"{framing:g}"}
        row["tuned blocks"] = "" if tuned is None or pd.isna(tuned) else str(int(tuned))
        # Runs from before the race prior could be chosen reported under the training one.
        prior = r.get("race_prior")
        row["race prior"] = "training" if prior is None or pd.isna(prior) else prior
        row.update(cells(r))
        row["train min"] = f"{r['train_time_s'] / 60:.1f}"
        rows.append(row)
    return to_markdown(pd.DataFrame(rows))


def probe_table() -> str:
    """The linear read-outs of frozen features (``probe.py``), in the lever table's columns."""
    path = HERE / "probe.csv"
    if not path.is_file():
        return "(not run: `python experiments/unseen/probe.py --unseen <labels.csv>`)"
    rows = [{"features": r["features"], **cells(r)} for _, r in pd.read_csv(path).iterrows()]
    return to_markdown(pd.DataFrame(rows))


def group_tables(run: Path) -> str:
    """Per race and per race x gender: gender accuracy and race recall, 95% intervals; a missed
    face counts as wrong."""
    p = pd.read_csv(run / "predictions_unseen.csv")
    g_ok = (p["gender"] == p["gender_pred"]).to_numpy()
    r_ok = (p["race"] == p["race_pred"]).to_numpy()
    age_ok = bounds = None
    if "age_group" in p.columns:
        bounds = parse_age_groups(p["age_group"].astype(str))
        age_ok = age_group_distance(*bounds, p["age_pred"].to_numpy()) == 0

    def row(name: str, mask: np.ndarray) -> dict:
        out = {"group": name, "n": int(mask.sum()), "missed": int((~p["found"][mask]).sum())}
        out["gender acc"] = with_ci(g_ok[mask].mean(), proportion_ci(g_ok[mask]), True)
        out["race recall"] = with_ci(r_ok[mask].mean(), proportion_ci(r_ok[mask]), True)
        if age_ok is not None:
            out["age group acc"] = with_ci(age_ok[mask].mean(), proportion_ci(age_ok[mask]), True)
        return out

    race_rows = [row(name, (p["race"] == i).to_numpy()) for i, name in enumerate(RACES)]
    rg_rows = [
        row(f"{race}/{gender}", ((p["race"] == i) & (p["gender"] == j)).to_numpy())
        for i, race in enumerate(RACES)
        for j, gender in enumerate(GENDERS)
    ]
    others = p[p["race"] == RACES.index("Others")]["race_pred"]
    called = ", ".join(
        f"{RACES[int(c)] if c >= 0 else 'no face found'} {100 * share:.0f}%"
        for c, share in others.value_counts(normalize=True).items()
    )
    by_age = "" if bounds is None else "\n\n**Per age group**\n\n" + age_group_table(p, *bounds)
    return (
        f"Run `{run.name}`, {len(p)} photos.\n\n**Per race**\n\n"
        + to_markdown(pd.DataFrame(race_rows))
        + "\n\n**Per race x gender**\n\n"
        + to_markdown(pd.DataFrame(rg_rows))
        + f"\n\nThe unseen 'Others' faces were called: {called}."
        + by_age
    )


def age_group_table(p: pd.DataFrame, lo: np.ndarray, hi: np.ndarray) -> str:
    """Per labelled age group (its bounds ``lo``, ``hi`` per photo): where the age estimates
    fall (below, inside or above the group, as
    :func:`agefair.metrics.age_groups.age_group_distance` counts inside) and their median; a
    face the detector missed has no estimate."""
    labels = p["age_group"].astype(str).to_numpy()
    age = p["age_pred"].to_numpy(dtype=float)
    outside = age_group_distance(lo, hi, age)
    rows = []
    for group in dict.fromkeys(labels[np.argsort(lo, kind="stable")]):  # youngest first
        mask = labels == group
        found = mask & ~np.isnan(age)
        share = {
            "below": (outside[found] > 0) & (age[found] < lo[found]),
            "inside": outside[found] == 0,
            "above": (outside[found] > 0) & (age[found] > hi[found]),
        }
        row = {"age group": group, "n": int(mask.sum()), "missed": int((mask & ~found).sum())}
        row |= {f"estimate {k}": f"{100 * v.mean():.1f}%" for k, v in share.items()}
        row["median estimate"] = f"{np.median(age[found]):.1f}"
        rows.append(row)
    return to_markdown(pd.DataFrame(rows))


def budget_line(runs: list[Path]) -> str:
    return (
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, no GPU. Data: UTKFace "
        "(agefair's seeded 80/10/10 split; test split columns) and the unseen faces of each "
        "run's `data.unseen` (`../shared/data/fairface_dev`: 4,000 FairFace photos, Karkkainen "
        "& Joo 2021, CC BY 4.0), scored through the app's path (detector, framing, model; a "
        "photo without a found face counts as wrong). Budget: each run's own overrides; training "
        "minutes in the table."
    )


#: The headline table's columns: (results.csv column, heading, shown as a percentage).
HEADLINE = (
    ("unseen/gender_acc", "unseen gender", True),
    ("unseen/race_acc", "unseen race", True),
    ("test/age_mae", "UTKFace age MAE", False),
    ("test/gender_acc", "UTKFace gender", True),
    ("test/race_acc", "UTKFace race", True),
)


def headline_table(systems: list[tuple[str, list[Path]]]) -> str:
    """One row per system: each figure of each of its runs (seeds), comma-separated."""
    rows = []
    for name, runs in systems:
        results, _, seeds = zip(*map(run_results, runs), strict=True)
        which = "seed" if len(seeds) == 1 else "seeds"
        listed = " and ".join(", ".join(map(str, seeds)).rsplit(", ", 1))
        row = {"`make train ARGS=...`": f"{name}, {which} {listed}"}
        for col, head, pct in HEADLINE:
            figures = [f"{100 * r[col]:.1f}%" if pct else f"{r[col]:.2f}" for r in results]
            row[head] = ", ".join(figures)
        rows.append(row)
    return to_markdown(pd.DataFrame(rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--chosen", type=Path, help="the run whose per-group tables are shown")
    parser.add_argument("--default", nargs="+", type=Path, help="the default recipe's runs")
    parser.add_argument("--from-scratch", nargs="+", type=Path, help="experiment=from_scratch's")
    args = parser.parse_args(argv)
    runs = [r for r in args.runs if (r / "results.csv").is_file()]
    if not runs:
        parser.error("none of the runs has a results.csv")
    replace_section(README, "levers", lever_table(runs))
    replace_section(README, "probe", probe_table())
    replace_section(README, "groups", group_tables(args.chosen or runs[-1]))
    replace_section(README, "budget", budget_line(runs))
    print(f"wrote {README}")
    if args.default and args.from_scratch:
        systems = [("(the default)", args.default)]
        systems.append(("`experiment=from_scratch`", args.from_scratch))
        replace_section(REPO_README, "headline", headline_table(systems))
        print(f"wrote {REPO_README}")


if __name__ == "__main__":
    main()
