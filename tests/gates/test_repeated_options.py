"""An option given twice either applies every value or is refused as a usage error, never
silently keeps the last."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest

from gates import Workspace
from gates._cli import main, reinstate
from tests.helpers import ACTOR, contained

Cli = Callable[..., tuple[int, str, str]]


def _single_valued() -> Iterator[tuple[list[str], click.Option]]:
    """Every option of every command (sub-commands included) that takes one value."""
    def walk(path: list[str], command: click.Command) -> Iterator[tuple[list[str],
                                                                       click.Option]]:
        for param in command.params:
            if (isinstance(param, click.Option) and not param.multiple
                    and not param.count and param.expose_value):
                yield path, param
        if isinstance(command, click.Group):
            context = click.Context(command)
            for name in command.list_commands(context):
                sub = command.get_command(context, name)
                assert sub is not None
                yield from walk([*path, name], sub)
    yield from walk([], reinstate)


SINGLE = list(_single_valued())


@pytest.mark.parametrize(("path", "option"), SINGLE,
                         ids=[" ".join([*p, o.opts[-1]]) for p, o in SINGLE])
def test_single_valued_option_given_twice_is_refused(
        path: list[str], option: click.Option, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Each option that takes one value, given twice, is a usage error (exit 2) naming it,
    before the command does anything."""
    monkeypatch.chdir(tmp_path)
    given = [option.opts[-1]] * 2 if option.is_flag else [option.opts[-1], "x"] * 2
    code = main([*path, *given] if path else [*given, "mode", "refund-agent"])
    err = capsys.readouterr().err
    assert code == 2
    assert "is given 2 times, but it takes one value" in err and option.opts[-1] in err
    assert list(tmp_path.iterdir()) == []


def test_a_flag_and_its_opposite_together_are_refused(example: Workspace,
                                                      inline_cli: Cli) -> None:
    """`--gap --no-gap` is one option given twice: refused, and no finding is recorded."""
    incident = contained(example)
    code, _, err = inline_cli(example, "incident", "finding", incident, "--layer",
                              "review_gate", "--gap", "--no-gap", "--description", "d")
    assert code == 2 and "--gap/--no-gap is given 2 times" in err
    assert example.incidents().load(incident).findings == []


def test_gate_with_two_json_files_writes_nothing(example: Workspace, inline_cli: Cli,
                                                 tmp_path: Path) -> None:
    """`gate --json a --json b` is refused before the gate runs: no file, no verdict."""
    code, _, err = inline_cli(example, "gate", "refund-agent", "--json", str(tmp_path / "a"),
                              "--json", str(tmp_path / "b"))
    assert code == 2 and "--json is given 2 times" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert not (example.root / ".reinstate").exists()


def test_every_notify_applies(example: Workspace, inline_cli: Cli) -> None:
    """`contain --notify` repeated records everyone named, across the repeats."""
    from gates import open_incident
    from regressions import utc_now

    incident = open_incident(example, "refund-agent", summary="s", severity="sev2",
                             actor=ACTOR, detected_at=utc_now())
    code, _, err = inline_cli(example, "contain", incident.id, "--mode", "review",
                              "--notify", "legal", "--notify", "compliance,eng-lead",
                              "--scope", "one refund")
    assert code == 0, err
    containment = example.incidents().load(incident.id).containment
    assert containment is not None
    assert containment.notified == ["legal", "compliance", "eng-lead"]


@pytest.mark.slow
def test_every_addresses_applies(example: Workspace, inline_cli: Cli) -> None:
    """`incident change --addresses` repeated ties the change to every finding named."""
    incident = contained(example)
    for layer in ("review_gate", "acceptance_criteria", "tool_permission_boundary"):
        assert inline_cli(example, "incident", "finding", incident, "--layer", layer,
                          "--gap", "--description", "d")[0] == 0
    code, _, err = inline_cli(example, "incident", "change", incident, "--layer",
                              "review_gate", "--addresses", "F-1", "--addresses", "F-2,F-3",
                              "--description", "route refunds to a person")
    assert code == 0, err
    change = example.incidents().load(incident).control_changes[0]
    assert change.addresses == ["F-1", "F-2", "F-3"]
