"""Lightning's DDP on two CPU processes: one set of outputs, the metrics of one process."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import TINY, run_module

DDP = "trainer=ddp_cpu"


def train(run_dir, tiny_archive, data_dir, *overrides: str) -> None:
    run_module(
        "agefair.train", *TINY, "data.unseen=null", f"paths.archive={tiny_archive}",
        f"paths.data_dir={data_dir}", f"hydra.run.dir={run_dir}", *overrides,
    )  # fmt: skip


@pytest.mark.slow
def test_two_ranks_give_one_process_metrics_and_write_once(tmp_path, tiny_archive):
    # No training step, so both runs test the same seeded weights: any difference is the
    # distributed evaluation's (shares, padding repeats, gathering).
    # A larger test split, of an odd size: the second rank's share is padded with a repeat.
    same = ["trainer.max_epochs=1", "trainer.limit_train_batches=0", "data.split=[0.6,0.15,0.25]"]
    one, two = tmp_path / "one", tmp_path / "two"
    train(one, tiny_archive, tmp_path / "data", *same)
    train(two, tiny_archive, tmp_path / "data", *same, DDP)
    alone = pd.read_csv(one / "predictions_test.csv")
    ranks = pd.read_csv(two / "predictions_test.csv")
    assert len(alone) % 2 == 1
    pd.testing.assert_frame_equal(alone, ranks, atol=1e-5, rtol=0)
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert a.keys() == b.keys()
    for key, value in a.items():
        if isinstance(value, float):
            assert b[key] == pytest.approx(value, abs=1e-5, nan_ok=True), key
    # One set of outputs: one results row, rank one's log and nothing else of its own.
    assert len(pd.read_csv(two / "results.csv")) == 1
    assert {p.name for p in two.iterdir()} - {p.name for p in one.iterdir()} == {
        "train_ddp_process_1.log"
    }


@pytest.mark.slow
def test_fast_dev_run_and_a_sweep_of_ddp_members(tmp_path, tiny_archive):
    fast = tmp_path / "fast"
    train(fast, tiny_archive, tmp_path / "data", DDP, "trainer.fast_dev_run=true")
    row = pd.read_csv(fast / "results.csv").iloc[0]
    assert row["status"] == "ok" and row["examples_seen"] == 2 * 16  # both ranks' batch
    # Each member starts its second rank as itself, not as a sweep of its own.
    sweep = tmp_path / "sweep"
    run_module(
        "agefair.train", "-m", *TINY, DDP, "seed=0,1", "trainer.fast_dev_run=true",
        "data.unseen=null", f"paths.archive={tiny_archive}", f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    members = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert members == ["0", "1"], members
    rows = pd.concat([pd.read_csv(sweep / m / "results.csv") for m in members])
    assert rows["status"].tolist() == ["ok", "ok"] and sorted(rows["seed"]) == [0, 1]
    assert all((sweep / m / "train_ddp_process_1.log").is_file() for m in members)
