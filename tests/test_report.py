"""Sweeps: a failing member is recorded and the others finish; the report has one row each."""

from __future__ import annotations

import pandas as pd
import pytest

from agefair.report import collect, main, markdown_table
from tests.conftest import run_module


def test_markdown_table_keeps_failed_members(tmp_path):
    for i, row in enumerate(
        [
            {"status": "ok", "model": "multitask", "test/age_mae": 6.12345, "params": 1234567},
            {"status": "failed", "model": "joint", "error": "ValueError: width must be >= 1"},
        ]
    ):
        (tmp_path / str(i)).mkdir()
        pd.DataFrame([row]).to_csv(tmp_path / str(i) / "results.csv", index=False)
    df = collect(tmp_path)
    assert list(df["model"]) == ["multitask", "joint"]
    table = markdown_table(df)
    assert "6.123" in table and "joint failed" in table and "width must be" in table
    assert main([str(tmp_path), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "table.md").is_file()


def test_collect_refuses_a_folder_without_results(tmp_path):
    with pytest.raises(FileNotFoundError, match="multirun"):
        collect(tmp_path)


@pytest.mark.slow
def test_multirun_with_a_failing_member(tmp_path, tiny_archive):
    run_module(
        "agefair.train",
        "-m",
        "backbone=tiny",
        "+backbone.width=4,0",
        "data.img_size=32",
        "data.batch_size=16",
        "trainer.fast_dev_run=true",
        "callbacks.progress.refresh_rate=0",
        f"paths.archive={tiny_archive}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    df = collect(tmp_path / "sweep")
    assert list(df["status"]) == ["ok", "failed"]
    assert "width" in df.loc[1, "error"]
    assert (tmp_path / "sweep" / "1" / "error.txt").is_file()
