"""The ``agefair`` command: ``agefair train|bench|evaluate [overrides]``, ``predict``, ``export``,
``report``, ``serve``."""

from __future__ import annotations

import runpy
import sys

COMMANDS = {
    "train": ("agefair.train", "train and test a system (Hydra overrides follow)"),
    "bench": ("agefair.bench", "throughput of data pipeline, model step and training loop"),
    "evaluate": (
        "agefair.evaluate",
        "a checkpoint or a baseline on the test split or other images",
    ),
    "predict": ("agefair.predict", "age, gender and ethnicity for the faces in photos"),
    "export": ("agefair.export", "a checkpoint as ONNX with its sidecar and model card"),
    "report": ("agefair.report", "a study's report of its multiruns: CSV, tables, plots"),
    "serve": ("agefair.app.server", "the web app and JSON API on http://127.0.0.1:8000"),
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: agefair COMMAND [args]\n\ncommands:")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:<10} {text}")
        sys.exit(0 if not argv or argv[0] in ("-h", "--help") else 2)
    module, _ = COMMANDS[argv[0]]
    sys.argv = [f"agefair {argv[0]}", *argv[1:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
