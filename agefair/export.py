"""A checkpoint as an ONNX model with its sidecar and card: `python -m agefair.export CKPT`."""

import sys

from agefair.inference.export import main

if __name__ == "__main__":
    sys.exit(main())
