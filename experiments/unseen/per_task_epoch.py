"""What choosing each task's epoch on its own validation figure buys, on UTKFace and unseen faces.

    python experiments/unseen/per_task_epoch.py outputs/unseen/<run> [...] \
        --unseen ../shared/data/fairface_dev/labels.csv

A run chooses one checkpoint, the epoch of lowest validation loss, for all three tasks; but the
tasks need not learn at the same pace (the last two blocks tuned overfit race by the third epoch,
age kept improving). Here each task takes the epoch of its own best validation figure (age MAE,
gender accuracy, balanced race accuracy, from the run's ``history.csv``; the run must keep every
epoch's checkpoint: ``callbacks.model_checkpoint.save_top_k=-1``). Each chosen checkpoint is
scored by ``agefair.evaluate`` on the test split and on the unseen faces (into
``<run>/per_task/epochNNN/``); the task's predictions are taken from its epoch's. Nothing is
chosen on the unseen faces. The table goes into this folder's README between the ``per_task``
markers.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from run import README, cells  # this folder's report, whose lever table's columns this fills

from agefair.metrics.age_groups import age_group_distance, parse_age_groups
from agefair.metrics.groups import group_gaps, group_table, headline_metrics
from agefair.reporting.tables import replace_section, to_markdown
from agefair.training.results import worst_group_metrics

#: Each task's validation figure and whether higher is better.
CHOICE = {
    "age": ("val/age_mae", False),
    "gender": ("val/gender_acc", True),
    "race": ("val/race_acc_balanced", True),
}


def best_epoch(history: pd.DataFrame, column: str, higher: bool) -> int:
    """The epoch of the best figure; the earliest of equals (the first to reach it)."""
    values = history[column].to_numpy()
    return int(history["epoch"].iloc[int(np.argmax(values) if higher else np.argmin(values))])


def chosen_epochs(history: pd.DataFrame) -> dict[str, int]:
    """Each task's epoch, and the one-checkpoint choice (``all``: lowest validation loss)."""
    epochs = {task: best_epoch(history, col, higher) for task, (col, higher) in CHOICE.items()}
    return epochs | {"all": best_epoch(history, "val/loss", higher=False)}


def scored(run: Path, epoch: int, unseen: Path) -> Path:
    """The folder holding the epoch's checkpoint's predictions on both splits (scored once)."""
    out = run / "per_task" / f"epoch{epoch:03d}"
    ckpt = run / "checkpoints" / f"epoch{epoch:03d}.ckpt"
    if not ckpt.is_file():
        raise SystemExit(f"{ckpt} is missing: train with callbacks.model_checkpoint.save_top_k=-1")
    for split, extra in (("test", []), ("unseen", [f"labels={unseen}"])):
        if not (out / f"predictions_{split}.csv").is_file():
            subprocess.run(
                [sys.executable, "-m", "agefair.evaluate", f"ckpt_path={ckpt}",
                 f"hydra.run.dir={out}", *extra],
                check=True,
            )  # fmt: skip
    return out


def combined(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Age, gender and race predictions each from its own task's frame, checked to be of the
    same faces."""
    out = frames["age"].copy()
    keys = [c for c in ("file", "age", "gender", "race") if c in out.columns]
    for task in ("gender", "race"):
        if not frames[task][keys].reset_index(drop=True).equals(out[keys].reset_index(drop=True)):
            raise SystemExit("the chosen checkpoints' predictions are not of the same faces")
        out[[f"{task}_pred", f"{task}_p"]] = frames[task][[f"{task}_pred", f"{task}_p"]]
    return out


def figures(test: pd.DataFrame, unseen: pd.DataFrame) -> dict[str, str]:
    """The lever table's cells (:func:`run.cells`) from predictions, computed as a run's own
    ``results.csv`` is: a missed unseen face is wrong for every task."""
    lo, hi = parse_age_groups(unseen["age_group"].astype(str))
    u = unseen.assign(age=0, age_pred=0)  # only age groups are known: scored apart, below
    gaps = group_gaps(group_table(u), metrics=["gender_acc"])
    row = {f"test/{k}": v for k, v in headline_metrics(test).items()}
    row |= {
        f"unseen/{k}": v for k, v in {**headline_metrics(u), **worst_group_metrics(gaps)}.items()
    }
    in_group = age_group_distance(lo, hi, unseen["age_pred"].to_numpy()) == 0
    row["unseen/age_group_acc"] = np.mean(in_group)
    row["unseen/missed"], row["unseen/n"] = int((~unseen["found"]).sum()), len(unseen)
    return cells(pd.Series(row))


def rows(run: Path, unseen: Path) -> list[dict[str, str]]:
    epochs = chosen_epochs(pd.read_csv(run / "history.csv"))
    folders = {e: scored(run, e, unseen) for e in set(epochs.values())}
    out = []
    for choice, picks in (
        ("one checkpoint (validation loss)", {t: epochs["all"] for t in CHOICE}),
        ("each task its own epoch", {t: epochs[t] for t in CHOICE}),
    ):
        frames = {
            split: combined(
                {t: pd.read_csv(folders[e] / f"predictions_{split}.csv") for t, e in picks.items()}
            )
            for split in ("test", "unseen")
        }
        out.append(
            {
                "run": run.name,
                "choice": choice,
                "epochs (age / gender / race)": " / ".join(str(picks[t]) for t in CHOICE),
                **figures(frames["test"], frames["unseen"]),
            }
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--unseen", type=Path, required=True, help="labels.csv of unseen faces")
    args = parser.parse_args(argv)
    table = to_markdown(pd.DataFrame([r for run in args.runs for r in rows(run, args.unseen)]))
    replace_section(README, "per_task", table)
    print(table)


if __name__ == "__main__":
    main()
