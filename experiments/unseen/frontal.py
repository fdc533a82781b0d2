"""How a run does on the unseen faces that dlib's HOG detector finds, and on the others.

    python experiments/unseen/frontal.py outputs/unseen/<run> [...] --unseen <labels.csv>

dlib's HOG detector finds mostly frontal, unoccluded faces. Splitting a run's unseen-face
predictions (``predictions_unseen.csv``) by whether it finds a face in the photo shows how much
of the gap lies in the hard faces, and bounds what aligning the easy ones to dlib's own
landmarks (which needs its detector) could add. Prints gender and race accuracy per part.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from agefair.inference.detect import create_detector
from agefair.inference.imageio import load_image


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--unseen", type=Path, required=True, help="labels.csv of the photos")
    args = parser.parse_args(argv)
    hog = create_detector("dlib-hog")
    files = pd.read_csv(args.runs[0] / "predictions_unseen.csv")["file"]
    found = np.array(
        [bool(hog.detect(load_image(args.unseen.parent / f))) for f in tqdm(files, desc="HOG")]
    )
    print(f"dlib's HOG finds a face in {found.sum()} of {len(found)} photos")
    for run in args.runs:
        p = pd.read_csv(run / "predictions_unseen.csv")
        assert (p["file"] == files).all(), f"{run} scored other photos"
        for part, mask in (("HOG finds", found), ("HOG misses", ~found)):
            s = p[mask]
            gender = 100 * (s["gender"] == s["gender_pred"]).mean()
            race = 100 * (s["race"] == s["race_pred"]).mean()
            print(f"{run.name:24s} {part:10s} n={len(s):5d}  gender {gender:.1f}  race {race:.1f}")


if __name__ == "__main__":
    main()
