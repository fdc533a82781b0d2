"""Sweep members kept as records: a sweep goes on, and its report is made, on a new machine."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from agefair.training.records import restore, save
from agefair.training.train import finished_row

REPO = Path(__file__).resolve().parents[1]


def member(sweep: Path, name: str, status: str = "ok", seed: int = 0) -> Path:
    """A member folder as a sweep leaves it, checkpoint and TensorBoard log included."""
    folder = sweep / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(f"- seed={seed}\n")
    row = {"status": status, "seed": seed, "overrides": f"seed={seed}", "test/age_mae": 5.0}
    pd.DataFrame([row]).to_csv(folder / "results.csv", index=False)
    pd.DataFrame({"age": [30], "age_pred": [33.0]}).to_csv(folder / "predictions_test.csv")
    (folder / "history.csv").write_text("epoch,val/loss\n0,1.5\n")
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    (folder / "tensorboard").mkdir()
    (folder / "tensorboard" / "events").write_bytes(b"log")
    return folder


def test_finished_members_are_restored_on_a_new_machine_and_skipped_there(tmp_path):
    sweep, records = tmp_path / "outputs" / "sweep", tmp_path / "records"
    member(sweep, "0", seed=0)
    member(sweep, "1", status="failed", seed=1)
    (sweep / "2").mkdir()  # killed before its results row
    (sweep / "3").mkdir()
    (sweep / "3" / "results.csv").write_text('status\n"ok')  # cut off while written
    assert [p.name for p in save(sweep, records)] == ["0.tar.gz"]
    assert save(sweep, records) == []  # the same files: the same bytes, nothing rewritten

    fresh = tmp_path / "elsewhere" / "sweep"
    assert [p.name for p in restore(fresh, records)] == ["0"]
    assert finished_row(fresh / "0", "seed=0") is not None  # the sweep skips it
    for name in ("results.csv", "predictions_test.csv", "history.csv", ".hydra/overrides.yaml"):
        assert (fresh / "0" / name).read_bytes() == (sweep / "0" / name).read_bytes()
    assert not (fresh / "0" / "checkpoints").exists() and not (fresh / "0" / "tensorboard").exists()


def test_a_member_present_is_never_overwritten_by_its_record(tmp_path):
    sweep, records = tmp_path / "sweep", tmp_path / "records"
    member(sweep, "0")
    save(sweep, records)
    results = sweep / "0" / "results.csv"
    results.write_text(results.read_text().replace("5.0", "4.0"))  # trained again since
    assert restore(sweep, records) == []
    assert "4.0" in results.read_text()


def test_a_record_whose_paths_leave_its_folder_is_refused(tmp_path):
    records = tmp_path / "records"
    records.mkdir()
    with tarfile.open(records / "0.tar.gz", "w:gz") as tar:
        data = b"status\nok\n"
        info = tarfile.TarInfo("../../escaped.csv")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(tarfile.TarError):
        restore(tmp_path / "sweep", records)
    assert not (tmp_path / "escaped.csv").exists()


def test_the_study_scripts_restore_sweep_and_save_by_name(tmp_path):
    """``sweep NAME ...`` in experiments/converged_sweeps.sh: restore, train, save, in order,
    with the multirun folder named after the sweep."""
    fake = tmp_path / "python"
    calls = tmp_path / "calls"
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >> {calls}\n')
    fake.chmod(0o755)
    script = (
        f"source {REPO / 'experiments' / 'converged_sweeps.sh'}; records=R; sweep name seed=0,1"
    )
    subprocess.run(
        ["bash", "-c", script],
        check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHON": str(fake), "AGEFAIR_STUDIES": "S"},
    )
    restore_call, train_call, save_call = calls.read_text().splitlines()
    assert restore_call == "-m agefair.training.records restore S/name R/name"
    assert train_call.startswith("-m agefair.train -m seed=0,1 hydra.sweep.dir=S/name ")
    assert "hydra/launcher=parallel threads=1" in train_call
    assert save_call == "-m agefair.training.records save S/name R/name"
