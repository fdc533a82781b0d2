"""One registry type for every name -> factory table of agefair.

Backbones, age heads, face detectors, transform presets, baselines and report studies are each
chosen by name from a config. Each table is a :class:`Registry`, so each behaves the same way:

* ``registry.register(name)`` as a decorator, or ``registry.register(name, factory)``, adds a
  factory; a name is registered once (``replace=True`` swaps it deliberately);
* ``registry.create(name, *args, **kwargs)`` calls the factory;
* ``registry.lookup(name)`` returns it; an unknown name raises :class:`ValueError` whose
  message names the table's kind and lists the known names, so a config typo says what to type;
* it is a ``dict`` (name -> factory) for everything else: ``name in registry``,
  ``sorted(registry)``, iteration in registration order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class Registry(dict[str, F], Generic[F]):
    """Factories by name (see the module docstring for the contract).

    Args:
        kind: What the factories make, for messages (``"backbone"``, ``"face detector"``).
        entries: Initial ``name -> factory`` pairs.
    """

    def __init__(self, kind: str, entries: dict[str, F] | None = None) -> None:
        super().__init__()
        self.kind = kind
        for name, factory in (entries or {}).items():
            self.register(name, factory)

    def register(self, name: str, factory: F | None = None, *, replace: bool = False) -> Any:
        """Adds ``factory`` under ``name``; without a factory, a decorator that adds one.

        Raises:
            ValueError: ``name`` is taken and ``replace`` is False.
        """

        def add(f: F) -> F:
            if name in self and not replace:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self[name] = f
            return f

        return add if factory is None else add(factory)

    def lookup(self, name: str) -> F:
        """The factory registered as ``name``.

        Raises:
            ValueError: No such name; the message lists the known ones.
        """
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self))}")
        return self[name]

    def create(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """``lookup(name)(*args, **kwargs)``."""
        return self.lookup(name)(*args, **kwargs)
