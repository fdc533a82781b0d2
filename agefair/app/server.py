"""FastAPI server: the upload page, ``POST /predict`` and ``GET /health``.

    agefair serve                                  # http://127.0.0.1:8000
    agefair serve --port 9000 --ckpt outputs/train/runs/.../checkpoints/epoch009.ckpt
    agefair serve --ckpt model.onnx                # an exported model, on ONNX Runtime

The interactive API documentation is at ``/docs``. Bad uploads get a 4xx answer whose ``detail``
says what was wrong, and the server carries on:

* 413: the upload is larger than ``max_bytes`` (refused from its ``Content-Length`` before it is
  read; chunked uploads are counted as they arrive, see :class:`UploadLimit`);
* 415: the file is not an image in a format PIL reads;
* 422: the image has more than ``max_pixels`` pixels (a decompression bomb or a huge scan), or
  the request has no ``file`` field;
* 400: the image is truncated, corrupt or empty;
* 503: the server is full (``queue`` photos already in flight or waiting; ``Retry-After`` says
  when to try again), or a photo took longer than ``timeout`` seconds.

Uploads are read only in the formats of :data:`UPLOAD_FORMATS`. The model runs in worker threads
(at most ``workers`` photos at a time, at most ``queue`` admitted), so the event loop keeps
answering ``/health`` and new connections while a photo is analysed, and memory stays bounded.
``GET /healthz`` is the readiness probe: 200 while the server takes photos, 503 while it is full.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

try:
    import anyio
    import uvicorn
    from fastapi import FastAPI, File, HTTPException, UploadFile
    from fastapi.responses import HTMLResponse, JSONResponse
    from pydantic import BaseModel, Field
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        f"the agefair web app needs FastAPI, uvicorn and python-multipart ({exc}); install them "
        "with `pip install 'agefair[app]'`"
    ) from exc
from PIL import Image, UnidentifiedImageError

from agefair import __version__
from agefair.inference.checkpoints import CheckpointError
from agefair.inference.imageio import DEFAULT_MAX_PIXELS, ImageError, image_size
from agefair.inference.predictor import Predictor
from agefair.labels import GENDERS, RACES

__all__ = [
    "DEFAULT_MAX_BYTES",
    "UPLOAD_FORMATS",
    "UploadLimit",
    "create_app",
    "main",
    "running",
    "serve",
]

#: Largest upload accepted by default: 20 MiB holds any camera JPEG up to ~50 MP.
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
# Room for the multipart envelope (boundary, part headers) around the file itself.
_MULTIPART_OVERHEAD = 64 * 1024
_PAGE = Path(__file__).with_name("static") / "index.html"
#: The file formats an upload may be in (PIL's names): photos, not every format PIL can parse,
#: so that an upload never reaches the decoders of rarely used formats.
UPLOAD_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")  # JPEG opens MPO files too


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------
class Face(BaseModel):
    """One face and what the model says about it."""

    box: list[int] = Field(
        ..., min_length=4, max_length=4, description="[x0, y0, x1, y1] in photo pixels"
    )
    det_score: float | None = Field(None, description="face detector confidence")
    age: float = Field(..., description="estimated age in years", examples=[31.4])
    age_sd: float | None = Field(
        None, description="the model's spread of the age estimate in years, if it has one"
    )
    gender: str = Field(..., description=f"one of {', '.join(GENDERS)}", examples=["female"])
    gender_p: float = Field(..., ge=0, le=1, description="probability of `gender`")
    race: str = Field(..., description=f"one of {', '.join(RACES)}", examples=["Asian"])
    race_p: dict[str, float] = Field(..., description="probability of each ethnicity class")


class Timings(BaseModel):
    """Milliseconds spent per stage of one request."""

    decode: float = Field(..., description="reading the image (reduced-scale decode if large)")
    detect: float = Field(..., description="face detection")
    crop: float = Field(..., description="cropping and the evaluation transform")
    model: float = Field(..., description="the network, all faces in one batch")
    total: float = Field(..., description="the whole request, including waiting for a worker")


class Prediction(BaseModel):
    """Every face found in the uploaded photo."""

    faces: list[Face]
    width: int = Field(..., description="photo width after its EXIF orientation is applied")
    height: int = Field(..., description="photo height after its EXIF orientation is applied")
    n_faces: int = Field(..., description="number of faces returned")
    n_detected: int = Field(..., description="faces detected, before the per-photo cap")
    timings_ms: Timings


class Health(BaseModel):
    """What the server runs with."""

    status: str = Field("ok", examples=["ok"])
    system: str = Field(..., description="the model's class", examples=["MultiTaskModule"])
    checkpoint: str | None = Field(
        None, description="the checkpoint or exported model file, if loaded from one"
    )
    runtime: str = Field(
        ..., description="what runs the network: torch, or onnxruntime for an exported model"
    )
    detector: str = Field(..., examples=["yunet"])
    img_size: int = Field(..., description="the model's input side in pixels")
    max_bytes: int = Field(..., description="largest upload accepted")
    max_pixels: int | None = Field(..., description="largest image accepted, in pixels")


class Readiness(BaseModel):
    """Whether the server takes photos now."""

    status: str = Field(..., examples=["ready", "full"])
    in_flight: int = Field(..., description="photos being analysed or waiting for a worker")
    queue: int = Field(..., description="the most photos admitted at once")


class Problem(BaseModel):
    """An error the client can act on."""

    detail: str


# --------------------------------------------------------------------------------------------
# Upload size limit
# --------------------------------------------------------------------------------------------
class UploadLimit:
    """ASGI middleware refusing request bodies over ``max_body`` bytes with 413.

    A declared ``Content-Length`` above the limit is refused before a byte of the body is read.
    Chunked bodies (no ``Content-Length``) are counted as they arrive; once past the limit the
    app is told the client went away and whatever it answers is replaced by the 413. Without
    this, the multipart parser would spool an upload of any size to disk first.

    Args:
        app: The ASGI app to protect.
        max_body: Largest request body in bytes.
    """

    def __init__(self, app: Any, max_body: int) -> None:
        self.app = app
        self.max_body = int(max_body)

    async def _refuse(self, send: Any) -> None:
        body = (
            b'{"detail":"upload too large: the limit is '
            + f"{self.max_body - _MULTIPART_OVERHEAD:,}".encode()
            + b' bytes"}'
        )
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > self.max_body:
                await self._refuse(send)
                return
            # The HTTP server frames the body by Content-Length, so it cannot grow past it.
            await self.app(scope, receive, send)
            return

        state = {"received": 0, "over": False, "started": False}

        async def counted_receive() -> dict:
            if state["over"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_body:
                    state["over"] = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict) -> None:
            if state["over"]:
                if message["type"] == "http.response.start" and not state["started"]:
                    state["started"] = True
                    await self._refuse(send)
                return  # the app's own answer to the "disconnect" is dropped
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not state["over"]:
                raise
        if state["over"] and not state["started"]:
            await self._refuse(send)


# --------------------------------------------------------------------------------------------
# App
# --------------------------------------------------------------------------------------------
def _classify(err: ImageError) -> int:
    """HTTP status for an image the predictor refused."""
    cause = err.__cause__
    if isinstance(cause, UnidentifiedImageError):
        return 415
    if isinstance(cause, Image.DecompressionBombError):
        return 422
    return 400


def create_app(
    predictor: Predictor | None = None,
    *,
    ckpt: str | Path | None = None,
    detector: str = "yunet",
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    workers: int = 2,
    queue: int = 8,
    timeout: float = 60.0,
) -> FastAPI:
    """Builds the web app.

    Args:
        predictor: The predictor to serve; None loads one from ``ckpt``.
        ckpt: Checkpoint for a new predictor; None means the newest under ``outputs/`` (or
            ``$AGEFAIR_CKPT``).
        detector: Face detector of a new predictor (``yunet`` or ``dlib-hog``).
        max_bytes: Largest upload in bytes (413 above it).
        max_pixels: Largest image in pixels, checked from its header (422 above it).
        workers: Photos analysed at the same time; more wait their turn. Two suits a small CPU
            machine: one photo's network already uses every core, and decoding and detection
            of the next overlap it.
        queue: Photos admitted at once, analysed or waiting for a worker; more get 503 at once
            instead of piling up.
        timeout: Seconds a photo may take, waiting included, before its answer is a 503.

    Returns:
        The FastAPI application.

    Raises:
        CheckpointError: If no predictor is given and the checkpoint cannot be loaded.
    """
    if predictor is None:
        predictor = Predictor.from_checkpoint(ckpt, detector=detector, max_pixels=max_pixels)
    page = _PAGE.read_text(encoding="utf-8")
    if queue < 1 or timeout <= 0:
        raise ValueError(f"queue must be >= 1 and timeout > 0, got {queue} and {timeout}")
    limiter: list[anyio.CapacityLimiter] = []  # created in the event loop, on first use
    admitted = [0]  # photos in flight or waiting; touched only on the event loop

    app = FastAPI(
        title="agefair",
        summary="Age, gender and ethnicity for every face in a photo.",
        description=(
            "Upload a photo to `POST /predict` as the multipart field `file`. Estimates come "
            "from a model trained on UTKFace; they are statistical guesses about appearance, "
            "not facts about a person."
        ),
        version=__version__,
    )
    app.state.predictor = predictor
    app.add_middleware(UploadLimit, max_body=max_bytes + _MULTIPART_OVERHEAD)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health", response_model=Health, summary="What the server runs with")
    async def health() -> Health:
        return Health(
            system=predictor.system,
            checkpoint=str(predictor.checkpoint) if predictor.checkpoint else None,
            runtime=predictor.runtime.kind,
            detector=str(predictor.detector_name),
            img_size=predictor.img_size,
            max_bytes=max_bytes,
            max_pixels=max_pixels,
        )

    @app.get(
        "/healthz",
        response_model=Readiness,
        summary="Readiness: 200 while photos are taken, 503 while the server is full",
        responses={503: {"model": Readiness, "description": "full"}},
    )
    async def healthz() -> JSONResponse:
        full = admitted[0] >= queue
        body = Readiness(status="full" if full else "ready", in_flight=admitted[0], queue=queue)
        return JSONResponse(body.model_dump(), status_code=503 if full else 200)

    def analyse(data: bytes) -> dict[str, Any]:
        # The header check runs here too: a predictor passed in may allow more pixels.
        width, height = image_size(data, formats=UPLOAD_FORMATS)
        if max_pixels is not None and width * height > max_pixels:
            raise HTTPException(
                422,
                f"image too large: {width}x{height} = {width * height:,} pixels, the limit is "
                f"{max_pixels:,}; shrink it before uploading",
            )
        return predictor.analyse(data).to_dict()

    @app.post(
        "/predict",
        response_model=Prediction,
        summary="Faces in a photo, with age, gender and ethnicity",
        responses={
            400: {"model": Problem, "description": "truncated, corrupt or empty image"},
            413: {"model": Problem, "description": "upload larger than the limit"},
            415: {"model": Problem, "description": "not an image"},
            422: {"model": Problem, "description": "too many pixels, or no `file` field"},
            503: {"model": Problem, "description": "the server is full, or the photo too slow"},
        },
    )
    async def predict(
        file: Annotated[UploadFile, File(description="a photo: JPEG, PNG, WebP, BMP, TIFF...")],
    ) -> dict[str, Any]:
        start = time.perf_counter()
        data = await file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise HTTPException(413, f"upload too large: the limit is {max_bytes:,} bytes")
        if not data:
            raise HTTPException(400, "the uploaded file is empty")
        if admitted[0] >= queue:
            raise HTTPException(
                503,
                f"the server is busy with {admitted[0]} photos; try again in a few seconds",
                headers={"Retry-After": "5"},
            )
        if not limiter:
            limiter.append(anyio.CapacityLimiter(max(1, workers)))
        admitted[0] += 1
        try:
            with anyio.fail_after(timeout):
                # abandon_on_cancel: the answer goes out at the timeout; the worker thread
                # finishes its photo and frees its slot then.
                result = await anyio.to_thread.run_sync(
                    analyse, data, limiter=limiter[0], abandon_on_cancel=True
                )
        except TimeoutError as err:
            raise HTTPException(
                503, f"the photo took longer than {timeout:g} s; try a smaller one"
            ) from err
        except ImageError as err:
            name = file.filename or "upload"
            # Name the file as the user knows it rather than "<12,345 bytes>".
            detail = str(err).replace(f"<{len(data):,} bytes>", repr(name))
            raise HTTPException(_classify(err), detail) from err
        finally:
            admitted[0] -= 1
        result["timings_ms"]["total"] = round((time.perf_counter() - start) * 1000.0, 2)
        return result

    return app


@contextmanager
def running(app: FastAPI, timeout: float = 30.0) -> Iterator[str]:
    """Serves ``app`` with uvicorn on a free loopback port in a background thread.

    For measurements and screenshots that need the real HTTP path in this process::

        with running(create_app(predictor)) as url:
            httpx.post(url + "predict", files=...)

    Args:
        app: The ASGI app.
        timeout: Seconds to wait for the server to start.

    Yields:
        The base URL, ``http://127.0.0.1:PORT/``.

    Raises:
        RuntimeError: If the server does not start within ``timeout``.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"uvicorn did not start on port {port} within {timeout:g} s")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    ckpt: str | Path | None = None,
    *,
    detector: str = "yunet",
    **kwargs: Any,
) -> None:
    """Runs the app with uvicorn until interrupted.

    Args:
        host: Interface to listen on; the default answers this machine only.
        port: TCP port.
        ckpt: Checkpoint; None means the newest under ``outputs/`` (or ``$AGEFAIR_CKPT``).
        detector: Face detector (``yunet`` or ``dlib-hog``).
        **kwargs: Passed to :func:`create_app` (``max_bytes``, ``max_pixels``, ``workers``,
            ``queue``, ``timeout``).
    """
    app = create_app(ckpt=ckpt, detector=detector, **kwargs)
    print(f"agefair: serving {app.state.predictor.checkpoint} on http://{host}:{port}/")
    uvicorn.run(app, host=host, port=port, log_level="info")


def main(argv: Sequence[str] | None = None) -> int:
    """``agefair serve [--host H] [--port P] [--ckpt PATH] [--detector NAME]``.

    Args:
        argv: Arguments after the command name; None reads ``sys.argv``.

    Returns:
        The exit status: 1 if the checkpoint or detector cannot be loaded.
    """
    parser = argparse.ArgumentParser(
        prog="agefair serve", description="Serve the agefair web app and its JSON API."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument(
        "--ckpt",
        help="checkpoint or exported .onnx model; default $AGEFAIR_CKPT or the newest checkpoint",
    )
    parser.add_argument("--detector", default="yunet", choices=["yunet", "dlib-hog"])
    parser.add_argument(
        "--max-mb", type=float, default=DEFAULT_MAX_BYTES / 2**20, help="upload limit in MiB"
    )
    parser.add_argument("--workers", type=int, default=2, help="photos analysed at once")
    parser.add_argument("--queue", type=int, default=8, help="photos admitted at once (503 above)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a photo may take")
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        serve(
            args.host,
            args.port,
            args.ckpt,
            detector=args.detector,
            max_bytes=int(args.max_mb * 2**20),
            workers=args.workers,
            queue=args.queue,
            timeout=args.timeout,
        )
    except (CheckpointError, ImportError, RuntimeError, ValueError) as err:
        print(f"agefair serve: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
