"""Every file under conf/ composes, and what it configures can be built."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from agefair.training.build import build_datamodule, build_system

CONF = Path(__file__).resolve().parents[1] / "conf"
PRIMARY = ("train", "eval", "bench")
EVAL_GROUPS = ("baseline", "study")
#: What an option of a group needs beside it to make a whole training config. The root's own
#: experiment is the face-pretrained one, whose heads read the fused backbone's parts, so the
#: other groups' options are composed over the from-scratch recipe they were written for.
COMPANIONS = {
    "ablation": ["experiment=ablation_full"],
    "transfer": ["experiment=transfer"],
    "experiment": [],
    "hparams_search": [],
}
NO_BUILD_ON_CPU = ("trainer=gpu", "trainer=ddp")  # need a GPU to instantiate


def options() -> list[tuple[str, str]]:
    """(group, option) for every config file in a group folder."""
    return sorted(
        (p.parent.relative_to(CONF).as_posix(), p.stem)
        for p in CONF.rglob("*.yaml")
        if p.parent != CONF
    )


def composed(config: str, overrides: list[str], tmp_path: Path):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(config, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
        cfg.hydra.runtime.output_dir = str(tmp_path)
    HydraConfig.instance().set_config(cfg)
    return cfg


def test_every_file_is_a_primary_config_or_a_group_option():
    top = sorted(p.stem for p in CONF.glob("*.yaml"))
    assert top == sorted(PRIMARY)
    assert len(options()) > 50


@pytest.mark.parametrize("config", PRIMARY)
def test_primary_configs_compose(config, tmp_path):
    cfg = composed(config, ["ckpt_path=none.ckpt"] if config == "eval" else [], tmp_path)
    assert cfg.task_name


@pytest.mark.parametrize(("group", "option"), options(), ids=[f"{g}={o}" for g, o in options()])
def test_every_group_option_composes_and_builds(group, option, tmp_path):
    choice = f"{group}={option}"
    if group == "hydra/launcher":  # Hydra's launchers, over the plugins' own configs
        launcher = composed("train", [choice], tmp_path).hydra.launcher
        assert launcher._target_.startswith("hydra_plugins.")
        assert launcher.get("n_jobs", 1) >= 1 and launcher.get("timeout_min", 1) > 0
        return
    if "/" in group:  # a group inside a group, e.g. model/recipe: what its parent's files share
        parent, child = group.split("/", 1)
        for path in sorted((CONF / parent).glob("*.yaml")):
            owner = f"{parent}={path.stem}"
            cfg = composed(
                "train", ["experiment=from_scratch", owner, "pretrained=false"], tmp_path
            )
            shared = OmegaConf.load(CONF / group / f"{option}.yaml")
            overridden = OmegaConf.load(path)
            for key in shared:
                if key not in overridden:
                    assert cfg[parent][key] == shared[key], (path.name, key)
            build_system(cfg)
        return
    if group in EVAL_GROUPS:
        cfg = composed("eval", [choice, "ckpt_path=none.ckpt"], tmp_path)
        assert cfg[group] is not None
        return
    if group == "hydra":  # Hydra's own settings: the root config composes them
        cfg = composed("train", [], tmp_path)
        run_dir = OmegaConf.to_container(cfg.hydra.run, resolve=False)["dir"]
        assert run_dir.endswith("${now:%Y-%m-%d_%H-%M-%S}")
        return
    extra = COMPANIONS.get(group, ["experiment=from_scratch"])
    cfg = composed("train", [*extra, choice, "pretrained=false"], tmp_path)
    model = build_system(cfg)
    datamodule = build_datamodule(cfg, model)
    assert datamodule.img_size == cfg.data.img_size
    for callback in (cfg.get("callbacks") or {}).values():
        if callback is not None:
            instantiate(callback)
    if choice not in NO_BUILD_ON_CPU:
        trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
        assert trainer.max_epochs == cfg.trainer.max_epochs


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF / "backbone").glob("*.yaml")))
def test_a_backbone_picked_over_the_default_recipe_gets_none_of_its_keys(option, tmp_path):
    """The default experiment leaves its backbone's settings to that backbone's own file, so
    ``backbone=<another>`` on the command line does not hand the other one keys it lacks."""
    cfg = composed("train", [f"backbone={option}", "pretrained=false"], tmp_path)
    assert instantiate(cfg.backbone).num_features > 0
