"""Sweep tables as markdown: column names, number formats, the budget line, file sections."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agefair.reporting.plots import std_column

#: Accuracy columns of every study's table: results column -> table header.
METRICS = {
    "test/age_mae": "age MAE",
    "test/age_cs5": "CS@5",
    "test/gender_acc": "gender acc",
    "test/race_acc": "race acc",
    "test/race_acc_balanced": "race bal. acc",
    "test/race_recall_Others": "Others recall",
    "test/worst_race_gender_acc": "worst race: gender acc",
    "test/gap_race_gender_gender_acc": "race×gender gender-acc gap",
    # Faces of another data set through the app's path (data.unseen), where the run scored them.
    "unseen/gender_acc": "unseen gender acc",
    "unseen/race_acc": "unseen race acc",
    "unseen/race_acc_balanced": "unseen race bal. acc",
    "unseen/age_group_acc": "unseen age-group acc",
    "unseen/worst_race_gender_acc": "unseen worst race: gender acc",
}
#: Cost columns of every study's table.
COSTS = {
    "params": "params",
    "flops_per_image": "FLOPs/img",
    "latency_ms_b1": "latency b1 (ms)",
    "train_time_s": "train time (s)",
    "examples_seen": "images seen",
}
#: Validation columns of a search's trials table (the test split is never searched on).
VAL_METRICS = {
    "val/age_mae": "val age MAE",
    "val/gender_acc": "val gender acc",
    "val/race_acc": "val race acc",
    "val/race_acc_balanced": "val race bal. acc",
}
#: Headers of the other columns a table may show.
HEADERS = {
    "label": "config",
    "n_seeds": "seeds",
    "cfg/backbone.depth": "depth",
    "cfg/backbone.width": "width",
    "transfer": "variant",
    **METRICS,
    **COSTS,
    **VAL_METRICS,
}
LOWER_IS_BETTER = {"test/age_mae", "test/gap_race_gender_gender_acc", "val/age_mae"}
#: Counts shown with SI prefixes (1.26 M) rather than as floats.
COUNTS = {"params", "flops_per_image", "examples_seen"}
#: Columns that say what a member is, before its metrics in the generic table.
GENERIC_LEAD = ("model", "backbone", "pretrained")


# ------------------------------------------------------------------------------------ formatting
def format_value(v: object) -> str:
    """A number for reading: 3 decimals, or 3 significant digits when large; blanks for NaN."""
    if isinstance(v, float):
        return "" if pd.isna(v) else f"{v:.3g}" if abs(v) >= 100 else f"{v:.3f}"
    return str(v)


def with_ci(value: float, ci: Sequence[float], percent: bool) -> str:
    """``value (low–high)``: years (or any unit) with 2 decimals, or a share as percent with 1."""
    fmt = (lambda v: f"{100 * v:.1f}") if percent else (lambda v: f"{v:.2f}")
    return f"{fmt(value)} ({fmt(ci[0])}–{fmt(ci[1])})"


def format_count(v: float) -> str:
    """``1259356`` -> ``1.26 M``: parameters, FLOPs and image counts span many magnitudes."""
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= factor:
            return f"{v / factor:.3g} {prefix}"
    return f"{v:.3g}"


def formatter(column: str) -> Callable[[float], str]:
    """How a column's numbers are written: counts with prefixes, other costs to 3 digits."""
    if column in COUNTS:
        return format_count
    if column.startswith("cfg/"):
        return _number
    return (lambda v: f"{v:.3g}") if column in COSTS else format_value


def cell(row: pd.Series, column: str) -> str:
    """One table cell: the value, with ``± sd`` when it is a mean over seeds that differ."""
    value = row.get(column)
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, bool | str | int | np.bool_ | np.integer):
        return str(value)
    fmt = formatter(column)
    text = fmt(float(value))
    spread = row.get(std_column(column))
    if row.get("n_seeds", 1) > 1 and spread is not None and pd.notna(spread) and spread > 0:
        text += f" ± {fmt(float(spread))}"
    return text


def display(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """The given columns (those present) as text cells under their headers."""
    present = [c for c in dict.fromkeys(columns) if c in frame.columns]
    return pd.DataFrame(
        {HEADERS.get(c, c): [cell(r, c) for _, r in frame.iterrows()] for c in present}
    )


def to_markdown(df: pd.DataFrame) -> str:
    """Any table as markdown, floats rounded for reading (3 decimals, or 3 digits when large)."""
    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    lines = [
        "| " + " | ".join(format_value(v).replace("|", "\\|") for v in row) + " |"
        for row in df.itertuples(index=False)
    ]
    return "\n".join([header, rule, *lines])


def failure_lines(frame: pd.DataFrame) -> list[str]:
    """One line per failed member: its label and error."""
    if "error" not in frame.columns:
        return []
    failed = frame[frame["status"] == "failed"]
    return [
        f"\n*{row['label']} failed:* {inline_code(row['error'])}" for _, row in failed.iterrows()
    ]


def inline_code(text: object) -> str:
    """Text as one line of markdown code (an error message may span lines or hold backticks)."""
    return "`" + " ".join(str(text).split()).replace("`", "'") + "`"


def members_table(configs: pd.DataFrame, lead: Sequence[str] = ()) -> str:
    """Every configuration (failed members marked) with its accuracy and costs, as markdown."""
    columns = ["label", *lead, "n_seeds", "status", *METRICS, *COSTS]
    return "\n".join([to_markdown(display(configs, columns)), *failure_lines(configs)])


# ---------------------------------------------------------------------------------------- budget
def _number(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def member_budget(row: pd.Series) -> str | None:
    """``3 epochs x 80 batches of 64, 1 thread``: what a member was allowed (None if unknown)."""

    def known(key: str) -> Any:
        v = row.get(key)
        return None if v is None or (not isinstance(v, str) and pd.isna(v)) else v

    batch, epochs = known("cfg/data.batch_size"), known("cfg/trainer.max_epochs")
    batches, dev_run = known("cfg/trainer.limit_train_batches"), known("cfg/trainer.fast_dev_run")
    threads = known("cfg/threads") or known("threads")
    if dev_run:
        n = 1 if dev_run is True else int(dev_run)
        text = f"fast_dev_run: {n} batch{'es' if n > 1 else ''} of {_number(batch)}"
    elif epochs is not None:
        if batches is None:
            per_epoch = "all batches"
        elif float(batches) < 1:
            per_epoch = f"{float(batches):.0%} of the batches"
        else:
            per_epoch = f"{_number(batches)} batches"
        text = f"{_number(epochs)} epochs x {per_epoch} of {_number(batch)}"
    else:
        return None
    if threads is not None:
        text += f", {_number(threads)} thread{'s' if float(threads) != 1 else ''}"
    return text


def budget_line(members: pd.DataFrame) -> str:
    """The budget of a report's members: one line, naming each budget when they differ."""
    budgets = list(dict.fromkeys(b for _, r in members.iterrows() if (b := member_budget(r))))
    if not budgets:
        return "budget: unknown"
    return "budget: " + "; ".join(budgets) + (" (members differ)" if len(budgets) > 1 else "")


def replace_section(path: str | Path, name: str, body: str) -> None:
    """Replaces the text between ``<!-- {name}:start -->`` and ``<!-- {name}:end -->`` in a file.

    Reports keep their prose by hand and their figures generated: a command rewrites only
    what lies between its markers.

    Raises:
        ValueError: the file lacks either marker.
    """
    path = Path(path)
    text = path.read_text()
    if not has_markers(text, name):
        raise ValueError(f"{path} has no <!-- {name}:start --> ... <!-- {name}:end --> section")
    path.write_text(with_section(text, name, body))


def has_markers(text: str, name: str) -> bool:
    """Whether ``text`` holds both markers of section ``name``."""
    return f"<!-- {name}:start -->" in text and f"<!-- {name}:end -->" in text


def with_section(text: str, name: str, body: str) -> str:
    """``text`` with ``body`` between the markers of section ``name``; a text without them gets
    the section appended."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if not has_markers(text, name):
        return f"{text.rstrip()}\n\n{start}\n{body.strip()}\n{end}\n"
    head, tail = text[: text.index(start) + len(start)], text[text.index(end) :]
    return f"{head}\n{body.strip()}\n{tail}"


def has_section(path: Path, name: str) -> bool:
    """Whether a file exists and holds both markers of a section."""
    return path.is_file() and has_markers(path.read_text(), name)
