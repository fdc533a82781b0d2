"""Backbones, heads and systems on random tensors: shapes, losses, registry errors, checkpoints."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from agefair.models.backbones import create_backbone, list_backbones
from agefair.models.base import race_log_prior
from agefair.models.heads import AGE_HEADS, create_age_head
from agefair.models.joint import JointModule, JointNet
from agefair.models.multitask import MultiTaskModule, MultiTaskNet
from agefair.models.separate import SeparateModule
from agefair.models.tta import views, zoom


def batch(n: int = 4, size: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.randn(n, 3, size, size, generator=g),
        "age": torch.randint(1, 90, (n,), generator=g),
        "gender": torch.randint(0, 2, (n,), generator=g),
        "race": torch.randint(0, 5, (n,), generator=g),
    }


def test_unknown_backbone_lists_known_ones():
    with pytest.raises(ValueError, match=r"known: .*cnn"):
        create_backbone("resnet9000")
    assert "timm:<model name>" in list_backbones()


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("tiny", {}),
        ("cnn", {"depth": 3, "width": 8, "residual": False, "norm": "group"}),
        ("timm:resnet18", {}),
        ("vgg16", {"pretrained": False, "keep_classifier": False}),
    ],
)
def test_backbone_contract(name, kwargs):
    bb = create_backbone(name, **kwargs)
    feats = bb(torch.randn(2, 3, 32, 32))
    assert feats.shape == (2, bb.num_features)
    assert len(bb.input_config.mean) == 3 and bb.name == name


def test_wide_stem_reads_a_larger_input_into_the_same_maps():
    default = create_backbone("cnn", width=8)
    wide = create_backbone("cnn", width=8, stem_stride=3, stem_kernel=5)
    assert (
        wide.stem(torch.randn(1, 3, 96, 96)).shape == default.stem(torch.randn(1, 3, 64, 64)).shape
    )
    assert wide.stem[0].kernel_size == (5, 5) and default.stem[0].kernel_size == (3, 3)


def test_narrow_stem_feeds_a_wider_first_stage():
    net = create_backbone("cnn", depth=3, width=64, residual=False, stem_width=32)
    assert net.stem[0].out_channels == 32 and net.stages[0].body[0].in_channels == 32
    assert net(torch.randn(2, 3, 64, 64)).shape == (2, net.num_features) and net.num_features == 256
    # Without it the stem is as wide as the first stage, as before.
    assert create_backbone("cnn", width=16).stem[0].out_channels == 16


def test_stage_widths_replace_depth_and_doubling():
    net = create_backbone("cnn", widths=[8, 16, 40], stem_width=4, residual=False)
    assert [s.body[0].out_channels for s in net.stages] == [8, 16, 40]
    assert net.stem[0].out_channels == 4 and net.num_features == 40
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 40)
    # The doubling it replaces gives the same network.
    doubled = create_backbone("cnn", depth=3, width=8, residual=False)
    listed = create_backbone("cnn", widths=[8, 16, 32], residual=False)
    assert [p.shape for p in doubled.parameters()] == [p.shape for p in listed.parameters()]
    with pytest.raises(ValueError, match="at least one stage"):
        create_backbone("cnn", widths=[])
    with pytest.raises(ValueError, match="width"):
        create_backbone("cnn", width=0)


def test_vgg16_offline_message(monkeypatch):
    from torchvision.models import VGG16_Weights

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(VGG16_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    with pytest.raises(RuntimeError, match=r"vgg16-397923af\.pth.*pretrained=false"):
        create_backbone("vgg16", pretrained=True)


@pytest.mark.parametrize("head", sorted(AGE_HEADS))
def test_age_heads_report_years_and_learn(head):
    torch.manual_seed(0)
    h = create_age_head(head, 8)
    feats = torch.randn(64, 8)
    age = (feats[:, 0] * 15 + 40).clamp(1, 100).round().long()
    opt = torch.optim.Adam(h.parameters(), lr=0.05)
    first = None
    for _ in range(150):
        out = h(feats)
        loss = h.loss(out, age)
        first = first if first is not None else (out["age"] - age).abs().mean().item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = h(feats)
    assert out["age"].shape == (64,)
    assert (out["age"] - age).abs().mean().item() < first / 2


def systems() -> dict[str, torch.nn.Module]:
    return {
        "multitask": MultiTaskModule(MultiTaskNet(create_backbone("tiny"))),
        "joint": JointModule(JointNet(create_backbone("tiny"))),
        "separate": SeparateModule.from_config(
            [["gender", "race"], ["age"]],
            {"_target_": "agefair.models.backbones.create_backbone", "name": "tiny"},
        ),
    }


@pytest.mark.parametrize("name", ["multitask", "joint", "separate"])
def test_system_outputs_and_loss(name):
    model = systems()[name]
    b = batch()
    out = model(b["image"])
    loss = model.compute_loss(out, b)
    assert loss["loss"].ndim == 0 and torch.isfinite(loss["loss"])
    loss["loss"].backward()
    pred = model.infer(b["image"])
    assert pred["age"].shape == (4,)
    torch.testing.assert_close(pred["gender_p"].sum(-1), torch.ones(4))
    torch.testing.assert_close(pred["race_p"].sum(-1), torch.ones(4))


def test_zoom_keeps_the_size_and_scales_about_the_centre():
    # a centred bright square, 16 px wide in a 32-px image
    images = torch.zeros(2, 3, 32, 32)
    images[..., 8:24, 8:24] = 1.0

    def width(x: torch.Tensor) -> float:
        return float((x[0, 0, 16] > 0.5).sum())

    closer, farther = zoom(images, 1.25), zoom(images, 0.75)
    assert closer.shape == farther.shape == images.shape
    assert width(closer) == 20 and width(farther) == 12
    # still centred: the profile is symmetric about the middle
    torch.testing.assert_close(closer, closer.flip(-1))
    torch.testing.assert_close(zoom(images, 1.0), images)
    with pytest.raises(ValueError, match="positive"):
        zoom(images, 0.0)


def test_views_are_the_batch_its_zooms_and_their_mirrors():
    images = torch.rand(2, 3, 16, 16)
    every = list(views(images, flip=True, scales=(1.1, 0.9)))
    assert len(every) == 6 and every[0] is images
    torch.testing.assert_close(every[1], images.flip(-1))
    torch.testing.assert_close(every[3], zoom(images, 1.1).flip(-1))
    assert len(list(views(images, flip=False, scales=()))) == 1


def test_infer_averages_every_view():
    model = MultiTaskModule(MultiTaskNet(create_backbone("tiny")), tta_scales=(1.1, 0.9)).eval()
    images = batch()["image"]
    calls = []
    model.register_forward_hook(lambda module, args, out: calls.append(args[0]))
    pred = model.infer(images)
    assert len(calls) == 6
    by_hand = torch.stack([model(v)["age"] for v in views(images, True, (1.1, 0.9))]).mean(0)
    torch.testing.assert_close(pred["age"], by_hand)
    calls.clear()
    model.infer(images, tta_flip=False, tta_scales=())
    assert len(calls) == 1
    assert model.view_count == 6
    model.use_views(tta_scales=[1.2])  # what `agefair.evaluate tta_scales=[1.2]` does
    assert model.view_count == 4 and model.hparams.tta_scales == (1.2,)


def test_separate_networks_share_nothing():
    model = systems()["separate"]
    a, b = (set(map(id, net.backbone.parameters())) for net in model.nets.values())
    assert not a & b and len(model.backbones()) == 2


def test_separate_must_cover_every_task():
    nets = {"a": MultiTaskNet(create_backbone("tiny"), tasks=("age",))}
    with pytest.raises(ValueError, match="serve age, gender and race"):
        SeparateModule(nets)


def test_joint_marginals_are_distributions():
    net = JointNet(create_backbone("tiny"))
    out = net(torch.randn(3, 3, 32, 32))
    assert out["joint_logits"].shape == (3, 2 * 5 * 117)
    assert ((out["age"] >= 0) & (out["age"] <= 116)).all()


@pytest.mark.parametrize("name", ["multitask", "joint", "separate"])
def test_every_system_weighs_its_race_loss_by_the_recipe(name):
    """Race weighting is part of the shared recipe, so no system may ignore it."""
    torch.manual_seed(0)
    plain = systems()[name]
    weighted = type(plain)(**{**plain_args(plain), "race_weighting": 0.5})
    weighted.load_state_dict(plain.state_dict())
    weighted.race_class_weights.copy_(torch.tensor([0.2, 1.0, 3.0, 1.0, 1.0]))
    b = batch()
    b["race"] = torch.tensor([0, 0, 2, 1])
    with torch.no_grad():
        out = plain(b["image"])
        assert not torch.isclose(
            plain.compute_loss(out, b)["loss"], weighted.compute_loss(out, b)["loss"]
        )
        weighted.race_class_weights.fill_(1.0)
        torch.testing.assert_close(
            plain.compute_loss(out, b)["loss"], weighted.compute_loss(out, b)["loss"]
        )


def plain_args(model: torch.nn.Module) -> dict:
    """The constructor arguments of one of :func:`systems`'s models, its network included."""
    if isinstance(model, SeparateModule):
        return {"nets": model.nets}
    return {"net": model.net}


def test_public_names_import():
    import agefair

    for name in agefair.__all__:
        if name != "Predictor":  # needs the app extras' detector; tested with the predictor
            assert getattr(agefair, name) is not None, name
    with pytest.raises(AttributeError):
        agefair.NoSuchThing  # noqa: B018


@pytest.mark.parametrize("name", ["multitask", "joint", "separate"])
def test_a_uniform_race_prior_divides_out_what_the_weighted_loss_left(name):
    """Under ``n_c ** -p`` loss weights a system learns probabilities carrying the prior
    ``n_c ** (1 - p)``: ``race_prior=uniform`` divides exactly that out, and nothing else moves."""
    model = systems()[name]
    model.hparams.race_weighting = 0.5
    counts = np.array([400, 100, 100, 100, 25])
    model.race_log_prior.copy_(race_log_prior(counts))
    images = batch()["image"]
    as_trained = model.infer(images)
    model.use_race_prior("uniform")
    uniform = model.infer(images)
    expected = as_trained["race_p"] / torch.as_tensor(counts, dtype=torch.float32) ** 0.5
    torch.testing.assert_close(uniform["race_p"], expected / expected.sum(-1, keepdim=True))
    torch.testing.assert_close(uniform["gender_p"], as_trained["gender_p"])
    torch.testing.assert_close(uniform["age"], as_trained["age"])
    # Weights of inverse frequency leave no prior to divide out.
    model.hparams.race_weighting = 1.0
    torch.testing.assert_close(model.infer(images)["race_p"], as_trained["race_p"])


def test_the_race_prior_is_saved_and_one_from_before_it_refuses_a_uniform_prior():
    model = systems()["multitask"]
    model.race_log_prior.copy_(race_log_prior(np.array([3, 1, 1, 1, 0])))
    reloaded = systems()["multitask"]
    reloaded.load_state_dict(model.state_dict())
    torch.testing.assert_close(reloaded.race_log_prior, model.race_log_prior)
    older = {k: v for k, v in model.state_dict().items() if k != "race_log_prior"}
    reloaded.load_state_dict(older)
    reloaded.use_race_prior("training")
    with pytest.raises(ValueError, match="predates"):
        reloaded.use_race_prior("uniform")
    with pytest.raises(ValueError, match="race_prior must be one of"):
        reloaded.use_race_prior("fairface")
    with pytest.raises(ValueError, match="race_prior must be one of"):
        MultiTaskModule(MultiTaskNet(create_backbone("tiny")), race_prior="balanced")


def test_the_race_prior_and_loss_weights_follow_the_mix_training_draws():
    """The datamodule's expected draws per race, not the split's counts (a balanced sampler
    draws differently): a race it never draws counts as one face in the prior, weighs nothing."""
    datamodule = SimpleNamespace(
        training_race_counts=lambda: np.array([699.0, 100, 100, 100, 0]),
        split_table=lambda name: pd.DataFrame({"race": [0] * 6 + [1, 2, 3]}),
    )
    model = systems()["multitask"]
    model.hparams.race_weighting = 1.0
    model._trainer = SimpleNamespace(datamodule=datamodule)
    model.setup("fit")
    expected = torch.tensor([0.699, 0.1, 0.1, 0.1, 0.001])
    torch.testing.assert_close(model.race_log_prior.exp(), expected)
    # Inverse frequency of the draws, the average drawn face weighing one.
    weights = torch.tensor([1 / 699, 1 / 100, 1 / 100, 1 / 100, 0.0]) * 999 / 4
    torch.testing.assert_close(model.race_class_weights, weights)
