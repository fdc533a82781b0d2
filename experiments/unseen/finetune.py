"""Does fine-tuning the face-pretrained network's last blocks carry further to unseen faces?

    python experiments/unseen/finetune.py --unseen ../shared/data/fairface_dev/labels.csv

The default recipe reads gender and race from dlib's face-recognition ResNet kept frozen. Its
backward pass over the whole network is too slow for two cores, but the last blocks work on
small maps (256 x 4 x 4 and less at 150 px): the activations entering them are computed once per
face (the face and its mirror for training; :data:`CUTS`) and only the blocks after the cut and
two linear heads (gender, race) learn, on UTKFace's training split, with the epoch chosen by
validation accuracy (gender and race averaged). The same procedure with nothing after the cut
fine-tuned is the frozen reference. Each arm is scored on UTKFace's test split and on the unseen
faces through the app's path (detector, framing; a photo without a found face counts as wrong).
Writes ``finetune.csv`` beside this file (the rows of the seeds run replace theirs, others are
kept) and its table into the README.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from probe import SIZE, arguments, faces_at, unseen_figures
from run import README, cells
from torch import nn
from tqdm.auto import tqdm

from agefair.data.other_faces import read_labels_csv
from agefair.data.transforms import build_transform
from agefair.metrics.groups import headline_metrics
from agefair.models.dlib_resnet import DlibResnetBackbone
from agefair.reporting.tables import replace_section, to_markdown

HERE = Path(__file__).resolve().parent
#: Blocks before the cut stay frozen (their output is computed once); 14 is the whole trunk.
CUTS = {"frozen (heads only)": 14, "last block fine-tuned": 13, "last four blocks fine-tuned": 10}
ARM_ORDER = {arm: i for i, arm in enumerate(CUTS)}
EPOCHS = 8
BATCH = 128
TASKS = (("gender", 2), ("race", 5))


@torch.no_grad()
def activations(net: DlibResnetBackbone, cut: int, crops, transform, mirror=False) -> torch.Tensor:
    """The trunk's output before block ``cut`` for each uint8 crop (mirrored if asked), float16."""
    out = []
    for start in tqdm(range(0, len(crops), BATCH), desc="frozen blocks", leave=False):
        x = torch.stack([transform(np.asarray(c)) for c in crops[start : start + BATCH]])
        if mirror:
            x = x.flip(-1)
        out.append(net.trunk.blocks[:cut](net.trunk.stem(x)).half())
    return torch.cat(out)


@torch.no_grad()
def onwards(net: DlibResnetBackbone, start: int, cut: int, acts: torch.Tensor) -> torch.Tensor:
    """Activations before block ``start`` carried through the frozen blocks up to ``cut``."""
    blocks = net.trunk.blocks[start:cut]
    return torch.cat([blocks(acts[i : i + 512].float()).half() for i in range(0, len(acts), 512)])


class Tail(nn.Module):
    """The blocks after the cut (copied from the pretrained network), its pool, and one linear
    head per task."""

    def __init__(self, net: DlibResnetBackbone, cut: int) -> None:
        super().__init__()
        self.blocks = copy.deepcopy(net.trunk.blocks[cut:])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.heads = nn.ModuleDict({t: nn.Linear(net.trunk.out_channels, k) for t, k in TASKS})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.pool(self.blocks(x.float())).flatten(1)
        return {t: head(z) for t, head in self.heads.items()}


@torch.no_grad()
def predict(tail: Tail, x: torch.Tensor) -> dict[str, np.ndarray]:
    tail.eval()
    outs = [tail(x[i : i + 512]) for i in range(0, len(x), 512)]
    return {t: torch.cat([o[t] for o in outs]).argmax(1).numpy() for t, _ in TASKS}


def train_arm(net, cut, acts, labels, seed: int) -> tuple[Tail, int]:
    """Fits the tail on the training activations; returns it at its best validation epoch."""
    torch.manual_seed(seed)
    tail = Tail(net, cut)
    params = [{"params": tail.heads.parameters(), "lr": 1e-3}]
    if cut < len(net.trunk.blocks):  # pretrained blocks: a gentler step
        params.append({"params": tail.blocks.parameters(), "lr": 1e-4})
    opt = torch.optim.AdamW(params, weight_decay=1e-4)
    x, y = acts["train"], {t: torch.as_tensor(labels["train"][t].to_numpy()) for t, _ in TASKS}
    y = {t: torch.cat([v, v]) for t, v in y.items()}  # the face and its mirror
    best, best_state, best_epoch = -1.0, None, 0
    for epoch in range(EPOCHS):
        tail.train()
        order = torch.randperm(len(x))
        for start in tqdm(range(0, len(x), BATCH), desc=f"cut {cut} epoch {epoch}", leave=False):
            idx = order[start : start + BATCH]
            out = tail(x[idx])
            loss = sum(nn.functional.cross_entropy(out[t], y[t][idx]) for t, _ in TASKS)
            opt.zero_grad()
            loss.backward()
            opt.step()
        pred = predict(tail, acts["val"])
        score = np.mean([(pred[t] == labels["val"][t].to_numpy()).mean() for t, _ in TASKS])
        if score > best:
            best, best_state, best_epoch = score, copy.deepcopy(tail.state_dict()), epoch + 1
    tail.load_state_dict(best_state)
    return tail, best_epoch


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args(argv)
    start = time.perf_counter()
    net = DlibResnetBackbone(features="pooled").eval()
    norm = net.input_config
    transform = build_transform("eval", SIZE, mean=norm.mean, std=norm.std)
    table = read_labels_csv(args.unseen)
    dm, crops, found = faces_at(net, norm.framing, args, table)
    labels = {s: dm.split_table(s) for s in ("train", "val", "test")}

    # The frozen blocks run once, up to the earliest cut; each arm carries them on to its own.
    first = min(CUTS.values())
    base = {s: activations(net, first, c, transform) for s, c in crops.items()}
    base["train"] = torch.cat([base["train"], activations(net, first, crops["train"],
                                                          transform, mirror=True)])  # fmt: skip
    rows = []
    for arm, cut in CUTS.items():
        acts = {s: onwards(net, first, cut, a) for s, a in base.items()}
        for seed in args.seeds:
            tail, epoch = train_arm(net, cut, acts, labels, seed)
            test = predict(tail, acts["test"])
            unseen = predict(tail, acts["unseen"])
            t = headline_metrics(
                labels["test"].assign(age_pred=labels["test"]["age"], gender_pred=test["gender"],
                                      race_pred=test["race"])
            )  # fmt: skip
            trainable = sum(p.numel() for p in tail.blocks.parameters())
            rows.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "trained parameters in the network": trainable,
                    "best epoch": f"{epoch}/{EPOCHS}",
                    "test/gender_acc": t["gender_acc"],
                    "test/race_acc": t["race_acc"],
                    **unseen_figures(table, found, unseen["gender"], unseen["race"]),
                }
            )
            print(rows[-1], f"{time.perf_counter() - start:.0f} s", flush=True)
    out = pd.DataFrame(rows)
    path = HERE / "finetune.csv"
    if path.is_file():  # the other seeds' rows stay
        kept = pd.read_csv(path)
        out = pd.concat([kept[~kept["seed"].isin(args.seeds)], out])
    out = out.sort_values(["arm", "seed"], key=lambda c: c.map(ARM_ORDER) if c.name == "arm" else c)
    out.to_csv(path, index=False)
    replace_section(README, "finetune", finetune_table(out))
    print(out.to_string())
    print(f"{time.perf_counter() - start:.0f} s")


def finetune_table(frame: pd.DataFrame) -> str:
    """The arms in the lever table's columns (age is not learned here)."""
    keep = ("arm", "seed", "trained parameters in the network", "best epoch")
    rows = [
        {**{k: r[k] for k in keep}, **{k: v for k, v in cells(r).items() if "age" not in k}}
        for _, r in frame.iterrows()
    ]
    return to_markdown(pd.DataFrame(rows))


if __name__ == "__main__":
    main()
