"""The labels agefair predicts, in UTKFace's coding: the one place their names and ranges live.

UTKFace's file names carry ``<age>_<gender>_<race>_...``: age in years, gender and race as
indices into :data:`GENDERS` and :data:`RACES`. Every layer (data, models, evaluation, the app)
reads them from here; nothing imports the data stack for a label name.
"""

from __future__ import annotations

import numpy as np

GENDERS = ("male", "female")
RACES = ("White", "Black", "Asian", "Indian", "Others")
#: The oldest age in UTKFace's labels; ages run 0..MAX_AGE.
MAX_AGE = 116
#: How many ages a classification age head scores (0..MAX_AGE).
NUM_AGES = MAX_AGE + 1
#: The age bands of the per-group tables, ``(lo, hi)`` inclusive.
AGE_BANDS = ((0, 12), (13, 19), (20, 39), (40, 59), (60, 200))


def age_band(age: np.ndarray | float) -> np.ndarray:
    """Index into ``AGE_BANDS`` of each age (an age belongs to the band whose ``hi`` it does not
    exceed, so fractional ages such as 12.5 fall into the next band; everything above 59 is 60+).
    """
    edges = np.array([hi for _, hi in AGE_BANDS[:-1]], dtype=float)
    return np.searchsorted(edges, np.asarray(age, dtype=float), side="left")
