"""Writes the best-CPU-model report: the ablation table, learning curves, per-group table.

    python experiments/best_cpu/run.py \\
        --ablation outputs/ablation_cpu/multiruns/<time> \\
        --final outputs/train/runs/<make train run> [--final <another run> ...]

Every figure comes from the runs' own files (``results.csv``, ``predictions_*.csv``,
``history.csv``, ``metrics.json``); the tables go into this folder's README between markers.
Ablation levers are judged on the validation split; the test split is reported only for the
final runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from agefair.metrics.bootstrap import bootstrap_ci  # noqa: E402
from agefair.metrics.groups import group_masks, group_table, headline_metrics  # noqa: E402
from agefair.reporting.sweep_results import collect, member_config  # noqa: E402
from agefair.reporting.tables import format_count, replace_section, to_markdown, with_ci  # noqa: E402

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"

#: What each ablation row reports, computed from a run's predictions on one split.
SCORES = {
    "age MAE": lambda m, t: m["age_mae"],
    "gender acc": lambda m, t: m["gender_acc"],
    "race acc": lambda m, t: m["race_acc"],
    "race bal. acc": lambda m, t: m["race_acc_balanced"],
    "Others recall": lambda m, t: m["race_recall_Others"],
    "worst race, gender acc": lambda m, t: t.loc[t["group_type"] == "race", "gender_acc"].min(),
}


#: Where experiments/best_cpu/framing.py leaves a run's scores on detector-framed faces.
FRAMING_FILE = "framing_val.csv"
#: The report's columns for those scores (validation faces tilted in a larger picture, found
#: and cropped by the detector), from the file's second row.
FRAMED_SCORES = {
    "framed age MAE": "age_mae",
    "framed gender acc": "gender_acc",
    "framed race acc": "race_acc",
}


#: Where experiments/best_cpu/tta.py leaves a run's scores under each set of test-time views.
TTA_FILE = "tta_val.csv"


def tta_section(run_dirs: list[Path]) -> str:
    """Mean ± sd over the runs of each test-time view setting's validation scores."""
    tables = [pd.read_csv(run / TTA_FILE) for run in run_dirs]
    scores = pd.concat(tables, ignore_index=True)
    for col in scores.columns:
        if col.endswith("_acc"):
            scores[col] = scores[col] * 100
    names = {
        "age_mae": "age MAE",
        "gender_acc": "gender acc",
        "race_acc": "race acc",
        "framed_age_mae": "framed age MAE",
        "framed_gender_acc": "framed gender acc",
        "framed_race_acc": "framed race acc",
    }
    grouped = scores.groupby("views", sort=False)
    table = grouped[["passes"]].first().reset_index()
    for col, name in names.items():
        digits = 2 if "MAE" in name else 1
        mean, sd = grouped[col].mean(), grouped[col].std()
        table[name] = [mean_sd(m, s, digits) for m, s in zip(mean, sd, strict=True)]
    runs = ", ".join(f"`{run}`" for run in run_dirs)
    line = (
        f"Validation split, {int(tables[0]['faces'].iloc[0])} seeded faces per run, mean ± sd over "
        f"{len(run_dirs)} runs ({runs}); accuracies in %; passes: forward "
        "passes per face."
    )
    return f"{line}\n\n{to_markdown(table)}"


def framed_scores(run_dir: Path) -> dict[str, float]:
    """The run's scores on detector-framed validation faces; NaN where it was not scored."""
    path = run_dir / FRAMING_FILE
    if not path.is_file():
        return dict.fromkeys(FRAMED_SCORES, float("nan"))
    framed = pd.read_csv(path).iloc[1]
    return {name: float(framed[col]) for name, col in FRAMED_SCORES.items()}


def split_scores(run_dir: Path, split: str) -> dict[str, float]:
    """The report's scores of one run on one split, from its saved predictions."""
    preds = pd.read_csv(run_dir / f"predictions_{split}.csv")
    metrics, table = headline_metrics(preds), group_table(preds)
    return {name: float(fn(metrics, table)) for name, fn in SCORES.items()}


def ablation_tables(sweep_dirs: list[Path]) -> list[tuple[pd.DataFrame, str]]:
    """Per training budget (epochs), mean ± sd over seeds of each variant's validation scores
    and the budget line; the runs may come from several sweeps (e.g. one per core)."""
    runs = collect(*sweep_dirs)
    failed = runs[runs["status"] != "ok"]
    ok = runs[runs["status"] == "ok"]
    tables = []
    for epochs, budget_runs in ok.groupby("epochs", sort=True):
        table = variant_table(budget_runs)
        sweeps = ", ".join(f"`{d}`" for d in dict.fromkeys(budget_runs["sweep"]))
        n_failed = int((failed["epochs"] == epochs).sum())
        # input_96 or progressive_resize change the size, so the line names the common one
        usual_size = int(budget_runs["img_size"].mode().iloc[0])
        budget = (
            f"{int(epochs)} epochs each, {usual_size}-px faces unless the variant says otherwise "
            f"({len(budget_runs)} runs, {n_failed} failed; {sweeps}), validation split of the "
            f"seeded 80/10/10 split; mean ± sd over seeds; accuracies in %. "
            f"{platform.machine()}, {os.cpu_count()} CPU cores, "
            f"{threads_line(budget_runs['threads'])} torch thread(s) per run."
        )
        tables.append((table, budget))
    return tables


def threads_line(threads: pd.Series) -> str:
    """The runs' torch thread counts, e.g. ``1`` or ``1-2``."""
    lo, hi = int(threads.min()), int(threads.max())
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


#: Ablations renamed since some rows were recorded: the name a run recorded -> today's.
RENAMED = {"no_ema": "none", "full": "ema"}


def variant_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per ablation variant and network size, in order of first appearance.

    A variant measured on two default networks (the default changed between the runs) gives
    one row per network, told apart by its parameter count, instead of a mean over both.
    """
    rows = [
        {
            "variant": RENAMED.get(r["ablation"], r["ablation"]),
            "params": format_count(r["params"]),
            "seed": r["seed"],
            "train time (s)": r["train_time_s"],
        }
        | split_scores(Path(r["output_dir"]), "val")
        | framed_scores(Path(r["output_dir"]))
        for _, r in runs.iterrows()
    ]
    df = pd.DataFrame(rows)
    keys = ["variant", "params"]
    stats = df.drop(columns="seed").groupby(keys, sort=False).agg(["mean", "std"])
    out = df.groupby(keys, sort=False)["seed"].count().rename("seeds").to_frame()
    for col in [*SCORES, *FRAMED_SCORES, "train time (s)"]:
        mean, sd = stats[(col, "mean")], stats[(col, "std")]
        if mean.isna().all():
            continue  # e.g. no run of this budget was scored on framed faces
        pct = "MAE" not in col and col != "train time (s)"
        scale = 100 if pct else 1
        digits = 0 if col == "train time (s)" else (1 if pct else 2)
        out[col] = [mean_sd(m * scale, s * scale, digits) for m, s in zip(mean, sd, strict=True)]
    return out.reset_index()


def mean_sd(mean: float, sd: float, digits: int) -> str:
    """``mean ± sd``; the mean alone for a single run, a dash for none."""
    if pd.isna(mean):
        return "–"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}" if pd.notna(sd) else f"{mean:.{digits}f}"


def group_ci_table(preds: pd.DataFrame, n_boot: int = 1000) -> pd.DataFrame:
    """Age MAE, gender and race accuracy with 95% bootstrap intervals, overall and per group."""
    rows = []
    for group_type, name, mask in group_masks(preds):
        if group_type == "age_band":
            continue
        sub = preds[mask]
        m = headline_metrics(sub)
        ci = bootstrap_ci(sub, metrics=("age_mae", "gender_acc", "race_acc"), n_boot=n_boot)
        rows.append(
            {
                "group": name.replace("/", " "),
                "n": len(sub),
                "age MAE": with_ci(m["age_mae"], ci["age_mae"], percent=False),
                "gender acc %": with_ci(m["gender_acc"], ci["gender_acc"], percent=True),
                "race acc %": with_ci(m["race_acc"], ci["race_acc"], percent=True),
            }
        )
    return pd.DataFrame(rows)


def augmentation_strength(run_dir: Path) -> float | None:
    """The run's ``data.augment.strength``, from its saved Hydra config (None if absent)."""
    cfg = member_config(run_dir)  # None for the bare script's runs
    return None if cfg is None else OmegaConf.select(cfg, "data.augment.strength", default=None)


def test_time_views(run_dir: Path) -> str | None:
    """What the run averages per test face besides the face itself: ``mirror, 2 zooms``."""
    cfg = member_config(run_dir)
    if cfg is None:
        return None
    flip = OmegaConf.select(cfg, "model.tta_flip", default=True)
    zooms = len(OmegaConf.select(cfg, "model.tta_scales", default=None) or [])
    parts = (["mirror"] if flip else []) + ([f"{zooms} zooms"] if zooms else [])
    return ", ".join(parts) or "none"


def backbone_choice(run_dir: Path, fallback: str) -> str:
    """The backbone config the run chose (``cnn_3stage_narrow``, not the builder's ``cnn``)."""
    path = run_dir / ".hydra" / "hydra.yaml"
    if not path.is_file():
        return fallback
    return OmegaConf.select(OmegaConf.load(path), "hydra.runtime.choices.backbone") or fallback


def final_section(run_dirs: list[Path]) -> str:
    """Test results of the final runs: a headline row each, then each run's group table."""
    rows = []
    for run in run_dirs:
        result = pd.read_csv(run / "results.csv").iloc[0]
        metrics = json.loads((run / "metrics.json").read_text())
        rows.append(
            {
                "run": run.name,
                "backbone": backbone_choice(run, result["backbone"]),
                "pretrained": bool(result["pretrained"]),
                "epochs": int(result["epochs"]),
                "augmentation strength": augmentation_strength(run),
                "test-time views": test_time_views(run),
                "train time (s)": int(result["train_time_s"]),
                "threads": int(result["threads"]),
                "params": int(result["params"]),
                **split_scores(run, "test"),
                "baseline MAE (train mean)": metrics["baseline_age_mae_train_mean"],
            }
        )
    headline = pd.DataFrame(rows)
    for col in SCORES:
        if col != "age MAE":
            headline[col] = headline[col] * 100
    parts = [
        "Test split (seeded 80/10/10), best checkpoint by validation loss; accuracies in %.",
        to_markdown(headline),
    ]
    for run in run_dirs:
        preds = pd.read_csv(run / "predictions_test.csv")
        parts += [
            f"Per group, run `{run.name}`, with 95% bootstrap intervals (1000 resamples of the "
            "test images):",
            to_markdown(group_ci_table(preds)),
        ]
    return "\n\n".join(parts)


def plot_curves(run_dirs: list[Path], path: Path) -> Path:
    """Validation age MAE, gender, race and balanced race accuracy against epochs."""
    panels = [
        ("val/age_mae", "val age MAE (years)"),
        ("val/gender_acc", "val gender accuracy"),
        ("val/race_acc", "val race accuracy"),
        ("val/race_acc_balanced", "val balanced race accuracy"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for run in run_dirs:
        if not (run / "history.csv").is_file():
            continue  # e.g. the bare script, which logs no curves
        history = pd.read_csv(run / "history.csv")
        for ax, (col, title) in zip(axes, panels, strict=True):
            if col in history:
                ax.plot(history["epoch"] + 1, history[col], marker=".", label=run.name)
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ablation", type=Path, nargs="*", default=[], help="ablation multirun folders"
    )
    parser.add_argument("--final", type=Path, nargs="*", default=[], help="final run folders")
    parser.add_argument(
        "--tta", type=Path, nargs="*", default=[], help="run folders scored by tta.py"
    )
    parser.add_argument("--readme", type=Path, default=README, help="report to write into")
    args = parser.parse_args(argv)
    results = args.readme.parent / "results"
    results.mkdir(exist_ok=True)
    if args.ablation:
        tables = ablation_tables(args.ablation)
        pd.concat([t.assign(budget=b) for t, b in tables], ignore_index=True).to_csv(
            results / "ablation.csv", index=False
        )
        section = "\n\n".join(f"{b}\n\n{to_markdown(t)}" for t, b in tables)
        replace_section(args.readme, "ablation", section)
        print(section)
    if args.tta:
        section = tta_section(args.tta)
        replace_section(args.readme, "tta", section)
        print(section)
    if args.final:
        plot_curves(args.final, results / "learning_curves.png")
        section = final_section(args.final)
        replace_section(args.readme, "final", section)
        print(section)


if __name__ == "__main__":
    main()
