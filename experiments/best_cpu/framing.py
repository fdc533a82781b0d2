"""Scores runs on validation faces framed by the face detector, as the app frames them.

    python experiments/best_cpu/framing.py outputs/ablation_full/a/0 outputs/ablation_full/b/1 ...

The validation split holds aligned crops only, so a recipe chosen on it alone can fit the aligned
framing at the cost of faces the detector finds in a photo. This scores each run's best
checkpoint on ``--n`` seeded validation faces pasted tilted (up to 20 degrees) into larger
pictures, found by YuNet and cropped (the hardest layout of ``experiments/crop_framing``, the one
``tests/test_crop_framing.py`` holds the default to), beside the same faces' aligned crops. The
table goes to ``framing_val.csv`` in each run folder, which the report reads; runs that have one
are skipped unless ``--force``.
"""

from __future__ import annotations

import argparse
import runpy
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import torch
from run import FRAMING_FILE  # this folder's report script, which reads what this writes
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[2]


def crop_framing_study() -> SimpleNamespace:
    """experiments/crop_framing/run.py's functions (experiments are scripts, not a package)."""
    path = REPO / "experiments" / "crop_framing" / "run.py"
    return SimpleNamespace(**runpy.run_path(str(path), run_name="crop_framing_study"))


def score_run(
    run_dir: Path, yunet: Path, n: int, seed: int = 0, tta: dict | None = None
) -> pd.DataFrame:
    """The aligned-crop row and the tilted detector-framed row for one run's checkpoint;
    ``tta`` (``tta_flip``, ``tta_scales``) replaces the checkpoint's test-time views."""
    from agefair.inference.checkpoints import run_checkpoint
    from agefair.inference.detect import create_detector
    from agefair.inference.predictor import Predictor

    study = crop_framing_study()
    ckpt = run_checkpoint(run_dir)
    faces, labels, _ = study.load_faces(ckpt, "val", n, seed=seed)
    predictor = Predictor.from_checkpoint(ckpt, detector=create_detector("yunet", model_path=yunet))
    predictor.model.use_views(**(tta or {}))
    layouts = [study.Layout(600, 200, tilt=20)]
    table = study.study(predictor, faces, labels, layouts=layouts, surrounds=["continued"])
    table.insert(0, "checkpoint", ckpt.name)
    return table


def score_each_run(
    argv: list[str] | None,
    doc: str,
    out_name: str,
    score: Callable[[Path, Path, int], pd.DataFrame],
    default_n: int,
) -> Iterator[tuple[Path, pd.DataFrame]]:
    """The command line of a scorer of runs: parses ``argv``, then for each run folder not yet
    scored (or all with ``--force``) writes ``score(run, yunet, n)`` to ``out_name`` in it and
    yields the run and its table."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="run folders")
    parser.add_argument("--n", type=int, default=default_n, help="validation faces per run")
    parser.add_argument(
        "--yunet", type=Path, default=None, help="YuNet model (default: $AGEFAIR_YUNET_MODEL)"
    )
    parser.add_argument("--force", action="store_true", help="rescore runs already scored")
    args = parser.parse_args(argv)
    from agefair.inference.model_files import resolve_yunet_model

    yunet = resolve_yunet_model(args.yunet)  # fails before any work, saying where to put it
    torch.set_num_threads(1)  # one run at a time per core; more threads only contend
    for run_dir in tqdm(args.runs, desc="runs", unit="run"):
        out = run_dir / out_name
        if out.is_file() and not args.force:
            continue
        table = score(run_dir, yunet, args.n)
        table.to_csv(out, index=False)
        yield run_dir, table


def main(argv: list[str] | None = None) -> None:
    for run_dir, table in score_each_run(argv, __doc__, FRAMING_FILE, score_run, 1000):
        row = table.iloc[1]
        tqdm.write(
            f"{run_dir}: tilted, detector-framed vs aligned: age {row['d_age_mae']:+.2f} y, "
            f"gender {row['d_gender']:+.1f}, race {row['d_race']:+.1f} points"
        )


if __name__ == "__main__":
    main()
