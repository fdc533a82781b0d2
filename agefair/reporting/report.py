"""Reports of sweeps: every member's results row in one CSV, the study's tables and plots.

    python -m agefair.report SWEEP_DIR [SWEEP_DIR ...] [--study STUDY] [--out FOLDER]
    agefair report outputs/studies/compare_s0 outputs/studies/compare_s12 \\
        --study compare_approaches --out experiments/compare_approaches

A ``SWEEP_DIR`` may also be a report's ``results.csv``: its members, as recorded, join the
report (a budget whose multirun folders are gone stays in the report made again).

Every member's ``results.csv`` (see ``agefair.training.results``) becomes one row of
``results.csv`` in the output folder, beside the member's overrides, its label (its swept
overrides) and the budget read from its ``.hydra/config.yaml``. Failed members stay in every table
with their error, so a report never hides a member. Members that differ only by ``seed`` make one
line of the tables: the mean ± standard deviation over their seeds, and how many there were.
Members of different budgets (epochs, batches, threads) are reported apart, each budget in a part
of its own, the one that trained longest first: a converged study and its one-pass quick look.

``summary.md`` holds the budget, the tables and links to the plots (PNGs in the same folder);
``table.md`` the member table alone. When the folder has a ``README.md`` with
``<!-- report:start -->`` and ``<!-- report:end -->`` markers, the summary replaces what lies
between them. Studies (``--study``):

- ``generic`` (default): the member table;
- ``compare_approaches``: the table, each approach against the one multitask network, and bars;
- ``complexity_sweep``: Pareto plots of accuracy against FLOPs and latency, what each step up in
  size buys (paired, with intervals), and the smallest model that reaches each threshold;
- ``hparam_search``: the trials ranked by objective, the best configuration (checked against the
  Optuna sweeper's ``optimization_results.yaml``) and the objective per trial;
- ``transfer``: the table by transfer variant and pretrained weights, and bars.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from agefair.reporting.plots import learning_curves
from agefair.reporting.studies import STUDIES, StudyInput, image
from agefair.reporting.sweep_results import aggregate_seeds, collect, pending_members
from agefair.reporting.tables import (
    GENERIC_LEAD,
    has_section,
    members_table,
    replace_section,
)

README_SECTION = "report"


# ---------------------------------------------------------------------------------------- output
def markdown_table(members: pd.DataFrame) -> str:
    """The headline columns of a sweep as a markdown table, with failed members' errors."""
    return members_table(aggregate_seeds(members), GENERIC_LEAD)


def provenance(members: pd.DataFrame, configs: pd.DataFrame, sweeps: Sequence[Path]) -> str:
    """What the report covers: members, failures, configurations, sweeps, the machines they
    trained on (members recorded before rows named it are not counted), unfinished members."""
    failed = int((members["status"] != "ok").sum())
    text = (
        f"{len(members)} members ({failed} failed) in {len(configs)} configurations from "
        f"{len(sweeps)} sweep(s): " + ", ".join(f"`{s}`" for s in sweeps) + "."
    )
    if "machine" in members:
        machines = members["machine"].dropna().value_counts(sort=False)
        text += " Trained on: " + "; ".join(f"{m} ({n})" for m, n in machines.items()) + "."
    pending = pending_members(sweeps)
    if pending:
        text += " Not reported, no results row yet (running or killed): "
        text += ", ".join(f"`{p}`" for p in pending) + "."
    return text


def curves_section(inp: StudyInput) -> list[str]:
    """Every finished member's validation curves (``learning_curves.png``), to show whether the
    budget let it level off; nothing when no member kept a ``history.csv`` of two epochs."""
    curves: dict[str, dict[str, pd.DataFrame]] = {}
    for _, row in inp.members[inp.members["status"] == "ok"].iterrows():
        history = Path(row["sweep"]) / str(row["member"]) / "history.csv"
        if history.is_file():
            seed = row.get("seed")
            name = "" if pd.isna(seed) else f"seed={seed:g}"
            members = curves.setdefault(row["label"], {})
            if name in members:  # the same configuration from another sweep
                name = f"{name} ({Path(row['sweep']).name})".strip()
            members[name] = pd.read_csv(history)
    title = f"Validation by epoch\n{inp.budget}"
    path = learning_curves(curves, inp.plot_path("learning_curves"), title)
    if path is None:
        return []
    return [f"Validation by epoch, every member: where it levelled off.\n\n{image(path, 'curves')}"]


def by_budget(members: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The members of each budget, the one that trained on the most images first: the answer
    before the quick looks."""
    images = members.get("examples_seen", pd.Series(0.0, index=members.index))
    seen = images.groupby(members["budget"], sort=False).mean().fillna(0)
    order = seen.sort_values(ascending=False, kind="stable").index
    return [(budget, members[members["budget"] == budget]) for budget in order]


def budget_suffix(budget: str) -> str:
    """``4 epochs x 80 batches of 64, 1 thread`` -> ``_4_epochs_x_80_batches_of_64_1_thread``."""
    return "_" + re.sub(r"[^a-z0-9]+", "_", budget.lower()).strip("_")


def demoted(section: str) -> str:
    """A section's headings one level down, to sit under its budget's heading."""
    return re.sub(r"^#", "##", section, flags=re.MULTILINE)


def write_report(members: pd.DataFrame, study: str, sweeps: Sequence[Path], out: Path) -> str:
    """Writes the CSV, table, plots and summary of a study into ``out``; returns the summary.

    Everything (tables, plots, the check of a search's best) is computed from the one frame
    written as ``results.csv``. Members of several budgets get a part each, the budget that
    trained on the most images first; the plots of the others carry their budget in their names.
    """
    out.mkdir(parents=True, exist_ok=True)
    members.to_csv(out / "results.csv", index=False)
    every = aggregate_seeds(members)
    (out / "table.md").write_text(members_table(every, GENERIC_LEAD) + "\n")
    parts = by_budget(members)
    sections = [provenance(members, every, sweeps)]
    for i, (budget, part) in enumerate(parts):
        suffix = budget_suffix(budget) if i else ""
        inp = StudyInput(
            part, aggregate_seeds(part), list(sweeps), out, f"budget: {budget}", suffix
        )
        body = [*STUDIES[study](inp), *curves_section(inp)]
        if len(parts) > 1:
            body = [f"## Budget: {budget}", *map(demoted, body)]
        else:
            body = [f"**{inp.budget}**", *body]
        sections += body
    text = "\n\n".join(sections)
    (out / "summary.md").write_text(f"# {study.replace('_', ' ')}\n\n{text}\n")
    readme = out / "README.md"
    if has_section(readme, README_SECTION):
        replace_section(readme, README_SECTION, text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agefair report", description=__doc__.splitlines()[0])
    parser.add_argument(
        "sweep_dirs",
        type=Path,
        nargs="+",
        metavar="SWEEP_DIR",
        help="multirun folders, or reports' results.csv files that stand for theirs",
    )
    parser.add_argument("--study", choices=list(STUDIES), default="generic")
    parser.add_argument(
        "--out", type=Path, default=None, help="report folder (default: the first SWEEP_DIR)"
    )
    args = parser.parse_args(argv)
    members = collect(*args.sweep_dirs)
    print(write_report(members, args.study, args.sweep_dirs, args.out or args.sweep_dirs[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
