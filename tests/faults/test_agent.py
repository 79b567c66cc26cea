"""Faults of the agent under test: it raises, answers garbage, dies, or hangs past its timeout."""

from __future__ import annotations

import os
import threading

import pytest

from gates import Workspace, open_store
from tests.faults.conftest import Cli, Faults, assert_kept, recorded, reinstate

pytestmark = pytest.mark.slow

GATE = ("gate", "refund-agent")
TRIGGER = "cracked carafe"  # only the captured incident's input says this


def _break_agent(ws: Workspace, body: str) -> None:
    """Wrap the agent's ``respond`` with ``body`` (which may use ``session`` and ``_real``)."""
    source = ws.agent_dir("refund-agent") / "refund_agent.py"
    indented = "\n".join(f"    {line}" for line in body.strip().splitlines())
    source.write_text(source.read_text() + f"\n\n_real = respond\n\n\ndef respond(session):\n"
                      f"    import os, signal\n{indented}\n")


def test_agent_that_raises_is_an_error(ws: Workspace, faults: Faults, cli: Cli) -> None:
    """An agent raising on every case makes the gate an error (exit 3) naming the exception."""
    faults.inject("agent raises")
    _break_agent(ws, 'raise RuntimeError("model API returned 500")')
    before = recorded(ws)
    done = cli(ws, *GATE)
    assert done.code == 3, done.out + done.err
    assert "RuntimeError('model API returned 500')" in done.out
    assert_kept(before, recorded(ws))
    latest = open_store(ws).latest_verdict("refund-agent")
    assert latest is not None and latest.outcome == "error"


@pytest.mark.parametrize(("answer", "kind"), [
    ("{'text': 'ok'}", "dict"), ("None", "NoneType"), ("b'refund issued'", "bytes"),
])
def test_agent_answering_garbage_is_an_error(ws: Workspace, faults: Faults, cli: Cli,
                                             answer: str, kind: str) -> None:
    """An answer that is not text is an error of the agent, named with what it returned."""
    faults.inject(f"agent returns {kind}")
    _break_agent(ws, f"_real(session)\nreturn {answer}")
    before = recorded(ws)
    done = cli(ws, *GATE)
    assert done.code == 3, done.out + done.err
    assert f"returned {kind}, expected the answer as str" in done.out
    assert_kept(before, recorded(ws))


def test_agent_answering_noise_fails(ws: Workspace, faults: Faults, cli: Cli) -> None:
    """Text that answers nothing is judged, and fails the cases that expected an answer."""
    faults.inject("agent returns noise")
    _break_agent(ws, 'return "\\x00\\x1b[31m\\ufffd" * 40')
    before = recorded(ws)
    done = cli(ws, *GATE)
    assert done.code == 1, done.out + done.err
    assert "verdict: FAIL" in done.out
    assert_kept(before, recorded(ws))


def test_agent_dying_mid_run_is_an_error_not_the_end_of_the_gate(ws: Workspace,
                                                                  faults: Faults,
                                                                  cli: Cli) -> None:
    """An agent that kills its own process mid-run kills only its child process: that case
    errors, the gate stores an error verdict, nothing is lost, the agent stays contained."""
    faults.inject("agent dies mid-run")
    _break_agent(ws, f'if "{TRIGGER}" in session.messages[-1]["content"]:\n'
                     f'    os.kill(os.getpid(), signal.SIGKILL)\nreturn _real(session)')
    before = recorded(ws)
    done = reinstate(ws, list(GATE))
    assert done.returncode == 3, done.stdout + done.stderr
    assert "exited with code -9 mid-conversation" in done.stdout
    after = recorded(ws)
    assert_kept(before, after)
    latest = open_store(ws).latest_verdict("refund-agent")
    assert latest is not None and latest.outcome == "error"
    check = cli(ws, "check", "refund-agent")
    assert check.code == 1 and "is in review mode" in check.out


def test_agent_hanging_past_its_timeout_is_an_error(ws: Workspace, faults: Faults,
                                                    cli: Cli) -> None:
    """A trial that outlives ``[gate] timeout_s`` is an error (exit 3) saying it timed out."""
    faults.inject("agent hangs past its timeout")
    config = ws.root / "reinstate.toml"  # the file ends in its [gate] table
    # Long enough to start a replacement agent process on a loaded machine.
    config.write_text(config.read_text() + "timeout_s = 3\nretries = 0\n")
    hang = ws.root / "hang.fifo"
    os.mkfifo(hang)
    # A blocking read of a pipe nobody writes to: the agent hangs until the test lets go.
    _break_agent(ws, f'if "{TRIGGER}" in session.messages[-1]["content"]:\n'
                     f'    with open({str(hang)!r}) as pipe:\n        pipe.read()\n'
                     f'return _real(session)')
    before = recorded(ws)
    try:
        done = cli(ws, *GATE)
    finally:  # let the abandoned agent thread finish (a thread cannot be stopped)
        threading.Thread(target=lambda: hang.open("w").close(), daemon=True).start()
    assert done.code == 3, done.out + done.err
    assert "INC-1-1: could not run: timed out after" in done.out
    assert_kept(before, recorded(ws))
    latest = open_store(ws).latest_verdict("refund-agent")
    assert latest is not None and latest.outcome == "error"


@pytest.mark.attack
def test_agent_whose_import_never_ends_is_an_error_not_a_gate_held_forever(
        ws: Workspace, faults: Faults, cli: Cli) -> None:
    """An agent module whose import blocks never tells the gate it is ready: the gate waited
    for that before its first trial with no timeout, so it never ended and never stored a
    verdict (the last one stood). Now the wait is one trial's timeout, and each trial that
    cannot start its agent in time is an error."""
    faults.inject("agent import never ends")
    config = ws.root / "reinstate.toml"  # the file ends in its [gate] table
    config.write_text(config.read_text() + "timeout_s = 3\nretries = 0\n")
    hang = ws.root / "hang.fifo"
    os.mkfifo(hang)
    source = ws.agent_dir("refund-agent") / "refund_agent.py"
    source.write_text(source.read_text()
                      + f"\n\nwith open({str(hang)!r}) as _pipe:\n    _pipe.read()\n")
    before = recorded(ws)
    done = cli(ws, *GATE, "--trials", "1")
    assert done.code == 3, done.out + done.err
    assert_kept(before, recorded(ws))
    latest = open_store(ws).latest_verdict("refund-agent")
    assert latest is not None and latest.outcome == "error"
    assert "timed out after 3 s" in latest.model_dump_json()
