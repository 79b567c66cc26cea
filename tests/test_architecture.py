"""The shape of the code: one import direction, public APIs only across packages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGES = ("evalsuite", "regressions", "gates")
# Who may import whom: gates → regressions → evalsuite.
ALLOWED = {"evalsuite": set(), "regressions": {"evalsuite"},
           "gates": {"evalsuite", "regressions"}}


def _imports(package: str) -> list[tuple[Path, str]]:
    found = []
    for path in (ROOT / package).rglob("*.py"):
        if "_example" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.append((path, node.module))
            elif isinstance(node, ast.Import):
                found += [(path, alias.name) for alias in node.names]
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_dependencies_flow_one_way(package: str) -> None:
    """A package imports only the packages below it."""
    for path, module in _imports(package):
        top = module.split(".")[0]
        if top in PACKAGES and top != package:
            assert top in ALLOWED[package], f"{path.relative_to(ROOT)} imports {module}"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_reaching_into_private_modules(package: str) -> None:
    """Another package is used through its public API, never its _private modules."""
    for path, module in _imports(package):
        parts = module.split(".")
        if parts[0] in PACKAGES and parts[0] != package:
            assert len(parts) == 1, f"{path.relative_to(ROOT)} imports {module}"


@pytest.mark.parametrize("package", PACKAGES)
def test_public_api_is_declared(package: str) -> None:
    """Every name in a package's __all__ exists."""
    module = __import__(package)
    assert module.__all__, package
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


def test_yaml_is_only_loaded_safely() -> None:
    """No module calls yaml.load or yaml.unsafe_load, which can build arbitrary objects."""
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            assert "yaml.load(" not in text and "unsafe_load" not in text, path


# gates' own layers, lowest first: each imports only the layers before it, and the
# workspace modules at the top of the package (configuration, errors), which all read.
LAYERS = ("_controls", "_verdict", "_store", "_gate", "_response", "_backtest", "_reports",
          "_cli")


def _runtime_imports(path: Path) -> list[str]:
    """Modules ``path`` imports when it runs: a type-only import (under ``TYPE_CHECKING``)
    names a type for the checker and loads nothing."""
    found: list[str] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
                visit(node.orelse)
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and inner.module:
                    found.append(inner.module)
                elif isinstance(inner, ast.Import):
                    found.extend(alias.name for alias in inner.names)

    visit(ast.parse(path.read_text()).body)
    return found


def test_gates_layers_import_downwards() -> None:
    """A gates layer never imports a layer above it, so the folder reads as the flow."""
    for layer in LAYERS:
        for path in (ROOT / "gates" / layer).rglob("*.py"):
            for module in _runtime_imports(path):
                parts = module.split(".")
                if parts[0] == "gates" and len(parts) > 1 and parts[1] in LAYERS:
                    assert LAYERS.index(parts[1]) <= LAYERS.index(layer), (
                        f"{path.relative_to(ROOT)} ({layer}) imports {module}, a layer above it")


def test_gates_folder_shows_the_architecture() -> None:
    """gates holds its layers as sub-packages, each saying what it is, beside only the
    workspace modules, the entry points, the pytest plugin and the leaves every layer may
    use (its errors, and ``visible``: the reports and ``check``, which loads no report,
    print outside text through it)."""
    gates = ROOT / "gates"
    for layer in LAYERS:
        init = gates / layer / "__init__.py"
        assert init.is_file() and init.read_text().startswith('"""'), layer
    loose = sorted(p.stem for p in gates.glob("_*.py") if p.stem not in ("__init__", "__main__"))
    assert loose == ["_config", "_demo", "_errors", "_init", "_schemas", "_visible"]
