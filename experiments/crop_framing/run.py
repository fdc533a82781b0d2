"""Does detect -> crop -> predict keep the accuracy the model has on UTKFace's own crops?

    python experiments/crop_framing/run.py [--ckpt PATH] [--n 300]

UTKFace test faces (200 px aligned crops) are pasted into larger pictures: on a blurred,
enlarged copy of another test face's surroundings would be circular, so on a neutral textured
background, at several face sizes and positions. Each picture goes through the prediction path
of the app (YuNet, ``crop_face``, the eval transform, the model); the face found nearest the
pasted position is scored against the labels and compared with the same model on the original
crops. Writes the table into this README between the result markers and ``results.csv``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from agefair.checkpoint import load_system
from agefair.predict import Predictor, default_checkpoint
from agefair.report import to_markdown
from agefair.train import build_datamodule

HERE = Path(__file__).resolve().parent
# (canvas side, face side): the face takes 1/2, 1/3 and 1/5 of the picture's width
LAYOUTS = [(400, 200), (600, 200), (1000, 200), (800, 400)]


def background(side: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random texture, like an out-of-focus room: no face-like structure."""
    small = rng.integers(40, 220, (6, 6, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((side, side), Image.BICUBIC))


def paste(face: np.ndarray, side: int, face_side: int, rng: np.random.Generator) -> tuple:
    canvas = background(side, rng).copy()
    face = np.asarray(Image.fromarray(face).resize((face_side, face_side), Image.BICUBIC))
    x, y = (int(v) for v in rng.integers(0, side - face_side + 1, 2))
    canvas[y : y + face_side, x : x + face_side] = face
    return canvas, (x + face_side / 2, y + face_side / 2)


def score(rows: list[dict]) -> dict:
    df = pd.DataFrame(rows)
    found = df.dropna(subset=["age_pred"])
    return {
        "faces": len(df),
        "found": len(found),
        "age_mae": float((found["age_pred"] - found["age"]).abs().mean()),
        "gender_acc": float((found["gender_pred"] == found["gender"]).mean()),
        "race_acc": float((found["race_pred"] == found["race"]).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--n", type=int, default=300, help="test faces to use")
    args = parser.parse_args()
    ckpt = Path(args.ckpt) if args.ckpt else default_checkpoint()
    model, cfg = load_system(ckpt)
    cfg.data.archive = os.environ.get("UTKFACE_ARCHIVE", cfg.data.archive)
    dm = build_datamodule(cfg, model)
    dm.prepare_data()
    test = dm.split_table("test").sample(n=args.n, random_state=0)
    root = dm.prepared.image_root
    faces = [np.asarray(Image.open(root / f).convert("RGB")) for f in test["file"]]
    predictor = Predictor.from_checkpoint(ckpt)
    labels = test[["age", "gender", "race"]].to_dict("records")

    def as_row(label: dict, pred) -> dict:
        if pred is None:
            return {**label, "age_pred": np.nan, "gender_pred": -1, "race_pred": -1}
        return {
            **label,
            "age_pred": pred.age,
            "gender_pred": ["male", "female"].index(pred.gender),
            "race_pred": list(pred.race_p).index(pred.race),
        }

    results = [
        {
            "setting": "original crops (no detection)",
            **score(
                [as_row(l, p) for l, p in zip(labels, predictor.predict_crops(faces), strict=True)]
            ),
        }
    ]
    rng = np.random.default_rng(0)
    for side, face_side in LAYOUTS:
        rows = []
        for label, face in zip(labels, faces, strict=True):
            photo, centre = paste(face, side, face_side, rng)
            preds = predictor(photo)
            near = min(
                preds,
                default=None,
                key=lambda p: np.hypot(
                    (p.box[0] + p.box[2]) / 2 - centre[0], (p.box[1] + p.box[3]) / 2 - centre[1]
                ),
            )
            rows.append(as_row(label, near))
        results.append({"setting": f"face {face_side} px in a {side} px photo", **score(rows)})
    table = pd.DataFrame(results)
    table.to_csv(HERE / "results.csv", index=False)
    md = to_markdown(table)
    readme = HERE / "README.md"
    text = readme.read_text()
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    info = (
        f"Checkpoint `{ckpt}`; {args.n} random faces of agefair's test split (seed 0); "
        f"{platform.machine()}, {os.cpu_count()} CPU cores."
    )
    text = text[: text.index(start) + len(start)] + f"\n{info}\n\n{md}\n" + text[text.index(end) :]
    readme.write_text(text)
    print(md)


if __name__ == "__main__":
    sys.exit(main())
