"""Race figures of checkpoints under either race prior: UTKFace validation and test, unseen faces.

    python experiments/unseen/race_prior.py CKPT [CKPT ...] --unseen <labels.csv>

A system's race probabilities carry the race mix it was trained on (UTKFace: 42% White, 7%
"Others"), less what the loss weighting takes off. ``race_prior=uniform`` divides that prior
out (:class:`agefair.models.base.AgeFairModule`); the loss and the weights are the same. This
scores each checkpoint under both priors on UTKFace's validation and test splits and on the
unseen faces through the app's path, keeps the rows in ``race_prior.csv`` (a checkpoint scored
again replaces its rows) and writes them into this folder's README (section ``race_prior``).
Gender and age do not depend on the prior.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
from run import README  # this folder's report, whose section this fills
from torch.utils.data import DataLoader

from agefair.evaluation.predictions import predict_frame
from agefair.evaluation.unseen import score_unseen
from agefair.inference.predictor import Predictor
from agefair.metrics.groups import headline_metrics
from agefair.models.base import RACE_PRIORS
from agefair.models.checkpoint import load_system
from agefair.reporting.tables import replace_section, to_markdown
from agefair.training.build import build_datamodule

RESULTS = Path(__file__).resolve().parent / "race_prior.csv"
FIGURES = {
    "race_acc": "race",
    "race_acc_balanced": "race (balanced)",
    "race_recall_Others": "'Others' recall",
}


def scores(ckpt: Path, unseen: Path) -> list[dict[str, str]]:
    """One row per race prior: the race figures on each split, in percent."""
    model, cfg = load_system(ckpt)
    datamodule = build_datamodule(cfg, model)
    datamodule.prepare_data()
    datamodule.setup("test")
    predictor = Predictor.for_system(model, cfg.data)
    detections = Path(cfg.paths.data_dir) / "detections"
    rows = []
    for prior in RACE_PRIORS:
        model.use_race_prior(prior)
        row = {"checkpoint": f"`{ckpt.parents[1].name}/{ckpt.name}`", "race prior": prior}
        for split in ("val", "test"):
            loader = DataLoader(datamodule.datasets[split], batch_size=128)
            figures = headline_metrics(predict_frame(model, loader, progress=False))
            row |= {
                f"UTK {split} {name}": f"{100 * figures[key]:.1f}" for key, name in FIGURES.items()
            }
        with tempfile.TemporaryDirectory() as out:
            figures = score_unseen(
                predictor, unseen, Path(out), progress=False, detections=detections
            )
        row |= {f"unseen {name}": f"{100 * figures[key]:.1f}" for key, name in FIGURES.items()}
        print(row, flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpts", nargs="+", type=Path)
    parser.add_argument("--unseen", type=Path, required=True, help="labels.csv of unseen faces")
    args = parser.parse_args(argv)
    table = pd.DataFrame([row for ckpt in args.ckpts for row in scores(ckpt, args.unseen)])
    if RESULTS.is_file():
        earlier = pd.read_csv(RESULTS, dtype=str)
        table = pd.concat([earlier[~earlier["checkpoint"].isin(table["checkpoint"])], table])
    table = table.sort_values("checkpoint", kind="stable")
    table.to_csv(RESULTS, index=False)
    replace_section(README, "race_prior", to_markdown(table))


if __name__ == "__main__":
    main()
