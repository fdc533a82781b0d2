"""Tests of the web app's API: good photos, bad uploads, limits, and that it stays up."""

from __future__ import annotations

import asyncio
import io
import struct
import threading
import time
import tracemalloc
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the web app needs the app extra: pip install 'agefair[app]'")
from fastapi.testclient import TestClient  # noqa: E402

import agefair
from agefair.app import create_app  # noqa: E402
from agefair.inference.detect import CentreDetector, StaticDetector, create_detector  # noqa: E402
from agefair.inference.predictor import Predictor  # noqa: E402
from tests.conftest import (  # noqa: E402
    jpeg_bytes,
    photos_dir,
    textured,
    yunet_path,
)

MAX_BYTES = 2 * 1024 * 1024  # small, so the oversized upload in the test stays cheap


@pytest.fixture(scope="module")
def centre_client(tiny_ckpt):
    """The app with a detector that needs no model file: one face in the middle of any photo."""
    predictor = Predictor.from_checkpoint(tiny_ckpt, detector=CentreDetector())
    with TestClient(create_app(predictor, max_bytes=MAX_BYTES)) as client:
        yield client


@pytest.fixture(scope="module")
def yunet_client(tiny_ckpt):
    detector = create_detector("yunet", model_path=yunet_path())
    predictor = Predictor.from_checkpoint(tiny_ckpt, detector=detector)
    with TestClient(create_app(predictor)) as client:
        yield client


def upload(client: TestClient, data: bytes, name: str = "photo.jpg", kind: str = "image/jpeg"):
    return client.post("/predict", files={"file": (name, data, kind)})


def png_claiming(width: int, height: int) -> bytes:
    """A small valid PNG whose header is rewritten to claim ``width`` x ``height`` pixels."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


def image_bytes(kind: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(textured(64, 48)).save(buf, kind)
    return buf.getvalue()


def assert_healthy(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200 and response.json()["status"] == "ok"


# --------------------------------------------------------------------------------------------
# Pages and schema
# --------------------------------------------------------------------------------------------
def test_page_health_and_schema(centre_client):
    page = centre_client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="file"' in page.text and "fetch(" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN: works offline
    health = centre_client.get("/health").json()
    assert health["system"] == "MultiTaskModule" and health["img_size"] == 32
    assert health["max_bytes"] == MAX_BYTES and health["checkpoint"].endswith("last.ckpt")

    schema = centre_client.get("/openapi.json").json()
    post = schema["paths"]["/predict"]["post"]
    assert "multipart/form-data" in post["requestBody"]["content"]
    assert {"200", "400", "413", "415", "422"} <= set(post["responses"])
    parts = schema["components"]["schemas"]
    assert {"faces", "width", "height", "n_faces", "timings_ms"} <= set(
        parts["Prediction"]["properties"]
    )
    assert {"box", "age", "age_sd", "gender", "gender_p", "race", "race_p"} <= set(
        parts["Face"]["properties"]
    )
    assert {"decode", "detect", "crop", "model"} <= set(parts["Timings"]["properties"])


# --------------------------------------------------------------------------------------------
# Real photos
# --------------------------------------------------------------------------------------------
def test_photo_with_two_faces(yunet_client):
    data = (photos_dir() / "two_people.jpg").read_bytes()
    response = upload(yunet_client, data, "two_people.jpg")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["n_faces"] == 2 and len(body["faces"]) == 2
    assert (body["width"], body["height"]) == (1126, 661)
    for face in body["faces"]:
        x0, y0, x1, y1 = face["box"]
        assert 0 <= x0 < x1 <= 1126 and 0 <= y0 < y1 <= 661
        assert face["gender"] in ("male", "female") and 0.5 <= face["gender_p"] <= 1
        assert sum(face["race_p"].values()) == pytest.approx(1, abs=1e-3)
        assert face["race"] in face["race_p"] and 0 <= face["age"] <= 130
    assert set(body["timings_ms"]) == {"decode", "detect", "crop", "model", "total"}


def test_photo_without_faces(yunet_client):
    buf = io.BytesIO()
    Image.new("RGB", (640, 480), (90, 140, 200)).save(buf, "JPEG")
    body = upload(yunet_client, buf.getvalue()).json()
    assert body["faces"] == [] and body["n_faces"] == 0
    assert body["timings_ms"]["model"] == 0


def test_png_with_alpha(yunet_client):
    rgba = Image.open(photos_dir() / "astronaut.png").convert("RGBA")
    alpha = np.full((512, 512), 255, np.uint8)
    alpha[:, :60] = 0  # a transparent strip: composited onto white, not dropped
    rgba.putalpha(Image.fromarray(alpha))
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    response = upload(yunet_client, buf.getvalue(), "astronaut.png", "image/png")
    assert response.status_code == 200, response.text
    assert response.json()["n_faces"] == 1


# --------------------------------------------------------------------------------------------
# Generated photos and bad uploads (no model file needed)
# --------------------------------------------------------------------------------------------
def test_forty_megapixel_jpeg_is_not_decoded_at_full_size(centre_client):
    data = jpeg_bytes(textured(8000, 5000), quality=80)
    assert len(data) < MAX_BYTES
    tracemalloc.start()
    try:
        response = upload(centre_client, data, "big.jpg")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["width"], body["height"]) == (8000, 5000) and body["n_faces"] == 1
    x0, y0, x1, y1 = body["faces"][0]["box"]
    assert x1 - x0 > 3000 and 0 <= y0 < y1 <= 5000  # the centre "face", in full-size pixels
    # A full decode alone would be 8000 x 5000 x 3 = 120 MB of pixels.
    assert peak < 60e6, f"peak traced memory {peak / 1e6:.0f} MB"


def test_too_many_pixels_is_refused_from_the_header(centre_client):
    # 54 MP: over the app's limit; 900 MP: also over PIL's own decompression-bomb guard.
    for width, height in ((9000, 6000), (30000, 30000)):
        response = upload(centre_client, png_claiming(width, height), "bomb.png", "image/png")
        assert response.status_code == 422, response.text
        assert "pixels" in response.json()["detail"]
    assert_healthy(centre_client)


def test_bad_uploads_get_a_clear_4xx_and_the_server_stays_up(centre_client):
    good = jpeg_bytes(textured(300, 200))
    cases = [
        (good[: len(good) // 2], "cut.jpg", 400, "truncated"),
        (b"Dear diary, today I renamed a text file.", "notes.jpg", 415, "not one of JPEG"),
        (b"", "empty.jpg", 400, "empty"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "fake.png", 415, "not one of JPEG"),
        (image_bytes("PPM"), "photo.ppm", 415, "not one of JPEG"),  # PIL reads it; not allowed
    ]
    for data, name, status, words in cases:
        response = upload(centre_client, data, name)
        assert response.status_code == status, (name, response.text)
        detail = response.json()["detail"]
        assert words in detail, (name, detail)
        assert_healthy(centre_client)
    missing = centre_client.post("/predict", data={"photo": "x"})
    assert missing.status_code == 422
    assert upload(centre_client, good).status_code == 200


def test_oversized_upload_is_refused(centre_client):
    big = b"\xff\xd8" + b"\x00" * (MAX_BYTES + 1024)
    response = upload(centre_client, big, "huge.jpg")
    assert response.status_code == 413 and "too large" in response.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(3):
            yield b"\x00" * MAX_BYTES

    response = centre_client.post(
        "/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert response.status_code == 413
    assert_healthy(centre_client)


def test_the_model_runs_off_the_event_loop(tiny_ckpt):
    """While a slow photo is analysed, /health still answers at once."""

    class SlowDetector(StaticDetector):
        def detect(self, image):
            time.sleep(1.0)
            return super().detect(image)

    predictor = Predictor.from_checkpoint(tiny_ckpt, detector=SlowDetector([(10, 10, 60, 70)]))
    app = create_app(predictor)
    data = jpeg_bytes(textured(200, 150))

    async def scenario() -> tuple[float, float]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            start = time.perf_counter()

            async def timed(coro):
                response = await coro
                assert response.status_code == 200
                return time.perf_counter() - start

            slow = asyncio.create_task(
                timed(client.post("/predict", files={"file": ("p.jpg", data, "image/jpeg")}))
            )
            await asyncio.sleep(0.1)
            quick = await timed(client.get("/health"))
            return quick, await slow

    quick, slow = asyncio.run(scenario())
    assert quick < 0.8 < slow


class GatedDetector(StaticDetector):
    """Holds every photo until ``gate`` opens: a photo whose analysis takes as long as a test
    wants."""

    def __init__(self, boxes) -> None:
        super().__init__(boxes)
        self.gate = threading.Event()

    def detect(self, image):
        self.gate.wait(timeout=30)
        return super().detect(image)


def test_a_full_server_answers_503_at_once_and_says_so_when_probed(tiny_ckpt):
    detector = GatedDetector([(10, 10, 60, 70)])
    predictor = Predictor.from_checkpoint(tiny_ckpt, detector=detector)
    app = create_app(predictor, workers=1, queue=1)
    data = jpeg_bytes(textured(200, 150))

    async def scenario() -> list:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            photo = {"file": ("p.jpg", data, "image/jpeg")}
            first = asyncio.create_task(client.post("/predict", files=photo))
            await asyncio.sleep(0.2)
            busy = await client.post("/predict", files=photo)
            probe_full = await client.get("/healthz")
            detector.gate.set()
            done = await first
            probe_after = await client.get("/healthz")
            return [busy, probe_full, done, probe_after]

    busy, probe_full, done, probe_after = asyncio.run(scenario())
    assert busy.status_code == 503 and busy.headers["retry-after"] == "5"
    assert "busy" in busy.json()["detail"]
    assert probe_full.status_code == 503 and probe_full.json()["status"] == "full"
    assert done.status_code == 200 and len(done.json()["faces"]) == 1
    assert probe_after.status_code == 200 and probe_after.json() == {
        "status": "ready",
        "in_flight": 0,
        "queue": 1,
    }


def test_a_photo_slower_than_the_timeout_gets_503(tiny_ckpt):
    detector = GatedDetector([(10, 10, 60, 70)])
    predictor = Predictor.from_checkpoint(tiny_ckpt, detector=detector)
    with TestClient(create_app(predictor, timeout=0.3)) as client:
        response = upload(client, jpeg_bytes(textured(200, 150)))
        detector.gate.set()
        assert response.status_code == 503 and "longer than 0.3 s" in response.json()["detail"]
        assert upload(client, jpeg_bytes(textured(200, 150))).status_code == 200


def test_the_api_version_is_the_package_version(centre_client):
    assert centre_client.get("/openapi.json").json()["info"]["version"] == agefair.__version__
