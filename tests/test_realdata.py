"""Integration tests on the real UTKFace archive (skipped when it is absent)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agefair.data.utkface import safe_extract, scan_folder
from tests.conftest import REPO

pytestmark = pytest.mark.realdata

# The archive's files without a race field; the real set has exactly these three.
MISSING_RACE = {
    "39_1_20170116174525125.jpg.chip.jpg",
    "61_1_20170109142408075.jpg.chip.jpg",
    "61_1_20170109150557335.jpg.chip.jpg",
}


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """A persistent data folder so extraction and the cache are shared across test runs."""
    path = Path(os.environ.get("AGEFAIR_DATA_DIR", REPO / "data"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_scan_reports_missing_fields(utkface_archive, data_dir):
    dest = data_dir / "extracted" / f"UTKFace-{utkface_archive.stat().st_size}"
    root = safe_extract(utkface_archive, dest) / "UTKFace"
    records, rejects = scan_folder(root)
    assert len(records) > 10_000
    assert {r.file for r in rejects} >= MISSING_RACE
    assert all("expected 4 fields" in r.reason for r in rejects if r.file in MISSING_RACE)


@pytest.mark.slow
def test_fast_dev_run_on_real_data_lists_rejects(utkface_archive, data_dir, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "agefair.train",
        f"paths.archive={utkface_archive}",
        f"paths.data_dir={data_dir}",
        f"paths.log_dir={tmp_path}",
        "trainer.fast_dev_run=true",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout + proc.stderr
    for name in MISSING_RACE:
        assert f"Rejected {name}: malformed name" in out
    kept, rejected = map(int, re.search(r"(\d+) images kept, (\d+) rejected", out).groups())
    assert kept > 10_000 and rejected >= len(MISSING_RACE)
