"""Model size, compute and speed, measured the same way for every model.

The numbers are meant for comparison tables (is a bigger backbone worth its cost?), so each one
says exactly what it counts: see :func:`measure_complexity`. Timings depend on the machine and on
``torch.get_num_threads()``, which is therefore reported alongside them.
"""

from __future__ import annotations

import statistics
import time
import weakref
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (shared parameters counted once).

    Args:
        model: The model.
        trainable_only: Count only parameters with ``requires_grad``.

    Returns:
        The element count.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device of the model's first parameter or buffer and dtype of its first floating one.

    The input is made to match so that half-precision or GPU models can be measured as they
    are; a model without tensors gets CPU float32.
    """
    tensors = [*model.parameters(), *model.buffers()]
    device = tensors[0].device if tensors else torch.device("cpu")
    dtype = next((t.dtype for t in tensors if t.is_floating_point()), torch.float32)
    return device, dtype


def _sync(device: torch.device) -> None:
    """Waits for queued GPU work so wall-clock timings cover the computation, not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _LiveTensorBytes(TorchDispatchMode):
    """Tracks the bytes of tensor storage alive at once among tensors made by dispatched ops.

    Every op output is recorded by its storage (views and in-place results share one entry) and
    released when the last Python tensor seen for it is garbage collected; ``peak`` is the
    largest total seen. Storages that existed beforehand (weights, the input) are not counted.
    """

    def __init__(self, known: Sequence[torch.Tensor]) -> None:
        super().__init__()
        self._known = {self._key(t) for t in known}
        self._live: dict[tuple[str, int], list[int]] = {}  # key -> [nbytes, tensors alive]
        self.current = 0
        self.peak = 0

    @staticmethod
    def _key(t: torch.Tensor) -> tuple[str, int]:
        return str(t.device), t.untyped_storage().data_ptr()

    def _release(self, key: tuple[str, int]) -> None:
        entry = self._live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self._live[key]

    def _track(self, t: torch.Tensor) -> None:
        if t.layout != torch.strided or t.device.type == "meta":
            return
        key = self._key(t)
        if key in self._known or key[1] == 0:
            return
        entry = self._live.get(key)
        if entry is None:
            entry = self._live[key] = [t.untyped_storage().nbytes(), 0]
            self.current += entry[0]
            self.peak = max(self.peak, self.current)
        entry[1] += 1
        weakref.finalize(t, self._release, key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: D105
        out = func(*args, **(kwargs or {}))
        for leaf in pytree.tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self._track(leaf)
        return out


def _peak_forward_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Peak live bytes of tensors created during ``model(x)``, output included (see class)."""
    known = [*model.parameters(), *model.buffers(), x]
    mode = _LiveTensorBytes(known)
    with mode:
        out = model(x)
    peak = mode.peak
    del out
    return peak


def _time_forward(
    model: nn.Module,
    x: torch.Tensor,
    device: torch.device,
    repeats: int,
    warmup: int,
    max_seconds: float | None,
) -> float:
    """Median wall-clock seconds of ``model(x)`` over up to ``repeats`` timed runs."""
    for _ in range(warmup):
        model(x)
    _sync(device)
    times: list[float] = []
    budget_start = time.perf_counter()
    for i in range(repeats):
        start = time.perf_counter()
        model(x)
        _sync(device)
        times.append(time.perf_counter() - start)
        # A time budget keeps big models from taking minutes on a 2-core machine; at least
        # three runs are kept so the median still discards one outlier either way.
        if max_seconds is not None and i >= 2 and time.perf_counter() - budget_start > max_seconds:
            break
    return statistics.median(times)


def measure_complexity(
    model: nn.Module,
    input_shape: Sequence[int] = (3, 64, 64),
    *,
    batch_sizes: Sequence[int] = (1, 64),
    repeats: int = 10,
    warmup: int = 2,
    max_seconds: float | None = 5.0,
) -> dict[str, float]:
    """Size, FLOPs, latency, throughput and activation memory of a model's forward pass.

    The model runs in eval mode under ``torch.inference_mode`` on the device of its parameters,
    with a random input of its parameters' dtype; afterwards every submodule's training flag is
    restored as it was (individually, so a deliberately frozen submodule stays in eval mode).
    Models may return a tensor or any nesting of dicts/tuples of tensors: outputs are not
    inspected.

    Returned keys:

    * ``params``, ``trainable_params``: parameter element counts.
    * ``flops_per_image``: FLOPs of one batch-1 forward as counted by
      ``torch.utils.flop_counter.FlopCounterMode``. It counts a multiply-add as **2 FLOPs** (so
      it is twice the "MACs" or "FLOPs" many papers quote) and only counts matmul, convolution
      and attention ops; element-wise ops, normalisation and pooling count 0.
    * ``latency_ms_b<B>`` for each batch size B: median wall-clock ms of one forward of a batch
      of B; ``latency_ms_per_image_b<B>`` and ``images_per_s_b<B>`` derive from it for B > 1.
    * ``peak_memory_mb``: peak MiB of tensor storage alive at once during a forward at the
      largest batch size, counting every tensor created by a dispatched op (activations,
      intermediate results, the output) and not the weights or the input. It is measured at the
      PyTorch dispatcher, so it is deterministic and comparable across machines, but it does
      not see kernel-internal scratch buffers (e.g. oneDNN/cuDNN workspaces) or allocator
      overhead: a lower bound on what the process needs on top of weights and input.
    * ``threads``: ``torch.get_num_threads()`` during the timings.

    The first call in a process takes 1-2 s longer: entering a dispatch mode (FLOP counting,
    memory tracking) imports ``torch._dynamo``.

    Args:
        model: The model; called as ``model(x)`` with ``x`` of shape ``(B, *input_shape)``.
        input_shape: Shape of one input image, without the batch dimension.
        batch_sizes: Batch sizes to time.
        repeats: Timed forwards per batch size (the median is reported).
        warmup: Untimed forwards per batch size first (lazy initialisation, caches).
        max_seconds: Stop timing a batch size once this many seconds are spent on it (after at
            least three timed runs); None to always do ``repeats``.

    Returns:
        The measurements: ``int`` for counts (params, FLOPs, threads), ``float`` otherwise.
    """
    if not batch_sizes:
        raise ValueError("batch_sizes must not be empty")
    device, dtype = _model_device_dtype(model)
    flags = {m: m.training for m in model.modules()}
    out: dict[str, float] = {
        "params": count_params(model),
        "trainable_params": count_params(model, trainable_only=True),
    }
    try:
        model.eval()
        with torch.inference_mode():
            x1 = torch.randn(1, *input_shape, device=device, dtype=dtype)
            counter = FlopCounterMode(display=False)
            with counter:
                model(x1)
            out["flops_per_image"] = int(counter.get_total_flops())

            for bs in batch_sizes:
                x = torch.randn(bs, *input_shape, device=device, dtype=dtype)
                seconds = _time_forward(model, x, device, repeats, warmup, max_seconds)
                out[f"latency_ms_b{bs}"] = seconds * 1e3
                if bs > 1:
                    out[f"latency_ms_per_image_b{bs}"] = seconds * 1e3 / bs
                    out[f"images_per_s_b{bs}"] = bs / seconds

            x = torch.randn(max(batch_sizes), *input_shape, device=device, dtype=dtype)
            out["peak_memory_mb"] = _peak_forward_bytes(model, x) / 2**20
    finally:
        for module, training in flags.items():
            module.training = training
    out["threads"] = torch.get_num_threads()
    return out


def format_complexity(stats: dict[str, Any]) -> str:
    """A one-line human summary of :func:`measure_complexity`'s result."""
    parts = [f"{stats['params'] / 1e6:.2f}M params", f"{stats['flops_per_image'] / 1e9:.3f} GFLOPs"]
    parts += [
        f"b{k.removeprefix('latency_ms_b')} {v:.1f} ms"
        for k, v in stats.items()
        if k.startswith("latency_ms_b")
    ]
    if "peak_memory_mb" in stats:
        parts.append(f"{stats['peak_memory_mb']:.1f} MiB activations")
    parts.append(f"{int(stats['threads'])} threads")
    return ", ".join(parts)
