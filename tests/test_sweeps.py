"""Sweeps beyond one member at a time: parallel members from a fresh data folder."""

from __future__ import annotations

import os
import platform
import tarfile
import threading
from pathlib import Path

import pandas as pd
import pytest
from filelock import FileLock

from agefair.data.datamodule import UTKFaceDataModule
from agefair.data.utkface import safe_extract
from agefair.models.checkpoint import read_checkpoint
from tests.conftest import TINY, run_module


@pytest.mark.slow
def test_a_parallel_sweep_from_an_empty_data_folder(tmp_path, tiny_archive):
    """Both members start on a folder with nothing extracted: one prepares it, both finish."""
    sweep, data = tmp_path / "sweep", tmp_path / "data"
    run_module(
        "agefair.train", "-m", *TINY, "hydra/launcher=parallel", "seed=0,1",
        "trainer.max_epochs=1", "data.unseen=null", f"paths.archive={tiny_archive}",
        f"paths.data_dir={data}", f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    rows = pd.concat([pd.read_csv(sweep / m / "results.csv") for m in ("0", "1")])
    assert rows["status"].tolist() == ["ok", "ok"] and sorted(rows["seed"]) == [0, 1]
    # The two members shared the cores instead of each taking all of them.
    assert rows["threads"].tolist() == [max(1, (os.cpu_count() or 1) // 2)] * 2
    assert rows["machine"].tolist() == [f"{platform.machine()}, {os.cpu_count()} CPU cores"] * 2
    extracted = sorted(p.name for p in (data / "extracted").iterdir())
    assert len(extracted) == 1 and not extracted[0].startswith("."), extracted
    assert len(list((data / "cache").glob("*.npy"))) == 1


def test_preparing_waits_for_a_member_already_at_it(tmp_path, tiny_archive):
    datamodule = UTKFaceDataModule(archive=tiny_archive, data_dir=tmp_path, img_size=32)
    held = FileLock(tmp_path / ".prepare.lock")
    done = threading.Event()
    with held:
        worker = threading.Thread(target=lambda: (datamodule.prepare(), done.set()))
        worker.start()
        worker.join(timeout=1.0)
        # Still waiting, and nothing written while the other member holds the folder.
        assert not done.is_set() and not (tmp_path / "extracted").exists()
    worker.join(timeout=120)
    assert done.is_set() and len(list((tmp_path / "cache").glob("*.npy"))) == 1


def test_an_archive_extracted_meanwhile_elsewhere_is_kept(tmp_path, tiny_archive, monkeypatch):
    dest = tmp_path / "extracted" / "UTKFace"
    real = tarfile.TarFile.extractall

    def racing(self, path, *args, **kwargs):
        real(self, path, *args, **kwargs)
        dest.mkdir(parents=True)  # the other process renames its copy into place first
        (dest / "theirs.txt").write_text("kept")

    monkeypatch.setattr(tarfile.TarFile, "extractall", racing)
    assert safe_extract(tiny_archive, dest) == dest
    assert [p.name for p in dest.iterdir()] == ["theirs.txt"]
    assert [p.name for p in dest.parent.iterdir()] == ["UTKFace"]  # no partial folder left


@pytest.mark.slow
def test_a_submitit_local_sweep_from_an_empty_data_folder(tmp_path, tiny_archive):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the sweeps extra")
    sweep, data = tmp_path / "sweep", tmp_path / "data"
    run_module(
        "agefair.train", "-m", *TINY, "hydra/launcher=submitit_local", "seed=0,1",
        "hydra.launcher.timeout_min=10", "trainer.max_epochs=1", "data.unseen=null",
        f"paths.archive={tiny_archive}", f"paths.data_dir={data}", f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    rows = pd.concat([pd.read_csv(sweep / m / "results.csv") for m in ("0", "1")])
    assert rows["status"].tolist() == ["ok", "ok"] and sorted(rows["seed"]) == [0, 1]
    assert len(list((data / "cache").glob("*.npy"))) == 1


def tiny_sweep(tmp_path, archive, seeds: str, *overrides: str) -> Path:
    """Runs a one-epoch sweep over ``seeds`` on the tiny archive; returns its folder."""
    sweep = tmp_path / "sweep"
    run_module(
        "agefair.train", "-m", *TINY, f"seed={seeds}", "trainer.max_epochs=1", "data.unseen=null",
        f"paths.archive={archive}", f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.sweep.dir={sweep}", *overrides,
    )  # fmt: skip
    return sweep


@pytest.mark.slow
def test_a_sweep_run_again_trains_only_its_unfinished_members(tmp_path, tiny_archive):
    """A resumed sweep keeps the members that finished and trains the rest: the one killed
    before its results row, and the one whose row says it failed."""
    sweep = tiny_sweep(tmp_path, tiny_archive, "0,1,2")
    rows = {m: (sweep / m / "results.csv") for m in ("0", "1", "2")}
    first = {m: path.read_text() for m, path in rows.items()}
    rows["1"].unlink()  # killed before it wrote its row
    failed = pd.read_csv(rows["2"]).assign(status="failed")
    failed.to_csv(rows["2"], index=False)
    (sweep / "2" / "error.txt").write_text("Traceback: the failure of the first try")
    tiny_sweep(tmp_path, tiny_archive, "0,1,2")
    assert rows["0"].read_text() == first["0"]  # kept as it was
    assert "not trained again" in (sweep / "0" / "train.log").read_text()
    for member in ("1", "2"):
        row = pd.read_csv(rows[member]).iloc[0]
        assert row["status"] == "ok" and row["seed"] == int(member)
        assert "not trained again" not in (sweep / member / "train.log").read_text()
    assert not (sweep / "2" / "error.txt").exists()  # the retried member's old error is gone
    # Another member in the folder (other overrides) is never taken for this one.
    tiny_sweep(tmp_path, tiny_archive, "5,1,2")
    assert pd.read_csv(rows["0"]).iloc[0]["seed"] == 5


@pytest.mark.slow
def test_skip_finished_false_trains_every_member_again(tmp_path, tiny_archive):
    sweep = tiny_sweep(tmp_path, tiny_archive, "0")
    tiny_sweep(tmp_path, tiny_archive, "0", "skip_finished=false")
    log = (sweep / "0" / "train.log").read_text()
    assert "not trained again" not in log and log.count("Tested checkpoint") == 2


@pytest.mark.slow
def test_a_member_stopped_part_way_goes_on_from_its_last_checkpoint(tmp_path, tiny_archive):
    """A member killed after its first epoch trains only the second on a rerun, and keeps the
    first epoch's learning curve and training time."""
    keep_all = "callbacks.model_checkpoint.save_top_k=-1"  # every epoch's checkpoint, to stop at
    sweep = tiny_sweep(tmp_path, tiny_archive, "0", "trainer.max_epochs=2", keep_all)
    member = sweep / "0"
    first = pd.read_csv(member / "results.csv").iloc[0]
    # As if killed at the end of the first epoch: its checkpoint is the last, and no row yet.
    (member / "checkpoints" / "epoch000.ckpt").replace(member / "checkpoints" / "last.ckpt")
    first_epoch_s = read_checkpoint(member / "checkpoints" / "last.ckpt")["agefair"]["fit_seconds"]
    (member / "results.csv").unlink()
    (member / "train.log").unlink()
    tiny_sweep(tmp_path, tiny_archive, "0", "trainer.max_epochs=2")
    log = (member / "train.log").read_text()
    assert "resumed from" in log and "Epoch 0 (" not in log and "Epoch 1 (" in log
    row = pd.read_csv(member / "results.csv").iloc[0]
    assert row["status"] == "ok" and row["epochs"] == 2
    assert row["examples_seen"] == first["examples_seen"]
    assert row["train_time_s"] > first_epoch_s > 0  # the first epoch's time is kept
    assert pd.read_csv(member / "history.csv")["epoch"].tolist() == [0, 1]


def test_a_checkpoint_resumes_only_the_run_that_wrote_it(tmp_path):
    """Same learned settings (checkpointing and progress aside): resumed; another seed, an
    unreadable file or none: trained from the start."""
    import torch
    from omegaconf import OmegaConf

    from agefair.training.train import stopped_checkpoint

    settings = {"seed": 0, "model": {"lr": 0.01, "sizes": (8, 16)}, "ckpt_path": None,
                "callbacks": {"progress": {"refresh_rate": 20}}}  # fmt: skip
    assert stopped_checkpoint(tmp_path, OmegaConf.create(settings)) is None  # no checkpoint
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    torch.save({"agefair": {"system": "MultiTaskModule", "config": settings}}, last)
    same = OmegaConf.merge(settings, {"callbacks": {"progress": {"refresh_rate": 0}}})
    assert stopped_checkpoint(tmp_path, same) == last
    assert stopped_checkpoint(tmp_path, OmegaConf.merge(settings, {"seed": 1})) is None
    last.write_bytes(b"not a checkpoint")
    assert stopped_checkpoint(tmp_path, same) is None


def test_a_member_is_known_again_however_its_command_was_written():
    from agefair.training.train import member_settings

    first = "model=multitask seed=0 threads=1 paths.data_dir=/a callbacks.progress.refresh_rate=0"
    again = "seed=0 threads=1 model=multitask paths.data_dir=/elsewhere hydra/launcher=parallel"
    assert member_settings(first) == member_settings(again) == [
        "model=multitask", "seed=0", "threads=1"
    ]  # fmt: skip
    assert member_settings(again.replace("seed=0", "seed=1")) != member_settings(first)
