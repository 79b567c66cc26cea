"""Text reinstate does not control (a summary a person typed, a log's words, an agent's
answer) printed by every command: shown literally, never obeyed as Rich markup or as a
terminal escape, and never a traceback."""

from __future__ import annotations

import pytest

from gates import Workspace
from tests.conftest import RunCli
from tests.helpers import LOG

# Rich markup that does not close (crashed a print), markup that restyles, an escape that
# clears the screen, a hidden hyperlink, and a bidi override that reorders what follows.
HOSTILE = ("A[/]B [bold red]RED[/] C\x1b[2JD \x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\ "
           "E\u202eF")
OBEYED = ("\x1b[2J", "\x1b]8", "\u202e")


def shown_literally(output: str) -> None:
    """No escape or override from HOSTILE reaches the terminal, each is written out, and the
    markup reads as typed."""
    assert not [seq for seq in OBEYED if seq in output], output
    assert "\\x1b" in output and "\\u202e" in output, output
    assert "Traceback" not in output


def opened(cli: RunCli, ws: Workspace) -> str:
    done = cli("incident", "open", "refund-agent", "--severity", "sev2", "--summary", HOSTILE,
               cwd=ws.root)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("command", [("timeline",), ("incident", "show"), ("postmortem",)])
def test_a_summary_s_escapes_and_bidi_override_are_written_out(
        example: Workspace, cli: RunCli, command: tuple[str, ...]) -> None:
    """`timeline` printed a summary's screen-clearing escape and hidden link as they were,
    and every command printed its bidi override: each is now written out (``\\x1b``,
    ``\\u202e``) by the console every command prints through."""
    incident = opened(cli, example)
    shown = cli(*command, incident, cwd=example.root)
    assert shown.returncode == 0, shown.stderr
    shown_literally(shown.stdout + shown.stderr)


def test_incident_list_shows_a_summary_with_markup_as_typed(example: Workspace,
                                                           cli: RunCli) -> None:
    """A summary with an unclosed ``[/]`` crashed `incident list` with a MarkupError
    traceback; ``[bold red]`` restyled it. Now the line shows it as typed, one incident a
    line."""
    incident = opened(cli, example)
    listed = cli("incident", "list", cwd=example.root)
    assert listed.returncode == 0, listed.stderr
    shown_literally(listed.stdout + listed.stderr)
    line, = listed.stdout.splitlines()
    assert line.split()[:5] == [incident, "refund-agent", "sev2", "detected", "A[/]B"]
    assert "A[/]B [bold red]RED[/] C" in line


def test_audit_shows_a_reason_with_markup_as_typed(example: Workspace, cli: RunCli) -> None:
    """A containment reason (its scope) with an unclosed ``[/]`` crashed `audit` with a
    MarkupError traceback; now the entry shows it as typed and the chain is checked."""
    incident = opened(cli, example)
    done = cli("contain", incident, "--mode", "review", "--notify", "legal,compliance,eng-lead",
               "--scope", HOSTILE, cwd=example.root)
    assert done.returncode == 0, done.stderr
    audit = cli("audit", cwd=example.root)
    assert audit.returncode == 0, audit.stderr
    shown_literally(audit.stdout + audit.stderr)
    assert "A[/]B [bold red]RED[/] C" in audit.stdout


def contained(cli: RunCli, ws: Workspace) -> str:
    incident = opened(cli, ws)
    done = cli("contain", incident, "--mode", "review", "--notify", "legal,compliance,eng-lead",
               "--scope", "one refund", cwd=ws.root)
    assert done.returncode == 0, done.stderr
    return incident


def test_rca_shows_a_recorded_finding_with_markup_as_typed(example: Workspace,
                                                           cli: RunCli) -> None:
    """A finding's description with an unclosed ``[/]`` crashed `rca` with a MarkupError
    traceback; now it is shown as typed and rca says what is missing (exit 1)."""
    incident = contained(cli, example)
    done = cli("incident", "finding", incident, "--layer", "review_gate", "--gap",
               "--description", HOSTILE, cwd=example.root)
    assert done.returncode == 0, done.stderr
    rca = cli("rca", incident, "--no-input", cwd=example.root)
    assert rca.returncode == 1, rca.stderr
    shown_literally(rca.stdout + rca.stderr)
    assert "— A[/]B [bold red]RED[/] C" in rca.stdout


def test_timeline_shows_the_investigator_with_markup_as_typed(example: Workspace,
                                                              cli: RunCli) -> None:
    """An actor name (``--actor``, ``$REINSTATE_ACTOR``) with an unclosed ``[/]`` crashed
    `timeline` after `investigate` recorded it; now it is shown as typed."""
    incident = contained(cli, example)
    done = cli("capture", incident, "--run", LOG, "--run-id", "run-7f3a97", "--step", "4",
               cwd=example.root)
    assert done.returncode == 0, done.stderr
    done = cli("--actor", HOSTILE, "investigate", incident, "--logs", LOG, cwd=example.root)
    assert done.returncode == 0, done.stderr
    shown = cli("timeline", incident, cwd=example.root)
    assert shown.returncode == 0, shown.stderr
    shown_literally(shown.stdout + shown.stderr)
    assert "by A[/]B [bold red]RED[/] C" in shown.stdout


def test_ingest_names_an_output_file_with_brackets_as_typed(example: Workspace,
                                                            cli: RunCli) -> None:
    """`ingest --out` into a file whose name holds ``[/]`` wrote it, then crashed naming it
    with a MarkupError traceback; now the name is shown as typed."""
    done = cli("ingest", LOG, "--out", "out[/]put.jsonl", cwd=example.root)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "wrote out[/]put.jsonl (" in done.stdout
