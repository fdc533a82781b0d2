"""Does detect -> crop -> predict keep the accuracy the model has on UTKFace's own crops?

    python experiments/crop_framing/run.py [--ckpt PATH] [--n 1000] [--calibrate 2000]
        [--decompose 1000]

UTKFace test faces (200 px aligned crops) are pasted into larger pictures at several face
sizes, positions and tilts, with two kinds of surroundings (see :data:`SURROUNDS`). Each
picture goes through the prediction path of the app (``Predictor.analyse``: YuNet,
``crop_face``, the eval transform, the model); the face found nearest the pasted position is
scored against the labels and compared with the same model on the original crops.

``--calibrate N`` first measures where YuNet's landmarks and box lie in UTKFace's framing, on N
faces of the TRAINING split pasted the same way, and prints the constants of
``agefair.inference.detect`` fitted to them. ``--decompose N`` takes the path from UTKFace's crop
to the photo's crop apart, one change at a time (:func:`decompose`). Writes ``results.csv``,
``calibration.csv``, ``accuracy.png`` and the tables of this folder's README (between its
markers).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from PIL import Image

from agefair.data.boxes import FaceBox
from agefair.data.cache import decode_image
from agefair.data.framing import CROP_SCALE, LANDMARK_TEMPLATE, crop_face, crop_square
from agefair.inference.checkpoints import default_checkpoint, describe_checkpoint
from agefair.inference.detect import FaceDetector
from agefair.inference.predictor import FacePrediction, Predictor
from agefair.labels import GENDERS, RACES
from agefair.models.checkpoint import load_system
from agefair.reporting.tables import replace_section, to_markdown
from agefair.training.build import build_datamodule

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Layout:
    """How a face is placed: photo side, face side (px) and the largest tilt (degrees)."""

    photo: int
    face: int
    tilt: float = 0.0

    @property
    def name(self) -> str:
        tilt = f", tilted up to {self.tilt:g}°" if self.tilt else ""
        return f"face {self.face} px in a {self.photo} px photo{tilt}"


# The face takes 1/2, 1/3 and 1/5 of the photo's width; the 1000 px photo is shrunk to 640 px
# for detection, so YuNet sees that face at 128 px; the tilted one needs crop_face's alignment.
LAYOUTS = (
    Layout(400, 200),
    Layout(600, 200),
    Layout(1000, 200),
    Layout(800, 400),
    Layout(600, 200, tilt=20),
)
#: What lies around the pasted face. "continued": the face's mirror image continues past its
#: edges for a quarter of its side, then the background; what a crop that reaches a little past
#: UTKFace's framing sees in a real photo is more of the same hair, skin and backdrop, and this
#: is the nearest stand-in the aligned crops allow. "unrelated": the background starts right at
#: the face's edge, so any framing error shows a hard edge to a foreign colour, which real photos
#: do not have; kept as the pessimistic case.
SURROUNDS = ("continued", "unrelated")
#: Where the calibration places faces: sides seen by YuNet from small to large.
CALIBRATION_SIDES = (64, 100, 150, 200, 300, 400)


# ------------------------------------------------------------------------------------------
# Making the photos
# ------------------------------------------------------------------------------------------
def background(side: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random texture, like an out-of-focus room: no face-like structure."""
    small = rng.integers(40, 220, (6, 6, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((side, side), Image.BICUBIC))


def paste(
    face: np.ndarray,
    layout: Layout,
    surround: str,
    rng: np.random.Generator,
) -> tuple[np.ndarray, tuple[float, float], float]:
    """A photo holding ``face`` resized to ``layout.face`` px at a random position and tilt.

    Returns:
        The photo, the centre of the pasted face and its tilt in degrees (clockwise on screen).
    """
    if surround not in SURROUNDS:
        raise ValueError(f"unknown surround {surround!r}; known: {', '.join(SURROUNDS)}")
    canvas = background(layout.photo, rng).copy()
    side = layout.face
    face = np.asarray(Image.fromarray(face).resize((side, side), Image.BICUBIC))
    margin = side // 4 if surround == "continued" else 0
    # Room for the margin and for the corners of a tilted square.
    reach = (side / 2 + margin) * (np.sqrt(2) if layout.tilt else 1)
    cx, cy = (float(v) for v in rng.uniform(reach, layout.photo - reach, 2))
    tilt = float(rng.uniform(-layout.tilt, layout.tilt)) if layout.tilt else 0.0
    patch = cv2.copyMakeBorder(face, margin, margin, margin, margin, cv2.BORDER_REFLECT_101)
    n = patch.shape[0]
    # The patch's centre goes to (cx, cy), turned by tilt; the mask keeps the canvas elsewhere.
    warp = cv2.getRotationMatrix2D((n / 2, n / 2), -tilt, 1.0)
    warp[:, 2] += (cx - n / 2, cy - n / 2)
    size = (layout.photo, layout.photo)
    moved = cv2.warpAffine(patch, warp, size, flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.ones((n, n), np.float32), warp, size, flags=cv2.INTER_LINEAR)
    photo = canvas * (1 - mask[..., None]) + moved * mask[..., None]
    return np.clip(photo + 0.5, 0, 255).astype(np.uint8), (cx, cy), tilt


# ------------------------------------------------------------------------------------------
# Scoring
# ------------------------------------------------------------------------------------------
def oracle_box(centre: tuple[float, float], side: float, tilt: float = 0.0) -> FaceBox:
    """The box a perfect detector would give for a face pasted at ``centre``: its landmarks lie
    exactly on :data:`LANDMARK_TEMPLATE`, so ``crop_face`` cuts out that very square."""
    turn = side * complex(np.cos(np.radians(tilt)), np.sin(np.radians(tilt)))
    c = complex(*centre)
    points = (c + turn * complex(x, y) for x, y in LANDMARK_TEMPLATE)
    marks = tuple((p.real, p.imag) for p in points)
    half = side / 2
    return FaceBox(c.real - half, c.imag - half, c.real + half, c.imag + half, 1.0, marks)


def nearest(items: Sequence[FacePrediction], centre: tuple[float, float]) -> FacePrediction | None:
    """The prediction whose box centre is closest to ``centre`` (None if there is none)."""

    def distance(p: FacePrediction) -> float:
        x0, y0, x1, y1 = p.box
        return float(np.hypot((x0 + x1) / 2 - centre[0], (y0 + y1) / 2 - centre[1]))

    return min(items, key=distance, default=None)


def as_row(label: dict, pred: FacePrediction | None) -> dict:
    """Labels beside a prediction's class indices (NaN age and -1 classes when none)."""
    if pred is None:
        return {**label, "age_pred": np.nan, "gender_pred": -1, "race_pred": -1}
    return {
        **label,
        "age_pred": pred.age,
        "gender_pred": GENDERS.index(pred.gender),
        "race_pred": RACES.index(pred.race),
    }


def score(rows: list[dict]) -> dict:
    """Faces, faces found, and MAE and accuracies over the found ones."""
    df = pd.DataFrame(rows)
    found = df.dropna(subset=["age_pred"])
    return {
        "faces": len(df),
        "found": len(found),
        "age_mae": float((found["age_pred"] - found["age"]).abs().mean()),
        "gender_acc": float((found["gender_pred"] == found["gender"]).mean()),
        "race_acc": float((found["race_pred"] == found["race"]).mean()),
    }


def study(
    predictor: Predictor,
    faces: Sequence[np.ndarray],
    labels: Sequence[dict],
    layouts: Sequence[Layout] = LAYOUTS,
    surrounds: Sequence[str] = SURROUNDS,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per setting: the original crops first, then every surround and layout.

    Columns: ``setting``, ``surround``, the :func:`score` columns, the differences from the
    original crops (``d_age_mae`` in years, ``d_gender``, ``d_race`` in accuracy points).
    """
    crops = predictor.predict_crops(list(faces))
    results = [
        {"setting": "original crops (no detection)", "surround": "", **score(
            [as_row(lab, p) for lab, p in zip(labels, crops, strict=True)]
        )}
    ]  # fmt: skip
    for surround in surrounds:
        rng = np.random.default_rng(seed)  # the same positions for both surrounds
        for layout in layouts:
            rows = []
            for label, face in zip(labels, faces, strict=True):
                photo, centre, _ = paste(face, layout, surround, rng)
                rows.append(as_row(label, nearest(predictor(photo), centre)))
            results.append({"setting": layout.name, "surround": surround, **score(rows)})
    table = pd.DataFrame(results)
    base = table.iloc[0]
    table["d_age_mae"] = table["age_mae"] - base["age_mae"]
    table["d_gender"] = 100 * (table["gender_acc"] - base["gender_acc"])
    table["d_race"] = 100 * (table["race_acc"] - base["race_acc"])
    return table


# ------------------------------------------------------------------------------------------
# Where the accuracy goes
# ------------------------------------------------------------------------------------------
def decompose(
    predictor: Predictor,
    faces: Sequence[np.ndarray],
    labels: Sequence[dict],
    files: Sequence[Path],
    layout: Layout = Layout(600, 200),
) -> pd.DataFrame:
    """The path from UTKFace's crops to a photo's crop, one change at a time.

    Preprocessing: the training cache's decode (``decode_image``) against the predictor's own
    resize of a full decode. Then, for each surround, the pasted face cut at the known square
    (exact, 6% larger, 3% of its side higher) and at YuNet's box with the framing before and
    after the landmark template.
    """

    def scored(name: str, surround: str, crops: Sequence[np.ndarray]) -> dict:
        preds = predictor.predict_crops(list(crops))
        rows = [as_row(lab, p) for lab, p in zip(labels, preds, strict=True)]
        return {"crop": name, "surround": surround, **score(rows)}

    size = predictor.cache_size
    results = [
        scored("training cache decode", "", [decode_image(f, size) for f in files]),
        scored("full decode, Predictor's resize", "", faces),
    ]
    square = layout.face
    # Which box crop_face is given, from the pasted face's centre and YuNet's box.
    variants: dict[str, Callable[[tuple[float, float], FaceBox], FaceBox]] = {
        "known square": lambda c, b: oracle_box(c, square),
        "known square, 6% larger": lambda c, b: oracle_box(c, 1.06 * square),
        "known square, 3% higher": lambda c, b: oracle_box((c[0], c[1] - 0.03 * square), square),
        "YuNet, 1.2 box widths (before)": lambda c, b: legacy_box(b),
        "YuNet, landmark template (now)": lambda c, b: b,
    }
    for surround in SURROUNDS:
        rng = np.random.default_rng(0)
        photos = [paste(face, layout, surround, rng) for face in faces]
        boxes = []
        for photo, centre, _ in photos:
            found = predictor.detector.detect(photo)
            # A missed face (rare) is cut at the known square, so every row has all faces.
            boxes.append(
                min(found, key=lambda b: np.hypot(b.centre[0] - centre[0], b.centre[1] - centre[1]))
                if found
                else oracle_box(centre, square)
            )
        for name, choose in variants.items():
            crops = [
                crop_face(img, choose(c, box), out_size=size)
                for (img, c, _), box in zip(photos, boxes, strict=True)
            ]
            results.append(scored(name, surround, crops))
    table = pd.DataFrame(results)
    base = table.iloc[1]
    table["d_age_mae"] = table["age_mae"] - base["age_mae"]
    table["d_gender"] = 100 * (table["gender_acc"] - base["gender_acc"])
    table["d_race"] = 100 * (table["race_acc"] - base["race_acc"])
    return table.drop(columns=["found"])


# ------------------------------------------------------------------------------------------
# Calibration of the framing
# ------------------------------------------------------------------------------------------
def measure_framing(
    detector: FaceDetector, faces: Sequence[np.ndarray], seed: int = 1
) -> pd.DataFrame:
    """YuNet's box and landmarks against the known paste square, one row per face.

    Faces are pasted upright with continued surroundings at the sides of
    :data:`CALIBRATION_SIDES` in photos 1.6-5 times as large. Columns: ``side`` and ``cx``,
    ``cy`` of the true square, ``found``, the box (``x0`` ... ``y1``) and landmarks ``l0x`` ...
    ``l4y`` of the face found nearest its centre.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for face in faces:
        side = int(rng.choice(CALIBRATION_SIDES))
        layout = Layout(int(side * rng.uniform(1.6, 5)), side)
        photo, (cx, cy), _ = paste(face, layout, "continued", rng)
        boxes = detector.detect(photo)
        row = {"side": side, "cx": cx, "cy": cy, "found": bool(boxes)}
        if boxes:
            box = min(boxes, key=lambda b: np.hypot(b.centre[0] - cx, b.centre[1] - cy))
            row.update(zip(("x0", "y0", "x1", "y1"), box.as_list(), strict=True))
            for i, (x, y) in enumerate(box.landmarks or ()):
                row[f"l{i}x"], row[f"l{i}y"] = x, y
        rows.append(row)
    return pd.DataFrame(rows)


def boxes_of(df: pd.DataFrame) -> list[FaceBox]:
    """The FaceBoxes of :func:`measure_framing`'s rows."""
    return [
        FaceBox(r.x0, r.y0, r.x1, r.y1, 1.0, tuple((r[f"l{i}x"], r[f"l{i}y"]) for i in range(5)))
        for _, r in df.iterrows()
    ]


def fit_framing(df: pd.DataFrame) -> dict:
    """The framing constants of ``agefair.inference.detect`` fitted to the rows of
    :func:`measure_framing`.

    Returns:
        ``LANDMARK_TEMPLATE`` (the mean landmark positions in the crop, in crop sides from its
        centre) and ``CROP_SCALE`` (median crop side over box width).
    """
    marks = np.stack([df[[f"l{i}x", f"l{i}y"]].to_numpy() for i in range(5)], axis=1)
    centre = df[["cx", "cy"]].to_numpy()[:, None, :]
    template = ((marks - centre) / df["side"].to_numpy()[:, None, None]).mean(axis=0)
    return {
        "LANDMARK_TEMPLATE": tuple(tuple(round(float(v), 4) for v in p) for p in template),
        "CROP_SCALE": round(float(np.median(df["side"] / (df["x1"] - df["x0"]))), 3),
    }


def framing_errors(df: pd.DataFrame, square: Callable[[FaceBox], tuple]) -> dict:
    """How well ``square(box) -> (x0, y0, side)`` reproduces the true squares of ``df``."""
    got = np.array([square(b) for b in boxes_of(df)])
    side, cx, cy = (df[k].to_numpy() for k in ("side", "cx", "cy"))
    gx, gy = got[:, 0] + got[:, 2] / 2, got[:, 1] + got[:, 2] / 2
    lo_x, lo_y = np.maximum(got[:, 0], cx - side / 2), np.maximum(got[:, 1], cy - side / 2)
    hi_x = np.minimum(got[:, 0] + got[:, 2], cx + side / 2)
    hi_y = np.minimum(got[:, 1] + got[:, 2], cy + side / 2)
    inter = np.clip(hi_x - lo_x, 0, None) * np.clip(hi_y - lo_y, 0, None)
    iou = inter / (got[:, 2] ** 2 + side**2 - inter)
    ratio = np.log(got[:, 2] / side)
    q25, q50 = np.quantile(iou, [0.25, 0.5])
    return {
        "IoU median": q50,
        "IoU 1st quartile": q25,
        "side bias (%)": 100 * (np.exp(ratio.mean()) - 1),
        "side scatter (%)": 100 * ratio.std(),
        "centre scatter x (% of side)": 100 * np.std((gx - cx) / side),
        "centre scatter y (% of side)": 100 * np.std((gy - cy) / side),
    }


def legacy_square(box: FaceBox) -> tuple[float, float, float]:
    """The framing before the landmark template: 1.2 box widths around the landmark centroid,
    shifted (0.017, 0.011) box widths (calibrated on 200 px faces on a grey canvas)."""
    lx, ly = np.mean(box.landmarks, axis=0)
    side = 1.2 * box.width
    return lx + 0.017 * box.width - side / 2, ly + 0.011 * box.width - side / 2, side


def legacy_box(box: FaceBox) -> FaceBox:
    """A box that ``crop_face`` cuts at :func:`legacy_square`'s square, untilted."""
    x0, y0, side = legacy_square(box)
    return oracle_box((x0 + side / 2, y0 + side / 2), side)


def calibrate(detector: FaceDetector, faces: Sequence[np.ndarray]) -> tuple[str, dict]:
    """Measures the framing on ``faces``; returns the README block and the fitted constants.

    The constants are fitted on the first half and the errors reported on the second, so the
    table shows what the library's constants (when they are the fitted ones) do on faces they
    were not fitted to.
    """
    df = measure_framing(detector, faces)
    df.to_csv(HERE / "calibration.csv", index=False, float_format="%.2f")
    found = df[df["found"]].reset_index(drop=True)
    held_out = found.iloc[len(found) // 2 :]
    fitted = fit_framing(found.iloc[: len(found) // 2])
    from agefair.data import framing  # the library's current constants, for the comparison

    methods = {
        "1.2 box widths around the landmark centroid (before)": legacy_square,
        "landmark template, `crop_square` (now)": crop_square,
        f"{CROP_SCALE:g} box widths around the box, no landmarks (fallback)": lambda b: crop_square(
            b, use_landmarks=False
        ),
    }
    table = pd.DataFrame(
        [{"framing": name, **framing_errors(held_out, fn)} for name, fn in methods.items()]
    )
    lines = [
        f"{len(df)} faces of the training split (seed 1), pasted upright at "
        f"{', '.join(map(str, CALIBRATION_SIDES))} px with continued surroundings; YuNet found "
        f"{len(found)}. Errors on the {len(held_out)} faces of the second half; "
        "scatter is the standard deviation (side: of the log ratio).",
        "",
        to_markdown(table),
        "",
        f"Fitted on the first half: `CROP_SCALE = {fitted['CROP_SCALE']}`, "
        f"`LANDMARK_TEMPLATE = {fitted['LANDMARK_TEMPLATE']}`; in the library: "
        f"`{framing.CROP_SCALE}`, `{framing.LANDMARK_TEMPLATE}`.",
    ]
    return "\n".join(lines), fitted


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------
def plot(table: pd.DataFrame, path: Path) -> None:
    """Differences from the original crops per setting, with the one-point band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table.iloc[1:]
    labels = [
        f"{s.removeprefix('face ')} ({r})"
        for s, r in zip(rows["setting"], rows["surround"], strict=True)
    ]
    fig, axes = plt.subplots(1, 3, figsize=(14, 0.45 * len(rows) + 1.4), sharey=True)
    columns = [
        ("d_age_mae", "age MAE − original (years)"),
        ("d_gender", "gender accuracy − original (points)"),
        ("d_race", "race accuracy − original (points)"),
    ]
    y = np.arange(len(rows))
    colours = ["tab:blue" if s == "continued" else "tab:orange" for s in rows["surround"]]
    for ax, (col, title) in zip(axes, columns, strict=True):
        ax.axvspan(-1, 1, color="0.9")
        ax.axvline(0, color="0.4", lw=0.8)
        ax.barh(y, rows[col], color=colours)
        ax.set_title(title, fontsize=9)
    axes[0].set_yticks(y, labels, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle("detect → crop → predict against the same model on UTKFace's crops", fontsize=10)
    # Room on the left for the settings' names, which tight_layout would cut with shared axes.
    fig.subplots_adjust(left=0.3, right=0.98, top=0.86, bottom=0.08, wspace=0.08)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def load_faces(
    ckpt: Path, split: str, n: int, seed: int
) -> tuple[list[np.ndarray], list[dict], list[Path]]:
    """``n`` random faces of a split of the checkpoint's data set, their labels and files."""
    model, cfg = load_system(ckpt)
    cfg.data.archive = os.environ.get("UTKFACE_ARCHIVE", cfg.data.archive)
    # A relative data folder was relative to the repository root the run started in; resolved
    # here from the script's folder instead, it would extract the data set in the wrong place.
    if not Path(cfg.data.data_dir).is_absolute():
        cfg.data.data_dir = str(HERE.parents[1] / cfg.data.data_dir)
    dm = build_datamodule(cfg, model)
    dm.prepare_data()
    table = dm.split_table(split)
    table = table.sample(n=min(n, len(table)), random_state=seed)
    root = dm.prepared.image_root
    files = [root / f for f in table["file"]]
    faces = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    return faces, table[["age", "gender", "race"]].to_dict("records"), files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--n", type=int, default=1000, help="test faces to use (0: none)")
    parser.add_argument("--calibrate", type=int, default=0, metavar="N", help="training faces")
    parser.add_argument(
        "--decompose", type=int, default=0, metavar="N", help="test faces for the decomposition"
    )
    args = parser.parse_args(argv)
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    # One thread each: on a shared machine more would only contend (the results do not change).
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    ckpt = Path(args.ckpt) if args.ckpt else default_checkpoint()
    predictor = Predictor.from_checkpoint(ckpt)
    readme = HERE / "README.md"
    if args.calibrate:
        faces, _, _ = load_faces(ckpt, "train", args.calibrate, seed=1)
        block, constants = calibrate(predictor.detector, faces)
        replace_section(readme, "calibration", block)
        print(block, "\n\nFor agefair.inference.detect:", constants)

    if args.decompose:
        faces, labels, files = load_faces(ckpt, "test", args.decompose, seed=0)
        table = decompose(predictor, faces, labels, files)
        info = (
            f"Checkpoint {describe_checkpoint(ckpt)}. {args.decompose} random faces of the test "
            "split (seed 0), faces of 200 px in 600 px photos; `d_*`: difference from the full "
            "decode (years; accuracy points)."
        )
        replace_section(readme, "decomposition", f"{info}\n\n{to_markdown(table)}")
        print(to_markdown(table))
    if not args.n:
        return
    faces, labels, _ = load_faces(ckpt, "test", args.n, seed=0)
    table = study(predictor, faces, labels)
    table.to_csv(HERE / "results.csv", index=False, float_format="%.4f")
    plot(table, HERE / "accuracy.png")
    info = (
        f"Checkpoint {describe_checkpoint(ckpt)}. {args.n} random faces of agefair's test "
        f"split (seed 0); {platform.machine()}, {os.cpu_count()} CPU cores. `d_*`: difference "
        "from the original crops (years; accuracy points)."
    )
    md = to_markdown(table)
    replace_section(readme, "results", f"{info}\n\n{md}")
    print(md)


if __name__ == "__main__":
    sys.exit(main())
