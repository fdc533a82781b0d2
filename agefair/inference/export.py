"""The ``agefair export`` command: a checkpoint as an ONNX model that runs without training code.

agefair export                                  # the newest checkpoint, beside it as .onnx
agefair export outputs/train/runs/.../epoch012.ckpt --out shipped/model.onnx
agefair export CKPT --out fast.onnx --single-view

Writes the graph, its sidecar (``model.onnx.json``) and, when the checkpoint's run folder holds
its test outputs, the model's card (``MODEL_CARD.md``) beside them: the three files are what
ships. ``agefair predict --ckpt model.onnx`` and ``agefair serve --ckpt model.onnx`` run it on
ONNX Runtime.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from agefair.inference.checkpoints import (
    CKPT_ENV_VAR,
    CheckpointError,
    default_checkpoint,
    describe_checkpoint,
)
from agefair.inference.exporting import export_onnx
from agefair.inference.runtimes import sidecar_path


def build_parser() -> argparse.ArgumentParser:
    """The ``agefair export`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="agefair export",
        description="Export a trained checkpoint to ONNX, with its sidecar and model card.",
    )
    parser.add_argument(
        "ckpt", nargs="?", help=f"checkpoint; default ${CKPT_ENV_VAR} or the newest under outputs/"
    )
    parser.add_argument("--out", help="the .onnx file to write; default the checkpoint's name")
    parser.add_argument(
        "--single-view",
        action="store_true",
        help="the face alone, without the checkpoint's test-time views (faster, less accurate)",
    )
    parser.add_argument("--no-card", action="store_true", help="do not write MODEL_CARD.md")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``agefair export``; returns the exit status (1 with a one-line error on failure)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    # The model stack: only once the arguments are known to be good.
    from agefair.models.checkpoint import load_system
    from agefair.reporting.model_card import CardError, write_model_card

    try:
        ckpt = Path(args.ckpt) if args.ckpt else default_checkpoint()
        out = Path(args.out) if args.out else ckpt.with_suffix(".onnx")
        system, cfg = load_system(ckpt)
        spec, difference = export_onnx(
            system,
            cfg.data,
            out,
            single_view=args.single_view,
            source=describe_checkpoint(ckpt),
        )
    except (CheckpointError, ImportError, RuntimeError, ValueError, OSError) as err:
        print(f"agefair export: error: {err}", file=sys.stderr)
        return 1
    size_mb = out.stat().st_size / 1e6
    print(
        f"{out} ({size_mb:.1f} MB) and {sidecar_path(out).name}: {spec.system}, "
        f"{spec.img_size} px faces, {spec.views} test-time view(s); ONNX Runtime matches torch "
        f"to {difference:.1e}"
    )
    if not args.no_card:
        card = out.parent / "MODEL_CARD.md"
        try:
            write_model_card(ckpt.parent.parent, card, exported=out.name)
            print(f"model card: {card}")
        except CardError as err:
            print(f"agefair export: no model card: {err}", file=sys.stderr)
    return 0
