"""Evaluates a checkpoint or a baseline: `python -m agefair.evaluate [Hydra overrides]`."""

from agefair.evaluation.evaluate import main

if __name__ == "__main__":
    main()
