"""Training a system from a config: ``python -m agefair.train``.

:mod:`~agefair.training.build` makes the system and the datamodule of a Hydra config, fitted to
each other; :mod:`~agefair.training.train` fits, tests and scores the best checkpoint (and on
unseen faces when asked); :mod:`~agefair.training.results` writes the run's results row,
per-group tables and figures, which every report reads; :mod:`~agefair.training.complexity`
measures parameters, FLOPs and latency; :mod:`~agefair.training.callbacks` holds the callbacks a
recipe may choose.
"""
