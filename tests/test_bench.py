"""The throughput benchmark runs end to end and reports its ratios from alternating blocks."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY, run_module


@pytest.mark.slow
def test_bench_reports_medians_of_alternating_blocks(tmp_path, tiny_archive):
    run_module(
        "agefair.bench",
        *TINY,
        "bench.images=20",
        "bench.steps=2",
        "bench.warmup=1",
        "bench.repeats=3",
        "bench.photo_repeats=0",
        f"paths.archive={tiny_archive}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"paths.log_dir={tmp_path / 'outputs'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    result = json.loads((tmp_path / "outputs" / "bench" / "data.json").read_text())
    blocks = result["loop_over_step_blocks"]
    assert len(blocks) == result["repeats"] == 3 and all(r > 0 for r in blocks)
    assert result["loop_over_step"] == sorted(blocks)[1]  # the median of the three
    for key in ("decode_img_s", "cached_img_s", "model_step_img_s", "loop_img_s"):
        assert result[key] > 0
    assert "photo_request_ms" not in result  # no photo requests asked for
    # the default system's test-time views: the face and two zooms, each with its mirror
    assert result["test_time_views"] == 6
    for n in (1, 64):
        torch_rate, onnx_rate = result[f"predict_b{n}_img_s"], result[f"onnx_b{n}_img_s"]
        assert torch_rate > 0 and onnx_rate > 0
        assert result[f"onnx_over_torch_b{n}"] == pytest.approx(onnx_rate / torch_rate, abs=0.01)
    assert (tmp_path / "outputs" / "bench" / "model.onnx").is_file()  # the graph it timed
