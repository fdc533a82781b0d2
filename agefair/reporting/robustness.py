"""The robustness study's report: plots, the markdown summary, the report folder.

Everything here reads the study's table (``robustness.csv``, one row per model and grid point,
see :mod:`agefair.evaluation.robustness`), so a report can be redrawn from the CSVs alone::

    python -m agefair.reporting.robustness experiments/robustness

:func:`summary_markdown` writes the thresholds of :mod:`agefair.evaluation.robustness_limits`
with a table per family, and :func:`update_report` files one model's results in a report folder
and redraws its plots and README section from every model filed there.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agefair.evaluation.robustness_limits import (
    THRESHOLD_METRICS,
    curve_name,
    format_threshold,
    read_results,
    thresholds,
    within_tolerance,
)
from agefair.labels import RACES
from agefair.reporting.plots import panel_figure, save_figure
from agefair.reporting.tables import replace_section, to_markdown

__all__ = [
    "collect_results",
    "draw_plots",
    "plot_face_fraction",
    "plot_filter_bias",
    "plot_resolution",
    "render_report",
    "summary_markdown",
    "update_report",
    "write_outputs",
]

#: Column names of the metrics in the markdown tables.
METRIC_NAMES = {
    "age_mae": "age MAE",
    "age_bias": "age bias",
    "gender_acc": "gender acc",
    "race_acc": "race acc",
    "found_rate": "found rate",
}
#: Plot file of each family.
PLOTS = {
    "resolution": "resolution.png",
    "face_fraction": "face_fraction.png",
    "filter": "filters_age_bias.png",
}


# ---------------------------------------------------------------------------------------- plots
def _plot_curves(
    frame: pd.DataFrame,
    family: str,
    styles: Mapping[str, str],
    metrics: Sequence[str],
    xlabel: str,
    path: Path,
    tolerance: float,
) -> Path:
    """Metric panels against the grid value of ``family``: a colour per model, a line style per
    variant, and the model's tolerance bound dotted."""
    fig, axes = panel_figure(len(metrics), cols=2, width=5.5, height=3.8)
    colours = [f"C{i}" for i in range(10)]
    values = sorted(frame.loc[frame["family"] == family, "value"].unique())
    for m, (model, runs) in enumerate(frame.groupby("model", sort=False)):
        colour = colours[m % len(colours)]
        clean = runs[runs["family"] == "clean"].iloc[0]
        for ax, metric in zip(axes, metrics, strict=False):
            for variant, style in styles.items():
                curve = runs[(runs["family"] == family) & (runs["variant"] == variant)]
                curve = curve.sort_values("value")
                if curve.empty:
                    continue
                name = model if len(styles) == 1 else f"{model}, {variant.replace('_', ' ')}"
                ax.plot(curve["value"], curve[metric], style, color=colour, label=name, ms=4)
            if metric in THRESHOLD_METRICS:
                lower = THRESHOLD_METRICS[metric]
                bound = float(clean[metric]) * (1 + tolerance if lower else 1 - tolerance)
                ax.axhline(bound, color=colour, ls=":", lw=1)
    for ax, metric in zip(axes, metrics, strict=False):
        ax.set_xscale("log")
        ax.set_xticks(values, labels=[f"{v:g}" for v in values])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_title(METRIC_NAMES.get(metric, metric))
        ax.grid(alpha=0.3)
        if metric == "age_bias":
            ax.axhline(0, color="grey", lw=0.8)
    axes[0].legend(fontsize=7, title=f"dotted: {tolerance:.0%} bound", title_fontsize=7)
    return save_figure(fig, path)


def plot_resolution(frame: pd.DataFrame, path: str | Path, tolerance: float = 0.1) -> Path:
    """Age MAE, age bias, gender and race accuracy against the face's resolution."""
    metrics = ["age_mae", "age_bias", "gender_acc", "race_acc"]
    xlabel = "face side (px) before enlarging back to the model input"
    return _plot_curves(frame, "resolution", {"": "o-"}, metrics, xlabel, Path(path), tolerance)


def plot_face_fraction(frame: pd.DataFrame, path: str | Path, tolerance: float = 0.1) -> Path:
    """Age MAE, gender and race accuracy and found rate against the face's share of the picture,
    given to the model as is (solid) and through detection (dashed)."""
    metrics = ["age_mae", "gender_acc", "race_acc", "found_rate"]
    styles = {"as_is": "o-", "detected": "s--"}
    xlabel = "share of the picture's area covered by the face"
    return _plot_curves(frame, "face_fraction", styles, metrics, xlabel, Path(path), tolerance)


def plot_filter_bias(frame: pd.DataFrame, path: str | Path) -> Path:
    """Signed age error (prediction minus truth) per filter and strength, a bar per model; the
    line marks each model's value without a filter."""
    rows = frame[(frame["family"] == "filter") & (frame["variant"] != "none")]
    names = [f"{v} {s:g}" for v, s in zip(rows["variant"], rows["value"], strict=True)]
    labels = list(dict.fromkeys(names))
    models = list(dict.fromkeys(frame["model"]))
    size = 1.2 + 0.32 * len(labels) * max(1, len(models) / 1.5)
    fig, (ax,) = panel_figure(1, width=8, height=size)
    height = 0.8 / max(1, len(models))
    y = np.arange(len(labels))
    for m, model in enumerate(models):
        own = (rows["model"] == model).to_numpy()
        bias = dict(zip(np.array(names)[own], rows["age_bias"][own], strict=True))
        ax.barh(
            y + m * height,
            [bias.get(lab, np.nan) for lab in labels],
            height,
            color=f"C{m}",
            label=model,
        )
        none = frame[
            (frame["model"] == model) & (frame["family"] == "filter") & (frame["variant"] == "none")
        ]
        if not none.empty:
            ax.axvline(float(none["age_bias"].iloc[0]), color=f"C{m}", ls=":", lw=1)
    ax.set_yticks(y + height * (len(models) - 1) / 2, labels=labels)
    ax.invert_yaxis()
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel("mean signed age error, years (> 0: looks older); dotted: no filter")
    ax.legend(fontsize=7)
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, Path(path))


def draw_plots(frame: pd.DataFrame, folder: Path, tolerance: float = 0.1) -> dict[str, Path]:
    """The plots of the families present in ``frame``, named as :data:`PLOTS`."""
    families = set(frame["family"])
    drawn = {}
    if "resolution" in families:
        drawn["resolution"] = plot_resolution(frame, folder / PLOTS["resolution"], tolerance)
    if "face_fraction" in families:
        drawn["face_fraction"] = plot_face_fraction(
            frame, folder / PLOTS["face_fraction"], tolerance
        )
    if "filter" in families:
        drawn["filter"] = plot_filter_bias(frame, folder / PLOTS["filter"])
    return drawn


# -------------------------------------------------------------------------------------- summary
def _num(value: Any, digits: int = 3) -> str:
    value = float(value)
    return "" if math.isnan(value) else f"{value:.{digits}f}"


def _marked(value: float, clean: float, metric: str, tolerance: float) -> str:
    """The value, in bold when it is outside the tolerance bound of its clean value."""
    text = _num(value, 2 if metric.startswith("age") else 3)
    lower = THRESHOLD_METRICS.get(metric)
    if text and lower is not None and not within_tolerance(value, clean, lower, tolerance):
        return f"**{text}**"
    return text


def _metric_cells(row: pd.Series, clean: pd.Series, metrics: Sequence[str], tol: float) -> dict:
    return {METRIC_NAMES[m]: _marked(row[m], clean[m], m, tol) for m in metrics}


def _family_table(
    frame: pd.DataFrame, family: str, first: Callable[[pd.Series], dict], tolerance: float
) -> str:
    """One line per point of ``family`` and model: ``first(row)`` columns, then the metrics."""
    metrics = ["age_mae", "age_bias", "gender_acc", "race_acc"]
    lines = []
    for _, runs in frame.groupby("model", sort=False):
        clean = runs[runs["family"] == "clean"].iloc[0]
        for _, row in runs[runs["family"] == family].iterrows():
            lines.append(
                {
                    "model": row["model"],
                    **first(row),
                    **_metric_cells(row, clean, metrics, tolerance),
                }
            )
    return to_markdown(pd.DataFrame(lines)) if lines else ""


def _runs_table(infos: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        {
            "model": info["model"],
            "checkpoint": f"`{info['checkpoint']}`",
            "test images": f"{info['images']} of {info['test_split_images']}",
            "grid points": info["points"],
            "time": f"{info['time_s'] / 60:.1f} min",
            "machine": info["machine"],
        }
        for info in infos
    ]
    return to_markdown(pd.DataFrame(rows))


def _commands(infos: Sequence[Mapping[str, Any]]) -> str:
    """The command line of each run, as far as Hydra recorded its overrides."""
    lines = [
        f"* {info['model']}: `python -m agefair.evaluate {' '.join(info['overrides'])}`"
        for info in infos
        if info.get("overrides")
    ]
    return "Commands:\n\n" + "\n".join(lines) if lines else ""


def _threshold_tables(limits: pd.DataFrame) -> tuple[str, str]:
    """The overall thresholds (a column per metric) and the per-race ones (a column per race)."""
    overall, by_race = [], []
    for (model, family, variant), part in limits.groupby(
        ["model", "family", "variant"], sort=False
    ):
        # A group without faces has no clean value, hence no threshold: "n/a", not "none".
        cells = {
            (r.group, r.metric): "n/a"
            if math.isnan(r.clean)
            else format_threshold(r.threshold, r.first_outside, family, r.outside_above)
            for r in part.itertuples()
        }
        head = {"model": model, "curve": curve_name(family, variant)}
        overall.append(
            {
                **head,
                **{
                    n: cells.get(("all", m), "")
                    for m, n in METRIC_NAMES.items()
                    if m in THRESHOLD_METRICS
                },
            }
        )
        for metric in ("age_mae", "gender_acc", "race_acc"):
            by_race.append(
                {
                    **head,
                    "metric": METRIC_NAMES[metric],
                    **{r: cells.get((r, metric), "") for r in RACES},
                }
            )
    return to_markdown(pd.DataFrame(overall)), to_markdown(pd.DataFrame(by_race))


def _image(plots: dict[str, str], key: str, alt: str) -> list[str]:
    """The markdown image line of a plot, or nothing when that plot was not drawn."""
    return [f"![{alt}]({plots[key]})"] if key in plots else []


def _clean_by_race(frame: pd.DataFrame) -> str:
    rows = []
    for model, runs in frame.groupby("model", sort=False):
        clean = runs[runs["family"] == "clean"].iloc[0]
        for group in ("all", *RACES):
            suffix = "" if group == "all" else f"_{group}"
            n = clean["n_scored" if group == "all" else f"n_{group}"]
            rows.append(
                {
                    "model": model,
                    "group": group,
                    "n": int(n),
                    **{
                        METRIC_NAMES[m]: _num(clean[m + suffix], 2 if m.startswith("age") else 3)
                        for m in ("age_mae", "age_bias", "gender_acc", "race_acc")
                    },
                }
            )
    return to_markdown(pd.DataFrame(rows))


def _face_fraction_table(frame: pd.DataFrame, tolerance: float) -> str:
    lines = []
    metrics = ["age_mae", "gender_acc", "race_acc"]
    for model, runs in frame.groupby("model", sort=False):
        clean = runs[runs["family"] == "clean"].iloc[0]
        ff = runs[runs["family"] == "face_fraction"]
        for value in sorted(ff["value"].unique(), reverse=True):
            line: dict[str, Any] = {"model": model, "fraction": f"{value:g}"}
            for variant in ("as_is", "detected"):
                match = ff[(ff["value"] == value) & (ff["variant"] == variant)]
                if match.empty:
                    continue
                row, tag = match.iloc[0], variant.replace("_", " ")
                if variant == "detected":
                    line[f"{tag}: found"] = _marked(row["found_rate"], 1.0, "found_rate", tolerance)
                for m in metrics:
                    line[f"{tag}: {METRIC_NAMES[m]}"] = _marked(row[m], clean[m], m, tolerance)
            lines.append(line)
    return to_markdown(pd.DataFrame(lines)) if lines else ""


def summary_markdown(
    frame: pd.DataFrame,
    infos: Sequence[Mapping[str, Any]],
    tolerance: float = 0.1,
    plots: Mapping[str, str] | None = None,
) -> str:
    """The study's results as markdown: runs, thresholds, and a table per family.

    Args:
        frame: the study's rows, one or more models.
        infos: one dict per model (its ``info.json``, see
            :func:`agefair.evaluation.robustness.run_study`).
        tolerance: relative tolerance of "within" (see :func:`thresholds`).
        plots: family -> link of its plot, shown above its table.

    Returns:
        The markdown text (level-3 headings), thresholds computed by :func:`thresholds`.
    """
    plots = plots or {}
    limits = thresholds(frame, tolerance)
    overall, by_race = _threshold_tables(limits)
    failed = frame[frame["error"].fillna("") != ""]
    pct = f"{tolerance:.0%}"
    parts = [
        "### Runs",
        _runs_table(infos),
        _commands(infos),
        "### Thresholds",
        f"The lowest face resolution and the smallest face fraction down to which each metric "
        f"stays within {pct} of its clean value: age MAE ≤ {1 + tolerance:g} × clean, accuracies "
        f"and found rate ≥ {1 - tolerance:g} × clean (found rate: clean = 1). Each curve is read "
        "from its largest grid value down and stops at the first value outside the bound, so every "
        "grid value from the top down to the threshold is within. `≤ x`: within down to the "
        "smallest value tried (x); `none`: within nowhere; `(outside at 1)`: values at the top "
        "of the curve that were outside, skipped before the reading starts. The "
        "detected curve scores the faces the detector found; its found rate is a metric of its "
        "own.",
        overall,
        "By race (each race against its own clean value):",
        by_race,
        "### Clean reference",
        "The eval transform at the trained input size, on the same faces (decoded at "
        f"{infos[0].get('source_size', 200) if infos else 200} px and resized to the input):",
        _clean_by_race(frame),
    ]
    if "resolution" in set(frame["family"]):
        parts += ["### Resolution", *_image(plots, "resolution", "metrics against resolution")]
        parts += [
            f"Values in **bold** are outside the {pct} bound.",
            _family_table(
                frame, "resolution", lambda r: {"face side": f"{r['value']:g} px"}, tolerance
            ),
        ]
    if "input_size" in set(frame["family"]):
        parts += [
            "### Input larger than trained",
            "The eval transform at a larger input than the model was trained at (the 200 px face "
            "resized to it); the networks pool globally, so they accept any size.",
            _family_table(
                frame,
                "input_size",
                lambda r: {"input": f"{int(r['img_size'])} px ({r['value']:g}x)"},
                tolerance,
            ),
        ]
    if "face_fraction" in set(frame["family"]):
        background = infos[0].get("background", "") if infos else ""
        detector = infos[0].get("detector", "") if infos else ""
        parts += [
            "### Face fraction",
            *_image(plots, "face_fraction", "metrics against face fraction"),
        ]
        parts += [
            f"Background `{background}`. *As is*: the whole picture at the model's input size. "
            "*Detected*: the face kept at full resolution in the picture, found by "
            f"`{detector}` and cropped as the prediction path does; metrics on found faces, "
            "`found` = share of "
            "pictures where the face was found.",
            _face_fraction_table(frame, tolerance),
        ]
    if "filter" in set(frame["family"]):
        parts += ["### Filters"]
        parts += _image(plots, "filter", "signed age error per filter")
        parts += [
            "Age bias = mean of prediction − truth (> 0: the filter makes faces look older).",
            _family_table(
                frame,
                "filter",
                lambda r: {
                    "filter": r["variant"],
                    "strength": "" if r["variant"] == "none" else f"{r['value']:g}",
                },
                tolerance,
            ),
        ]
    if not failed.empty:
        parts += ["### Failed grid points"]
        parts += [f"* {r.model}, {r.point}: `{r.error}`" for r in failed.itertuples()]
    return "\n\n".join(p for p in parts if p) + "\n"


# -------------------------------------------------------------------------------------- outputs
def slug(label: str) -> str:
    """A folder name for a model label."""
    return re.sub(r"[^\w.+-]+", "_", label).strip("_") or "model"


def write_outputs(
    folder: Path,
    frame: pd.DataFrame,
    infos: Sequence[Mapping[str, Any]],
    tolerance: float = 0.1,
    link_prefix: str = "",
) -> str:
    """Writes ``thresholds.csv`` and the plots into ``folder``; returns the markdown summary.

    Args:
        folder: where the files go.
        frame: the study's rows (one or more models).
        infos: one dict per model (its ``info.json``, see
            :func:`agefair.evaluation.robustness.run_study`).
        tolerance: relative tolerance of "within".
        link_prefix: prefix of the plots' links in the summary (their folder relative to where
            the summary is read).
    """
    folder.mkdir(parents=True, exist_ok=True)
    thresholds(frame, tolerance).to_csv(folder / "thresholds.csv", index=False)
    plots = draw_plots(frame, folder, tolerance)
    links = {family: f"{link_prefix}{path.name}" for family, path in plots.items()}
    return summary_markdown(frame, infos, tolerance, links)


def collect_results(results_dir: Path) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Every model filed under ``results_dir`` (``<model>/robustness.csv`` and ``info.json``),
    oldest run first."""
    filed = []
    for csv in sorted(results_dir.glob("*/robustness.csv")):
        info = json.loads((csv.parent / "info.json").read_text())
        filed.append((info.get("date", ""), read_results(csv), info))
    if not filed:
        raise FileNotFoundError(f"no */robustness.csv under {results_dir}")
    filed.sort(key=lambda item: item[0])
    return pd.concat([f for _, f, _ in filed], ignore_index=True), [i for _, _, i in filed]


README_TEMPLATE = """# Robustness study

<!-- results:start -->
<!-- results:end -->
"""


def render_report(report_dir: str | Path, tolerance: float = 0.1) -> Path:
    """Redraws a report folder from the models filed under its ``results/``.

    The plots and ``thresholds.csv`` in ``<report_dir>/results/`` and the section between
    ``<!-- results:start -->`` and ``<!-- results:end -->`` of ``<report_dir>/README.md`` (created
    with just that section if missing) are rebuilt from every ``results/<model>/``.

    Returns:
        The README's path.
    """
    report_dir = Path(report_dir)
    results = report_dir / "results"
    combined, infos = collect_results(results)
    summary = write_outputs(results, combined, infos, tolerance, link_prefix="results/")
    readme = report_dir / "README.md"
    if not readme.is_file():
        readme.write_text(README_TEMPLATE)
    replace_section(readme, "results", summary)
    return readme


def update_report(
    report_dir: str | Path, frame: pd.DataFrame, info: Mapping[str, Any], tolerance: float = 0.1
) -> Path:
    """Files one model's results under ``<report_dir>/results/<model>/`` and redraws the report
    (:func:`render_report`) from every model filed there.

    Running the study once per checkpoint so builds one report comparing them; a model run
    again replaces its own folder, and deleting a model's folder drops it at the next redraw.

    Returns:
        The README's path.
    """
    own = Path(report_dir) / "results" / slug(str(info["model"]))
    own.mkdir(parents=True, exist_ok=True)
    frame.to_csv(own / "robustness.csv", index=False)
    (own / "info.json").write_text(json.dumps(dict(info), indent=2, default=str))
    return render_report(report_dir, tolerance)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m agefair.reporting.robustness REPORT_DIR``: redraws a report from its
    CSVs."""
    parser = argparse.ArgumentParser(description=render_report.__doc__.splitlines()[0])
    parser.add_argument("report_dir", type=Path, help="e.g. experiments/robustness")
    parser.add_argument("--tolerance", type=float, default=0.1, help="0.1: within 10%%")
    args = parser.parse_args(argv)
    print(render_report(args.report_dir, args.tolerance))
    return 0


if __name__ == "__main__":
    sys.exit(main())
