"""Scoring a trained system, or an external one, on any labelled faces: ``python -m
agefair.evaluate``.

:mod:`~agefair.evaluation.sources` loads a checkpoint and what it is scored on (a split, a folder
of UTKFace-named images, a labels CSV); :mod:`~agefair.evaluation.predictions` collects and scores
predictions; :mod:`~agefair.evaluation.unseen` scores photos of other data sets through the app's
own path; :mod:`~agefair.evaluation.baselines` wraps pretrained external systems;
:mod:`~agefair.evaluation.robustness` runs the robustness study and
:mod:`~agefair.evaluation.robustness_limits` reads its thresholds.
"""
