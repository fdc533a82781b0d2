"""Collect the results rows of a sweep into one CSV and a markdown table.

    python -m agefair.report outputs/compare_approaches/multiruns/<time>
    agefair report outputs/compare_approaches/multiruns/<time> --out experiments/compare_approaches

Every member's ``results.csv`` (see ``agefair.results``) becomes one row; failed members stay in
the table with their error, so a report never hides a member.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

COLUMNS = {
    "model": "model",
    "backbone": "backbone",
    "pretrained": "pretrained",
    "status": "status",
    "test/age_mae": "age MAE",
    "test/age_cs5": "CS@5",
    "test/gender_acc": "gender acc",
    "test/race_acc": "race acc",
    "test/race_acc_balanced": "race bal. acc",
    "params": "params",
    "flops_per_image": "FLOPs/img",
    "latency_ms_b1": "latency b1 (ms)",
    "train_time_s": "train time (s)",
    "examples_seen": "images seen",
}


def collect(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per member of a sweep folder (members are its numbered subfolders)."""
    sweep_dir = Path(sweep_dir)
    files = sorted(
        sweep_dir.glob("*/results.csv"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not files:
        raise FileNotFoundError(f"no */results.csv under {sweep_dir}: is it a multirun folder?")
    rows = [pd.read_csv(f).assign(member=f.parent.name) for f in files]
    return pd.concat(rows, ignore_index=True)


def to_markdown(df: pd.DataFrame) -> str:
    """Any table as markdown, floats rounded for reading (3 decimals, or 3 digits when large)."""

    def fmt(v: object) -> str:
        if isinstance(v, float):
            return "" if pd.isna(v) else f"{v:.3g}" if abs(v) >= 100 else f"{v:.3f}"
        return str(v)

    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    lines = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *lines])


def markdown_table(df: pd.DataFrame) -> str:
    """The headline columns of a sweep as a markdown table, with failed members' errors."""
    cols = [c for c in COLUMNS if c in df.columns]
    lines = [to_markdown(df[cols].rename(columns=COLUMNS))]
    if "error" in df.columns:
        for _, row in df[df["status"] == "failed"].iterrows():
            lines.append(f"\n*{row.get('model', '?')} failed:* `{row['error']}`")
    return "\n".join(lines)


def replace_section(path: str | Path, name: str, body: str) -> None:
    """Replaces the text between ``<!-- {name}:start -->`` and ``<!-- {name}:end -->`` in a file.

    Reports keep their prose by hand and their figures generated: a command rewrites only
    what lies between its markers.

    Raises:
        ValueError: the file lacks either marker.
    """
    path = Path(path)
    text = path.read_text()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"{path} has no {start} ... {end} section")
    head, tail = text[: text.index(start) + len(start)], text[text.index(end) :]
    path.write_text(f"{head}\n{body.strip()}\n{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agefair report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="folder for results.csv, table.md")
    args = parser.parse_args(argv)
    df = collect(args.sweep_dir)
    out = args.out or args.sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "results.csv", index=False)
    table = markdown_table(df)
    (out / "table.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
