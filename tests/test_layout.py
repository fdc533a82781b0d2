"""The package's layers: imports run one way, with no cycle (see the README's "Where things live").

The import graph is read from the source (every ``import`` and ``from ... import``, at the top of
a module or inside a function), so an import moved into a function to dodge a cycle still counts.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "agefair"

#: What each part of the package may import besides itself, read bottom to top. The package
#: itself (``agefair``: its version, and names it imports only when asked for) is foundation.
FOUNDATION = {"", "labels", "registry", "config"}
ALLOWED: dict[str, set[str]] = {
    "labels": set(),
    "registry": set(),
    "config": set(),
    "metrics": {"", "labels"},
    "data": FOUNDATION,
    "models": FOUNDATION | {"metrics", "data"},
    "inference": FOUNDATION | {"metrics", "data", "models"},
    "training": FOUNDATION | {"metrics", "data", "models"},
    "evaluation": FOUNDATION | {"metrics", "data", "models", "inference", "training"},
    "reporting": FOUNDATION | {"metrics", "training", "evaluation"},
    # The app reaches the models only through the Predictor.
    "app": {"", "labels", "inference"},
}
#: The commands: they may import from any layer, and no module imports them.
ENTRY_POINTS = {
    "agefair.train",
    "agefair.evaluate",
    "agefair.predict",
    "agefair.export",
    "agefair.report",
    "agefair.bench",
    "agefair.cli",
    "agefair.training.train",
    "agefair.evaluation.evaluate",
    "agefair.reporting.report",
    "agefair.inference.predict",
    "agefair.inference.export",
}
#: The thin command modules and the modules they delegate to.
COMMANDS = {
    "agefair.train": "agefair.training.train",
    "agefair.evaluate": "agefair.evaluation.evaluate",
    "agefair.predict": "agefair.inference.predict",
    "agefair.export": "agefair.inference.export",
    "agefair.report": "agefair.reporting.report",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The agefair modules ``path`` imports (``from agefair.data import framing`` is
    ``agefair.data.framing``, ``from agefair.data.framing import crop_face`` too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "agefair"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "agefair":
                continue
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in known else node.module)
    return found & known


def part(module: str) -> str:
    """``agefair.data.framing`` -> ``data``; ``agefair.labels`` -> ``labels``."""
    return module.split(".")[1] if "." in module else ""


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(path, set(mods)) - {name} for name, path in mods.items()}


def test_every_module_has_a_layer(graph) -> None:
    unplaced = [
        m for m in graph if m != "agefair" and m not in ENTRY_POINTS and part(m) not in ALLOWED
    ]
    assert not unplaced, f"modules outside every layer (add them to ALLOWED): {unplaced}"


def test_imports_run_one_way(graph) -> None:
    upward = []
    for module, imported in graph.items():
        if module in ENTRY_POINTS or module == "agefair":
            continue
        own = part(module)
        for target in imported:
            if target in ENTRY_POINTS:
                upward.append(f"{module} imports the command {target}")
            elif part(target) not in ALLOWED[own] | {own}:
                upward.append(f"{module} ({own}) imports {target} ({part(target)})")
    assert not upward, "\n".join(sorted(upward))


def test_no_module_imports_a_command(graph) -> None:
    bad = [
        f"{module} imports {target}"
        for module, imported in graph.items()
        for target in imported & ENTRY_POINTS
        if COMMANDS.get(module) != target
    ]
    assert not bad, "\n".join(bad)


def test_no_import_cycle(graph) -> None:
    # Depth-first search; a back edge closes a cycle.
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt) :] + [node, nxt]))
            elif nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "\n".join(cycles)


def test_the_rules_catch_an_upward_import(tmp_path) -> None:
    """The reader of the graph sees a lazy import inside a function, as the rules need."""
    source = tmp_path / "x.py"
    source.write_text("def f():\n    from agefair.training.train import main\n")
    assert imports_of(source, {"agefair.training.train"}) == {"agefair.training.train"}
    source.write_text("from agefair.data import framing\n")
    assert imports_of(source, {"agefair.data", "agefair.data.framing"}) == {"agefair.data.framing"}


def test_the_readme_says_where_every_module_lives() -> None:
    readme = (PACKAGE.parent / "README.md").read_text()
    start = readme.index("## Where things live")
    section = readme[start : readme.index("\n## ", start + 1)]
    files = sorted(p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*.py"))
    missing = [f for f in files if f"`{f}`" not in section and not f.endswith("/__init__.py")]
    assert not missing, f"README's 'Where things live' does not name {missing}"
