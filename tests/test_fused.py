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


def assert_cache_gives_the_live_forward(backbone, images):
    """The training forward on the frozen part's cached output equals the live forward."""
    torch.manual_seed(0)
    module = MultiTaskModule(MultiTaskNet(backbone), channels_last=False)
    module.eval()
    module.frozen_branch_features = backbone.frozen_features(images)[None]
    cached = module.training_forward({"image": images, "index": torch.arange(len(images))})
    live = module(images)
    for key in live:
        torch.testing.assert_close(cached[key], live[key])


def test_cached_frozen_features_give_the_live_forward():
    assert_cache_gives_the_live_forward(fused(learned_size=16), torch.randn(4, 3, 32, 32))


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


def dlib_fused(**kwargs):
    return create_backbone(
        "fused",
        frozen={"name": "dlib_resnet", "pretrained": False, "features": "pooled"},
        learned={"name": "tiny", "width": 4},
        learned_size=16,
        **kwargs,
    )


def test_tuned_blocks_train_and_the_rest_of_the_frozen_network_does_not():
    torch.manual_seed(0)
    backbone = dlib_fused(tuned_blocks=1)
    with torch.no_grad():  # random dlib blocks start as identity: give the tuned one a say
        for p in backbone.tuned().parameters():
            p.normal_(0, 0.05)
    x = torch.randn(2, 3, 150, 150)
    cache = backbone.frozen_features(x)
    assert cache.shape == (2, 256, 4, 4)  # the activations entering the last block
    backbone(x).sum().backward()
    tuned = {id(p) for p in backbone.tuned().parameters()}
    frozen = [p for p in backbone.frozen.parameters() if id(p) not in tuned]
    assert tuned and frozen
    assert all(p.grad is None for p in frozen)
    assert all(p.grad is not None for p in backbone.tuned().parameters())
    # With none tuned, the cache holds the frozen network's features and nothing of it trains.
    whole = dlib_fused()
    assert whole.frozen_features(x).shape == (2, 256)
    assert not any(p.requires_grad for p in whole.frozen.parameters())


def test_cached_activations_before_the_tuned_blocks_give_the_live_forward():
    backbone = dlib_fused(tuned_blocks=2)
    with torch.no_grad():  # random dlib blocks start as identity: give the tuned ones a say
        for p in backbone.tuned().parameters():
            p.normal_(0, 0.05)
    assert_cache_gives_the_live_forward(backbone, torch.randn(2, 3, 150, 150))


def test_tuned_blocks_learn_at_their_own_rate(tmp_path):
    from agefair.training.build import build_system

    overrides = ["pretrained=false", "backbone.tuned_blocks=1", "backbone.tuned_lr_factor=0.05"]
    system = build_system(compose_train(overrides, tmp_path))
    system.trainer = type("T", (), {"estimated_stepping_batches": 0})()  # a constant rate
    lr = system.hparams.lr
    rates = {
        id(p): g["lr"] for g in system.configure_optimizers().param_groups for p in g["params"]
    }
    backbone = system.net.backbone
    assert {rates[id(p)] for p in backbone.tuned().parameters()} == {lr * 0.05}
    assert {rates[id(p)] for p in backbone.learned.parameters()} == {lr}
    assert {rates[id(p)] for p in system.net.heads.parameters()} == {lr}


def test_tuned_blocks_need_a_network_that_splits_at_its_blocks():
    with pytest.raises(ValueError, match="splits at its residual blocks"):
        fused(tuned_blocks=1)
    with pytest.raises(ValueError, match="between 0 and 14"):
        dlib_fused(tuned_blocks=15)


def test_training_draws_the_face_or_its_mirror_from_the_cache():
    torch.manual_seed(0)
    backbone = fused(learned_size=16, mirror_in_training=True)
    net = MultiTaskNet(backbone, head_inputs={"gender": "frozen", "race": "frozen"})
    module = MultiTaskModule(net, channels_last=False)
    module.eval()
    images = torch.randn(16, 3, 32, 32)
    module.frozen_branch_features = torch.stack(
        [backbone.frozen_features(images), backbone.frozen_features(images.flip(-1))]
    )
    out = module.training_forward({"image": images, "index": torch.arange(16)})["gender_logits"]
    face = net.forward_heads(backbone(images))["gender_logits"]
    flipped = backbone.frozen_features(images.flip(-1))
    mirror = net.forward_heads(backbone(images, flipped))["gender_logits"]
    is_face = torch.isclose(out, face).all(1)
    is_mirror = torch.isclose(out, mirror).all(1)
    assert (is_face | is_mirror).all()
    assert is_face.any() and is_mirror.any()  # both drawn: 2**-15 odds against
