"""Face detectors on real photos, and the crop framing that reproduces UTKFace.

Questions:

1. How well do the available detectors (YuNet, dlib's HOG) find faces in real group photos, how
   many false boxes do they give, and how fast are they on this machine?
2. Does enlarging small photos before detection help with tiny faces?
3. Which crop around a YuNet box reproduces UTKFace's framing (``--calibrate N``)?
4. Faces that fill the picture: which border around the photo makes YuNet find them, measured on
   fairface_dev (``--fairface [DIR]``)?
5. Which second check on YuNet's landmarks rejects the dog photo's dog without losing faces?

Usage (from the repository root)::

    python experiments/face_detection/run.py [--photos DIR] [--out DIR] [--calibrate N]
        [--fairface [DIR]] [--fairface-limit N]

Photos come from ``--photos``, else ``$AGEFAIR_PHOTOS``, else ``../shared/photos`` next to the
repository; the YuNet model from ``$AGEFAIR_YUNET_MODEL``, else ``../shared/models``, else the
library's usual lookup. ``--calibrate`` extracts N random UTKFace images from
``$UTKFACE_ARCHIVE`` (default ``../shared/data/UTKFace.tar.gz``) into a temporary folder. The
script writes ``results.csv`` (and ``calibration.csv``, ``fairface.csv``), annotated
``detections_*.png`` and the tables between the markers in ``README.md`` of ``--out`` (default:
this folder). ``--fairface`` without a folder reads ``$AGEFAIR_FAIRFACE``, else
``../shared/data/fairface_dev`` next to the repository. OpenCV runs on one thread.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import random
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

# noqa E402 below: the repository root is put on the path first.
from agefair.data.boxes import FaceBox  # noqa: E402
from agefair.data.framing import crop_face, crop_square  # noqa: E402
from agefair.inference.detect import (  # noqa: E402
    LANDMARK_LIMITS,
    FaceDetector,
    LandmarkGeometry,
    YuNetDetector,
    create_detector,
    landmark_geometry,
    landmark_problem,
)
from agefair.inference.imageio import load_image  # noqa: E402
from agefair.reporting.tables import with_section  # noqa: E402

# Labelled boxes are dlib-style: tight, from the brows to the chin. YuNet's box runs from the
# hairline to below the chin and is ~1.3x as tall as wide, so a correct YuNet box overlaps a label
# with IoU ~0.5-0.7, not ~0.9. 0.3 still needs the boxes on the same face (two neighbouring faces
# in these photos overlap far less), without punishing a detector for its box convention.
MATCH_IOU = 0.3
REPEATS = 10
EXTRA_PHOTOS = {"two_people.jpg": 2, "astronaut.png": 1, "no_faces_dogs.jpg": 0}
LABEL_FILES = ("faces_training.xml", "faces_testing.xml")


# ------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------
def default_photos() -> Path:
    return Path(os.environ.get("AGEFAIR_PHOTOS", REPO.parent / "shared" / "photos"))


def default_fairface() -> Path:
    return Path(
        os.environ.get("AGEFAIR_FAIRFACE", REPO.parent / "shared" / "data" / "fairface_dev")
    )


#: YuNet's plain output, without the border and the landmark check (the detector as it was).
PLAIN = {"pad_fraction": None, "check_landmarks": False, "raw": True}


def yunet_model() -> str | None:
    env = os.environ.get("AGEFAIR_YUNET_MODEL")
    if env:
        return env
    shared = REPO.parent / "shared" / "models" / "face_detection_yunet_2023mar.onnx"
    return str(shared) if shared.exists() else None  # None: the library's cache and download


def read_labels(photos: Path) -> dict[str, list[FaceBox]]:
    """``{file name: [FaceBox]}`` from dlib's imglab XML files (``<box top left width height>``)."""
    labels: dict[str, list[FaceBox]] = {}
    for name in LABEL_FILES:
        for image in ET.parse(photos / name).getroot().iter("image"):
            boxes = []
            for b in image.iter("box"):
                left, top = float(b.get("left")), float(b.get("top"))
                boxes.append(
                    FaceBox(left, top, left + float(b.get("width")), top + float(b.get("height")))
                )
            labels[image.get("file")] = boxes
    return labels


def match(found: list[FaceBox], truth: list[FaceBox]) -> tuple[int, int, int, list[int]]:
    """Greedy one-to-one matching, best-scoring detection first.

    Returns:
        (found faces, missed faces, false boxes, index of the matched label per detection or -1).
    """
    used: set[int] = set()
    assignment = []
    for det in found:
        best, best_iou = -1, MATCH_IOU
        for i, lab in enumerate(truth):
            iou = det.iou(lab)
            if i not in used and iou >= best_iou:
                best, best_iou = i, iou
        if best >= 0:
            used.add(best)
        assignment.append(best)
    tp = len(used)
    return tp, len(truth) - tp, len(found) - tp, assignment


def time_ms(detector: FaceDetector, image: np.ndarray) -> float:
    detector.detect(image)  # warm-up: the first call allocates buffers
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        detector.detect(image)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


# ------------------------------------------------------------------------------------------
# Detection benchmark
# ------------------------------------------------------------------------------------------
@dataclass
class Row:
    detector: str
    photos: str
    images: int
    faces: int
    found: int
    missed: int
    false_boxes: int
    ms_per_image: float

    @property
    def recall(self) -> float:
        return self.found / self.faces if self.faces else float("nan")


def make_detectors() -> dict[str, FaceDetector]:
    detectors: dict[str, FaceDetector] = {
        "yunet": create_detector("yunet", model_path=yunet_model()),
        "yunet-plain": YuNetDetector(yunet_model(), **PLAIN),
    }
    try:
        detectors["dlib-hog"] = create_detector("dlib-hog")
    except ImportError as exc:
        print(f"skipping dlib-hog: {exc}")
    return detectors


def benchmark(photos: Path, detectors: dict[str, FaceDetector]):
    labels = read_labels(photos)
    images = {name: load_image(photos / name) for name in [*labels, *EXTRA_PHOTOS]}
    rows: list[Row] = []
    drawn: dict[str, dict[str, list[FaceBox]]] = {}
    for det_name, det in detectors.items():
        drawn[det_name] = {}
        tp = fn = fp = 0
        times = []
        for name, truth in labels.items():
            boxes = det.detect(images[name])
            drawn[det_name][name] = boxes
            a, b, c, _ = match(boxes, truth)
            tp, fn, fp = tp + a, fn + b, fp + c
            times.append(time_ms(det, images[name]))
        rows.append(
            Row(det_name, "9 group photos", len(labels), tp + fn, tp, fn, fp, np.median(times))
        )
        for name, n_faces in EXTRA_PHOTOS.items():
            boxes = det.detect(images[name])
            drawn[det_name][name] = boxes
            found = min(len(boxes), n_faces)
            h, w = images[name].shape[:2]
            rows.append(
                Row(
                    det_name,
                    f"{name} ({w}x{h})",
                    1,
                    n_faces,
                    found,
                    n_faces - found,
                    len(boxes) - found,
                    time_ms(det, images[name]),
                )
            )
    return rows, images, labels, drawn


def small_photo_rows(photos: Path) -> list[tuple[float, int, str, int, int, int]]:
    """Recall on the group photos shrunk, with and without YuNet's small-photo enlargement."""
    labels = read_labels(photos)
    out = []
    dets = {
        "as is": YuNetDetector(yunet_model(), upscale_small=False),
        "enlarged (default)": YuNetDetector(yunet_model()),
        # Would enlarging the full-size photos help too? max_side=1000 enlarges 500 px 2x.
        "enlarged 2x (max_side=1000)": YuNetDetector(yunet_model(), max_side=1000),
    }
    for factor in (1.0, 0.75, 0.5, 0.4, 0.3, 0.2):
        for mode, det in dets.items():
            full = factor == 1.0
            if (full and mode == "enlarged (default)") or (
                not full and mode.startswith("enlarged 2x")
            ):
                continue  # at full size the default does not enlarge; the 2x check only there
            tp = fn = fp = 0
            longer = 0
            for name, truth in labels.items():
                img = load_image(photos / name)
                h, w = img.shape[:2]
                small = (
                    img
                    if factor == 1.0
                    else cv2.resize(
                        img, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA
                    )
                )
                longer = max(longer, max(small.shape[:2]))
                a, b, c, _ = match(det.detect(small), [t.scaled(factor) for t in truth])
                tp, fn, fp = tp + a, fn + b, fp + c
            out.append((factor, longer, mode, tp, tp + fn, fp))
    return out


def dog_rows(photos: Path) -> list[tuple[str, float, str, int]]:
    """The dog photo at several resolutions: YuNet's best score (threshold lowered to 0.5), what
    the landmark check says about that box, and how many boxes the default detector reports."""
    dog = load_image(photos / "no_faces_dogs.jpg")
    plain = YuNetDetector(
        yunet_model(), **{**PLAIN, "score_threshold": 0.5, "max_side": None, "upscale_small": False}
    )
    default = YuNetDetector(yunet_model(), max_side=None, upscale_small=False)
    rows = []
    h, w = dog.shape[:2]
    for longer in sorted({480, 640, 800, 900, max(h, w), 1024, 1280}):
        f = longer / max(h, w)
        interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
        img = dog if f == 1 else cv2.resize(dog, (round(w * f), round(h * f)), interpolation=interp)
        boxes = plain.detect(img)
        label = f"{longer} px" + (" (as stored)" if f == 1 else "")
        problem = (landmark_problem(boxes[0]) or "passes") if boxes else "–"
        rows.append((label, boxes[0].score if boxes else 0.0, problem, len(default.detect(img))))
    return rows


# ------------------------------------------------------------------------------------------
# Faces that fill the picture (fairface_dev), and the landmark check
# ------------------------------------------------------------------------------------------
#: The detector settings compared; every one is a YuNetDetector, so what is measured is the code.
FAIRFACE_OPTIONS: dict[str, dict] = {
    "YuNet alone (as before)": PLAIN,
    "grey border 0.25 (photo at 224 px)": {"check_landmarks": False},
    "grey border 0.5": {"pad_fraction": 0.5, "check_landmarks": False},
    "grey border 1.0": {"pad_fraction": 1.0, "check_landmarks": False},
    "grey border 0.25, photo at 160 px": {"pad_side": 160, "check_landmarks": False},
    "grey border 0.25, photo at 320 px": {"pad_side": 320, "check_landmarks": False},
    "replicated border 0.25": {"pad_border": "replicate", "check_landmarks": False},
    "mirrored border 0.25": {"pad_border": "reflect", "check_landmarks": False},
    "grey border 0.25, only if nothing found": {"pad_mode": "fallback", "check_landmarks": False},
    "landmark check alone": {"pad_fraction": None},
    "grey border 0.25 + landmark check (default)": {},
}
#: The option whose unchecked faces give the landmark check's provenance table.
GEOMETRY_SOURCE = "grey border 0.25 (photo at 224 px)"
#: Every TIGHT_EVERY-th photo is also cut to its central two thirds (the face without FairFace's
#: 0.25 margin, as tight as a passport photo) and detected again.
TIGHT_EVERY = 4


@dataclass
class OptionResult:
    name: str
    photos: int = 0
    found: int = 0
    central: int = 0
    other_boxes: int = 0
    tight: int = 0
    tight_found: int = 0
    ms: list[float] = field(default_factory=list)
    group_found: int = 0
    group_false: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    group_ms: float = 0.0


def _contains(box: FaceBox, x: float, y: float) -> bool:
    return box.x0 <= x <= box.x1 and box.y0 <= y <= box.y1


def fairface_study(root: Path, photos: Path, limit: int | None):
    """Runs every option on fairface_dev and the real photos.

    A FairFace photo counts as found when at least one box is reported, central when the best box
    contains the photo's centre (FairFace centres its one labelled face); other boxes are those
    that do not contain it.
    """
    with open(root / "labels.csv", newline="") as fh:
        files = [row["file"] for row in csv.DictReader(fh)]
    files = files[:limit] if limit else files
    dets = {name: YuNetDetector(yunet_model(), **kw) for name, kw in FAIRFACE_OPTIONS.items()}
    results = {name: OptionResult(name) for name in dets}
    # The faces (boxes) the landmark check's provenance table is measured on.
    faces: dict[str, list[FaceBox]] = {"fairface": [], "photos": [], "dog": []}
    for i, name in enumerate(tqdm(files, desc="fairface_dev", unit="photo", mininterval=10)):
        img = load_image(root / name)
        h, w = img.shape[:2]
        tight = img[round(h / 6) : round(5 * h / 6), round(w / 6) : round(5 * w / 6)]
        for opt, det in dets.items():
            res = results[opt]
            start = time.perf_counter()
            boxes = det.detect(img)
            res.ms.append((time.perf_counter() - start) * 1000)
            central = bool(boxes) and _contains(boxes[0], w / 2, h / 2)
            res.photos += 1
            res.found += bool(boxes)
            res.central += central
            res.other_boxes += sum(not _contains(b, w / 2, h / 2) for b in boxes)
            if i % TIGHT_EVERY == 0:
                res.tight += 1
                res.tight_found += bool(det.detect(tight))
            if opt == GEOMETRY_SOURCE:
                faces["fairface"] += [b for b in boxes if _contains(b, w / 2, h / 2)][:1]

    labels = read_labels(photos)
    images = {n: load_image(photos / n) for n in [*labels, *EXTRA_PHOTOS]}
    for opt, det in dets.items():
        res = results[opt]
        times = []
        for n, truth in labels.items():
            boxes = det.detect(images[n])
            a, _, c, assignment = match(boxes, truth)
            res.group_found += a
            res.group_false += c
            times.append(time_ms(det, images[n]))
            if opt == GEOMETRY_SOURCE:
                faces["photos"] += [b for b, m in zip(boxes, assignment, strict=True) if m >= 0]
        res.group_ms = float(np.median(times))
        res.counts = {n: len(det.detect(images[n])) for n in EXTRA_PHOTOS}
        if opt == GEOMETRY_SOURCE:
            for n in ("two_people.jpg", "astronaut.png"):
                faces["photos"] += det.detect(images[n])
    faces["dog"] = YuNetDetector(yunet_model(), **PLAIN).detect(images["no_faces_dogs.jpg"])
    return list(results.values()), faces


def write_fairface_csv(results: list[OptionResult], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["option", "photos", "found", "central", "other_boxes", "tight_photos",
             "tight_found", "ms_median", "group_found", "group_false", "two_people",
             "astronaut", "dogs", "group_ms"]
        )  # fmt: skip
        for r in results:
            c = r.counts
            writer.writerow(
                [r.name, r.photos, r.found, r.central, r.other_boxes, r.tight, r.tight_found,
                 f"{np.median(r.ms):.2f}", r.group_found, r.group_false, c["two_people.jpg"],
                 c["astronaut.png"], c["no_faces_dogs.jpg"], f"{r.group_ms:.2f}"]
            )  # fmt: skip


def fairface_markdown(
    results: list[OptionResult], faces: dict[str, list[FaceBox]], n_photos: int
) -> str:
    tight_n = results[0].tight
    lines = [
        f"{n_photos} fairface_dev photos (224×224, one face with a 0.25 margin); every "
        f"{TIGHT_EVERY}th ({tight_n}) also cut to its central two thirds, the face without the "
        'margin ("tight"). Found: at least one box; central: the best box contains the '
        "photo's centre, where FairFace's labelled face is; other boxes: boxes that do not. "
        "Group photos: the 43 labelled faces (found/43, false boxes); two people, astronaut, "
        "dogs: boxes reported (2, 1 and 0 are right). Times: median ms per `detect()` call, one "
        "OpenCV thread, on the FairFace photos and on the 9 group photos (500 px).",
        "",
        "| option | found | central | other boxes | tight: found | group photos | false "
        "| two people | astronaut | dogs | ms / FairFace photo | ms / group photo |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        c = r.counts
        lines.append(
            f"| {r.name} | {r.found / r.photos:.2%} | {r.central / r.photos:.2%} | "
            f"{r.other_boxes} | {r.tight_found / max(r.tight, 1):.1%} | {r.group_found}/43 | "
            f"{r.group_false} | {c['two_people.jpg']} | {c['astronaut.png']} | "
            f"{c['no_faces_dogs.jpg']} | {np.median(r.ms):.1f} | {r.group_ms:.1f} |"
        )
    ff, ph, dog = ([landmark_geometry(b) for b in faces[k]] for k in ("fairface", "photos", "dog"))
    dog_scores = ", ".join(f"{b.score:.3f}" for b in faces["dog"]) or "–"
    # measure: (lower limit, upper limit); None for a limit on the absolute value only
    limits = {
        "face_length": ("face_length_min", "face_length_max"),
        "nose_along": ("nose_along_min", "nose_along_max"),
        "nose_across": (None, "nose_across_max"),
        "eye_width": ("width_min", "width_max"),
        "eye_skew": (None, "skew_max"),
        "mouth_width": ("width_min", "width_max"),
        "mouth_skew": (None, "skew_max"),
    }
    lines += [
        "",
        "Landmark check: YuNet's five landmarks measured in the face's frame "
        "(`agefair.inference.detect.LandmarkGeometry`: along and across the axis from the eye "
        "midpoint to the mouth midpoint, in units of its length; the face length in box heights) "
        f'on the faces found by "{GEOMETRY_SOURCE}" without the check: {len(ff)} central '
        f"fairface_dev faces and {len(ph)} faces of the real photos (group photos, two people, "
        f"astronaut), against the dog's box (640 px, score {dog_scores}). Limits: "
        "`LANDMARK_LIMITS`; \\|x\\| is the absolute value.",
        "",
        "| measure | fairface_dev min | 0.1% | median | 99.9% | max | real photos | dog | limit |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, (lo, hi) in limits.items():
        signed = lo is not None

        def value(g: LandmarkGeometry, key: str = key, signed: bool = signed) -> float:
            return getattr(g, key) if signed else abs(getattr(g, key))

        q = np.percentile([value(g) for g in ff], [0, 0.1, 50, 99.9, 100])
        pv = [value(g) for g in ph]
        limit = (
            f"{LANDMARK_LIMITS[lo]}–{LANDMARK_LIMITS[hi]}" if signed else f"≤ {LANDMARK_LIMITS[hi]}"
        )
        cells = [key if signed else f"\\|{key}\\|", *(f"{v:.3f}" for v in q)]
        cells += [f"{min(pv):.3f}–{max(pv):.3f}", ", ".join(f"{value(g):.3f}" for g in dog), limit]
        lines.append("| " + " | ".join(cells) + " |")
    t0, k = LANDMARK_LIMITS["frontal_nose_min"], LANDMARK_LIMITS["frontal_nose_slope"]
    lines += [
        "",
        f"Frontal nose: `nose_along` must be at least {t0} − {k} × |`nose_across`|. Lowest "
        "`nose_along` by how far the nose lies off the axis:",
        "",
        "| \\|nose_across\\| | fairface_dev faces | lowest nose_along | 2nd lowest | real photos' "
        "lowest | limit there | dog |",
        "|---|---|---|---|---|---|---|",
    ]
    bins = [0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6]
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        sel = sorted(g.nose_along for g in ff if lo <= abs(g.nose_across) < hi)
        psel = [g.nose_along for g in ph if lo <= abs(g.nose_across) < hi]
        dsel = [f"{g.nose_along:.3f}" for g in dog if lo <= abs(g.nose_across) < hi]
        cells = [f"{lo:.2f}–{hi:.2f}", str(len(sel))]
        cells += [f"{v:.3f}" for v in sel[:2]] + ["–"] * (2 - len(sel[:2]))
        cells += [f"{min(psel):.3f}" if psel else "–", f"{t0 - k * hi:.3f}–{t0 - k * lo:.3f}"]
        cells += [", ".join(dsel) or "–"]
        lines.append("| " + " | ".join(cells) + " |")

    def rejected(key: str) -> int:
        return sum(landmark_problem(b) is not None for b in faces[key])

    lines += [
        "",
        f"The check rejects {rejected('fairface')} of the {len(ff)} fairface_dev faces, "
        f"{rejected('photos')} of the {len(ph)} real-photo faces and {rejected('dog')} of the "
        f"{len(dog)} dog box(es).",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------
def draw(images, labels, drawn, det_name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [*labels, *EXTRA_PHOTOS]
    cols = 4
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows))
    for ax, name in zip(axes.flat, names, strict=False):
        img = images[name].copy()
        thick = max(1, round(max(img.shape[:2]) / 250))
        for box in drawn[det_name][name]:
            p0, p1 = (round(box.x0), round(box.y0)), (round(box.x1), round(box.y1))
            cv2.rectangle(img, p0, p1, (0, 200, 0), thick + 1)
            for x, y in box.landmarks or ():
                cv2.circle(img, (round(x), round(y)), thick, (0, 200, 0), -1)
        # Labels on top and thinner, so both stay visible where they coincide.
        for lab in labels.get(name, []):
            p0, p1 = (round(lab.x0), round(lab.y0)), (round(lab.x1), round(lab.y1))
            cv2.rectangle(img, p0, p1, (255, 0, 0), max(1, thick - 1))
        ax.imshow(img)
        truth = labels.get(name)
        n_lab = len(truth) if truth is not None else EXTRA_PHOTOS[name]
        ax.set_title(f"{name}: {len(drawn[det_name][name])} found / {n_lab} faces", fontsize=9)
        ax.axis("off")
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    has_marks = any(b.landmarks for boxes in drawn[det_name].values() for b in boxes)
    what = "green = detected" + (" (dots: landmarks)" if has_marks else "")
    fig.suptitle(f"{det_name}: {what}, red = labelled face", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


# ------------------------------------------------------------------------------------------
# Crop calibration on UTKFace
# ------------------------------------------------------------------------------------------
def sample_utkface(archive: Path, n: int, dest: Path, seed: int = 0) -> list[Path]:
    """Extracts ``n`` random images in two streaming passes (random access into .tar.gz is slow)."""
    with tarfile.open(archive, "r:gz") as tf:
        names = [m.name for m in tf if m.isfile() and m.name.endswith(".jpg")]
    chosen = set(random.Random(seed).sample(sorted(names), n))
    paths = []
    with tarfile.open(archive, "r|gz") as tf:
        for member in tf:
            if member.name in chosen:
                target = dest / Path(member.name).name
                target.write_bytes(tf.extractfile(member).read())
                paths.append(target)
    return sorted(paths)


def square_iou(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    ax, ay, aside = a
    bx, by, bside = b
    iw = min(ax + aside, bx + bside) - max(ax, bx)
    ih = min(ay + aside, by + bside) - max(ay, by)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / (aside**2 + bside**2 - inter)


def draw_crops(crops: list[np.ndarray], det: FaceDetector, photos: Path, path: Path, pad: int):
    """UTKFace crops above crop_face's reproduction from a grey canvas, then real-photo crops."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [crops, []]
    for crop in crops:
        canvas = cv2.copyMakeBorder(crop, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128,) * 3)
        boxes = det.detect(canvas)
        rows[1].append(crop_face(canvas, boxes[0], out_size=200) if boxes else crop * 0)
    real = []
    for name in ("two_people.jpg", "astronaut.png", "2008_001322.jpg", "2008_007676.jpg"):
        img = load_image(photos / name)
        real += [crop_face(img, b, out_size=200) for b in det.detect(img)[:3]]
    rows.append(real[: len(crops)])
    titles = ["UTKFace crop", "crop_face (from canvas)", "crop_face on real photos"]
    cols = len(crops)
    fig, axes = plt.subplots(3, cols, figsize=(1.6 * cols, 5.4))
    for r, (row, title) in enumerate(zip(rows, titles, strict=True)):
        for c in range(cols):
            ax = axes[r, c]
            if c < len(row):
                ax.imshow(row[c])
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def calibrate(n: int, photos: Path, out: Path) -> str:
    archive = Path(
        os.environ.get("UTKFACE_ARCHIVE", REPO.parent / "shared" / "data" / "UTKFace.tar.gz")
    )
    # YuNet's own boxes (no border, no check): the calibration measures YuNet's box convention.
    det = YuNetDetector(yunet_model(), **PLAIN)
    pad = 100
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        files = sample_utkface(archive, n, Path(tmp))
        crops = [load_image(f) for f in files]
    for padding in ("grey", "replicate"):
        for crop in crops:
            size = crop.shape[0]
            if padding == "grey":
                canvas = cv2.copyMakeBorder(
                    crop, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128, 128, 128)
                )
            else:
                canvas = cv2.copyMakeBorder(crop, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            boxes = det.detect(canvas)
            centre = pad + size / 2
            if not boxes:
                records.append({"padding": padding, "found": 0})
                continue
            box = min(
                boxes, key=lambda b: (b.centre[0] - centre) ** 2 + (b.centre[1] - centre) ** 2
            )
            lx = float(np.mean([p[0] for p in box.landmarks]))
            ly = float(np.mean([p[1] for p in box.landmarks]))
            truth = (pad, pad, size)
            records.append(
                {
                    "padding": padding,
                    "found": 1,
                    "box_w_over_crop": box.width / size,
                    "box_h_over_crop": box.height / size,
                    "crop_over_box_w": size / box.width,
                    "crop_minus_box_cx": (centre - box.centre[0]) / box.width,
                    "crop_minus_box_cy": (centre - box.centre[1]) / box.width,
                    "crop_minus_lm_cx": (centre - lx) / box.width,
                    "crop_minus_lm_cy": (centre - ly) / box.width,
                    "iou_landmarks": square_iou(crop_square(box), truth),
                    "iou_box_only": square_iou(crop_square(box, use_landmarks=False), truth),
                }
            )
    draw_crops(crops[:8], det, photos, out / "crops.png", pad)
    # Where the landmark centroid sits in YuNet's box on real photos (full heads, real context).
    real = []
    det_all = YuNetDetector(yunet_model(), **PLAIN)
    for name in [*read_labels(photos), "two_people.jpg", "astronaut.png"]:
        for box in det_all.detect(load_image(photos / name)):
            ly = float(np.mean([p[1] for p in box.landmarks]))
            real.append(((ly - box.centre[1]) / box.width, box.height / box.width))
    real_arr = np.array(real)

    with open(out / "calibration.csv", "w", newline="") as fh:
        keys = sorted({k for r in records for k in r})
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(records)

    def stats(values: list[float]) -> str:
        q = np.percentile(values, [25, 50, 75])
        return f"{q[1]:.3f} ({q[0]:.3f}–{q[2]:.3f})"

    lines = [
        f"{n} random UTKFace crops (seed 0, 200×200) pasted in the middle of a 400×400 canvas, "
        "YuNet alone (`raw=True`: no border, no landmark check) at its defaults; box measures "
        "in units of the crop, offsets in box widths (median, quartiles in brackets; y grows "
        "downwards).",
        "",
        "| measure | grey padding | replicated-border padding |",
        "|---|---|---|",
    ]
    by_pad = {
        p: [r for r in records if r["padding"] == p and r["found"]] for p in ("grey", "replicate")
    }
    found = {p: sum(r["found"] for r in records if r["padding"] == p) for p in by_pad}
    lines.append(f"| faces found | {found['grey']}/{n} | {found['replicate']}/{n} |")
    for key, label in [
        ("box_w_over_crop", "box width / crop side"),
        ("box_h_over_crop", "box height / crop side"),
        ("crop_over_box_w", "crop side / box width"),
        ("crop_minus_box_cx", "crop centre − box centre, x"),
        ("crop_minus_box_cy", "crop centre − box centre, y"),
        ("crop_minus_lm_cx", "crop centre − landmark centroid, x"),
        ("crop_minus_lm_cy", "crop centre − landmark centroid, y"),
        ("iou_landmarks", "IoU of `crop_face`'s square with the true crop, landmark-centred"),
        ("iou_box_only", "IoU of `crop_face`'s square with the true crop, box-centred"),
    ]:
        cells = [stats([r[key] for r in by_pad[p]]) for p in ("grey", "replicate")]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    lines += [
        "",
        f"On the real photos ({len(real_arr)} YuNet faces in the group photos, two_people and "
        "astronaut) the landmark centroid lies "
        f"{stats(list(real_arr[:, 0]))} box widths below the box centre and boxes are "
        f"{stats(list(real_arr[:, 1]))} times as tall as wide.",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------
def results_markdown(rows: list[Row], small, dogs, weakest: float) -> str:
    lines = [
        f"Machine: {os.cpu_count()} CPU cores, no GPU, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, OpenCV {cv2.__version__} on one thread. "
        f"Detectors: `yunet` is the default (border and landmark check), `yunet-plain` YuNet "
        f"alone (`raw=True`), `dlib-hog` dlib's HOG. Times: median of {REPEATS} runs after a "
        "warm-up; for the group photos the median over the 9 photos.",
        "",
        "| detector | photos | faces | found | missed | false boxes | recall | ms / image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        recall = f"{r.recall:.2f}" if r.faces else "–"
        lines.append(
            f"| {r.detector} | {r.photos} | {r.faces} | {r.found} | {r.missed} | "
            f"{r.false_boxes} | {recall} | {r.ms_per_image:.1f} |"
        )
    lines += [
        "",
        "Small photos: the 9 group photos shrunk by a factor, YuNet (with its border and "
        "landmark check) with and without enlarging photos at most half of `max_side` (640) on "
        "the longer side:",
        "",
        "| shrink factor | longest side | face width | YuNet | found | false boxes |",
        "|---|---|---|---|---|---|",
    ]
    for factor, longer, mode, tp, total, fp in small:
        lines.append(
            f"| {factor} | {longer} px | ~{37 * factor:.0f} px | {mode} | {tp}/{total} | {fp} |"
        )
    lines += [
        "",
        "Dog photo: YuNet's best score at several resolutions (the photo is 900×916; the default "
        f"`max_side=640` sees it at 640), what the landmark check says about that box, and how "
        f"many boxes the default detector (border and check) reports when it sees the photo at "
        f"that resolution. The weakest real face in the group photos scores {weakest:.3f}; the "
        "threshold is 0.8.",
        "",
        "| longer side | best score on the dogs | landmark check on that box | default detector |",
        "|---|---|---|---|",
    ]
    lines += [f"| {size} | {score:.3f} | {problem} | {n} |" for size, score, problem, n in dogs]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=default_photos())
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument(
        "--calibrate", type=int, default=0, metavar="N", help="UTKFace crops to calibrate on"
    )
    parser.add_argument(
        "--fairface",
        type=Path,
        nargs="?",
        const=default_fairface(),
        metavar="DIR",
        help="compare the border and landmark-check options on fairface_dev (default folder: "
        "$AGEFAIR_FAIRFACE, else ../shared/data/fairface_dev)",
    )
    parser.add_argument(
        "--fairface-limit", type=int, metavar="N", help="only the first N fairface_dev photos"
    )
    args = parser.parse_args(argv)
    if args.fairface is not None and not (args.fairface / "labels.csv").exists():
        parser.error(f"no labels.csv in {args.fairface}: pass --fairface DIR")
    cv2.setNumThreads(1)  # times on one thread: the machine is shared, figures compare better
    if not (args.photos / LABEL_FILES[0]).exists():
        parser.error(f"no labelled photos in {args.photos}: pass --photos or set AGEFAIR_PHOTOS")
    args.out.mkdir(parents=True, exist_ok=True)

    detectors = make_detectors()
    rows, images, labels, drawn = benchmark(args.photos, detectors)
    with open(args.out / "results.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["detector", "photos", "faces", "found", "missed", "false_boxes", "recall", "ms"]
        )
        for r in rows:
            writer.writerow(
                [r.detector, r.photos, r.faces, r.found, r.missed, r.false_boxes,
                 f"{r.recall:.4f}", f"{r.ms_per_image:.2f}"]
            )  # fmt: skip
    for name in detectors:
        draw(images, labels, drawn, name, args.out / f"detections_{name}.png")

    weakest = min(
        b.score
        for name, truth in labels.items()
        for b, m in zip(drawn["yunet"][name], match(drawn["yunet"][name], truth)[3], strict=True)
        if m >= 0
    )
    text = results_markdown(rows, small_photo_rows(args.photos), dog_rows(args.photos), weakest)
    readme = args.out / "README.md"
    current = readme.read_text() if readme.exists() else "# Face detection\n"
    current = with_section(current, "results", text)
    if args.calibrate:
        current = with_section(
            current, "calibration", calibrate(args.calibrate, args.photos, args.out)
        )
    if args.fairface is not None:
        results, faces = fairface_study(args.fairface, args.photos, args.fairface_limit)
        write_fairface_csv(results, args.out / "fairface.csv")
        n_photos = results[0].photos
        ff_text = fairface_markdown(results, faces, n_photos)
        current = with_section(current, "fairface", ff_text)
        text += "\n\n" + ff_text
    readme.write_text(current)
    print(text)


if __name__ == "__main__":
    main()
