"""The figures of sweep reports: bars per configuration, Pareto fronts, an objective per trial.

Every function takes a frame of the report (usually one row per configuration, a metric's spread
over seeds in the column ``std_column(metric)``) and writes one PNG. Figures are drawn on
matplotlib's Agg canvas without pyplot: nothing global changes and no display is needed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

STD_SUFFIX = ":std"

#: A panel: the column to plot -> (its name on the axis, whether lower values are better).
Panels = Mapping[str, tuple[str, bool]]


def std_column(column: str) -> str:
    """Name of the column holding a metric's standard deviation over seeds."""
    return column + STD_SUFFIX


def short_label(label: str) -> str:
    """``backbone.depth=2 backbone.width=8`` -> ``depth=2 width=8``, ``model=joint`` -> ``joint``.

    Plots have little room: keys lose their path, and a lone override keeps only its value.
    """
    words = [word.partition("=") for word in str(label).split()]
    if len(words) == 1:
        return words[0][2] or words[0][0]
    return " ".join(key.rsplit(".", 1)[-1] + sep + value for key, sep, value in words)


def pareto_mask(cost: Sequence[float], value: Sequence[float], lower_is_better: bool) -> np.ndarray:
    """True for the points no other point beats: none is as cheap and as good, and better in one.

    Points with a missing cost or value are never on the front.
    """
    x = np.asarray(cost, dtype=float)
    y = np.asarray(value, dtype=float) * (1.0 if lower_is_better else -1.0)
    valid = ~(np.isnan(x) | np.isnan(y))
    mask = np.zeros(len(x), dtype=bool)
    for i in np.flatnonzero(valid):
        beaten_by = valid & (x <= x[i]) & (y <= y[i]) & ((x < x[i]) | (y < y[i]))
        mask[i] = not beaten_by.any()
    return mask


def panel_figure(
    n_panels: int, cols: int = 3, width: float = 4.6, height: float = 3.9
) -> tuple[Figure, list[Any]]:
    """A figure of ``n_panels`` axes, ``cols`` a row, each ``width`` x ``height`` inches."""
    cols = min(cols, n_panels)
    rows = math.ceil(n_panels / cols)
    fig = Figure(figsize=(width * cols, height * rows))
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(rows, cols, i + 1) for i in range(n_panels)]


def save_figure(fig: Figure, path: Path, title: str | None = None) -> Path:
    """Writes ``fig`` as a PNG (parent folders created), with ``title`` above its panels."""
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _spread(frame: pd.DataFrame, column: str) -> np.ndarray | None:
    """The error bars of a column (0 where a configuration has one seed); None without seeds."""
    std = std_column(column)
    if std not in frame or not frame[std].fillna(0.0).any():
        return None
    return frame[std].fillna(0.0).to_numpy(dtype=float)


def bars(
    frame: pd.DataFrame, panels: Panels, path: str | Path, title: str, log: Sequence[str] = ()
) -> Path:
    """One bar per configuration (``frame["label"]``) in each panel, with seed error bars.

    Args:
        frame: one row per configuration.
        panels: the columns to draw, each with its axis name and direction (noted in the title).
        path: the PNG to write.
        title: the figure's title (what was compared, on what budget).
        log: columns drawn on a log axis (costs spanning orders of magnitude).
    """
    fig, axes = panel_figure(len(panels))
    labels = [short_label(v) for v in frame["label"]]
    ticks = np.arange(len(frame))
    for i, (ax, (column, (name, lower))) in enumerate(zip(axes, panels.items(), strict=True)):
        values = frame[column].to_numpy(dtype=float)
        ax.bar(ticks, values, yerr=_spread(frame, column), capsize=3, color=f"C{i % 10}")
        ax.set_xticks(ticks, labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{name} ({'lower' if lower else 'higher'} is better)", fontsize=10)
        if column in log:
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, Path(path), title)


def pareto(
    frame: pd.DataFrame,
    cost: str,
    cost_name: str,
    panels: Panels,
    path: str | Path,
    title: str,
) -> Path:
    """Each metric against a cost (log axis); the Pareto-optimal configurations highlighted.

    Every configuration is labelled (``frame["label"]``); those on the front in bold and joined
    by the front's staircase, so what a reader sees is :func:`pareto_mask` of the same frame.
    """
    fig, axes = panel_figure(len(panels), width=6.2, height=4.8)
    x = frame[cost].to_numpy(dtype=float)
    labels = [short_label(v) for v in frame["label"]]
    for ax, (column, (name, lower)) in zip(axes, panels.items(), strict=True):
        y = frame[column].to_numpy(dtype=float)
        err = _spread(frame, column)
        front = pareto_mask(x, y, lower)
        for mask, style in ((~front, {"color": "0.6"}), (front, {"color": "C3"})):
            ax.errorbar(
                x[mask],
                y[mask],
                yerr=None if err is None else err[mask],
                fmt="o",
                capsize=2,
                label="Pareto-optimal" if style["color"] == "C3" else "dominated",
                **style,
            )
        order = np.argsort(x[front])
        ax.step(x[front][order], y[front][order], where="post", color="C3", alpha=0.5)
        for xi, yi, text, on_front in zip(x, y, labels, front, strict=True):
            if not (np.isnan(xi) or np.isnan(yi)):
                ax.annotate(
                    text,
                    (xi, yi),
                    xytext=(4, 4),
                    textcoords="offset points",
                    fontsize=7,
                    fontweight="bold" if on_front else "normal",
                    color="black" if on_front else "0.45",
                )
        ax.set_xscale("log")
        ax.margins(x=0.12, y=0.08)
        ax.set_xlabel(cost_name)
        ax.set_ylabel(name)
        ax.set_title(f"{name} vs {cost_name} ({'lower' if lower else 'higher'} is better)",
                     fontsize=10)  # fmt: skip
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    return save_figure(fig, Path(path), title)


def objective_trace(
    trials: pd.DataFrame, objective: str, lower: bool, path: str | Path, title: str
) -> Path:
    """A search's objective per trial in run order, the best so far, failed trials as crosses.

    Args:
        trials: one row per trial in run order, with ``status`` and the objective column.
        objective: the objective's column (also the axis name).
        lower: whether the search minimised it.
        path: the PNG to write.
        title: the figure's title.
    """
    fig, (ax,) = panel_figure(1, width=7.5)
    position = np.arange(len(trials))
    y = trials[objective].to_numpy(dtype=float)
    ok = (trials["status"] == "ok").to_numpy() & ~np.isnan(y)
    ax.plot(position[ok], y[ok], "o", color="C0", label="trial")
    best = np.minimum.accumulate(y[ok]) if lower else np.maximum.accumulate(y[ok])
    ax.step(position[ok], best, where="post", color="C3", label="best so far")
    if (~ok).any():
        # Failed trials have no objective: crosses along the bottom edge.
        ax.plot(position[~ok], np.full((~ok).sum(), 0.03), "x", color="C3", markersize=8,
                transform=ax.get_xaxis_transform(), label="failed")  # fmt: skip
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_xlabel("trial (run order)")
    ax.set_ylabel(f"{objective} ({'lower' if lower else 'higher'} is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, Path(path), title)


#: Seeds of one configuration, told apart in the learning curves.
LINE_STYLES = ("-", "--", ":", "-.")

#: Validation curves a report draws, from each member's ``history.csv``: column -> panel title.
CURVE_METRICS = {
    "val/age_mae": "val age MAE (years)",
    "val/gender_acc": "val gender acc",
    "val/race_acc": "val race acc",
}


def curve_styles(
    curves: Mapping[str, Mapping[str, Any]],
) -> dict[tuple[str, str], tuple[tuple[float, ...], str]]:
    """(configuration, seed) -> (colour, line style): a colour per configuration, distinct up
    to 20 of them (matplotlib's default cycle repeats after 10), a line style per seed.

    tab20 pairs a dark and a light shade of each hue; its dark shades come first, so the first
    ten configurations get ten hues and only the rest a lighter one of them."""
    palette = matplotlib.colormaps["tab20"]
    return {
        (label, seed): (palette(2 * (i % 10) + (i // 10) % 2), LINE_STYLES[j % len(LINE_STYLES)])
        for i, (label, members) in enumerate(curves.items())
        for j, seed in enumerate(members)
    }


def learning_curves(
    curves: Mapping[str, Mapping[str, pd.DataFrame]], path: Path, title: str
) -> Path | None:
    """Validation metrics by epoch, one line per member: where each one levelled off.

    A configuration keeps one colour and its seeds differ by line style, so a study of many
    members still reads configuration by configuration.

    Args:
        curves: A configuration's label -> its members (a seed's name -> that member's
            ``history.csv``: an ``epoch`` column and ``val/...``).
        path: The PNG to write.
        title: Drawn above the panels.

    Returns:
        The PNG, or None when no member has two epochs to draw.
    """
    curves = {
        label: kept
        for label, members in curves.items()
        if (kept := {k: v for k, v in members.items() if len(v) >= 2 and "epoch" in v})
    }
    histories = [h for members in curves.values() for h in members.values()]
    columns = [c for c in CURVE_METRICS if any(c in h for h in histories)]
    if not curves or not columns:
        return None
    styles = curve_styles(curves)
    fig, axes = panel_figure(len(columns))
    for ax, column in zip(axes, columns, strict=True):
        for label, members in curves.items():
            for seed, history in members.items():
                if column in history:
                    colour, line = styles[label, seed]
                    ax.plot(
                        history["epoch"] + 1,
                        history[column],
                        marker=".",
                        color=colour,
                        linestyle=line,
                        label=short_label(label) + (f" {seed}" if seed else ""),
                    )
        ax.set_title(CURVE_METRICS[column], fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2 if len(histories) > 12 else 1)
    return save_figure(fig, path, title)
