"""The bare-PyTorch anchor of the best-CPU targets, trained and tested on agefair's own split.

    python experiments/best_cpu/bare_script.py [--seed 0] [--epochs 24] [--threads 2]
    python experiments/best_cpu/bare_script.py --width 48 --stem-width 24   # agefair's network

The recipe the targets quote as "a plain 100-line script": a 1.2 M-parameter CNN at 64 px with a
stride-2 stem, channels-last; an age head that is a softmax over 0-116 trained against a Gaussian
label distribution plus a small L1 term on its expectation; gender and race heads; AdamW with a
one-cycle schedule; flips and small shifts; 24 epochs; flip test-time augmentation; the last
epoch's weights. Only the data comes from agefair (the same decoded 64-px pixels and the same
seeded 80/10/10 split as `make train`), so the comparison is of the recipes alone. Writes
``predictions_{val,test}.csv``, ``results.csv`` and ``metrics.json`` in agefair's run layout to
``outputs/bare_script/bare_seed<seed>`` for this folder's run.py.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from agefair.data.datamodule import UTKFaceDataModule

AGES = torch.arange(117, dtype=torch.float32)


def conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class Net(nn.Module):
    def __init__(self, width: int = 64, stem_width: int = 32) -> None:
        super().__init__()
        widths = [stem_width, width, 2 * width, 4 * width]
        layers = [conv(3, widths[0], 2)]  # 64 -> 32 px at once: the later layers are cheap
        for cin, cout in zip(widths, widths[1:], strict=False):
            layers += [conv(cin, cout, 2), conv(cout, cout)]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.age, self.gender, self.race = (nn.Linear(widths[-1], n) for n in (117, 2, 5))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.age(h), self.gender(h), self.race(h)


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 N x H x W x 3 -> normalised float N x 3 x H x W, channels-last in memory."""
    x = images.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    return x.contiguous(memory_format=torch.channels_last)


def augment(x: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """A random horizontal flip and a shift of up to ``pad`` pixels per image."""
    flip = torch.rand(len(x)) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (pad,) * 4, mode="reflect")
    dx, dy = torch.randint(0, 2 * pad + 1, (2, len(x))).tolist()
    side = x.shape[-1]
    out = torch.stack(
        [
            padded[i, :, b : b + side, a : a + side]
            for i, (a, b) in enumerate(zip(dx, dy, strict=True))
        ]
    )
    return out.contiguous(memory_format=torch.channels_last)


def loss_fn(out, age, gender, race, sigma: float = 2.0, l1: float = 0.05) -> torch.Tensor:
    age_logits, gender_logits, race_logits = out
    target = torch.exp(-0.5 * ((AGES[None] - age[:, None].float()) / sigma) ** 2)
    target = target / target.sum(1, keepdim=True)
    log_p = F.log_softmax(age_logits, 1)
    expected = (log_p.exp() * AGES).sum(1)
    age_loss = -(target * log_p).sum(1).mean() + l1 * (expected - age).abs().mean()
    return age_loss + F.cross_entropy(gender_logits, gender) + F.cross_entropy(race_logits, race)


@torch.no_grad()
def predict(model: Net, images: torch.Tensor, batch: int = 256) -> pd.DataFrame:
    model.eval()
    rows = []
    for i in range(0, len(images), batch):
        x = to_input(images[i : i + batch])
        outs = [model(x), model(x.flip(3))]  # flip test-time augmentation: average probabilities
        p_age, p_gender, p_race = (sum(o[k].softmax(1) for o in outs) / 2 for k in range(3))
        rows.append(
            pd.DataFrame(
                {
                    "age_pred": (p_age * AGES).sum(1).numpy(),
                    "gender_pred": p_gender.argmax(1).numpy(),
                    "race_pred": p_race.argmax(1).numpy(),
                    "gender_p": p_gender.max(1).values.numpy(),
                    "race_p": p_race.max(1).values.numpy(),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--width", type=int, default=64, help="first stage's channels")
    parser.add_argument("--stem-width", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--archive", default=os.environ.get("UTKFACE_ARCHIVE", "data/UTKFace.tar.gz")
    )
    parser.add_argument("--data-dir", default=os.environ.get("AGEFAIR_DATA_DIR", "data"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    name = f"bare_seed{args.seed}" if args.width == 64 else f"bare_w{args.width}_seed{args.seed}"
    out = args.out or Path("outputs/bare_script") / name
    out.mkdir(parents=True, exist_ok=True)

    data = UTKFaceDataModule(archive=args.archive, data_dir=args.data_dir)
    prepared = data.prepare(report=True)
    pixels = prepared.decoded.images  # memory-mapped; indexing below copies each split to RAM
    split = {
        s: prepared.manifest[prepared.manifest["split"] == s] for s in ("train", "val", "test")
    }
    images = {s: torch.from_numpy(pixels[t["row"].to_numpy()]) for s, t in split.items()}
    labels = {
        s: torch.from_numpy(t[["age", "gender", "race"]].to_numpy(np.int64))
        for s, t in split.items()
    }

    model = Net(args.width, args.stem_width).to(memory_format=torch.channels_last)
    steps = len(images["train"]) // args.batch
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.epochs * steps)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(images["train"]))
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{args.epochs}", leave=False)
        for step in bar:
            idx = order[step * args.batch : (step + 1) * args.batch]
            loss = loss_fn(model(augment(to_input(images["train"][idx]))), *labels["train"][idx].T)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    train_time = time.perf_counter() - start

    from agefair.metrics.groups import headline_metrics  # scored as agefair scores its runs

    for s in ("val", "test"):
        preds = pd.concat(
            [split[s][["age", "gender", "race"]].reset_index(drop=True), predict(model, images[s])],
            axis=1,
        )
        preds.to_csv(out / f"predictions_{s}.csv", index=False)
        m = headline_metrics(preds)
        print(
            f"{s}: age MAE {m['age_mae']:.2f}, gender {100 * m['gender_acc']:.1f}%, "
            f"race {100 * m['race_acc']:.1f}%"
        )
    params = sum(p.numel() for p in model.parameters())
    row = {
        "backbone": "bare script" if args.width == 64 else f"bare script, width {args.width}",
        "pretrained": False,
        "epochs": args.epochs,
        "width": args.width,
        "seed": args.seed,
        "train_time_s": round(train_time),
        "params": params,
        "threads": torch.get_num_threads(),
    }
    pd.DataFrame([row]).to_csv(out / "results.csv", index=False)
    baseline = (split["test"]["age"] - split["train"]["age"].mean()).abs().mean()
    (out / "metrics.json").write_text(json.dumps({"baseline_age_mae_train_mean": float(baseline)}))
    print(f"{params} parameters, {train_time:.0f} s training; wrote {out}")


if __name__ == "__main__":
    main()
