"""The members of Hydra multiruns as one frame: results rows, overrides, labels, seeds pooled.

Every member's ``results.csv`` (see ``agefair.training.results``) becomes one row, beside the
member's overrides, its label (its swept overrides), values of its ``.hydra/config.yaml`` and its
budget. A report's own ``results.csv`` stands for the sweeps it was made from, so a report can be
made again, or extended with new sweeps, once those multirun folders are gone. Members that
differ only by ``seed`` are pooled by :func:`aggregate_seeds` into their mean and spread.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from agefair.reporting.plots import std_column
from agefair.reporting.tables import member_budget
from agefair.training.results import (  # override_key: part of this module's interface too
    NOT_TRAINED,
    config_hash,
    override_key,
    trains_alike,
    without_keys,
)

SEED_KEY = "seed"
#: Overrides that say how a member ran beside those that train alike: left out of its label.
HOW_IT_RAN = ("threads",)
#: Config values every member's row gets (as ``cfg/<key>``), from its ``.hydra/config.yaml``.
CONFIG_KEYS = (
    "trainer.max_epochs",
    "trainer.limit_train_batches",
    "trainer.fast_dev_run",
    "data.batch_size",
    "data.img_size",
    "threads",
    "optimized_metric",
    "backbone.depth",
    "backbone.width",
)


# ------------------------------------------------------------------------------------ collecting
def member_dirs(sweep_dir: Path) -> list[Path]:
    """The member folders of a multirun folder (numbered, or holding a results row), in order.

    Raises:
        FileNotFoundError: the folder has no member.
    """
    subdirs = [p for p in sweep_dir.iterdir() if p.is_dir()] if sweep_dir.is_dir() else []
    dirs = [p for p in subdirs if p.name.isdigit() or (p / "results.csv").is_file()]
    if not dirs:
        raise FileNotFoundError(f"no */results.csv under {sweep_dir}: is it a multirun folder?")
    return sorted(dirs, key=lambda p: int(p.name) if p.name.isdigit() else 0)


def is_recorded_report(source: str | Path) -> bool:
    """Whether a source of members is a report's ``results.csv`` rather than a multirun folder."""
    return Path(source).suffix == ".csv"


def pending_members(sources: Iterable[Path]) -> list[Path]:
    """Members without a results row yet: still running, or killed before writing one."""
    sweeps = [Path(s) for s in sources if not is_recorded_report(s)]
    return [d for s in sweeps for d in member_dirs(s) if not (d / "results.csv").is_file()]


def sweep_config(sweep_dir: Path) -> DictConfig | None:
    """The sweep's Hydra config: ``multirun.yaml`` (basic sweeper) or a member's ``hydra.yaml``.

    The Optuna sweeper writes no ``multirun.yaml``; every member's ``.hydra/hydra.yaml`` holds
    the same sweeper settings.
    """
    candidates = [sweep_dir / "multirun.yaml", *sorted(sweep_dir.glob("*/.hydra/hydra.yaml"))]
    path = next((p for p in candidates if p.is_file()), None)
    return OmegaConf.load(path) if path else None


def swept_keys(sweep_dir: Path) -> list[str]:
    """The keys a sweep varies: its sweeper's params and the command line's sweep overrides."""
    cfg = sweep_config(sweep_dir)
    if cfg is None:
        return []
    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {}
    task = [str(o) for o in OmegaConf.select(cfg, "hydra.overrides.task", default=None) or []]
    parsed = OverridesParser.create().parse_overrides(task)
    keys = [override_key(str(k)) for k in params]
    keys += [o.key_or_group for o in parsed if o.is_sweep_override()]
    return list(dict.fromkeys(keys))


def member_overrides(member_dir: Path, row: pd.Series) -> list[str] | None:
    """The member's overrides (``.hydra/overrides.yaml``, else its failed row's); None: unknown."""
    path = member_dir / ".hydra" / "overrides.yaml"
    if path.is_file():
        return [str(o) for o in OmegaConf.load(path)]
    text = row.get("overrides")
    return str(text).split() if isinstance(text, str) else None


def member_config(member_dir: Path) -> DictConfig | None:
    """The member's composed config (``.hydra/config.yaml``, unresolved), None if absent."""
    path = member_dir / ".hydra" / "config.yaml"
    return OmegaConf.load(path) if path.is_file() else None


def config_values(cfg: DictConfig | None) -> dict[str, Any]:
    """``CONFIG_KEYS`` of a config, as ``cfg/<key>`` (None where absent or unresolvable)."""
    cfg = cfg if cfg is not None else OmegaConf.create()
    return {
        f"cfg/{key}": OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
        for key in CONFIG_KEYS
    }


def is_config_override(override: str) -> bool:
    """Whether an override changes what is trained (not the seed, paths, progress output)."""
    return override_key(override) != SEED_KEY and not trains_alike(override)


def config_digest(cfg: DictConfig) -> str:
    """A digest of the config but the seed and the parts that train alike (``NOT_TRAINED``).

    Overrides alone would pool runs of a config file edited between two sweeps.
    """
    data = OmegaConf.to_container(cfg, resolve=False)
    return config_hash(without_keys(data, [SEED_KEY, *NOT_TRAINED]))


def member_label(overrides: list[str] | None, swept: Sequence[str], fallback: str) -> str:
    """The member's swept overrides but the seed: what tells it apart in tables and plots.

    A member of a sweep over seeds alone is named by the overrides that set what it trained
    (``experiment=face_pretrained trainer.max_epochs=22``), else by ``fallback``.
    """
    chosen = [
        o for o in overrides or [] if override_key(o) in swept and override_key(o) != SEED_KEY
    ]
    if not chosen and all(override_key(k) == SEED_KEY for k in swept):
        chosen = [
            o
            for o in overrides or []
            if is_config_override(o) and override_key(o) not in HOW_IT_RAN
        ]
    return " ".join(chosen) or fallback


def config_group(overrides: list[str] | None, cfg: DictConfig | None, unique: str) -> str:
    """A key equal for members trained alike but for the seed (``unique`` when unknown).

    The overrides name the configuration; the config's digest tells apart sweeps whose config
    files differed.
    """
    if overrides is None and cfg is None:
        return unique
    names = sorted(o for o in overrides or [] if is_config_override(o))
    return " ".join([*names, config_digest(cfg) if cfg is not None else ""]).strip()


def member_row(member_dir: Path, swept: Sequence[str]) -> pd.DataFrame:
    """A member's results row with its sweep, overrides, label, seed group and config values."""
    row = pd.read_csv(member_dir / "results.csv", dtype={"config_hash": str})
    first = row.iloc[0]
    overrides = member_overrides(member_dir, first)
    cfg = member_config(member_dir)
    fallback = first.get("model") if isinstance(first.get("model"), str) else member_dir.name
    extra = {
        "sweep": str(member_dir.parent),
        "member": member_dir.name,
        "overrides": " ".join(overrides or []),
        "label": member_label(overrides, swept, fallback),
        "group": config_group(overrides, cfg, str(member_dir)),
        **config_values(cfg),
    }
    added = pd.DataFrame([extra], index=row.index)
    return pd.concat([row.drop(columns=list(extra), errors="ignore"), added], axis=1)


def distinct_labels(members: pd.DataFrame) -> pd.Series:
    """Labels that tell configurations apart.

    A label shared by several configurations first gets the member's own config overrides that
    not all members under that label have (a sweep run again with ``model.race_weighting=0``),
    then, if still shared, its sweep's name (two sweeps of one experiment whose config files or
    budgets differ), then its member number.
    """
    labels = members["label"]
    overrides = (
        members["overrides"]
        .fillna("")
        .str.split()
        .map(lambda words: [w for w in words if is_config_override(w)])
    )
    common_by_label = {
        label: set.intersection(*(set(words) for words in overrides[labels == label]))
        for label in labels.unique()
    }
    own = [
        "".join(f" {w}" for w in words if w not in common_by_label[label] | set(label.split()))
        for words, label in zip(overrides, labels, strict=True)
    ]
    sweep_names = " @" + members["sweep"].map(lambda s: Path(s).name)
    for suffix in (
        pd.Series(own, index=members.index),
        sweep_names,
        " #" + members["member"].astype(str),
    ):
        shared = members.groupby(labels)["group"].transform("nunique") > 1
        labels = labels.where(~shared, labels + suffix)
    return labels


def recorded_members(path: Path) -> pd.DataFrame:
    """The member rows of a report's ``results.csv``, as that report collected them.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a report's member table.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no report table {path}")
    rows = pd.read_csv(path, dtype={"config_hash": str, "member": str})
    missing = {"status", "sweep", "member", "overrides", "label", "group"} - set(rows.columns)
    if missing:
        raise ValueError(f"{path} is not a report's results.csv: no {', '.join(sorted(missing))}")
    return rows.drop(columns=["budget"], errors="ignore")


def collect(*sources: str | Path) -> pd.DataFrame:
    """One row per member of the multirun folders (members are their numbered subfolders) and of
    recorded reports (``results.csv`` files), with its ``budget``; labels tell configurations
    apart within a budget."""
    if not sources:
        raise ValueError("no sweep folder given")
    frames = []
    for source in map(Path, sources):
        if is_recorded_report(source):
            frames.append(recorded_members(source))
            continue
        swept = swept_keys(source)
        done = [d for d in member_dirs(source) if (d / "results.csv").is_file()]
        frames += [member_row(d, swept) for d in done]
    if not frames:
        raise FileNotFoundError(f"no member of {', '.join(map(str, sources))} has finished")
    members = pd.concat(frames, ignore_index=True).copy()  # one block: columns are added
    members = members.assign(budget=[member_budget(r) or "unknown" for _, r in members.iterrows()])
    labels = [distinct_labels(part) for _, part in members.groupby("budget", sort=False)]
    return members.assign(label=pd.concat(labels))


# ----------------------------------------------------------------------------------- aggregating
def aggregate_seeds(members: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: numbers averaged over its seeds, their spread as ``<col>:std``.

    Only members that finished are pooled (by ``group``); each failed member stays a row of its
    own, so tables show it with its error. ``n_seeds`` counts the pooled members, ``seeds``
    names them.
    """
    failed = members["status"] != "ok"
    alone = members["sweep"].astype(str) + "/" + members["member"].astype(str)
    units = members["group"].astype(str).where(~failed, "failed " + alone)
    grouped = members.groupby(units, sort=False)
    numeric = [
        c
        for c in members.columns
        if pd.api.types.is_numeric_dtype(members[c])
        and not pd.api.types.is_bool_dtype(members[c])
        and c != SEED_KEY
        and not c.startswith("cfg/")  # equal within a configuration
    ]
    first = grouped.first()
    means = pd.concat([first.drop(columns=numeric), grouped[numeric].mean()], axis=1)
    counts = pd.DataFrame({"n_seeds": grouped.size()})
    if SEED_KEY in members:
        counts["seeds"] = grouped[SEED_KEY].agg(lambda s: ",".join(f"{v:g}" for v in s.dropna()))
    spread = grouped[numeric].std().rename(columns=std_column)
    out = pd.concat([means[first.columns], spread, counts], axis=1)
    return out.reset_index(drop=True)


def ok_configs(configs: pd.DataFrame) -> pd.DataFrame:
    """The configurations with at least one finished member."""
    return configs[configs["status"] == "ok"]
