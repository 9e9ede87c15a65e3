"""The layers import one way (docs/contributing/architecture.md): studyfile -> results -> training -> search -> api ->
cli, the shared modules at the top importing no layer, nothing importing the CLI; and no circle runs through the study
file's layer. Every import counts, the ones inside functions too: a deferred import still runs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hpsearch"
ORDER = ["studyfile", "results", "training", "search", "api", "cli"]  # each may import those before it
SHARED = -1  # errors, defaults, paths, escape, files, words, record, storage/: any layer may import them


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = modules()


def imports(path: Path) -> set[str]:
    """The hpsearch modules `path` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                      for alias in node.names}
    return {name for name in found if name in MODULES}


GRAPH = {name: imports(path) - {name} for name, path in MODULES.items()}


def layer(module: str) -> int | None:
    """The module's place in ORDER, SHARED, or None for the package and its entry point."""
    parts = module.split(".")
    if module in ("hpsearch", "hpsearch.__main__"):
        return None
    return ORDER.index(parts[1]) if parts[1] in ORDER else SHARED


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_a_module_imports_only_its_own_layer_the_ones_before_it_and_the_shared_modules(module):
    here = layer(module)
    if here is None:
        return
    upward = [name for name in GRAPH[module] if layer(name) is not None and layer(name) > here]
    assert not upward, f"{module} ({ORDER[here] if here >= 0 else 'shared'}) imports {upward}"


def test_training_imports_no_storage():
    """Training is handed folders and files (a checkpoint's path, a source's weights), never a storage: whoever runs
    it (search/, results/) knows where the study is stored."""
    training = {name: sorted(n for n in GRAPH[name] if n.startswith("hpsearch.storage"))
                for name in GRAPH if name.startswith("hpsearch.training")}
    assert not {name: found for name, found in training.items() if found}


def test_no_circle_runs_through_the_study_file_layer():
    studyfile = {name for name in GRAPH if name.startswith("hpsearch.studyfile")}
    for start in studyfile:
        seen, todo = set(), list(GRAPH[start])
        while todo:
            name = todo.pop()
            assert name != start, f"{start} imports itself through {sorted(seen)}"
            if name not in seen:
                seen.add(name)
                todo.extend(GRAPH[name])


def test_the_walk_sees_deferred_imports():
    """Whatever is imported inside a function counts (schema once reached preflight that way)."""
    assert "hpsearch.search.tracking" in GRAPH["hpsearch.api"]
    assert "hpsearch.api" in GRAPH["hpsearch.cli"]


def test_every_subpackage_is_in_the_wheel():
    """pyproject.toml names the packages the wheel holds: a subpackage left out imports in a checkout and fails in
    every installed copy (as hpsearch.record once did in CI's wheel check)."""
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(PACKAGE.parent).parts) for init in PACKAGE.rglob("__init__.py")}
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
