"""The studies' reports: what each study shows of its sweep members (tables, plots, checks)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from agefair.registry import Registry
from agefair.reporting.paired import paired_rows, paired_table
from agefair.reporting.plots import bars, objective_trace, pareto
from agefair.reporting.sweep_results import ok_configs, override_key, sweep_config
from agefair.reporting.tables import (
    COSTS,
    GENERIC_LEAD,
    HEADERS,
    LOWER_IS_BETTER,
    METRICS,
    VAL_METRICS,
    display,
    format_value,
    members_table,
    to_markdown,
)

#: The complexity study's accuracy targets, per task: the smallest model reaching each is chosen
#: on the validation split and its test figure reported beside it. They span from what a
#: one-epoch budget reaches to what only converged training does.
THRESHOLDS = {
    "gender_acc": (0.80, 0.85, 0.90, 0.92, 0.93),
    "race_acc": (0.60, 0.70, 0.80, 0.83),
    "age_mae": (10.0, 8.0, 6.0, 5.5, 5.0),
}
#: Targets on faces of another data set (``unseen/...``): that set is both where a model is
#: chosen and where it is reported (there is no held-out unseen set), so the table says so.
#: They span the plain CNN trained to convergence (about 79% gender and 53% race there, see
#: experiments/compare_approaches) and the face-pretrained networks (87-88%, 60-65%).
UNSEEN_THRESHOLDS = {
    "gender_acc": (0.75, 0.78, 0.80, 0.85, 0.87),
    "race_acc": (0.45, 0.50, 0.55, 0.60),
}
#: The headline metrics and costs compared between approaches.
HEADLINE = ("test/age_mae", "test/gender_acc", "test/race_acc", "test/race_acc_balanced")
HEADLINE_COSTS = {
    "params": "params ×",
    "flops_per_image": "FLOPs ×",
    "train_time_s": "train time ×",
}
#: Costs drawn beside the headline metrics (log axes: they span magnitudes).
BAR_COSTS = ("flops_per_image", "train_time_s")
#: Metrics the complexity study plots against costs.
PARETO_METRICS = ("test/age_mae", "test/gender_acc", "test/race_acc")
#: Costs the complexity study plots accuracy against.
PARETO_COSTS = {"flops_per_image": "FLOPs per image", "latency_ms_b1": "latency b1 (ms)"}
#: Costs shown beside the smallest model reaching a threshold.
THRESHOLD_COSTS = ("flops_per_image", "params", "latency_ms_b1")


def smallest_reaching(
    configs: pd.DataFrame,
    thresholds: Mapping[str, Sequence[float]] = THRESHOLDS,
    chosen: str = "val",
    reported: str = "test",
) -> pd.DataFrame:
    """For each task and threshold, the configuration with the fewest FLOPs that reaches it.

    Choosing a model is tuning, so a configuration reaches a threshold when its validation
    figure (``<chosen>/<task>``, ``val/`` unless given; mean over seeds) does (``>=`` for
    accuracies, ``<=`` for errors); the ``<reported>/<task>`` figure is reported beside it.
    Ties in FLOPs go to fewer parameters. Returns one row per threshold: ``metric`` (the task),
    ``threshold``, ``label`` ("none reached" when none does), ``val`` (the figure chosen on),
    ``test`` (the one reported) and the ``THRESHOLD_COSTS`` of that configuration.
    """
    done = ok_configs(configs).sort_values(["flops_per_image", "params"], kind="stable")
    rows = []
    for task, limits in thresholds.items():
        val, test = f"{chosen}/{task}", f"{reported}/{task}"
        values = done[val] if val in done else pd.Series(math.nan, index=done.index)
        for limit in limits:
            lower = f"test/{task}" in LOWER_IS_BETTER
            hit = done[values <= limit if lower else values >= limit]
            best = hit.iloc[0] if len(hit) else None
            row = {"metric": task, "threshold": limit, "label": "none reached"}
            row["val"] = math.nan if best is None else best[val]
            row["test"] = math.nan if best is None else best.get(test, math.nan)
            row.update({c: math.nan if best is None else best[c] for c in THRESHOLD_COSTS})
            if best is not None:
                row["label"] = best["label"]
            rows.append(row)
    columns = ["metric", "threshold", "label", "val", "test", *THRESHOLD_COSTS]
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------------------- studies
@dataclass
class StudyInput:
    """What a study's report is made from, and where its plots go."""

    members: pd.DataFrame  # one row per member
    configs: pd.DataFrame  # one row per configuration (seeds pooled)
    sweeps: list[Path]
    out: Path
    budget: str
    #: Added to plot names: a report of several budgets draws each budget's own plots.
    suffix: str = ""

    def plot_path(self, name: str) -> Path:
        """Where the plot ``name`` of this budget goes."""
        return self.out / f"{name}{self.suffix}.png"


def image(path: Path, alt: str) -> str:
    """The markdown line of a plot, linked relative to the report folder."""
    return f"![{alt}]({path.name})"


def accuracy_panels(columns: Iterable[str]) -> dict[str, tuple[str, bool]]:
    """Plot panels of metric or cost columns: name and direction."""
    return {c: (HEADERS.get(c, c), c in LOWER_IS_BETTER or c in COSTS) for c in columns}


def generic_study(inp: StudyInput) -> list[str]:
    """The member table."""
    return ["## Members", members_table(inp.configs, GENERIC_LEAD)]


def relative_to(configs: pd.DataFrame, reference: pd.Series) -> pd.DataFrame:
    """Each other configuration against a reference: metric differences and cost ratios."""
    rows = []
    for _, row in ok_configs(configs).drop(index=reference.name).iterrows():
        out = {"config": row["label"]}
        for column in HEADLINE:
            out[f"Δ {METRICS[column]}"] = f"{row[column] - reference[column]:+.3f}"
        for column, header in HEADLINE_COSTS.items():
            ratio = row[column] / reference[column]
            out[header] = "" if pd.isna(ratio) else f"{ratio:.2f}"
        rows.append(out)
    return pd.DataFrame(rows)


def bars_image(inp: StudyInput, name: str, what: str) -> str:
    """Bars of the headline metrics and costs per configuration, saved as ``<name>.png``."""
    done = ok_configs(inp.configs)
    columns = [c for c in (*HEADLINE, *BAR_COSTS) if c in done and done[c].notna().any()]
    path = bars(done, accuracy_panels(columns), inp.plot_path(name),
                f"{what}\n{inp.budget}", log=BAR_COSTS)  # fmt: skip
    return image(path, what)


def compare_study(inp: StudyInput) -> list[str]:
    """Is one network as good as several, and at what cost: table, differences, bars."""
    sections = ["## Approaches", members_table(inp.configs, GENERIC_LEAD)]
    done = ok_configs(inp.configs)
    multitask = done[done["model"] == "multitask"] if "model" in done else done.iloc[:0]
    # The plain CNN's, when transfer rows (multitask systems on other backbones) stand beside it.
    plain = multitask[multitask["backbone"] == "cnn"] if "backbone" in multitask else multitask
    reference = plain if len(plain) else multitask
    if len(reference) and len(done) > 1:
        first = reference.iloc[0]
        sections += [
            f"## Against one multitask network ({first['label']})",
            "Differences in test metrics (positive: higher) and cost ratios.",
            to_markdown(relative_to(inp.configs, first)),
        ]
        paired = paired_table(inp.configs, inp.members, first)
        if len(paired):
            sections += [
                "Paired on the same faces (each configuration's seeds averaged per face; 95% "
                "bootstrap intervals over faces; points of accuracy, years of MAE, positive: "
                "higher): a difference whose interval excludes 0 is a finding.",
                to_markdown(paired),
            ]
    if len(done):
        sections.append(bars_image(inp, "approaches", "Approaches: accuracy and cost"))
    return sections


def thresholds_table(configs: pd.DataFrame, unseen: bool = False) -> str:
    """The smallest model reaching each threshold, as markdown: chosen on the validation split
    and tested, or (``unseen``) chosen and reported on the unseen faces."""
    thresholds = UNSEEN_THRESHOLDS if unseen else THRESHOLDS
    prefix = "unseen" if unseen else "test"
    table = smallest_reaching(configs, thresholds, *((prefix, prefix) if unseen else ()))
    sign = {m: "≤" if f"test/{m}" in LOWER_IS_BETTER else "≥" for m in thresholds}
    text = display(table, THRESHOLD_COSTS)
    if not unseen:
        text.insert(0, "test", [format_value(v) for v in table["test"]])
    chosen_on = "unseen (chosen and reported on)" if unseen else "val (chosen on)"
    text.insert(0, chosen_on, [format_value(v) for v in table["val"]])
    text.insert(0, "smallest by FLOPs", table["label"])
    name = {m: METRICS[f"{prefix}/{m}"] for m in thresholds}
    targets = [
        f"{name[m]} {sign[m]} {t:.2f}" if t < 1 else f"{name[m]} {sign[m]} {t:g}"
        for m, t in table[["metric", "threshold"]].values
    ]
    text.insert(0, "target", targets)
    return to_markdown(text)


#: What a network's family is in the complexity study: the step from one size to the next is
#: taken within a family (one backbone at one depth, the widths in turn).
SIZE_FAMILY = ("backbone", "cfg/backbone.depth")


def _sized(configs: pd.DataFrame) -> pd.DataFrame:
    """The finished configurations whose FLOPs were measured."""
    done = ok_configs(configs)
    return done[done["flops_per_image"].notna()]


def size_steps(configs: pd.DataFrame, members: pd.DataFrame) -> pd.DataFrame:
    """Each finished configuration against the next smaller one by FLOPs of its family
    (:data:`SIZE_FAMILY`), as :func:`agefair.reporting.paired.paired_rows`: where more width
    stops paying."""
    done = _sized(configs)
    family = [c for c in SIZE_FAMILY if c in done]
    pairs = []
    groups = done.groupby(family, dropna=False, sort=True) if family else [((), done)]
    for _, group in groups:
        rows = [row for _, row in group.sort_values(["flops_per_image", "params"]).iterrows()]
        pairs += zip(rows[1:], rows[:-1], strict=True)
    return paired_rows(pairs, members)


def family_rivals(configs: pd.DataFrame, members: pd.DataFrame) -> pd.DataFrame:
    """Each finished configuration of another backbone against the configuration of the most
    swept backbone (the plain CNN) nearest to it in FLOPs (on a log scale), as
    :func:`agefair.reporting.paired.paired_rows` with the FLOPs ratio beside it: whether the
    family matters at about equal cost."""
    done = _sized(configs)
    if "backbone" not in done or done["backbone"].nunique() < 2:
        return pd.DataFrame()
    main = done["backbone"].value_counts().index[0]
    reference = done[done["backbone"] == main]
    log_flops = np.log(reference["flops_per_image"].to_numpy(float))
    pairs = [
        (row, reference.iloc[int(np.argmin(abs(log_flops - np.log(row["flops_per_image"]))))])
        for _, row in done[done["backbone"] != main].iterrows()
    ]
    rows = paired_rows(pairs, members)
    if len(rows):
        flops = dict(zip(done["label"], done["flops_per_image"], strict=True))
        ratio = [flops[a] / flops[b] for a, b in zip(rows["config"], rows["against"], strict=True)]
        rows.insert(2, "FLOPs ratio", [f"{r:.2f}x" for r in ratio])
    return rows


def complexity_study(inp: StudyInput) -> list[str]:
    """How accuracy grows with size: table by FLOPs, each step up in size, smallest model per
    target, Pareto plots."""
    configs = inp.configs.sort_values("flops_per_image", kind="stable", na_position="last")
    lead = (*SIZE_FAMILY, "cfg/backbone.width")
    sections = ["## Members by FLOPs", members_table(configs, lead)]
    steps = size_steps(configs, inp.members)
    if len(steps):
        sections += [
            "## What each step up in size buys",
            "Each model against the next smaller one of its family (backbone and depth) by"
            " FLOPs, paired on the same faces (seeds averaged per face; 95% bootstrap intervals"
            " over faces; points of accuracy, years of MAE, positive: higher): a difference"
            " whose interval excludes 0 is a finding.",
            to_markdown(steps),
        ]
    rivals = family_rivals(configs, inp.members)
    if len(rivals):
        sections += [
            "## Another family at about the same cost",
            "Each model of another backbone against the plain CNN nearest to it in FLOPs, paired"
            " on the same faces as above: whether the family matters at equal cost.",
            to_markdown(rivals),
        ]
    sections += [
        "## The smallest model that reaches a target",
        "Chosen on the validation split (means over seeds), smallest by FLOPs per image (ties:"
        " fewer parameters); its test figure beside it.",
        thresholds_table(configs),
    ]
    if any(c.startswith("unseen/") and configs[c].notna().any() for c in configs.columns):
        sections += [
            "## The smallest model that reaches a target on unseen faces",
            "Faces of another data set through the app's path; that set both chooses and "
            "reports here (there is no held-out unseen set), so these figures are optimistic.",
            thresholds_table(configs, unseen=True),
        ]
    done = ok_configs(configs)
    panels = accuracy_panels(PARETO_METRICS)
    for cost, name in PARETO_COSTS.items():
        if cost in done and done[cost].notna().any():
            title = f"Accuracy against {name}, Pareto-optimal in red\n{inp.budget}"
            stem = "pareto_" + cost.split("_")[0]
            path = pareto(done, cost, name, panels, inp.plot_path(stem), title)
            sections.append(image(path, f"accuracy against {name}"))
    return sections


def label_values(label: str) -> dict[str, str]:
    """``model.lr=0.003 +model.wd=0.01`` -> ``{"model.lr": "0.003", "model.wd": "0.01"}``."""
    pairs = (word.split("=", 1) for word in label.split() if "=" in word)
    return {override_key(key): value for key, value in pairs}


def objective_column(members: pd.DataFrame) -> str:
    """The column the search optimised (``optimized_metric`` of the members' config)."""
    names = members["cfg/optimized_metric"].dropna() if "cfg/optimized_metric" in members else []
    return str(names.iloc[0]) if len(names) else "val/objective"


def search_direction(sweeps: Sequence[Path]) -> str:
    """``minimize`` or ``maximize``, from the sweeper's config (minimize when unknown)."""
    for sweep in sweeps:
        cfg = sweep_config(sweep)
        direction = OmegaConf.select(cfg, "hydra.sweeper.direction", default=None) if cfg else None
        if isinstance(direction, str):
            return direction
    return "minimize"


def trials_frame(members: pd.DataFrame, objective: str) -> pd.DataFrame:
    """One row per trial in run order: trial number, swept params (numbers where they are)."""
    params = pd.DataFrame([label_values(v) for v in members["label"]], index=members.index)
    params = params.apply(_numeric)
    frame = pd.concat([members, params.add_prefix("param:")], axis=1)
    frame["trial"] = pd.to_numeric(frame["member"], errors="coerce")
    if objective not in frame:
        frame[objective] = math.nan
    return frame


def _numeric(values: pd.Series) -> pd.Series:
    """The values as numbers when every one is a number, else unchanged."""
    try:
        return pd.to_numeric(values)
    except (TypeError, ValueError):
        return values


def rank_trials(trials: pd.DataFrame, objective: str, direction: str) -> pd.DataFrame:
    """Trials best first; failed trials (no objective) last."""
    ascending = direction != "maximize"
    return trials.sort_values(objective, ascending=ascending, na_position="last", kind="stable")


def trials_table(ranked: pd.DataFrame, objective: str, several_sweeps: bool) -> str:
    """The ranked trials as markdown: trial, sweep, params, objective, val metrics, status."""
    params = [c for c in ranked.columns if c.startswith("param:")]
    columns = ["trial", *(["sweep"] if several_sweeps else []), *params, objective,
               *VAL_METRICS, "status"]  # fmt: skip
    text = display(ranked, columns)
    for column in params:  # search values span magnitudes: significant digits, not decimals
        text[column] = [
            f"{v:.3g}" if isinstance(v, float) else str(v) for v in ranked[column].to_numpy()
        ]
    return to_markdown(text.rename(columns=lambda c: c.removeprefix("param:")))


def optuna_results(sweep: Path) -> dict | None:
    """The Optuna sweeper's ``optimization_results.yaml`` of a sweep, if it wrote one."""
    path = sweep / "optimization_results.yaml"
    return OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else None


def _same(a: Any, b: Any) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-12)
    except (TypeError, ValueError):
        return str(a) == str(b)


def check_best(best: pd.Series, results: Mapping, objective: str) -> list[str]:
    """Where the sweeper's recorded best disagrees with the table's best trial (empty: agrees)."""
    problems = []
    if not _same(results.get("best_value"), best[objective]):
        problems.append(f"best value {results.get('best_value')} != {best[objective]}")
    values = label_values(best["label"])
    for key, value in (results.get("best_params") or {}).items():
        if not _same(value, values.get(key)):
            problems.append(f"{key}: {value} != {values.get(key)}")
    return problems


def best_lines(ranked: pd.DataFrame, objective: str, sweeps: Sequence[Path]) -> list[str]:
    """The best trial, the command that trains it, and whether each sweeper's record agrees."""
    done = ranked[(ranked["status"] == "ok") & ranked[objective].notna()]
    if done.empty:
        return ["No trial finished."]
    best = done.iloc[0]
    params = " ".join(f"{k}={v}" for k, v in label_values(best["label"]).items())
    lines = [
        f"Best trial: {best['trial']} of `{best['sweep']}`, {objective} = "
        f"{format_value(float(best[objective]))}; train it on the full budget with",
        f"```\npython -m agefair.train {params}\n```",
    ]
    for sweep in sweeps:
        results = optuna_results(sweep)
        if results is None:
            continue
        own = done[done["sweep"] == str(sweep)]
        problems = check_best(own.iloc[0], results, objective) if len(own) else ["no trial"]
        verdict = "agrees with the table" if not problems else "DISAGREES: " + "; ".join(problems)
        lines.append(f"`{sweep}/optimization_results.yaml` {verdict}.")
    return lines


def hparam_study(inp: StudyInput) -> list[str]:
    """A search: trials ranked by objective, the best configuration, the objective per trial."""
    objective = objective_column(inp.members)
    direction = search_direction(inp.sweeps)
    trials = trials_frame(inp.members, objective)
    ranked = rank_trials(trials, objective, direction)
    title = f"Search: {objective} per trial\n{inp.budget}"
    path = objective_trace(trials, objective, direction != "maximize",
                           inp.plot_path("objective"), title)  # fmt: skip
    return [
        f"## Trials, best first ({direction} {objective}, validation split)",
        trials_table(ranked, objective, len(inp.sweeps) > 1),
        "## Best configuration",
        *best_lines(ranked, objective, inp.sweeps),
        image(path, "objective per trial"),
        "## Trials on the test split",
        members_table(inp.configs.assign(label="trial " + inp.configs["member"]), GENERIC_LEAD),
    ]


def transfer_study(inp: StudyInput) -> list[str]:
    """Transfer variants side by side: table with variant and pretrained weights, bars."""
    sections = ["## Transfer variants", members_table(inp.configs, ("transfer", *GENERIC_LEAD))]
    if len(ok_configs(inp.configs)):
        sections.append(bars_image(inp, "transfer", "Transfer variants: accuracy and cost"))
    return sections


STUDIES: Registry[Callable[[StudyInput], list[str]]] = Registry(
    "study",
    {
        "generic": generic_study,
        "compare_approaches": compare_study,
        "complexity_sweep": complexity_study,
        "hparam_search": hparam_study,
        "transfer": transfer_study,
    },
)
