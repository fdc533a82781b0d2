"""A trained system as an ONNX graph, with the sidecar that makes it usable on its own.

The graph takes a normalised face batch of any size (``images``: ``B x 3 x S x S`` float32, RGB)
and gives the system's readable predictions (``age``, ``gender_p``, ``race_p`` and ``age_sd``
where the head has a spread) with the system's test-time views (the mirror, the zooms) averaged
inside it: the runtime only cuts, scales and normalises faces, as the sidecar says
(:class:`~agefair.inference.runtimes.ExportedModel`), and so an exported model can never be run
with other views than the ones it was scored with. ``single_view`` exports the face alone, for a
runtime that must be fast rather than as accurate as the checkpoint.

Export goes through torch's own exporter (``torch.onnx.export(dynamo=True)``, which needs the
``onnxscript`` package) at ONNX opset 18, the first with the anti-aliased resize that the fused
backbones and the zooms use. Every export is checked: the graph runs on ONNX Runtime beside the
torch system on generated faces, and an export that differs by more than
:data:`PARITY_TOLERANCE` is refused.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from agefair.inference.predictor import face_settings
from agefair.inference.runtimes import (
    INPUT_NAME,
    ExportedModel,
    OnnxRuntime,
    file_digest,
    sidecar_path,
)
from agefair.labels import GENDERS, RACES

if TYPE_CHECKING:
    from agefair.models.base import AgeFairModule

__all__ = ["OPSET", "PARITY_TOLERANCE", "export_onnx", "parity"]

log = logging.getLogger(__name__)

#: ONNX operator set: 18 is the first whose Resize can anti-alias, as torch's interpolate does.
OPSET = 18
#: Largest difference between torch and ONNX Runtime that an export accepts, in probability
#: and in years of age.
PARITY_TOLERANCE = 1e-4
#: The outputs of a graph, in this order (``age_sd`` only where the age head has a spread).
OUTPUT_ORDER = ("age", "gender_p", "race_p", "age_sd")


def _resize_antialiased(
    images: Any,
    output_size: Any,
    align_corners: bool,
    scales_h: float | None = None,
    scales_w: float | None = None,
) -> Any:
    """ONNX for torch's anti-aliased bilinear resize that keeps its scale factors.

    Given a scale factor (the zooms of :mod:`agefair.models.tta`), torch spaces the samples by
    ``1 / scale``, not by the ratio of the sizes; the exporter's own translation uses the sizes,
    which at 32 px moved a 0.9 zoom's output by 1e-2. ONNX's ``Resize`` with ``scales`` and the
    ``pytorch_half_pixel`` mapping computes what torch does.
    """
    from onnxscript import opset18 as op
    from onnxscript.function_libs.torch_lib.ops.nn import aten__upsample_bilinear2d_aa

    if scales_h is None or scales_w is None or align_corners:
        return aten__upsample_bilinear2d_aa(images, output_size, align_corners)
    return op.Resize(
        images,
        None,
        op.Constant(value_floats=[1.0, 1.0, float(scales_h), float(scales_w)]),
        None,
        mode="linear",
        coordinate_transformation_mode="pytorch_half_pixel",
        antialias=1,
        exclude_outside=1,  # torch's kernel drops samples outside the picture and renormalises
    )


class ReadableOutputs(nn.Module):
    """A system's ``infer`` (readable predictions, test-time views included) as a module whose
    outputs are a tuple, the form an ONNX graph has."""

    def __init__(self, system: AgeFairModule, outputs: tuple[str, ...]) -> None:
        super().__init__()
        self.system = system
        self.outputs = outputs

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.system.infer(images)
        return tuple(out[name].float() for name in self.outputs)


def generated_faces(count: int, size: int, seed: int = 0) -> torch.Tensor:
    """Normalised batches that vary like faces do at the scale a network looks: smooth random
    pictures (white noise would make every resize's rounding the largest difference)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, max(size // 8, 2), max(size // 8, 2), generator=generator)
    smooth = nn.functional.interpolate(coarse, size=(size, size), mode="bicubic")
    return (smooth.clamp(0, 1) - 0.5) / 0.25


def parity(system: AgeFairModule, runtime: OnnxRuntime, images: torch.Tensor) -> float:
    """The largest difference between the torch system and its exported graph on ``images``,
    over every output (probabilities, and years of age)."""
    with torch.inference_mode():
        expected = {k: v.float().numpy() for k, v in system.infer(images).items()}
    got = runtime(images.numpy())
    return max(float(np.abs(got[k] - expected[k]).max()) for k in runtime.spec.outputs)


def export_onnx(
    system: AgeFairModule,
    data: Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    single_view: bool = False,
    source: str = "",
    check: bool = True,
) -> tuple[ExportedModel, float | None]:
    """Writes ``path`` (the graph) and its sidecar ``path.json``.

    Args:
        system: The trained system (it is put in eval mode; with ``single_view`` its test-time
            views are switched off).
        data: Its training ``data`` config: how its faces are cut and normalised
            (:func:`~agefair.inference.predictor.face_settings`).
        path: The ``.onnx`` file to write.
        single_view: Export the face alone, without the system's test-time views.
        source: What trained it, for the sidecar (a checkpoint's description).
        check: Run the graph beside the system on generated faces and measure the difference.

    Returns:
        The sidecar, and the largest difference between torch and ONNX Runtime (None without
        ``check``).

    Raises:
        ValueError: If ``path`` does not end in ``.onnx``.
        RuntimeError: If the check finds a difference above :data:`PARITY_TOLERANCE`; the
            files are removed.
    """
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"an exported model's file name ends in .onnx, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = face_settings(system, data)
    system.setup("test")
    system.eval()
    if single_view:
        system.use_views(tta_flip=False, tta_scales=())
    size = settings["img_size"]
    example = generated_faces(2, size)
    with torch.inference_mode():
        produced = system.infer(example)
    outputs = tuple(name for name in OUTPUT_ORDER if name in produced)

    batch = torch.export.Dim("batch", min=1, max=4096)
    onnx_program = torch.onnx.export(
        ReadableOutputs(system, outputs).eval(),
        (example,),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=list(outputs),
        dynamic_shapes={"images": {0: batch}},
        opset_version=OPSET,
        custom_translation_table={
            torch.ops.aten._upsample_bilinear2d_aa.default: _resize_antialiased,
        },
        verbose=False,
    )
    onnx_program.save(str(path), external_data=False)
    spec = ExportedModel(
        system=type(system).__name__,
        img_size=size,
        cache_size=settings["cache_size"],
        mean=settings["mean"],
        std=settings["std"],
        framing=settings["framing"],
        outputs=outputs,
        genders=GENDERS,
        races=RACES,
        views=system.view_count,
        source=source,
        sha256=file_digest(path),
        opset=OPSET,
    )
    sidecar_path(path).write_text(spec.to_json(), encoding="utf-8")
    if not check:
        return spec, None
    # Five faces: a batch size the example did not have, so the batch axis is shown dynamic.
    difference = parity(system, OnnxRuntime(path), generated_faces(5, size, seed=1))
    if difference > PARITY_TOLERANCE:
        path.unlink()
        sidecar_path(path).unlink()
        raise RuntimeError(
            f"the exported graph differs from the torch system by {difference:.2g} "
            f"(more than {PARITY_TOLERANCE:g}); nothing written"
        )
    log.info("exported %s: ONNX Runtime matches torch to %.2g", path, difference)
    return spec, difference
