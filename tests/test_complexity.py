"""Tests for agefair.training.complexity on tiny generated models (CPU, under a second each)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from agefair.training.complexity import count_params, format_complexity, measure_complexity

FAST = {"repeats": 3, "warmup": 1}


def _tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )


class _DictModel(nn.Module):
    """Returns a dict of heads, like the multi-task systems."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU())
        self.age = nn.Linear(16, 1)
        self.race = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.body(x)
        return {"age": self.age(h).squeeze(1), "race": self.race(h)}


def test_count_params() -> None:
    model = _tiny_cnn()
    assert count_params(model) == sum(p.numel() for p in model.parameters())
    model[0].requires_grad_(False)
    assert count_params(model, trainable_only=True) == count_params(model) - 3 * 4 * 9 - 4


def test_measure_tiny_cnn() -> None:
    model = _tiny_cnn()
    model[5].requires_grad_(False)
    stats = measure_complexity(model, (3, 16, 16), **FAST)
    assert stats["params"] == sum(p.numel() for p in model.parameters())
    assert stats["trainable_params"] == stats["params"] - (4 * 2 + 2)
    # Conv: 2 * (16*16 outputs * 4 channels) * (3*3*3) MACs; linear: 2 * 4 * 2.
    assert stats["flops_per_image"] == 2 * 16 * 16 * 4 * 27 + 2 * 4 * 2
    for key in ("latency_ms_b1", "latency_ms_b64", "latency_ms_per_image_b64", "images_per_s_b64"):
        assert stats[key] > 0, key
    assert stats["latency_ms_per_image_b64"] == pytest.approx(stats["latency_ms_b64"] / 64)
    assert stats["images_per_s_b64"] == pytest.approx(1e3 / stats["latency_ms_per_image_b64"])
    assert stats["peak_memory_mb"] > 0
    assert stats["threads"] == torch.get_num_threads()
    assert "params" in format_complexity(stats)


def test_linear_flops_count_multiply_add_as_two() -> None:
    stats = measure_complexity(nn.Linear(10, 20), (10,), **FAST)
    assert stats["flops_per_image"] == 2 * 10 * 20


def test_peak_memory_counts_created_tensors() -> None:
    # Only the (8, 20) float32 output is created; the weights and the input are not counted.
    stats = measure_complexity(nn.Linear(10, 20), (10,), batch_sizes=(1, 8), **FAST)
    assert stats["peak_memory_mb"] * 2**20 == pytest.approx(8 * 20 * 4)
    assert "latency_ms_b8" in stats and "latency_ms_b64" not in stats


def test_dict_returning_model() -> None:
    stats = measure_complexity(_DictModel(), (3, 8, 8), **FAST)
    assert stats["flops_per_image"] == 2 * (192 * 16 + 16 * 1 + 16 * 5)
    assert stats["latency_ms_b64"] > 0


def test_training_flags_restored() -> None:
    model = _tiny_cnn()
    model.train()
    model[1].eval()  # a deliberately frozen BatchNorm must stay frozen
    measure_complexity(model, (3, 8, 8), batch_sizes=(1,), **FAST)
    assert model.training and model[0].training and not model[1].training

    model.eval()
    measure_complexity(model, (3, 8, 8), batch_sizes=(1,), **FAST)
    assert not any(m.training for m in model.modules())


def test_training_flags_restored_on_error() -> None:
    model = nn.Sequential(nn.Linear(10, 3)).train()
    with pytest.raises(RuntimeError):
        measure_complexity(model, (7,), **FAST)  # wrong input size
    assert model.training


def test_no_grad_state_leaks() -> None:
    measure_complexity(nn.Linear(4, 4), (4,), **FAST)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
