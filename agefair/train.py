"""Trains and tests a system: `python -m agefair.train [Hydra overrides]`."""

from agefair.training.train import main

if __name__ == "__main__":
    main()
