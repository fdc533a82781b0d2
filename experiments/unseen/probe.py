"""What frozen face-pretrained features alone carry: linear read-outs on UTKFace and unseen faces.

    python experiments/unseen/probe.py --unseen ../shared/data/fairface_dev/labels.csv

dlib's face-recognition ResNet (agefair's ``dlib_resnet`` backbone, frozen) embeds every face of
agefair's UTKFace split (decoded at 150 px) and every unseen photo's face as the app's path
cuts it out (detector, framing). Logistic regressions (gender, race) and a ridge regression
(age) are fitted on the training split's features, their L2 strength chosen on the validation
split, and scored on UTKFace's test split and on the unseen faces (a photo without a found face
counts as wrong). Read-outs of three kinds of features: the pooled ones, the 128-D embedding,
and ``depths`` (the pooled ones beside earlier blocks', :data:`DEPTH_POOLS`). Writes
``probe.csv`` beside this file and its table into the README.

``--views N`` adds a row whose read-outs learn from each training face's plain features and
those of N views augmented like other people's photos (:data:`SHIFT_AUGMENT`: detector-crop
jitter, lighting, grey, blur, small faces, JPEG): does augmentation help the frozen branch,
which in training sees every face once, unaugmented?
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from run import README, probe_table  # this folder's report script, which reads what this writes
from tqdm.auto import tqdm

from agefair.data.datamodule import UTKFaceDataModule
from agefair.data.other_faces import read_labels_csv
from agefair.data.transforms import build_transform
from agefair.evaluation.unseen import MISSED, extract_labelled_faces
from agefair.inference.detect import create_detector
from agefair.inference.detection_cache import CachedDetector
from agefair.inference.predictor import Predictor
from agefair.metrics.age_groups import age_group_distance, parse_age_groups
from agefair.metrics.groups import headline_metrics
from agefair.models.dlib_resnet import DlibResnetBackbone
from agefair.reporting.tables import replace_section

HERE = Path(__file__).resolve().parent
SIZE = 150
L2 = (1e-4, 1e-3, 1e-2, 1e-1)
#: The ``train`` preset's settings for ``--views``: the ways a detected face in someone's photo
#: differs from a UTKFace crop (framing jitter, lighting, grey, blur, a small face, JPEG).
SHIFT_AUGMENT = {
    "shift": 0.06,
    "scale": 0.1,
    "rotate": 12.0,
    "brightness_contrast": 0.3,
    "grayscale": 0.2,
    "blur": 0.3,
    "downscale": 0.3,
    "jpeg": 0.5,
}


#: The blocks whose outputs the ``depths`` features pool besides the last (128 channels on 8 x 8
#: maps, pooled to 2 x 2 to keep where on the face a feature lies; 256 on 4 x 4, pooled whole).
DEPTH_POOLS = {9: 2, 12: 1}


@torch.no_grad()
def embed(net: DlibResnetBackbone, crops, transform) -> dict[str, np.ndarray]:
    """Pooled (256) and embedding (128) features of uint8 crops (one view each), and ``depths``:
    the pooled features beside earlier blocks' (:data:`DEPTH_POOLS`, 1024 in all), which an
    identity network may not have trained to ignore (hair, skin, make-up). In float32: CPUs
    without native bfloat16 run autocast about 20x slower."""
    out: dict[str, list[np.ndarray]] = {"pooled": [], "embedding": [], "depths": []}
    for start in tqdm(range(0, len(crops), 128), desc="dlib features"):
        x = torch.stack([transform(np.asarray(c)) for c in crops[start : start + 128]])
        h, earlier = net.trunk.stem(x), []
        for i, block in enumerate(net.trunk.blocks):
            h = block(h)
            if i in DEPTH_POOLS:
                earlier.append(
                    torch.nn.functional.adaptive_avg_pool2d(h, DEPTH_POOLS[i]).flatten(1)
                )
        p = net.pool(h).flatten(1)
        out["pooled"].append(p.numpy())
        out["embedding"].append(net.fc(p).numpy())
        out["depths"].append(torch.cat([*earlier, p], 1).numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def fit_softmax(x: np.ndarray, y: np.ndarray, l2: float, classes: int) -> torch.nn.Linear:
    """Multinomial logistic regression by L-BFGS (full batch)."""
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    lin = torch.nn.Linear(x.shape[1], classes)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(xt), yt) + l2 * lin.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lin


def fit_ridge(x: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    xa = np.hstack([x, np.ones((len(x), 1))])
    reg = l2 * len(x) * np.eye(xa.shape[1])
    reg[-1, -1] = 0
    return np.linalg.solve(xa.T @ xa + reg, xa.T @ y)


def ridge_predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((len(x), 1))]) @ w


def arguments(doc: str) -> argparse.ArgumentParser:
    """The arguments this folder's frozen-network scripts share: where the faces are."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--unseen", type=Path, required=True, help="labels.csv of unseen faces")
    parser.add_argument(
        "--archive", default=os.environ.get("UTKFACE_ARCHIVE", "data/UTKFace.tar.gz")
    )
    parser.add_argument("--data-dir", default="data")
    return parser


def faces_at(
    net: DlibResnetBackbone, framing: float, args: argparse.Namespace, table: pd.DataFrame
):
    """Every UTKFace split's faces and every unseen photo's face as the app's path cuts it out
    (uint8 crops at :data:`SIZE`), cut to ``framing``; ``table`` lists the unseen photos.

    Returns:
        The datamodule, the crops of each split (``train``, ``val``, ``test``, ``unseen``; the
        unseen ones of the photos with a found face), and which unseen photos had one.
    """
    dm = UTKFaceDataModule(
        archive=args.archive, data_dir=args.data_dir, img_size=SIZE, framing=framing
    )
    dm.prepare_data()
    dm.setup("fit")
    images = dm.prepared.decoded.images
    crops = {s: [images[r] for r in t["row"]] for s, t in splits(dm)}
    norm = net.input_config
    detector = CachedDetector(create_detector("yunet"), Path(args.data_dir) / "detections")
    predictor = Predictor(
        _Holder(net), detector=detector, img_size=SIZE, mean=norm.mean, std=norm.std,
        framing=framing,
    )  # fmt: skip
    crops["unseen"], found, _ = extract_labelled_faces(
        predictor, args.unseen.parent, list(table["file"])
    )
    detector.save()
    return dm, crops, found


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__)
    parser.add_argument(
        "--views", type=int, default=0, help="augmented views per training face (extra row)"
    )
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    start = time.perf_counter()
    net = DlibResnetBackbone(features="embedding").eval()  # its pool gives the pooled ones
    norm = net.input_config
    transform = build_transform("eval", SIZE, mean=norm.mean, std=norm.std)

    table = read_labels_csv(args.unseen)
    lo, hi = parse_age_groups(table["age_group"].astype(str))

    def features_at(framing: float):
        """Every UTKFace split's and every unseen face's features, cut to ``framing``."""
        dm, crops, found = faces_at(net, framing, args, table)
        unseen = embed(net, crops.pop("unseen"), transform)
        return {s: embed(net, c, transform) for s, c in crops.items()}, unseen, found, dm

    augment = build_transform("train", SIZE, **SHIFT_AUGMENT, seed=0, mean=norm.mean, std=norm.std)

    rows = []
    # dlib's own chip framing (the backbone's), then UTKFace's: what the framing buys.
    for framing, kinds in ((norm.framing, ("pooled", "embedding", "depths")), (1.0, ("pooled",))):
        feats, unseen, found, dm = features_at(framing)
        split_tables = dict(splits(dm))
        for kind in kinds:
            rows.append(
                readouts(feats, unseen, found, kind, split_tables, table, (lo, hi))
                | {"features": f"dlib_resnet {kind} ({feats['train'][kind].shape[1]}), frozen"
                   f", {'UTKFace' if framing == 1 else 'dlib chip'} framing (x{framing:g})"}
            )  # fmt: skip
        if framing == norm.framing and args.views:
            train = split_tables["train"]
            images = dm.prepared.decoded.images
            views = [feats["train"]] + [
                embed(net, [images[r] for r in train["row"]], augment) for _ in range(args.views)
            ]
            stacked = {k: np.concatenate([v[k] for v in views]) for k in views[0]}
            rows.append(
                readouts(
                    feats | {"train": stacked}, unseen, found, "pooled",
                    split_tables | {"train": pd.concat([train] * len(views))}, table, (lo, hi),
                )
                | {"features": f"dlib_resnet pooled, frozen, dlib chip framing, read-outs "
                   f"learned from the plain face and {args.views} augmented views"}
            )  # fmt: skip
    out = pd.DataFrame(rows)
    out = out[["features", *[c for c in out.columns if c != "features"]]]
    out.to_csv(HERE / "probe.csv", index=False)
    replace_section(README, "probe", probe_table())
    print(out.to_string())
    print(f"{time.perf_counter() - start:.0f} s")


def splits(dm: UTKFaceDataModule):
    return [(s, dm.split_table(s)) for s in ("train", "val", "test")]


def readouts(feats, unseen, found, kind, splits, table, age_groups) -> dict:
    """Linear read-outs of one kind of features, fitted on UTKFace's training split (L2 chosen
    on its validation split), scored on its test split and on the unseen faces."""
    lo, hi = age_groups
    mu = feats["train"][kind].mean(0)
    sd = feats["train"][kind].std(0) + 1e-6
    z = {s: ((f[kind] - mu) / sd).astype(np.float32) for s, f in feats.items()}
    zu = ((unseen[kind] - mu) / sd).astype(np.float32)
    preds = {}
    for task, classes in (("gender", 2), ("race", 5)):
        y = splits["train"][task].to_numpy()
        best = max(
            (fit_softmax(z["train"], y, l2, classes) for l2 in L2),
            key=lambda m: (
                m(torch.as_tensor(z["val"])).argmax(1).numpy() == splits["val"][task].to_numpy()
            ).mean(),  # fmt: skip
        )
        with torch.no_grad():
            preds[task] = {
                "test": best(torch.as_tensor(z["test"])).argmax(1).numpy(),
                "unseen": best(torch.as_tensor(zu)).argmax(1).numpy(),
            }
    ages = splits["train"]["age"].to_numpy(float)
    w = min(
        (fit_ridge(z["train"], ages, l2) for l2 in L2),
        key=lambda w: np.abs(ridge_predict(w, z["val"]) - splits["val"]["age"]).mean(),
    )
    test = splits["test"].assign(
        age_pred=np.clip(ridge_predict(w, z["test"]), 0, 116),
        gender_pred=preds["gender"]["test"],
        race_pred=preds["race"]["test"],
    )
    t = headline_metrics(test)
    age = np.full(len(table), np.nan)
    age[found] = np.clip(ridge_predict(w, zu), 0, 116)
    return {
        "test/age_mae": t["age_mae"],
        "test/gender_acc": t["gender_acc"],
        "test/race_acc": t["race_acc"],
        **unseen_figures(table, found, preds["gender"]["unseen"], preds["race"]["unseen"]),
        "unseen/age_group_acc": float(np.mean(age_group_distance(lo, hi, age) == 0)),
    }


def unseen_figures(
    table: pd.DataFrame, found: np.ndarray, gender: np.ndarray, race: np.ndarray
) -> dict[str, float]:
    """Gender and race figures on the unseen photos from the predictions for those with a found
    face; a photo without one counts as wrong."""
    full = {k: np.full(len(table), MISSED) for k in ("gender", "race")}
    full["gender"][found], full["race"][found] = gender, race
    u = headline_metrics(
        table.assign(age=0, age_pred=0, gender_pred=full["gender"], race_pred=full["race"])
    )
    hits = full["gender"] == table["gender"].to_numpy()
    races = table["race"].to_numpy()
    worst = min(hits[races == r].mean() for r in np.unique(races))
    return {
        "unseen/gender_acc": u["gender_acc"],
        "unseen/race_acc": u["race_acc"],
        "unseen/race_acc_balanced": u["race_acc_balanced"],
        "unseen/race_recall_Others": u["race_recall_Others"],
        "unseen/worst_race_gender_acc": float(worst),
        "unseen/missed": int((~found).sum()),
        "unseen/n": len(table),
    }


class _Holder(torch.nn.Module):
    """The smallest system the predictor takes: only its detect-and-crop path is used here."""

    def __init__(self, backbone: DlibResnetBackbone) -> None:
        super().__init__()
        self.backbone = backbone
        self.input_config = backbone.input_config

    def setup(self, stage: str) -> None:
        pass


if __name__ == "__main__":
    main()
