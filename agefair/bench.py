"""Throughput of the training pipeline, measured in one run as ratios against the bare model step.

    python -m agefair.bench                      # the default experiment's model and data
    python -m agefair.bench backbone=resnet18    # any training override

Measures images/second of (a) decoding JPEGs + augmentation every time, (b) augmentation from the
decoded cache, (c) the bare train step of the model on ready-made tensors (the ceiling), (d) the
full Lightning training loop, and inference at batch 1 and 64 (one forward pass, and the
system's prediction with its test-time views, in torch and as the exported ONNX graph on ONNX
Runtime, side by side); and, for a 1-megapixel photo with one face, the time of each prediction
stage and of the whole request through the web server, on each runtime.
Figures move by +-20% between runs on a shared machine, so the ratios (b)/(c) and (d)/(c), taken
in one run, are what to compare; (c) and (d) are measured in alternating blocks (``bench.repeats``
of each) and reported as medians, so a change in the machine's load hits both. Writes
``outputs/bench/data.json``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import hydra
import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import WeightAveraging

from agefair.config import CONF_DIR
from agefair.data.cache import decode_image
from agefair.inference.exporting import export_onnx
from agefair.inference.predictor import Predictor
from agefair.inference.runtimes import OnnxRuntime
from agefair.training.build import build_datamodule, build_system
from agefair.training.complexity import measure_complexity

log = logging.getLogger("agefair.bench")


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1)


def bench_decode(dm, n: int) -> float:
    """(a) JPEG decode at full size + resize to the cache size + train augmentation, one core."""
    prepared = dm.prepared
    files = prepared.manifest["file"].to_numpy()[:n]
    transform = dm.transform("train")
    start = time.perf_counter()
    for f in files:
        transform(decode_image(prepared.image_root / f, dm.cache_size))
    return _rate(len(files), time.perf_counter() - start)


def bench_cached(dm, n: int) -> float:
    """(b) train augmentation from the memory-mapped cache, one core."""
    ds = dm.datasets["train"]
    n = min(n, len(ds))
    start = time.perf_counter()
    for i in range(n):
        ds[i]
    return _rate(n, time.perf_counter() - start)


def _train_batch(dm) -> dict[str, torch.Tensor]:
    return next(iter(dm.train_dataloader()))


def bench_model_step(model, batch: dict, steps: int, warmup: int, precision: str) -> float:
    """(c) forward, loss, backward and optimizer step on one ready-made batch: the ceiling."""
    model.train()
    model.setup("fit")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = model._prepare(batch["image"])
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision.startswith("bf16"))

    def step() -> None:
        with autocast:
            out = model(images)
            loss = model.compute_loss(out, batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return _rate(steps * len(images), time.perf_counter() - start)


@torch.no_grad()
def bench_predict(
    infer: Callable[[torch.Tensor], Any],
    img_size: int,
    batch_size: int,
    repeats: int,
    warmup: int = 3,
) -> float:
    """Images/s of a prediction function (a system's ``infer`` or an exported model's runtime),
    the system's test-time views included, as tests and the app run it."""
    images = torch.rand(batch_size, 3, img_size, img_size)
    for _ in range(warmup):
        infer(images)
    start = time.perf_counter()
    for _ in range(repeats):
        infer(images)
    return _rate(repeats * batch_size, time.perf_counter() - start)


def bench_runtimes(model, cfg: DictConfig, threads: int, out: Path) -> tuple[dict, OnnxRuntime]:
    """Inference at batch 1 and 64 in torch and on ONNX Runtime (the model exported to ``out``,
    run with the same threads), in alternating blocks; the runtime is returned for the photo."""
    model.eval()
    export_onnx(model, cfg.data, out)
    runtime = OnnxRuntime(out, threads=threads)
    img = cfg.data.img_size
    figures: dict[str, list[float]] = {}
    for _ in range(cfg.bench.repeats):
        for n, repeats in ((1, 100), (64, 10)):
            for name, infer in (("predict", model.infer), ("onnx", runtime)):
                figures.setdefault(f"{name}_b{n}_img_s", []).append(
                    bench_predict(infer, img, n, repeats)
                )
    result = {key: round(float(np.median(values)), 1) for key, values in figures.items()}
    for n in (1, 64):
        result[f"onnx_over_torch_b{n}"] = round(
            result[f"onnx_b{n}_img_s"] / result[f"predict_b{n}_img_s"], 2
        )
    return result, runtime


class _LoopTimer(pl.Callback):
    """Times training batches after a warm-up, from batch start to batch end."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.images = warmup, None, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx >= self.warmup:
            self.images += len(batch["image"])
            self.end = time.perf_counter()


def bench_loop(cfg: DictConfig, dm, steps: int, warmup: int) -> float:
    """(d) the real Lightning training loop on the datamodule, as ``make train`` runs it."""
    model = build_system(cfg)
    timer = _LoopTimer(warmup)
    # Weight averaging runs in every training step of ``make train``, so it is timed too; the
    # other callbacks (checkpoints, progress bar) act per epoch or only display.
    configured = (cfg.get("callbacks") or {}).values()
    averaging = [hydra.utils.instantiate(c) for c in configured if c is not None]
    averaging = [c for c in averaging if isinstance(c, WeightAveraging)]
    trainer = hydra.utils.instantiate(
        cfg.trainer,
        max_epochs=1,
        max_time=None,
        limit_train_batches=steps + warmup,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[timer, *averaging],
    )
    trainer.fit(model, datamodule=dm)
    return _rate(timer.images, timer.end - timer.start)


def one_megapixel_face() -> bytes | None:
    """A 1-megapixel JPEG with one face: the public-domain astronaut photo, enlarged."""
    photos = os.environ.get("AGEFAIR_PHOTOS")
    path = Path(photos) / "astronaut.png" if photos else None
    if path is None or not path.is_file():
        return None
    image = cv2.imread(str(path))
    ok, buf = cv2.imencode(".jpg", cv2.resize(image, (1024, 1024)), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return buf.tobytes()


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def bench_photo_request(
    make_predictor: Callable[[], Predictor], repeats: int, warmup: int = 3
) -> dict:
    """Stages of one photo (decode, detect, crop, model) and the whole request through the server.

    The server runs in uvicorn on a free loopback port, in this process, so both figures come
    from the same model and machine state. Direct calls of ``Predictor.analyse`` (the function
    the server runs, in a worker thread like the server's) and requests alternate, after
    ``warmup`` of each, and every figure is a median over ``repeats``: on a shared machine the
    load drifts, and measuring one block after the other charged that drift to whichever came
    second. The ratios: ``request_over_stages``
    against the sum of the stage medians, ``request_over_analyse`` against a whole direct call
    (the stages plus the result's assembly, which the server needs as well).
    """
    if repeats < 1:
        return {}
    photo = one_megapixel_face()
    if photo is None or not os.environ.get("AGEFAIR_YUNET_MODEL"):
        log.warning("photo request figures skipped: set AGEFAIR_PHOTOS and AGEFAIR_YUNET_MODEL")
        return {}
    import httpx

    from agefair.app.server import create_app, running

    predictor = make_predictor()
    files = {"file": ("photo.jpg", photo, "image/jpeg")}

    def timed_analyse() -> tuple[dict[str, float], float]:
        start = time.perf_counter()
        timings = predictor.analyse(photo).timings_ms
        return timings, _ms_since(start)

    stages, direct, requests, served = [], [], [], []
    # The direct calls run in a worker thread, as the server's do: on a busy machine torch's
    # two-thread inference in the main thread was measured 50-100x slower than in any other
    # thread (OpenMP), which made the stages, not the server, decide the ratio.
    with (
        running(create_app(predictor)) as url,
        httpx.Client(timeout=60) as client,
        ThreadPoolExecutor(1) as worker,
    ):
        for i in range(warmup + repeats):
            timings, analyse_ms = worker.submit(timed_analyse).result()
            start = time.perf_counter()
            response = client.post(url + "predict", files=files)
            request_ms = _ms_since(start)
            response.raise_for_status()
            if i >= warmup:
                stages.append(timings)
                direct.append(analyse_ms)
                requests.append(request_ms)
                served.append(response.json()["timings_ms"]["total"])
    median = {k: float(np.median([t[k] for t in stages])) for k in stages[0]}
    stage_sum = sum(median.values())
    analyse = float(np.median(direct))
    request = float(np.median(requests))
    return {
        **{f"photo_{k}_ms": round(v, 2) for k, v in median.items()},
        "photo_stages_ms": round(stage_sum, 2),
        "photo_analyse_ms": round(analyse, 2),
        "photo_endpoint_ms": round(float(np.median(served)), 2),
        "photo_request_ms": round(request, 2),
        "request_over_stages": round(request / stage_sum, 2),
        "request_over_analyse": round(request / analyse, 2),
        "photo": "astronaut.png enlarged to 1024x1024 JPEG (1 face, 1.05 MP)",
        "photo_repeats": repeats,
    }


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="bench")
def main(cfg: DictConfig) -> None:
    pl.seed_everything(cfg.seed)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    b = cfg.bench
    model = build_system(cfg)
    dm = build_datamodule(cfg, model)
    dm.prepare_data()
    dm.setup("fit")
    threads = torch.get_num_threads()

    torch.set_num_threads(1)  # the data figures are per core
    decode = bench_decode(dm, b.images)
    cached = bench_cached(dm, b.images)
    torch.set_num_threads(threads)
    batch = _train_batch(dm)
    steps, loops = [], []
    for _ in range(b.repeats):
        steps.append(bench_model_step(model, batch, b.steps, b.warmup, str(cfg.trainer.precision)))
        loops.append(bench_loop(cfg, dm, b.steps, b.warmup))
    step, loop = float(np.median(steps)), float(np.median(loops))
    loop_over_step = [round(lo / st, 2) for lo, st in zip(loops, steps, strict=True)]
    img = cfg.data.img_size
    costs = measure_complexity(model, (3, img, img))
    out = Path(cfg.paths.log_dir) / "bench"
    predict, runtime = bench_runtimes(model, cfg, threads, out / "model.onnx")
    photo = bench_photo_request(lambda: Predictor.for_system(model, cfg.data), b.photo_repeats)
    onnx_photo = bench_photo_request(
        lambda: Predictor.for_system(runtime, cfg.data), b.photo_repeats
    )
    if photo and onnx_photo:
        photo.update({f"onnx_{k}": onnx_photo[k] for k in ("photo_model_ms", "photo_request_ms")})
        photo["request_ms_onnx_over_torch"] = round(
            onnx_photo["photo_request_ms"] / photo["photo_request_ms"], 2
        )

    result = {
        "decode_img_s": decode,
        "cached_img_s": cached,
        "model_step_img_s": step,
        "loop_img_s": loop,
        "cached_over_step": round(cached / step, 2),
        # The median of the ratios of neighbouring blocks: each pair shares the machine's state.
        "loop_over_step": float(np.median(loop_over_step)),
        "loop_over_step_blocks": loop_over_step,
        "decode_over_step": round(decode / step, 2),
        "infer_b1_img_s": round(1000 / costs["latency_ms_b1"], 1),
        "infer_b64_img_s": costs["images_per_s_b64"],
        # the same with the system's test-time views (the mirror, zooms), as tests and the app,
        # in torch (predict_) and exported to ONNX (onnx_), in alternating blocks (medians)
        **predict,
        "test_time_views": model.view_count,
        "model": OmegaConf.select(cfg, "model._target_"),
        "backbone": OmegaConf.to_container(cfg.backbone, resolve=True),
        "params": costs["params"],
        "img_size": img,
        "batch_size": cfg.data.batch_size,
        "num_workers": cfg.data.num_workers,
        "precision": str(cfg.trainer.precision),
        "torch_threads": threads,
        "cpu_count": os.cpu_count(),
        "steps": b.steps,
        "repeats": b.repeats,
        "images_for_data_figures": b.images,
        "note": "data figures (a, b) on one core; model figures (c, d) with torch_threads",
        **photo,
    }
    (out / "data.json").write_text(json.dumps(result, indent=2))
    width = max(map(len, result))
    print("\n".join(f"{k:<{width}}  {v}" for k, v in result.items()))
    print(f"written to {out / 'data.json'}")
    if result["cached_over_step"] < 3 or result["loop_over_step"] < 0.85:
        log.warning("below target: cached/step >= 3 and loop/step >= 0.85 expected")
    if photo and photo["request_over_stages"] > 1.3:
        log.warning("below target: a request should cost <= 1.3x the sum of its stages")
    if result["onnx_over_torch_b1"] < 1:
        log.warning("below target: ONNX Runtime at least as fast as torch at batch 1")


if __name__ == "__main__":
    main()
