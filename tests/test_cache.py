"""The decoded-image cache: decoded once, reused, rebuilt when files or size change."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import agefair.data.cache as cache_mod
from agefair.data.cache import decode_image, load_or_build_cache
from agefair.data.utkface import scan_folder
from tests.conftest import CORRUPT_NAME


@pytest.fixture()
def folder(tiny_root, tmp_path):
    dst = tmp_path / "UTKFace"
    shutil.copytree(tiny_root / "UTKFace", dst)
    return dst


def test_cache_decodes_and_rejects_corrupt(folder, tmp_path):
    records, _ = scan_folder(folder)
    files = [r.file for r in records]
    dec = load_or_build_cache(folder, files, 24, tmp_path / "cache", progress=False)
    assert dec.images.shape == (len(files), 24, 24, 3) and dec.images.dtype == np.uint8
    assert [r.file for r in dec.rejects] == [CORRUPT_NAME]
    assert "unreadable image" in dec.rejects[0].reason
    assert dec.ok.sum() == len(files) - 1
    i = files.index(records[0].file)
    np.testing.assert_array_equal(dec.images[i], decode_image(folder / files[i], 24))


def test_cache_is_reused_without_decoding(folder, tmp_path, monkeypatch):
    files = [r.file for r in scan_folder(folder)[0]]
    first = load_or_build_cache(folder, files, 24, tmp_path / "cache", progress=False)

    def fail(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(cache_mod, "decode_image", fail)
    again = load_or_build_cache(folder, files, 24, tmp_path / "cache", progress=False)
    assert again.path == first.path
    assert [r.file for r in again.rejects] == [CORRUPT_NAME]  # rejects come back from the cache
    np.testing.assert_array_equal(np.asarray(again.images), np.asarray(first.images))


def test_each_framing_has_its_own_cache_of_reframed_images(folder, tmp_path):
    files = [r.file for r in scan_folder(folder)[0]]
    caches = [
        load_or_build_cache(folder, files, 24, tmp_path / "cache", framing=f, progress=False)
        for f in (1.0, 1.25, 1.5)
    ]
    assert len({c.path for c in caches}) == 3
    assert all(c.path.suffix == ".npy" and "." not in c.path.stem for c in caches)
    plain, wide, _ = caches
    i = int(np.flatnonzero(wide.ok)[0])
    np.testing.assert_array_equal(wide.images[i], decode_image(folder / files[i], 24, 1.25))
    assert not np.array_equal(wide.images[i], plain.images[i])
    with pytest.raises(ValueError, match="framing"):
        load_or_build_cache(folder, files, 24, tmp_path / "cache", framing=0, progress=False)


def test_cache_rebuilt_when_size_or_files_change(folder, tmp_path):
    files = [r.file for r in scan_folder(folder)[0]]
    a = load_or_build_cache(folder, files, 24, tmp_path / "cache", progress=False)
    b = load_or_build_cache(folder, files, 32, tmp_path / "cache", progress=False)
    assert b.path != a.path and b.images.shape[1] == 32
    c = load_or_build_cache(folder, files[:-1], 24, tmp_path / "cache", progress=False)
    assert c.path != a.path
    # a file changed on disk (same name) invalidates the cache too
    target = folder / files[0]
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    d = load_or_build_cache(folder, files, 24, tmp_path / "cache", progress=False)
    assert d.path != a.path


def test_decode_image_refuses_non_images(tmp_path):
    bad = tmp_path / "1_0_0_x.jpg"
    bad.write_text("not an image")
    with pytest.raises(OSError):
        decode_image(bad, 16)
