"""Every system and age head trains through the Hydra entry point; checkpoints load back exactly."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from agefair.models.backbones import create_backbone
from agefair.models.base import AgeFairModule
from agefair.models.checkpoint import CheckpointError, load_system
from agefair.models.heads import AGE_HEADS, ExpectationAgeHead
from agefair.training.build import build_system
from agefair.training.callbacks import ProgressiveResize
from agefair.training.train import fit_and_test
from tests.conftest import CORRUPT_NAME, REPO, TINY, compose_train, evaluate_cli

MODELS = sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml"))
VGG_SMALL = ["pretrained=false"]


def overrides(tmp_path: Path, archive: Path, *extra: str) -> list[str]:
    return [*TINY, f"paths.archive={archive}", f"paths.data_dir={tmp_path / 'data'}", *extra]


@pytest.mark.parametrize("model", MODELS)
def test_fast_dev_run_every_model(model, tmp_path, tiny_archive):
    extra = VGG_SMALL if model == "vgg16" else []
    cfg = compose_train(
        overrides(tmp_path, tiny_archive, f"model={model}", "trainer.fast_dev_run=true", *extra),
        tmp_path,
    )
    row = fit_and_test(cfg)
    assert row["status"] == "ok" and 0 <= row["test/gender_acc"] <= 1
    assert row["pretrained"] is False


@pytest.mark.parametrize("head", ["regression", "expectation", "ordinal"])
def test_fast_dev_run_every_age_head(head, tmp_path, tiny_archive):
    cfg = compose_train(
        overrides(
            tmp_path, tiny_archive, f"model.net.age_head={head}", "trainer.fast_dev_run=true"
        ),
        tmp_path,
    )
    assert isinstance(build_system(cfg).net.heads["age"], AGE_HEADS[head])
    row = fit_and_test(cfg)
    assert row["status"] == "ok" and 0 < row["test/age_mae"] < 116


def test_label_distribution_widens_with_age_when_asked():
    ages = torch.tensor([10, 40, 70])
    fixed = ExpectationAgeHead(8, sigma=2.0, sigma_per_year=0.0).label_distribution(ages)
    widening = ExpectationAgeHead(8, sigma=2.0, sigma_per_year=0.05).label_distribution(ages)
    for target in (fixed, widening):
        assert torch.allclose(target.sum(-1), torch.ones(3))
        assert target.argmax(-1).tolist() == [10, 40, 70]
    # the head's own summary of a distribution gives its standard deviation
    spread = ExpectationAgeHead(8).summarise
    assert torch.allclose(spread(fixed)["age_sd"], torch.full((3,), 2.0), atol=0.01)
    assert torch.allclose(spread(widening)["age_sd"], torch.tensor([2.5, 4.0, 5.5]), atol=0.01)
    with pytest.raises(ValueError, match="sigma_per_year"):
        ExpectationAgeHead(8, sigma_per_year=-0.1)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_archive) -> Path:
    """A 2-epoch multitask run on the tiny data, through the real command line."""
    tmp = tmp_path_factory.mktemp("trained")
    cmd = [
        sys.executable,
        "-m",
        "agefair.train",
        *overrides(tmp, tiny_archive),
        "trainer.max_epochs=2",
        f"paths.log_dir={tmp}",
        f"hydra.run.dir={tmp / 'run'}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp


@pytest.mark.slow
def test_evaluate_reproduces_training_test_metrics(trained_run, tiny_archive):
    run = trained_run / "run"
    ckpt = pd.read_csv(run / "results.csv").iloc[0]["checkpoint"]
    printed, log = evaluate_cli(
        f"ckpt_path={ckpt}",
        f"paths.archive={tiny_archive}",
        f"paths.data_dir={trained_run / 'data'}",
        f"hydra.run.dir={trained_run / 'eval'}",
    )
    trained = json.loads((run / "metrics.json").read_text())
    for key in ("age_mae", "age_cs5", "gender_acc", "race_acc", "race_acc_balanced"):
        # Same weights; the memory layout of the two runs may differ, so float sums differ slightly.
        assert printed[key] == pytest.approx(trained[key], abs=1e-4), key
    for name in ("groups_test.csv", "confusion_gender_test.png", "confusion_race_test.png"):
        assert (trained_run / "eval" / name).is_file()
    assert "Test-time views: mirror on, zooms [0.94, 1.06]" in log

    one_view, log = evaluate_cli(
        f"ckpt_path={ckpt}",
        f"paths.archive={tiny_archive}",
        f"paths.data_dir={trained_run / 'data'}",
        f"hydra.run.dir={trained_run / 'eval_one_view'}",
        "tta_flip=false",
        "tta_scales=[]",
    )
    assert "Test-time views: mirror off, zooms none" in log
    assert one_view["age_mae"] != pytest.approx(printed["age_mae"], abs=1e-4)


@pytest.mark.slow
def test_evaluate_on_a_labels_csv_with_age_groups(trained_run, tiny_root, tmp_path):
    files = sorted(p.name for p in (tiny_root / "UTKFace").glob("*_*_*_*.jpg.chip.jpg"))[:20]
    assert CORRUPT_NAME in files  # an unreadable image in the list is reported and counted
    rows = []
    for f in files:
        age, gender, race = (int(x) for x in f.split("_")[:3])
        lo = age // 10 * 10
        rows.append(
            {
                "file": f"UTKFace/{f}",
                "gender": ["male", "female"][gender],
                "race": race,
                "age_group": f"{lo}-{lo + 9}",
            }
        )
    csv = tiny_root / "labels.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    ckpt = trained_run / "run" / "checkpoints" / "last.ckpt"
    printed, output = evaluate_cli(
        f"ckpt_path={ckpt}",
        f"labels={csv}",
        "detector=centre",  # the crops are the whole photo
        f"paths.data_dir={tmp_path}",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    # The unreadable image is one of the photos, reported and counted as a miss.
    assert printed["n"] == 20 and printed["missed"] == 1 and "age_mae" not in printed
    assert 0 <= printed["age_group_acc"] <= 19 / 20
    assert f"UTKFace/{CORRUPT_NAME} unreadable, counted as missed" in output


@pytest.mark.slow
def test_checkpoint_errors_are_clear(trained_run, tmp_path):
    ckpt = trained_run / "run" / "checkpoints" / "last.ckpt"
    model, cfg = load_system(ckpt)
    assert type(model).__name__ == "MultiTaskModule" and not model.training
    with pytest.raises(CheckpointError, match="holds a MultiTaskModule, not the JointModule"):
        load_system(ckpt, expect_system="JointModule")
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="not an agefair checkpoint"):
        load_system(other)
    junk = tmp_path / "junk.ckpt"
    junk.write_text("hello")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_system(junk)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_system(tmp_path / "missing.ckpt")
    # weights that do not fit the stored config
    state = torch.load(ckpt, weights_only=False)
    state["agefair"]["config"]["backbone"]["width"] = 16
    state["agefair"]["config"]["model"]["net"]["backbone"]["width"] = 16
    bad = tmp_path / "bad.ckpt"
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_system(bad)


@pytest.mark.slow
def test_vgg16_local_weights_and_frozen_epochs(tmp_path, tiny_archive, caplog):
    """Weights from a local file load through the real path; frozen layers stay unchanged."""
    from torchvision.models import vgg16

    torch.manual_seed(0)
    weights = tmp_path / "vgg16-local.pth"
    torch.save(vgg16(weights=None).state_dict(), weights)
    backbone = create_backbone("vgg16", pretrained=False, weights_path=str(weights))
    ref = torch.load(weights, weights_only=True)
    torch.testing.assert_close(backbone.features[0].weight, ref["features.0.weight"])

    cfg = compose_train(
        overrides(
            tmp_path,
            tiny_archive,
            "model=vgg16",
            f"model.net.backbone.weights_path={weights}",
            "model.freeze_backbone_epochs=1",
            "trainer.max_epochs=1",
            "test=false",
            "callbacks.model_checkpoint.dirpath=" + str(tmp_path / "ckpt"),
        ),
        tmp_path,
    )
    caplog.set_level(logging.INFO, logger="agefair")
    model = build_system(cfg)
    assert model.hparams.cache_frozen_features
    row = fit_and_test(cfg)
    assert row["pretrained"] is True and row["examples_seen"] > 0
    assert "Computed frozen features" in caplog.text
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)["state_dict"]
    # one frozen epoch: every VGG-16 conv weight is exactly as loaded
    for key, value in ref.items():
        if key.startswith("features."):
            torch.testing.assert_close(ckpt[f"net.backbone.{key}"], value, rtol=0, atol=0)


@pytest.mark.parametrize("width, nhwc", [(4, False), (8, True)])
def test_narrow_pointwise_convolutions_stay_nchw(width, nhwc, tmp_path, tiny_archive):
    """oneDNN's channels-last 1x1 backward can hang with < 5 channels: such models use NCHW."""
    cfg = compose_train(overrides(tmp_path, tiny_archive, f"+backbone.width={width}"), tmp_path)
    system = build_system(cfg)
    assert system.channels_last is nhwc
    images = system._prepare(torch.randn(16, 3, 32, 32))
    for _ in range(3):
        out = system(images)
        sum(v.float().sum() for v in out.values()).backward()
    assert images.is_contiguous(memory_format=torch.channels_last) is nhwc


def test_progressive_resize_trains_small_then_full_size(tmp_path, tiny_archive, monkeypatch):
    """The ablation's first half of epochs sees downscaled images; later epochs, validation
    and tests see the full size."""
    seen: dict[str, set] = {"train": set(), "eval": set()}
    train_forward, eval_step = AgeFairModule.training_forward, AgeFairModule._eval_step

    def record_train(self, batch):
        seen["train"].add((self.current_epoch, batch["image"].shape[-1]))
        return train_forward(self, batch)

    def record_eval(self, split, batch):
        seen["eval"].add(batch["image"].shape[-1])
        return eval_step(self, split, batch)

    monkeypatch.setattr(AgeFairModule, "training_forward", record_train)
    monkeypatch.setattr(AgeFairModule, "_eval_step", record_eval)
    cfg = compose_train(
        overrides(
            tmp_path,
            tiny_archive,
            "ablation=progressive_resize",
            "trainer.max_epochs=4",
            "callbacks.progressive_resize.size=16",
        ),
        tmp_path,
    )
    assert fit_and_test(cfg)["status"] == "ok"
    assert seen["train"] == {(0, 16), (1, 16), (2, 32), (3, 32)}
    assert seen["eval"] == {32}


@pytest.mark.parametrize("size, share", [(4, 0.5), (48, 1.5), (48, -0.1)])
def test_progressive_resize_rejects_bad_settings(size, share):
    with pytest.raises(ValueError, match="size >= 8 and 0 <= share <= 1"):
        ProgressiveResize(size=size, share=share)
