"""Finished sweep members kept beside a study's report, so that a long sweep outlives its machine.

A converged study trains for hours, member by member, in a multirun folder under ``outputs/``,
which is not kept when the machine is. ``save`` packs each finished member's outputs (its
results row, learning curve, predictions, per-group tables and Hydra config; no checkpoint, no
TensorBoard log) into one ``<member>.tar.gz`` in a records folder committed with the study.
``restore`` unpacks them into an empty multirun folder, where a rerun of the sweep skips them
(``skip_finished``) and the report reads them as if they had trained there::

    python -m agefair.training.records restore outputs/studies/compare_converged \
        experiments/compare_approaches/records/compare_converged
    python -m agefair.training.records save outputs/studies/compare_converged \
        experiments/compare_approaches/records/compare_converged

Archives are written byte for byte the same for the same files, so saving again changes nothing
in the repository; unpacking refuses members whose paths leave their folder.
"""

from __future__ import annotations

import argparse
import gzip
import io
import tarfile
from collections.abc import Sequence
from pathlib import Path

from agefair.training.results import read_ok_row

#: What a record keeps of a member's folder: what the reports and the skip check read.
KEPT = (
    "results.csv",
    "history.csv",
    "metrics.json",
    "predictions_*.csv",
    "groups_*.csv",
    "gaps_*.csv",
    ".hydra/*.yaml",
)


def _packed(member: Path) -> bytes:
    """The member's kept files as a gzipped tar, with fixed times and owners."""
    files = sorted({p for pattern in KEPT for p in member.glob(pattern) if p.is_file()})
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for path in files:
            info = tar.gettarinfo(str(path), arcname=path.relative_to(member).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = 0o644
            with path.open("rb") as f:
                tar.addfile(info, f)
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def save(sweep: Path, records: Path) -> list[Path]:
    """Packs every finished member of ``sweep`` into ``records``; returns the archives written
    (new or changed). Unfinished and failed members are left out."""
    written = []
    for member in sorted(p for p in sweep.iterdir() if p.is_dir() and read_ok_row(p) is not None):
        data = _packed(member)
        target = records / f"{member.name}.tar.gz"
        if target.is_file() and target.read_bytes() == data:
            continue
        records.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written.append(target)
    return written


def restore(sweep: Path, records: Path) -> list[Path]:
    """Unpacks each record of ``records`` into ``sweep``, except where that member already has
    a results row (trained or restored here); returns the member folders restored.

    Raises:
        tarfile.TarError: A record holds a path outside its member's folder, a link or a device.
    """
    restored = []
    for archive in sorted(records.glob("*.tar.gz")) if records.is_dir() else []:
        member = sweep / archive.name.removesuffix(".tar.gz")
        if (member / "results.csv").exists():
            continue
        member.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(member, filter="data")
        restored.append(member)
    return restored


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("save", "restore"))
    parser.add_argument("sweep", type=Path, help="the multirun folder (hydra.sweep.dir)")
    parser.add_argument("records", type=Path, help="the folder of its members' records")
    args = parser.parse_args(argv)
    if args.action == "save":
        if not args.sweep.is_dir():
            parser.error(f"{args.sweep} is not a folder")
        done = save(args.sweep, args.records)
        print(f"{len(done)} member record(s) written to {args.records}")
    else:
        done = restore(args.sweep, args.records)
        print(f"{len(done)} finished member(s) restored into {args.sweep}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
