"""What the commands deploy jobs and agent runtimes call most load, in a fresh interpreter.

Structural, never timed: each test runs the real entry point in a new process, over a
workspace that is back in full operation, and lists what it imported.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import click
import pytest

from gates import Workspace
from gates._cli import COMMANDS, SUMMARIES, main, module_of, summary
from gates._store.mode_light import inputs_path
from tests.conftest import RunCli

# Each test starts a fresh interpreter.
pytestmark = pytest.mark.slow

# Loaded by none of them: the reports and their renderers, the demo, the backtest, the
# adapters that run an agent, the log readers, and the command line CEL ships with.
NEVER = ("jinja2", "deepdiff", "typer", "prompt_toolkit", "pygments", "gates._demo",
         "gates._reports", "gates._backtest", "gates._gate", "evalsuite._http_adapter",
         "evalsuite._python_adapter", "evalsuite._subprocess_adapter", "evalsuite._otel_spans",
         "evalsuite._logs", "phonenumbers", "stdnum")
# Reading a mode needs no rule, no verdict and no rich table when nobody watches.
NOT_FOR_A_MODE = (*NEVER, "rich", "cel", "filelock", "gates._controls", "gates._verdict",
                  "gates._response")


def run_entry(code: str, cwd: Path) -> tuple[dict[str, object], str]:
    """Run ``code`` in a new interpreter, which stores what it found in ``found`` and
    leaves ``sys.modules`` as the entry point left it; (what it found, its stdout)."""
    dump = cwd / "loaded.json"
    wrapped = (f"import json, sys\nfound = {{}}\n{code}\n"
               f"found['modules'] = sorted(sys.modules)\n"
               f"open({str(dump)!r}, 'w').write(json.dumps(found))\n")
    env = {**os.environ, "REINSTATE_ACTOR": "test.engineer"}
    for forcing in ("FORCE_COLOR", "TTY_COMPATIBLE", "REINSTATE_WORKSPACE"):
        env.pop(forcing, None)
    done = subprocess.run([sys.executable, "-c", wrapped], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(dump.read_text()), done.stdout


def loaded(modules: object, names: tuple[str, ...]) -> list[str]:
    """The modules in ``modules`` that are one of ``names`` or inside one."""
    assert isinstance(modules, list)
    return sorted(m for m in modules
                  if any(m == name or m.startswith(f"{name}.") for name in names))


def command_line(*args: str) -> str:
    """Code that runs ``reinstate ARGS`` through the console script's own function."""
    return (f"sys.argv = ['reinstate', *{list(args)!r}]\n"
            "from gates.cli import main\n"
            "try:\n    main()\nexcept SystemExit as exit:\n    found['code'] = exit.code\n")


# What the full read of a mode in full operation loads to prove its controls: the control
# files' names and the fingerprint's digests, and the latest verdict's deciding fields.
PROVING = ("gates._controls", "gates._verdict")


def test_mode_in_a_pipe_reads_the_mode_without_rules_verdicts_or_rich(
        back_in_full: Workspace) -> None:
    """`reinstate mode` into a pipe answers `full` having loaded no rich, CEL, control or
    verdict model, report, adapter or log reader, once a full read proved the controls (it
    loads the fingerprint's digests and the latest verdict's deciding fields only)."""
    found, out = run_entry(command_line("mode", "refund-agent"), back_in_full.root)
    assert found["code"] == 0 and out == "full\n"
    assert "gates._store.control_proof" in found["modules"]
    assert loaded(found["modules"], tuple(n for n in NOT_FOR_A_MODE if n not in PROVING)) == []
    assert loaded(found["modules"], ("gates._verdict.verdict", "gates._controls.policy")) == []
    found, out = run_entry(command_line("mode", "refund-agent"), back_in_full.root)
    assert found["code"] == 0 and out == "full\n"
    assert loaded(found["modules"], NOT_FOR_A_MODE) == []


def test_check_answers_without_rich_reports_or_cels_command_line(
        back_in_full: Workspace) -> None:
    """`reinstate check` clears the restored agent having loaded neither rich, CEL's own
    command line, the reports, the demo, the backtest, the adapters nor the log readers."""
    found, out = run_entry(command_line("check", "refund-agent"), back_in_full.root)
    assert found["code"] == 0 and out.startswith("refund-agent: cleared for full operation")
    assert loaded(found["modules"], (*NEVER, "rich")) == []
    assert "cel" in found["modules"]  # the controls' rules were compiled, as before


def test_check_reads_the_stored_verdict_without_the_verdict_models(
        back_in_full: Workspace) -> None:
    """`reinstate check` clears the restored agent having built neither the whole verdict
    model, its check results, the signing module nor the replay policy: it reads the few
    verdict fields it decides on, vouched for by the audit log."""
    found, out = run_entry(command_line("check", "refund-agent"), back_in_full.root)
    assert found["code"] == 0 and out.startswith("refund-agent: cleared for full operation")
    assert loaded(found["modules"], (
        "gates._verdict.verdict", "gates._verdict.check_results", "gates._verdict.version_1",
        "gates._store.attestation", "gates._controls.policy", "securesystemslib",
        "cryptography")) == []
    assert "gates._verdict.stored" in found["modules"]


def test_check_sends_nothing_so_loads_no_notification_sender(
        back_in_full: Workspace) -> None:
    """`reinstate check` clears the restored agent without importing the notification
    module that `restore` sends through."""
    found, out = run_entry(command_line("check", "refund-agent"), back_in_full.root)
    assert found["code"] == 0 and out.startswith("refund-agent: cleared for full operation")
    assert loaded(found["modules"], ("gates._response.notify", "apprise")) == []


def test_mode_reads_the_store_without_the_verdict_models(back_in_full: Workspace) -> None:
    """`reinstate mode --json` reads the store's audit log, and proves the controls from the
    latest verdict's deciding fields, without building the verdict, check-result or ratchet
    models the audit module only names in its annotations."""
    found, out = run_entry(command_line("mode", "refund-agent", "--json"), back_in_full.root)
    assert found["code"] == 0 and json.loads(out)["mode"] == "full"
    assert "gates._store.audit" in found["modules"]
    assert "gates._verdict.stored" in found["modules"]
    assert loaded(found["modules"], (
        "gates._verdict.verdict", "gates._verdict.check_results", "gates._verdict.ratchet_terms",
        "gates._verdict.version_1", "gates._store.attestation", "cel")) == []


def test_reading_a_mode_starts_no_process_module(back_in_full: Workspace) -> None:
    """`reinstate mode` and `agent_mode` answer `full` without importing `subprocess`: the
    sandbox settings they validate run nothing until an agent is started."""
    found, out = run_entry(command_line("mode", "refund-agent"), back_in_full.root)
    assert found["code"] == 0 and out == "full\n"
    assert "evalsuite._sandbox" in found["modules"]  # the config's sandbox settings were read
    assert "subprocess" not in found["modules"]
    found, _ = run_entry("from gates import agent_mode\n"
                         "found['mode'] = agent_mode('refund-agent')", back_in_full.root)
    assert found["mode"] == "full" and "subprocess" not in found["modules"]


def test_version_is_read_without_importing_the_command_line(tmp_path: Path) -> None:
    """`reinstate --version` prints the installed version having imported neither click,
    pydantic nor any reinstate package beyond gates itself."""
    found, out = run_entry(command_line("--version"), tmp_path)
    assert found["code"] == 0 and out == f"reinstate, version {version('reinstate')}\n"
    assert loaded(found["modules"], ("click", "pydantic", "rich", "evalsuite", "regressions",
                                     "gates._cli", "gates._config")) == []


def test_both_ways_to_ask_for_the_version_print_the_same_line(cli: RunCli,
                                                              tmp_path: Path) -> None:
    """`reinstate --version` and click's own `reinstate -C DIR --version` agree."""
    alone = cli("--version", cwd=tmp_path)
    with_option = cli("-C", str(tmp_path), "--version", cwd=tmp_path)
    assert alone.returncode == with_option.returncode == 0
    assert alone.stdout == with_option.stdout and alone.stdout.startswith("reinstate, version")


def test_agent_mode_reads_the_mode_without_rules_verdicts_or_the_cli(
        back_in_full: Workspace) -> None:
    """`from gates import agent_mode` answers `full` having loaded no click, rich, CEL,
    control or verdict model, report or adapter, once a full read proved the controls."""
    for _ in range(2):
        found, _ = run_entry("from gates import agent_mode\n"
                             "found['mode'] = agent_mode('refund-agent')", back_in_full.root)
        assert found["mode"] == "full"
    assert loaded(found["modules"], (*NOT_FOR_A_MODE, "click", "gates._cli")) == []


def test_cels_own_command_line_still_imports_after_reinstate_loads_cel(tmp_path: Path) -> None:
    """Once a rule has been evaluated (CEL loaded without its CLI), `import cel.cli` still
    loads CEL's real command line."""
    found, _ = run_entry(
        "from evalsuite import evaluate_bool\n"
        "found['holds'] = evaluate_bool('size(x) == 2', {'x': [1, 2]})\n"
        "import cel, cel.cli\n"
        "found['cli'] = cel.cli.__file__\n", tmp_path)
    assert found["holds"] is True
    assert isinstance(found["cli"], str) and found["cli"].endswith("cli.py")



@pytest.fixture
def investigated(example: Workspace, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """The example with INC-1 opened, contained (review), its run captured and investigated:
    the incident file holds the harmful calls' argument schemas, which reading a mode
    checks."""
    root = str(example.root)
    log = str(example.root / "logs" / "2026-11-25-refund-agent.jsonl")
    monkeypatch.setenv("REINSTATE_ACTOR", "test.engineer")
    for args in (["incident", "open", "refund-agent", "--severity", "sev2", "--summary",
                  "refunded to another account"],
                 ["contain", "INC-1", "--mode", "review", "--notify", "legal",
                  "--scope", "one refund"],
                 ["capture", "INC-1", "--run", log, "--run-id", "run-7f3a97", "--step", "4",
                  "--step", "6"],
                 ["investigate", "INC-1", "--logs", log]):
        assert main(["-C", root, *args]) == 0
    return example


def test_mode_and_check_skip_jsonschema_for_schemas_checked_before(
        investigated: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a process has checked the incident's and the controls' argument schemas, a
    fresh `reinstate mode` or `check` finds them remembered and imports no jsonschema."""
    monkeypatch.setenv("REINSTATE_CACHE_DIR", str(tmp_path / "cache"))
    first, out = run_entry(command_line("mode", "refund-agent"), investigated.root)
    assert first["code"] == 0 and out == "review\n"
    assert "jsonschema" in first["modules"]  # nothing remembered yet: checked in full
    found, out = run_entry(command_line("mode", "refund-agent"), investigated.root)
    assert found["code"] == 0 and out == "review\n"
    assert loaded(found["modules"], ("jsonschema",)) == []
    run_entry(command_line("check", "refund-agent"), investigated.root)  # controls' schemas
    found, out = run_entry(command_line("check", "refund-agent"), investigated.root)
    assert found["code"] == 1 and "NOT cleared" in out
    assert loaded(found["modules"], ("jsonschema",)) == []


def test_a_schema_cache_others_can_write_is_not_trusted(
        investigated: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache folder that other users can write is ignored: `reinstate mode` checks every
    schema with jsonschema again."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("REINSTATE_CACHE_DIR", str(cache))
    run_entry(command_line("mode", "refund-agent"), investigated.root)
    (folder,) = cache.iterdir()
    assert list(folder.iterdir())
    folder.chmod(0o777)
    # Forget what the first read remembered beside the store, so the mode is read in full
    # (an unchanged workspace is otherwise read light, with no schema to check).
    inputs_path(investigated.state_path).unlink()
    found, out = run_entry(command_line("mode", "refund-agent"), investigated.root)
    assert found["code"] == 0 and out == "review\n"
    assert "jsonschema" in found["modules"]


def test_the_help_table_holds_each_commands_own_first_paragraph() -> None:
    """Every command has a line in the `--help` table, and it is the first paragraph of
    the command's own docstring."""
    assert sorted(SUMMARIES) == sorted(COMMANDS)
    for name in COMMANDS:
        command = importlib.import_module(module_of(name)).command
        assert SUMMARIES[name] == summary(command), name


def test_help_lists_every_command_without_importing_them(tmp_path: Path) -> None:
    """`reinstate --help` prints the list click makes from the real commands having
    imported no command module and no pydantic."""
    found, out = run_entry(command_line("--help"), tmp_path)
    assert found["code"] == 0
    assert loaded(found["modules"], tuple(module_of(name) for name in COMMANDS)) == []
    assert loaded(found["modules"], ("pydantic", "gates._config", "rich")) == []
    real = click.Group(commands=[importlib.import_module(module_of(name)).command
                                 for name in COMMANDS])
    formatter = click.HelpFormatter()  # 80 columns at most, as in the child's pipe
    real.format_commands(click.Context(real), formatter)
    assert formatter.getvalue() in out


@pytest.mark.slow
def test_eval_and_gate_that_compare_nothing_import_no_deepdiff(example: Workspace) -> None:
    """`reinstate eval` and `gate` on the example load no deepdiff: it imports pandas,
    numpy and pyarrow whenever they are installed, tens of MiB for a gate that diffs
    nothing."""
    for command in (("eval", "refund-agent"), ("gate", "refund-agent")):
        found, _ = run_entry(command_line(*command), example.root)
        assert found["code"] in (0, 1), command
        assert loaded(found["modules"], ("deepdiff", "pandas", "numpy")) == [], command
