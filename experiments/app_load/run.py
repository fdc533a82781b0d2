"""Load test of the web app over loopback: latency, failures and server memory under load.

Question: with several people uploading at once, how long does ``POST /predict`` take, does any
request fail, and does the server's memory grow with the number of requests served?

Usage (from the repository root)::

    python experiments/app_load/run.py [--ckpt PATH] [--requests 200] [--concurrency 8]
        [--max-seconds 300] [--big-every 20] [--out DIR]

It starts ``agefair serve`` as a child process on a free 127.0.0.1 port (nothing leaves the
machine), sends one warm-up request, then ``--requests`` uploads with ``--concurrency`` in
flight, cycling through the real test photos (``$AGEFAIR_PHOTOS``, else ``../shared/photos``)
plus, every ``--big-every``-th request, a generated 24-megapixel JPEG. The whole run is bounded
by ``--max-seconds``: requests not finished by then count as failures. The server's resident
memory is read from ``/proc`` after start-up, after the warm-up, after half the requests and at
the end. Results go to
``results.json`` and ``README.md`` in ``--out`` (default: this folder).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from textwrap import fill

import httpx
import numpy as np
from PIL import Image

from agefair.inference.checkpoints import default_checkpoint, describe_checkpoint

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PHOTOS = Path(os.environ.get("AGEFAIR_PHOTOS", REPO.parent / "shared" / "photos"))
YUNET = REPO.parent / "shared" / "models" / "face_detection_yunet_2023mar.onnx"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int, field: str = "VmRSS") -> float | None:
    """Resident memory of a process in MB from /proc (Linux); None elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def big_jpeg(width: int = 6000, height: int = 4000) -> bytes:
    """A photo-sized JPEG with a person-free smooth texture (the detector finds no face)."""
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8))
    buf = io.BytesIO()
    small.resize((width, height), Image.Resampling.BICUBIC).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def load_uploads(big_every: int, n: int) -> list[tuple[str, bytes]]:
    """The upload sequence: real photos in turn, a big generated JPEG every ``big_every``."""
    photos = sorted(p for p in PHOTOS.glob("*") if p.suffix.lower() in (".jpg", ".png"))
    if not photos:
        sys.exit(f"no test photos in {PHOTOS}: set AGEFAIR_PHOTOS")
    files = [(p.name, p.read_bytes()) for p in photos]
    big = ("generated_6000x4000.jpg", big_jpeg()) if big_every else None
    uploads = []
    for i in range(n):
        if big and (i + 1) % big_every == 0:
            uploads.append(big)
        else:
            uploads.append(files[i % len(files)])
    return uploads


async def run_load(
    url: str, uploads: list[tuple[str, bytes]], concurrency: int, max_seconds: float
) -> list[dict]:
    """Sends every upload with at most ``concurrency`` in flight; one record per request."""
    records: list[dict] = [
        {"file": name, "status": None, "latency_s": None, "error": "not run"} for name, _ in uploads
    ]
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def one(i: int, name: str, data: bytes) -> None:
            async with gate:
                kind = "image/png" if name.endswith(".png") else "image/jpeg"
                start = time.perf_counter()
                try:
                    response = await client.post("/predict", files={"file": (name, data, kind)})
                except httpx.HTTPError as err:
                    records[i].update(error=f"{type(err).__name__}: {err}")
                    return
                record = records[i]
                record.update(status=response.status_code, latency_s=time.perf_counter() - start)
                record["error"] = None if response.status_code == 200 else response.text[:200]
                if response.status_code == 200:
                    body = response.json()
                    record["n_faces"] = body["n_faces"]
                    record["timings_ms"] = body["timings_ms"]

        tasks = [asyncio.create_task(one(i, n, d)) for i, (n, d) in enumerate(uploads)]
        _, pending = await asyncio.wait(tasks, timeout=max_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return records


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def summarise(records: list[dict], wall_s: float, memory: dict, args, health: dict) -> dict:
    ok = [r for r in records if r["status"] == 200]
    lat = [r["latency_s"] * 1000 for r in ok]
    stages = {
        k: statistics.mean(r["timings_ms"][k] for r in ok) if ok else float("nan")
        for k in ("decode", "detect", "crop", "model")
    }
    return {
        "requests": len(records),
        "concurrency": args.concurrency,
        "ok": len(ok),
        "failures": len(records) - len(ok),
        "failure_examples": sorted({str(r["error"]) for r in records if r["status"] != 200})[:5],
        "wall_s": round(wall_s, 1),
        "throughput_rps": round(len(ok) / wall_s, 2) if wall_s else None,
        "latency_ms": {
            "p50": round(percentile(lat, 50), 1),
            "p95": round(percentile(lat, 95), 1),
            "max": round(max(lat), 1) if lat else None,
        },
        "server_stage_mean_ms": {k: round(v, 1) for k, v in stages.items()},
        "server_rss_mb": {k: None if v is None else round(v, 1) for k, v in memory.items()},
        "model": {k: health.get(k) for k in ("system", "img_size", "detector", "checkpoint")},
        "machine": {
            "cpus": os.cpu_count(),
            "load_before": args.load_before,
            "python": platform.python_version(),
            "platform": platform.platform(terse=True),
        },
        "big_every": args.big_every,
        "max_seconds": args.max_seconds,
    }


def write_readme(out: Path, summary: dict, command: str) -> None:
    lat, rss, stages, model = (
        summary["latency_ms"],
        summary["server_rss_mb"],
        summary["server_stage_mean_ms"],
        summary["model"],
    )
    rows = [
        ("requests (concurrent)", f"{summary['requests']} ({summary['concurrency']})"),
        ("succeeded / failed", f"{summary['ok']} / {summary['failures']}"),
        ("latency p50 / p95 / max", f"{lat['p50']} / {lat['p95']} / {lat['max']} ms"),
        ("throughput", f"{summary['throughput_rps']} requests/s over {summary['wall_s']} s"),
        (
            "server time per request (mean)",
            " · ".join(f"{k} {v} ms" for k, v in stages.items()),
        ),
        ("server RSS after start-up", f"{rss['start']} MB"),
        ("server RSS after warm-up", f"{rss['warm']} MB"),
        ("server RSS after half the requests", f"{rss['half']} MB"),
        ("server RSS after all of them", f"{rss['end']} MB (peak {rss['peak']} MB)"),
    ]
    table = "\n".join(["| measure | value |", "|---|---|", *[f"| {a} | {b} |" for a, b in rows]])
    failures = "".join(f"\n* `{e}`" for e in summary["failure_examples"])
    failures = "\nFailures:" + failures + "\n" if failures else ""
    method = fill(
        f"The script starts `agefair serve` on a free port of 127.0.0.1, sends one warm-up "
        f"request, then {summary['requests']} uploads with {summary['concurrency']} in flight: "
        f"the real test photos (`$AGEFAIR_PHOTOS`) in turn and, every {summary['big_every']}th "
        f"request, a generated 6000 x 4000 JPEG (24 MP, no face). The run is cut off after "
        f"{summary['max_seconds']:g} s (requests still open then count as failures). The server "
        "analyses two photos at a time (`workers=2`); the others queue, so latency includes "
        "waiting. Resident memory (RSS) comes from `/proc`, read between the two halves of the "
        "requests too: growth that stops after the first half is the allocators keeping freed "
        "memory for reuse, growth that goes on would be a leak. Everything below is written by the "
        "command (`results.json` holds the raw numbers).",
        100,
    )
    machine = summary["machine"]
    setting = fill(
        f"Model: {model['system']}, {model['img_size']} px input, {model['detector']} detector; "
        f"checkpoint {model['trained_by']}. Machine: {machine['cpus']} CPU cores, load average "
        f"{machine['load_before']} before the run, Python {machine['python']}, "
        f"{machine['platform']}.",
        100,
    )
    text = f"""# Web app under load

## Question

With several people uploading photos at once, how long does `POST /predict` take, does any
request fail, and does the server's memory grow with the number of requests it has served?

## How to run

From the repository root (a checkpoint is needed: `make train`, or pass `--ckpt`):

```
{command}
```

{method}

## Result

{setting}

{table}
{failures}"""
    (out / "README.md").write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", help="checkpoint (default: the newest under outputs/)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--big-every", type=int, default=20, help="0: no generated big JPEG")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)

    # Other work on the machine slows every request: the load average puts the numbers in context.
    args.load_before = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    ckpt = Path(args.ckpt) if args.ckpt else default_checkpoint(REPO / "outputs")
    uploads = load_uploads(args.big_every, args.requests)
    port = free_port()
    env = dict(os.environ)
    if "AGEFAIR_YUNET_MODEL" not in env and YUNET.is_file():
        env["AGEFAIR_YUNET_MODEL"] = str(YUNET)
    cmd = [sys.executable, "-m", "agefair.app.server", "--host", "127.0.0.1",
           "--port", str(port), "--ckpt", str(ckpt)]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        try:
            deadline = time.monotonic() + 120
            health = None
            while health is None:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    sys.exit("the server did not start:\n" + log.read().decode()[-3000:])
                try:
                    health = httpx.get(url + "/health", timeout=2).json()
                except httpx.HTTPError:
                    time.sleep(0.5)
            memory = {"start": rss_mb(server.pid)}
            name, data = uploads[0]
            httpx.post(url + "/predict", files={"file": (name, data)}, timeout=120)
            memory["warm"] = rss_mb(server.pid)
            # Two halves with a memory reading between them: growth that stops after the first
            # half is allocator caching; growth that continues is a leak.
            start = time.perf_counter()
            half = len(uploads) // 2
            records = []
            for key, part in (("half", uploads[:half]), ("end", uploads[half:])):
                left = args.max_seconds - (time.perf_counter() - start)
                records += asyncio.run(run_load(url, part, args.concurrency, max(left, 0.001)))
                memory[key] = rss_mb(server.pid)
            wall = time.perf_counter() - start
            memory["peak"] = rss_mb(server.pid, "VmHWM")
            alive = httpx.get(url + "/health", timeout=10).status_code == 200
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()

    summary = summarise(records, wall, memory, args, health)
    summary["healthy_after"] = alive
    # Which training produced the checkpoint, rather than its path on this machine.
    summary["model"]["trained_by"] = describe_checkpoint(ckpt)
    summary["model"]["checkpoint"] = ckpt.name
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({**summary, "records": records}, indent=1))
    shown = ["python experiments/app_load/run.py"]
    if args.ckpt:
        shown += ["--ckpt", args.ckpt]
    for flag, default in (("requests", 200), ("concurrency", 8), ("max_seconds", 300.0),
                          ("big_every", 20)):  # fmt: skip
        if getattr(args, flag) != default:
            shown += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    write_readme(args.out, summary, " ".join(shown))
    print(json.dumps(summary, indent=2))
    return 0 if summary["failures"] == 0 and alive else 1


if __name__ == "__main__":
    sys.exit(main())
