"""File-name labels, folder scans, safe extraction and the split manifest."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from agefair.data.utkface import (
    LabelError,
    Record,
    UnsafeArchiveError,
    age_band,
    load_or_make_manifest,
    make_split,
    parse_name,
    safe_extract,
    scan_folder,
)
from tests.conftest import BAD_NAMES, CORRUPT_NAME, write_tiny_utkface


def test_parse_name_reads_labels():
    assert parse_name("26_1_2_20170116174525125.jpg.chip.jpg") == (26, 1, 2)
    assert parse_name("/some/dir/1_0_4_x.jpg") == (1, 0, 4)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("39_1_20170116174525125.jpg.chip.jpg", "expected 4 fields"),
        ("a_1_2_3.jpg", "integers"),
        ("200_1_2_3.jpg", "age 200"),
        ("20_2_2_3.jpg", "gender 2"),
        ("20_1_5_3.jpg", "race 5"),
    ],
)
def test_parse_name_rejects_with_reason(name, reason):
    with pytest.raises(LabelError, match=reason):
        parse_name(name)


def test_scan_lists_records_and_rejects(tiny_root):
    records, rejects = scan_folder(tiny_root / "UTKFace")
    assert len(records) == 81  # 80 good + the corrupt one (its name is fine; decoding rejects it)
    assert CORRUPT_NAME in {r.file for r in records}
    assert {r.file for r in rejects} == set(BAD_NAMES)
    assert all(r.reason.startswith("malformed name") for r in rejects)
    assert [r.file for r in records] == sorted(r.file for r in records)


def _tar_with(tmp_path: Path, add) -> Path:
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        add(tf)
    return path


def _add_file(tf: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize(
    "add",
    [
        lambda tf: _add_file(tf, "../escaped.txt"),
        lambda tf: _add_file(tf, "UTKFace/../../escaped.txt"),
        lambda tf: _add_file(tf, "/tmp/escaped_abs.txt"),
        lambda tf: tf.addfile(_link("UTKFace/link", tarfile.SYMTYPE, "/etc/passwd")),
        lambda tf: tf.addfile(_link("UTKFace/hard", tarfile.LNKTYPE, "../escaped.txt")),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink"],
)
def test_unsafe_tar_is_refused_and_writes_nothing(tmp_path, add):
    archive = _tar_with(tmp_path, lambda tf: (_add_file(tf, "UTKFace/1_0_0_x.jpg"), add(tf)))
    dest = tmp_path / "out" / "data"
    with pytest.raises(UnsafeArchiveError, match="refusing archive member"):
        safe_extract(archive, dest)
    assert not dest.exists()
    assert (
        not (tmp_path / "escaped.txt").exists() and not (tmp_path / "out" / "escaped.txt").exists()
    )
    assert not list((tmp_path / "out").iterdir())  # no partial folder left behind


def _link(name: str, kind: bytes, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def test_unsafe_zip_is_refused(tmp_path):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("UTKFace/ok.jpg", b"x")
        zf.writestr("../escaped.txt", b"x")
    with pytest.raises(UnsafeArchiveError):
        safe_extract(path, tmp_path / "dest")
    assert not (tmp_path / "escaped.txt").exists()


def test_extract_once_then_reuse(tiny_archive, tmp_path):
    dest = safe_extract(tiny_archive, tmp_path / "x")
    files = sorted(p.name for p in (dest / "UTKFace").iterdir())
    assert len(files) == 84
    marker = dest / "UTKFace" / "marker"
    marker.write_text("kept")
    safe_extract(tiny_archive, tmp_path / "x")  # reused, not extracted again
    assert marker.read_text() == "kept"


def test_zip_extracts(tiny_root, tmp_path):
    path = tmp_path / "UTKFace.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for p in (tiny_root / "UTKFace").iterdir():
            zf.write(p, f"UTKFace/{p.name}")
    dest = safe_extract(path, tmp_path / "z")
    assert len(list((dest / "UTKFace").iterdir())) == 84


def _records(n: int, seed: int = 0) -> list[Record]:
    rng = np.random.default_rng(seed)
    return [
        Record(
            f"{i:05d}.jpg",
            int(rng.integers(1, 100)),
            int(rng.integers(0, 2)),
            int(rng.integers(0, 5)),
        )
        for i in range(n)
    ]


def test_split_is_deterministic_and_stratified():
    records = _records(3000)
    a, b = make_split(records, seed=1), make_split(list(reversed(records)), seed=1)
    assert a.equals(b)  # order of the input does not matter
    assert not a["split"].equals(make_split(records, seed=2)["split"])
    counts = a["split"].value_counts(normalize=True)
    assert counts["train"] == pytest.approx(0.8, abs=0.01)
    assert counts["val"] == pytest.approx(0.1, abs=0.01)
    # every split sees every race x gender x age band in about the same proportions
    a["stratum"] = age_band(a["age"].to_numpy()) * 100 + a["gender"] * 10 + a["race"]
    share = a.groupby("split")["stratum"].value_counts(normalize=True).unstack().fillna(0)
    assert (share.loc["test"] - share.loc["train"]).abs().max() < 0.02


def test_split_fractions_validated():
    with pytest.raises(ValueError, match="summing to 1"):
        make_split(_records(10), fractions=(0.5, 0.1, 0.1))


def test_manifest_written_once_and_reused(tmp_path):
    records = _records(200)
    df, path = load_or_make_manifest(records, tmp_path, (0.8, 0.1, 0.1), 0)
    assert path.is_file() and list(df.columns) == ["file", "age", "gender", "race", "split"]
    mtime = path.stat().st_mtime_ns
    df2, path2 = load_or_make_manifest(records, tmp_path, (0.8, 0.1, 0.1), 0)
    assert path2 == path and path.stat().st_mtime_ns == mtime and df2.equals(df)
    _, path3 = load_or_make_manifest(records[:-1], tmp_path, (0.8, 0.1, 0.1), 0)
    assert path3 != path  # another file list gets its own manifest


def test_a_limited_validation_is_a_fair_sample_of_the_split(tmp_path):
    """Names begin with the age, so the sorted validation split's first batches would hold the
    ages that sort first; its loader order is a fixed seeded shuffle instead."""
    from agefair.data.datamodule import UTKFaceDataModule

    root = write_tiny_utkface(tmp_path / "faces", n=400, size=16)

    def validation(seed: int):
        dm = UTKFaceDataModule(archive=root, data_dir=tmp_path / "work", img_size=16, seed=seed)
        dm.prepare_data()
        dm.setup("fit")
        return dm, dm.split_table("val")

    dm, val = validation(0)
    manifest = dm.prepared.manifest
    assert sorted(val["file"]) == sorted(manifest.loc[manifest["split"] == "val", "file"])
    np.testing.assert_array_equal(dm.datasets["val"].labels[:, 0], val["age"])
    assert list(val["file"]) != sorted(val["file"])
    assert validation(0)[1].equals(val)  # the same order every time
    # sorted, the first quarter would hold only the ages whose names sort first (1, 10-19, 2, 20-29)
    assert val["age"].head(len(val) // 4).max() >= 30


@pytest.mark.parametrize("balance", [None, "race_gender"])
def test_training_draws_the_splits_race_mix_or_every_race_alike(tmp_path, balance):
    """What the race prior divides out: the split's race counts, or with ``balance`` (the
    sampler draws every race x gender group alike) the same count for every race."""
    from agefair.data.datamodule import UTKFaceDataModule

    root = write_tiny_utkface(tmp_path / "faces", n=200, size=16)
    dm = UTKFaceDataModule(archive=root, data_dir=tmp_path / "work", img_size=16, balance=balance)
    dm.prepare_data()
    dm.setup("fit")
    split = np.bincount(dm.split_table("train")["race"], minlength=5)
    counts = dm.training_race_counts()
    assert counts.sum() == pytest.approx(split.sum())
    if balance is None:
        np.testing.assert_array_equal(counts, split)
    else:
        assert len(set(split)) > 1  # the tiny split's mix is not already even
        np.testing.assert_allclose(counts, np.full(5, split.sum() / 5))
