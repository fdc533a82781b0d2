"""The fused backbone: a frozen network beside a learned one, the frozen part cached in training."""

from __future__ import annotations

import pytest
import torch

from agefair.models.backbones import create_backbone
from agefair.models.multitask import MultiTaskModule, MultiTaskNet
from tests.conftest import compose_train


def fused(**kwargs):
    return create_backbone(
        "fused", frozen={"name": "tiny"}, learned={"name": "tiny", "width": 4}, **kwargs
    )


def test_features_concatenate_and_only_the_learned_branch_trains():
    backbone = fused(learned_size=16)
    x = torch.randn(3, 3, 40, 40)
    out = backbone(x)
    assert out.shape == (3, backbone.frozen.num_features + backbone.learned.num_features)
    out.sum().backward()
    assert all(p.grad is None for p in backbone.frozen.parameters())
    assert all(p.grad is not None for p in backbone.learned.parameters())
    backbone.train()
    assert backbone.learned.training and not backbone.frozen.training


def test_the_learned_branch_sees_its_own_size(monkeypatch):
    backbone = fused(learned_size=16)
    seen = []
    monkeypatch.setattr(
        backbone.learned, "forward", lambda x: seen.append(x.shape) or x.mean((2, 3))
    )
    backbone(torch.randn(2, 3, 40, 40))
    assert seen == [torch.Size([2, 3, 16, 16])]


def test_cached_frozen_features_give_the_live_forward():
    torch.manual_seed(0)
    module = MultiTaskModule(MultiTaskNet(fused(learned_size=16)), channels_last=False)
    module.eval()
    images = torch.randn(4, 3, 32, 32)
    module.frozen_branch_features = module.net.backbone.frozen_features(images)
    batch = {"image": images, "index": torch.arange(4)}
    cached = module.training_forward(batch)
    live = module(images)
    for key in live:
        torch.testing.assert_close(cached[key], live[key])


def test_the_default_is_the_fused_recipe_and_from_scratch_one_override_away(tmp_path):
    from agefair.training.build import build_system

    system = build_system(compose_train(["pretrained=false"], tmp_path))
    net = system.net
    assert net.backbone.learned_size == 64 and net.backbone.frozen.num_features == 256
    assert net.backbone.input_config.input_size == 150
    assert system.input_config.framing == pytest.approx(1.085)  # dlib's chip
    assert net.heads["gender"].fc[-1].in_features == net.backbone.frozen.num_features
    scratch = build_system(compose_train(["experiment=from_scratch"], tmp_path))
    assert scratch.net.backbone.name.startswith("cnn") and scratch.input_config.framing == 1


def test_heads_can_read_one_branch_only():
    backbone = fused(learned_size=16)
    net = MultiTaskNet(backbone, head_inputs={"gender": "frozen", "race": "frozen"})
    assert net.heads["gender"].fc[-1].in_features == backbone.frozen.num_features
    images = torch.randn(2, 3, 32, 32)
    net.eval()
    base = net(images)["gender_logits"]
    with torch.no_grad():
        backbone.learned.stem[0].weight.mul_(3)  # only the learned branch changes
    after = net(images)
    torch.testing.assert_close(after["gender_logits"], base)


def test_head_inputs_need_a_fused_backbone():
    with pytest.raises(ValueError, match="need a fused backbone"):
        MultiTaskNet(create_backbone("tiny"), head_inputs={"gender": "frozen"})


def test_training_images_can_be_smaller_than_evaluation_ones(tiny_archive, tmp_path):
    from agefair.data.datamodule import UTKFaceDataModule

    dm = UTKFaceDataModule(
        archive=tiny_archive, data_dir=tmp_path, img_size=40, train_size=16,
        augment={"hflip": 0.5},
    )  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    assert dm.datasets["train"][0]["image"].shape == (3, 16, 16)
    assert dm.datasets["val"][0]["image"].shape == (3, 40, 40)


def test_head_inputs_name_a_task_and_a_part():
    with pytest.raises(ValueError, match="values among"):
        MultiTaskNet(fused(), head_inputs={"gender": "frozn"})
    with pytest.raises(ValueError, match="keys must be among the tasks"):
        MultiTaskNet(fused(), head_inputs={"hair": "frozen"})


def test_frame_inside_widens_only_the_frozen_branchs_view(monkeypatch):
    backbone = fused(learned_size=16, frame_inside=True)
    assert backbone.frozen_zoom == 1.0  # tiny declares UTKFace's framing: nothing to widen
    dlib = create_backbone(
        "fused",
        frozen={"name": "dlib_resnet", "pretrained": False},
        learned={"name": "tiny", "width": 4},
        frame_inside=True,
    )
    assert dlib.frozen_zoom == pytest.approx(1.085) and dlib.input_config.framing == 1.0
    ramp = torch.linspace(0, 1, 150)
    images = (ramp[None, :] + 0 * ramp[:, None]).expand(1, 3, 150, 150).contiguous()
    view = dlib.frozen_view(images)
    assert view.shape == images.shape
    # The input shrunk by 150 / 162 about its centre inside 6-pixel replicated margins: each
    # pixel of the view spans 162 / 150 of the input's.
    slope = (view[0, 0, 75, 100] - view[0, 0, 75, 50]) / (
        images[0, 0, 75, 100] - images[0, 0, 75, 50]
    )
    assert slope.item() == pytest.approx(162 / 150, abs=0.01)
    assert view[0, 0, 75, 75].item() == pytest.approx(images[0, 0, 75, 75].item(), abs=0.01)
    assert view[0, 0, :, 0].max().item() == pytest.approx(0.0, abs=1e-6)  # the edge, repeated
    seen = []
    monkeypatch.setattr(dlib.frozen, "forward", lambda x: seen.append(x) or x.mean((2, 3)))
    dlib.frozen_features(images)
    torch.testing.assert_close(seen[0], view)
