"""From a photo to predictions: what the CLI, the app and the unseen-faces evaluation share.

:mod:`~agefair.inference.imageio` reads any photo safely, :mod:`~agefair.inference.detect` finds
the faces (its model file in :mod:`~agefair.inference.model_files`), and the
:class:`~agefair.inference.predictor.Predictor` frames each face as training did and runs the
model; :mod:`~agefair.inference.checkpoints` picks the checkpoint when none is named,
:mod:`~agefair.inference.drawing` draws the results and :mod:`~agefair.inference.predict` is the
``agefair predict`` command.
"""
