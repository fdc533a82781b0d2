"""How upright the app turns faces: unseen-face figures of one checkpoint per tilt threshold.

    python experiments/unseen/upright.py CKPT --unseen ../shared/data/fairface_dev/labels.csv \
        [--degrees 6 0]

The app frames each found face by its five landmarks (:func:`agefair.data.framing.crop_face`)
and turns it upright when its eye line tilts by at least
:data:`agefair.data.framing.MIN_ALIGN_DEGREES` (6; below that the measured tilt was mostly
landmark noise on UTKFace faces, ``experiments/crop_framing``). This scores the checkpoint on
the unseen faces through the app's path once per threshold given (0: every face turned).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import agefair.data.framing as framing
from agefair.evaluation.unseen import score_unseen, summary_line
from agefair.inference.predictor import Predictor


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("--unseen", type=Path, required=True, help="labels.csv of unseen faces")
    parser.add_argument("--degrees", type=float, nargs="+", default=[6.0, 0.0])
    args = parser.parse_args(argv)
    predictor = Predictor.from_checkpoint(args.ckpt)
    for degrees in args.degrees:
        framing.MIN_ALIGN_DEGREES = degrees  # read by crop_face at each call
        with tempfile.TemporaryDirectory() as out:
            metrics = score_unseen(predictor, args.unseen, Path(out), progress=False)
        print(f"turned upright from {degrees:g} degrees: {summary_line(metrics)}", flush=True)


if __name__ == "__main__":
    main()
