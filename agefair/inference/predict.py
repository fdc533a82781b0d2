"""The ``agefair predict`` command: age, gender and ethnicity of the faces in photos.

agefair predict photo.jpg                     # a table per photo, newest checkpoint
agefair predict a.jpg b.png --json            # JSON on stdout
agefair predict photo.jpg --out boxes.jpg     # also draw the boxes and labels
agefair predict *.jpg --out-dir annotated/ --ckpt outputs/train/runs/.../epoch009.ckpt
agefair predict photo.jpg --ckpt model.onnx   # an exported model (agefair export), on ONNX Runtime
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from agefair.inference.checkpoints import CKPT_ENV_VAR
from agefair.inference.drawing import draw_predictions
from agefair.inference.imageio import ImageError, load_image
from agefair.inference.predictor import PhotoPrediction, Predictor
from agefair.models.errors import CheckpointError


def _table(name: str, result: PhotoPrediction) -> str:
    head = f"{name} ({result.width}x{result.height})"
    if not result.faces:
        return f"{head}: no face found"
    rows = [f"{head}: {len(result.faces)} face{'s' if len(result.faces) != 1 else ''}"]
    rows.append(f"  {'#':>2}  {'box':<22} {'age':>9}  {'gender':<12} {'ethnicity':<14} detector")
    for i, f in enumerate(result.faces, 1):
        age = f"{f.age:.0f}" if f.age_sd is None else f"{f.age:.0f} ± {f.age_sd:.0f}"
        box = ",".join(map(str, f.box))
        rows.append(
            f"  {i:>2}  {box:<22} {age:>9}  {f.gender + f' {f.gender_p:.0%}':<12} "
            f"{f.race + f' {f.race_confidence:.0%}':<14} {f.det_score:.2f}"
        )
    if result.n_detected > len(result.faces):
        rows.append(f"  ({result.n_detected - len(result.faces)} more faces not analysed)")
    return "\n".join(rows)


def _annotated_path(photo: Path, out: str | None, out_dir: str | None) -> Path | None:
    if out:
        return Path(out)
    if out_dir:
        return Path(out_dir) / f"{photo.stem}_predicted.jpg"
    return None


def _save(image: np.ndarray, path: Path) -> None:
    """Saves in the format the file name says (PIL raises ValueError for an unknown one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=92)  # quality: JPEG/WebP only, ignored by PNG


def build_parser() -> argparse.ArgumentParser:
    """The ``agefair predict`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="agefair predict",
        description="Age, gender and ethnicity for every face in photos.",
    )
    parser.add_argument("photos", nargs="+", help="image files (JPEG, PNG, WebP, ...)")
    parser.add_argument(
        "--ckpt",
        help=f"checkpoint or exported .onnx model; default ${CKPT_ENV_VAR} or the newest "
        "checkpoint under outputs/",
    )
    parser.add_argument("--detector", default="yunet", choices=["yunet", "dlib-hog"])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", help="write the photo with boxes and labels here (one photo)")
    where.add_argument("--out-dir", help="write each annotated photo here as NAME_predicted.jpg")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``agefair predict``; returns the exit status (1 if any photo failed).

    Args:
        argv: Arguments after the command name; None reads ``sys.argv``.

    Returns:
        0 when every photo was read, 1 otherwise (errors are one line each on stderr).
    """
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.out and len(args.photos) > 1:
        parser.error("--out takes one photo; use --out-dir for several")
    # OpenCV's DNN module logs backend notes at warning level; they would clutter the tables.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        predictor = Predictor.from_checkpoint(args.ckpt, detector=args.detector)
    except (CheckpointError, ImportError, RuntimeError, ValueError) as err:
        print(f"agefair predict: error: {err}", file=sys.stderr)
        return 1

    failed = 0
    results: list[dict[str, Any]] = []
    for name in args.photos:
        photo = Path(name)
        try:
            result = predictor.analyse(photo)
            target = _annotated_path(photo, args.out, args.out_dir)
            if target is not None:
                image = load_image(photo, max_pixels=predictor.max_pixels)
                _save(draw_predictions(image, result.faces), target)
        except (ImageError, OSError, ValueError) as err:
            failed += 1
            print(f"agefair predict: error: {err}", file=sys.stderr)
            results.append({"file": name, "error": str(err)})
            continue
        if args.json:
            results.append({"file": name, **result.to_dict()})
        else:
            print(_table(name, result))
            if target is not None:
                print(f"  annotated photo: {target}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0
