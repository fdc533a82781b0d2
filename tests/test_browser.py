"""The web page in a real headless Chromium: upload a photo, see a box and a row per face.

Needs Playwright (the Python package) and a Chromium at /usr/bin/chromium (Debian's
``chromium`` package; Playwright's own browser download is not used). Set
``AGEFAIR_SCREENSHOT=path.png`` to keep the screenshot; with ``AGEFAIR_CKPT`` set the page
serves that checkpoint instead of the tiny one trained here, e.g. for the README::

    AGEFAIR_CKPT=outputs/.../epoch015.ckpt AGEFAIR_SCREENSHOT=docs/app.png \
        python -m pytest tests/test_browser.py -k upload
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the web app needs the app extra: pip install 'agefair[app]'")
uvicorn = pytest.importorskip("uvicorn", reason="the web app needs uvicorn")
playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser test needs Playwright: pip install playwright"
)

from agefair.app import create_app  # noqa: E402
from agefair.inference.detect import create_detector  # noqa: E402
from agefair.inference.predictor import Predictor  # noqa: E402
from tests.conftest import photos_dir, yunet_path  # noqa: E402

CHROMIUM = Path(os.environ.get("AGEFAIR_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.is_file(),
        reason=f"no Chromium at {CHROMIUM}: apt-get install chromium (or set AGEFAIR_CHROMIUM)",
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(request) -> Iterator[str]:
    """The app on a free loopback port, served by uvicorn in a background thread."""
    detector = create_detector("yunet", model_path=yunet_path())
    ckpt = os.environ.get("AGEFAIR_CKPT") or request.getfixturevalue("tiny_ckpt")
    app = create_app(Predictor.from_checkpoint(ckpt, detector=detector))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start within 30 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def page(server_url):
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_default_timeout(30_000)
            page.errors = []  # uncaught script errors, checked by each test
            page.on("pageerror", lambda err: page.errors.append(str(err)))
            yield page
        finally:
            browser.close()


def test_upload_shows_a_box_and_a_row_per_face(page, server_url, tmp_path):
    photo = photos_dir() / "two_people.jpg"
    page.goto(server_url)
    page.wait_for_function("document.getElementById('model').textContent.length > 0")
    page.set_input_files("#file", str(photo))
    page.wait_for_function("document.querySelectorAll('#results tbody tr').length >= 2")
    assert page.locator(".face-box").count() == 2
    assert page.locator("#results tbody tr").count() == 2
    assert "2 faces found" in page.locator("#status").inner_text()
    labels = page.locator(".face-label").all_inner_texts()
    assert len(labels) == 2 and all("±" in t for t in labels)  # full or short label
    # The boxes sit on the photo: inside the image's on-screen rectangle.
    img = page.locator("#photo").bounding_box()
    for i in range(2):
        box = page.locator(".face-box").nth(i).bounding_box()
        assert img["x"] - 1 <= box["x"] and box["x"] + box["width"] <= img["x"] + img["width"] + 1
        assert img["y"] - 1 <= box["y"] and box["y"] + box["height"] <= img["y"] + img["height"] + 1

    shot = tmp_path / "app.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("AGEFAIR_SCREENSHOT"):
        target = Path(os.environ["AGEFAIR_SCREENSHOT"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
    assert page.errors == []


def test_no_face_and_bad_file_messages(page, server_url, tmp_path):
    from PIL import Image

    blank = tmp_path / "sky.png"
    Image.new("RGB", (400, 300), (120, 170, 230)).save(blank)
    page.goto(server_url)
    page.set_input_files("#file", str(blank))
    page.wait_for_function("/no face/i.test(document.getElementById('status').textContent)")
    assert page.locator(".face-box").count() == 0
    assert not page.locator("#results").is_visible()

    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    page.set_input_files("#file", str(text))
    page.wait_for_function("document.getElementById('status').classList.contains('error')")
    assert "not one of JPEG, PNG" in page.locator("#status").inner_text()
    assert page.errors == []
