"""A screenshot of the web app with a photo analysed, for the README.

    python experiments/app_screenshot/run.py [--ckpt PATH] [--out PNG]

Starts the app on a free loopback port, opens it in headless Chromium (Debian's ``chromium``
package, driven by Playwright; ``$AGEFAIR_CHROMIUM`` names another binary), uploads the photo
and saves the page, after one request that warms the server up. The default photo is Grace
Hopper's official U.S. Navy portrait, a work of the U.S. federal government and so in the
public domain, which matplotlib ships as sample data; neither the test photos nor UTKFace may
be redistributed, so they are not used here.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import httpx
from matplotlib import cbook

from agefair.app.server import create_app, running
from agefair.inference.predictor import Predictor

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("AGEFAIR_CHROMIUM", "/usr/bin/chromium"))


def public_domain_photo() -> Path:
    """matplotlib's copy of Grace Hopper's portrait (U.S. Navy, public domain)."""
    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def screenshot(url: str, photo: Path, out: Path, width: int = 1100, height: int = 760) -> int:
    """Uploads ``photo`` on the page at ``url`` and saves the page; returns the faces shown."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.wait_for_function("document.getElementById('model').textContent.length > 0")
            page.set_input_files("#file", str(photo))
            page.wait_for_function("document.querySelectorAll('#results tbody tr').length >= 1")
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
            return page.locator("#results tbody tr").count()
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", help="checkpoint; default $AGEFAIR_CKPT or the newest one")
    parser.add_argument("--photo", type=Path, default=None, help="default: Grace Hopper")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "app_screenshot.png"
    )
    args = parser.parse_args(argv)
    if not CHROMIUM.is_file():
        print(f"no Chromium at {CHROMIUM}: apt-get install chromium", file=sys.stderr)
        return 1
    photo = args.photo or public_domain_photo()
    predictor = Predictor.from_checkpoint(args.ckpt)
    with running(create_app(predictor)) as url:
        # One request first, so the timings on the page are a warm server's, not start-up's.
        files = {"file": (photo.name, photo.read_bytes())}
        httpx.post(url + "predict", files=files, timeout=120).raise_for_status()
        faces = screenshot(url, photo, args.out)
    print(f"{args.out}: {faces} face(s) on {photo.name}, checkpoint {predictor.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
