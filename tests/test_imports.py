"""Public names load on first use: the pytest plugin imports only what it needs."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

# Each test starts a fresh interpreter.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent
PACKAGES = ("evalsuite", "regressions", "gates")
# What the plugin has no use for while it collects and runs cases.
NOT_FOR_THE_PLUGIN = ("jinja2", "deepdiff", "rich", "click", "gates._demo",
                      "gates._reports.postmortem", "gates._reports.verdict_report", "gates._cli",
                      "gates._gate.pipeline")


def fresh_python(code: str) -> object:
    """Run ``code`` in a new interpreter and return what it printed, as JSON."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
    return json.loads(done.stdout)


def typed_exports(package: str) -> dict[str, str]:
    """Name → module, as the TYPE_CHECKING block of the package's __init__ imports them."""
    tree = ast.parse((ROOT / package / "__init__.py").read_text())
    names = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom) and statement.module
                names.update({alias.asname or alias.name: statement.module
                              for alias in statement.names})
    return names


def test_the_plugin_imports_no_report_demo_or_cli_modules() -> None:
    """Importing gates.pytest_plugin leaves Jinja2, deepdiff, the demo and the reports unloaded."""
    loaded = fresh_python("import json, sys, gates.pytest_plugin\n"
                          "print(json.dumps(list(sys.modules)))")
    assert isinstance(loaded, list)
    unwanted = sorted(m for m in loaded
                      if any(m == name or m.startswith(f"{name}.") for name in NOT_FOR_THE_PLUGIN))
    assert unwanted == []


# What `reinstate mode` and `reinstate check` (a runtime, a deploy job) have no use for.
NOT_FOR_A_MODE_READ = ("jinja2", "deepdiff", "gates._demo", "gates._reports.postmortem",
                       "gates._reports.verdict_report", "gates._backtest", "gates._gate.pipeline",
                       "gates._cli.gate", "gates._cli.demo", "evalsuite._http_adapter",
                       "evalsuite._python_adapter", "evalsuite._subprocess_adapter")


@pytest.mark.parametrize("command", ["mode", "check"])
def test_a_mode_read_loads_only_its_own_command(example: object, command: str) -> None:
    """`reinstate mode` and `check` import neither the other commands, the report, the
    demo, the backtest nor the adapters that run an agent; they still answer."""
    from gates import Workspace
    assert isinstance(example, Workspace)
    loaded = fresh_python(
        "import contextlib, io, json, sys\n"
        "from gates._cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        f"    code = main(['-C', {str(example.root)!r}, {command!r}, 'refund-agent'])\n"
        "print(json.dumps([code, out.getvalue(), list(sys.modules)]))")
    assert isinstance(loaded, list)
    code, out, modules = loaded
    # A fresh example has no state store yet: both answer "not cleared" (exit 3), not a
    # usage error.
    assert code == 3
    assert command != "mode" or out.strip() == "suspended"
    unwanted = sorted(m for m in modules
                      if any(m == name or m.startswith(f"{name}.") for name in NOT_FOR_A_MODE_READ))
    assert unwanted == []


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves_to_what_type_checkers_see(package: str) -> None:
    """In a new interpreter, each name of __all__ is in dir() and is the object its module holds."""
    exports = typed_exports(package)
    code = f"""
import importlib, json
package = importlib.import_module({package!r})
listed = set(dir(package))
exports = {exports!r}
wrong = [name for name in package.__all__
         if name not in listed or name not in exports
         or getattr(package, name) is not getattr(importlib.import_module(exports[name]), name)]
print(json.dumps({{"all": package.__all__, "wrong": wrong}}))
"""
    found = fresh_python(code)
    assert isinstance(found, dict)
    assert sorted(found["all"]) == sorted(exports) and found["wrong"] == []


def test_the_checks_table_is_whole_when_read_first() -> None:
    """gates.CHECKS, read before anything else, lists the checks the pipeline registers."""
    names = fresh_python("import gates, json; print(json.dumps(list(gates.CHECKS)))")
    assert isinstance(names, list)
    assert {"evals", "control_changes", "logging", "regression_ratchet"} <= set(names)
