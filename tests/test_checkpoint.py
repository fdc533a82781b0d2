"""Opening a checkpoint runs nothing it says: pickled code and foreign classes are refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from agefair.models.checkpoint import (
    ALLOWED_TARGETS,
    BUILT_NODES,
    CheckpointError,
    load_system,
    targets,
)

CONF = Path(__file__).resolve().parents[1] / "conf"


class Payload:
    """Unpickling it makes a folder: what a crafted checkpoint's code could do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def test_a_pickled_payload_is_refused_and_never_runs(tiny_ckpt, tmp_path):
    stored = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    marker = tmp_path / "payload_ran"
    stored["extra"] = Payload(marker)
    crafted = tmp_path / "payload.ckpt"
    torch.save(stored, crafted)
    with pytest.raises(CheckpointError, match="objects other than tensors"):
        load_system(crafted)
    assert not marker.exists()


@pytest.mark.parametrize("node", ["model", "backbone", "data"])
def test_a_foreign_target_is_refused_before_anything_is_built(tiny_ckpt, tmp_path, node):
    stored = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    marker = tmp_path / "target_ran"
    evil = {"_target_": "os.makedirs", "name": str(marker)}
    config = stored["agefair"]["config"]
    if node == "backbone":
        config["model"]["net"]["backbone"] = evil
    else:
        config[node] = evil
    crafted = tmp_path / "target.ckpt"
    torch.save(stored, crafted)
    with pytest.raises(CheckpointError, match="os.makedirs, which is not one of agefair's own"):
        load_system(crafted)
    assert not marker.exists()


def test_the_checkpoint_written_by_training_loads(tiny_ckpt):
    model, cfg = load_system(tiny_ckpt)
    assert not model.training and cfg.model._target_ in ALLOWED_TARGETS
    # It keeps its training split's race mix, so it can report under either race prior.
    shares = model.race_log_prior.exp()
    assert torch.isclose(shares.sum(), torch.tensor(1.0)) and shares.max() < 1.0
    model.use_race_prior("uniform")


def test_every_model_and_backbone_config_may_be_built_from_a_checkpoint():
    """A new system or backbone whose classes are not allowed would load nowhere."""
    files = [*(CONF / "model").rglob("*.yaml"), *(CONF / "backbone").glob("*.yaml")]
    files += [CONF / "data" / "utkface.yaml"]
    written = {t for f in files for t in targets(OmegaConf.to_container(OmegaConf.load(f)))}
    assert written and written <= ALLOWED_TARGETS, written - ALLOWED_TARGETS
    assert set(BUILT_NODES) == {"model", "data"}
