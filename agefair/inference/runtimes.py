"""What runs the network for the :class:`~agefair.inference.predictor.Predictor`: a trained torch
system, or a model exported to ONNX (:mod:`agefair.inference.export`) on ONNX Runtime.

Both take a normalised ``B x 3 x H x W`` float batch and return numpy arrays in the units people
read: ``age`` (years), ``age_sd`` where the head has a spread, and ``gender_p`` and ``race_p``
(probabilities in the order of :data:`agefair.labels.GENDERS` and :data:`agefair.labels.RACES`),
averaged over the system's test-time views. An exported model holds those views in its graph,
so the two runtimes give the same numbers.

An exported model is two files: ``model.onnx`` and its sidecar ``model.onnx.json``
(:class:`ExportedModel`: what inference needs besides the graph, i.e. how faces are cut and
normalised, the label names, and the graph file's digest). :class:`OnnxRuntime` reads nothing
else: it imports neither Lightning nor Hydra nor the training code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from agefair import __version__
from agefair.labels import GENDERS, RACES
from agefair.models.backbone import InputConfig
from agefair.models.errors import CheckpointError

if TYPE_CHECKING:
    from agefair.models.base import AgeFairModule

__all__ = [
    "INPUT_NAME",
    "ExportedModel",
    "OnnxRuntime",
    "TorchRuntime",
    "is_exported",
    "sidecar_path",
]

#: The graph input's name: the normalised face batch.
INPUT_NAME = "images"
#: What a sidecar says it is, and the version of its layout this code reads.
SIDECAR_FORMAT = "agefair-onnx"
SIDECAR_VERSION = 1


def is_exported(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names an exported model (``.onnx``) rather than a checkpoint."""
    return Path(path).suffix.lower() == ".onnx"


def sidecar_path(model_path: str | os.PathLike[str]) -> Path:
    """The sidecar of an exported model: ``model.onnx`` -> ``model.onnx.json``."""
    path = Path(model_path)
    return path.with_name(path.name + ".json")


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, in hex."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@dataclass(frozen=True)
class ExportedModel:
    """The sidecar of an exported model: everything inference needs besides the graph.

    Attributes:
        system: Class name of the exported system (``MultiTaskModule``...).
        img_size: Side of the square face the graph takes.
        cache_size: Side the face is cut at before it is resized to ``img_size`` (the training
            cache's, so faces are resampled as in training).
        mean: Normalisation mean per RGB channel, on the 0..1 scale.
        std: Normalisation standard deviation per RGB channel.
        framing: Side of the face's square in units of UTKFace's crop (``crop_face``'s zoom).
        outputs: The graph's outputs, in order (``age``, ``gender_p``, ``race_p``, ``age_sd``).
        genders: The gender names, in the order of ``gender_p``.
        races: The ethnicity names, in the order of ``race_p``.
        views: Test-time views averaged inside the graph (the face, zooms, mirrors).
        source: What trained it (see :func:`agefair.inference.checkpoints.describe_checkpoint`).
        sha256: Digest of the ``.onnx`` file the sidecar belongs to.
        opset: The ONNX operator set of the graph.
        agefair_version: The agefair version that exported it.
    """

    system: str
    img_size: int
    cache_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    framing: float
    outputs: tuple[str, ...]
    genders: tuple[str, ...]
    races: tuple[str, ...]
    views: int
    source: str
    sha256: str
    opset: int
    agefair_version: str = __version__

    @property
    def data(self) -> dict[str, Any]:
        """The face settings as a training ``data`` config names them (for
        :meth:`~agefair.inference.predictor.Predictor.for_system`)."""
        return {
            "img_size": self.img_size,
            "cache_size": self.cache_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "framing": self.framing,
        }

    def to_json(self) -> str:
        fields = dataclasses.asdict(self)
        return json.dumps(
            {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, **fields}, indent=2
        )

    @classmethod
    def read(cls, model_path: str | os.PathLike[str]) -> ExportedModel:
        """The sidecar of ``model_path``, checked against this version of agefair.

        Raises:
            CheckpointError: If the sidecar is missing, unreadable, of another format or
                version, or names other labels than :mod:`agefair.labels`.
        """
        path = sidecar_path(model_path)
        if not path.is_file():
            raise CheckpointError(
                f"{model_path} has no sidecar {path.name} beside it: an exported model is the "
                "two files `agefair export` writes; copy both"
            )
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"cannot read the sidecar {path}: {err}") from err
        if not isinstance(raw, Mapping) or raw.get("format") != SIDECAR_FORMAT:
            raise CheckpointError(f"{path} is not an agefair sidecar (format {SIDECAR_FORMAT})")
        if raw.get("version") != SIDECAR_VERSION:
            raise CheckpointError(
                f"{path} has sidecar version {raw.get('version')}; this agefair "
                f"({__version__}) reads version {SIDECAR_VERSION}: export the model again"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(names - set(raw) - {"agefair_version"})
        if missing:
            raise CheckpointError(f"{path} lacks {', '.join(missing)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in names}
        spec = cls(**values)
        if spec.genders != GENDERS or spec.races != RACES:
            raise CheckpointError(
                f"{path} labels faces {list(spec.genders)} / {list(spec.races)}, not agefair's "
                f"{list(GENDERS)} / {list(RACES)}"
            )
        return spec


class TorchRuntime:
    """A trained system, run by torch (the test-time views as the system is set to use).

    Args:
        system: The trained system (see :func:`agefair.models.checkpoint.load_system`).
        device: Torch device; None picks CUDA when available, else the CPU.
    """

    kind = "torch"

    def __init__(self, system: AgeFairModule, device: str | torch.device | None = None) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        system.setup("test")
        self.system = system.eval().to(self.device)

    @property
    def name(self) -> str:
        return type(self.system).__name__

    @property
    def input_config(self) -> InputConfig:
        return self.system.input_config

    def __call__(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            out = self.system.infer(batch.to(self.device))
        return {key: value.float().cpu().numpy() for key, value in out.items()}


class OnnxRuntime:
    """An exported model on ONNX Runtime.

    Args:
        path: The ``.onnx`` file; its sidecar (:func:`sidecar_path`) must stand beside it.
        threads: Threads for each run of the graph; None lets ONNX Runtime choose (one per
            physical core).
        providers: ONNX Runtime execution providers, best first; None takes every one
            installed (CUDA before the CPU where the GPU build is installed).

    Raises:
        CheckpointError: If either file is missing or unreadable, or the sidecar belongs to
            another graph file.
        ImportError: If ONNX Runtime is not installed.
    """

    kind = "onnxruntime"
    device = torch.device("cpu")  # the batch is handed over as a numpy array

    def __init__(
        self,
        path: str | os.PathLike[str],
        threads: int | None = None,
        providers: list[str] | None = None,
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"exported model {path} does not exist")
        self.spec = ExportedModel.read(path)
        if file_digest(path) != self.spec.sha256:
            raise CheckpointError(
                f"{sidecar_path(path).name} belongs to another model file than {path.name} "
                "(their digests differ): copy the two files `agefair export` wrote together"
            )
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ImportError(
                "running an exported model needs ONNX Runtime: pip install onnxruntime "
                "(or agefair[export])"
            ) from err
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=providers or ort.get_available_providers()
            )
        except Exception as err:  # ONNX Runtime raises its own error types for a bad graph
            raise CheckpointError(f"ONNX Runtime cannot load {path}: {err}") from err
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [INPUT_NAME] or outputs != list(self.spec.outputs):
            raise CheckpointError(
                f"{path} takes {inputs} and gives {outputs}, not the {[INPUT_NAME]} and "
                f"{list(self.spec.outputs)} its sidecar says"
            )

    @property
    def name(self) -> str:
        return self.spec.system

    @property
    def input_config(self) -> InputConfig:
        spec = self.spec
        return InputConfig(spec.mean, spec.std, spec.img_size, spec.framing)

    def __call__(self, batch: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
        images = np.ascontiguousarray(np.asarray(batch, dtype=np.float32))
        arrays = self.session.run(None, {INPUT_NAME: images})
        return dict(zip(self.spec.outputs, arrays, strict=True))
