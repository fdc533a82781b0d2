"""Every name -> factory table is a Registry and keeps its contract."""

from __future__ import annotations

import re

import pytest

from agefair.data.transforms import PRESETS
from agefair.evaluation.baselines import BASELINES
from agefair.inference.detect import DETECTORS
from agefair.models.backbones import BACKBONES
from agefair.models.heads import AGE_HEADS
from agefair.registry import Registry
from agefair.reporting.studies import STUDIES

REGISTRIES = (BACKBONES, AGE_HEADS, DETECTORS, PRESETS, BASELINES, STUDIES)


@pytest.mark.parametrize("registry", REGISTRIES, ids=lambda r: r.kind)
def test_every_registry_keeps_the_contract(registry):
    assert isinstance(registry, Registry) and len(registry) > 0
    assert all(callable(registry.lookup(name)) for name in registry)
    known = ", ".join(sorted(registry))
    with pytest.raises(
        ValueError, match=re.escape(f"unknown {registry.kind} 'nope'; known: {known}")
    ):
        registry.lookup("nope")
    name = next(iter(registry))
    with pytest.raises(ValueError, match="already registered"):
        registry.register(name, registry[name])
    assert registry.lookup(name) is registry[name]


def test_register_as_decorator_create_and_replace():
    things = Registry("thing", {"one": lambda: 1})

    @things.register("two")
    def two(offset: int = 0) -> int:
        return 2 + offset

    assert two() == 2  # the decorator hands the function back
    assert things.create("two", offset=1) == 3 and list(things) == ["one", "two"]
    things.register("one", lambda: 10, replace=True)
    assert things.create("one") == 10
    with pytest.raises(ValueError, match="unknown thing 'three'; known: one, two"):
        things.create("three")
