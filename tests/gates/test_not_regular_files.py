"""A named pipe, a socket or a folder where reinstate reads a file is refused at once.

Each test puts a real one (``os.mkfifo``, a bound UNIX socket, a folder) where a
workspace file belongs and runs the CLI in a child process with a timeout, so a read that
waits for a writer fails the test instead of hanging the suite. The answer is exit 2 and
one line naming the file and saying it is not a regular file.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from evalsuite import InvalidInput, read_regular, read_text
from gates import Workspace
from tests.conftest import CLI
from tests.helpers import LOG

AGENT = "refund-agent"
TIMEOUT = 30  # seconds: a check of this workspace takes about one


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``reinstate ARGS`` in ``root``; a child that hangs fails the test (TimeoutExpired),
    its whole process group killed first."""
    env = {**os.environ, "REINSTATE_ACTOR": "test.engineer", "COLUMNS": "200"}
    env.pop("REINSTATE_WORKSPACE", None)
    with subprocess.Popen([*CLI, *args], cwd=root, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as child:
        try:
            out, err = child.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
            raise
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


@contextmanager
def writer_later(pipe: Path) -> Iterator[None]:
    """Open ``pipe`` for writing after a while, so a read in this process that waits on it
    gets its end and the test fails instead of hanging."""
    def unblock() -> None:
        with suppress(OSError):  # nobody reading: nothing to unblock
            os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
    timer = threading.Timer(TIMEOUT / 3, unblock)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def assert_refused(done: subprocess.CompletedProcess[str], shown: str, kind: str) -> None:
    """Exit 2, and one line on stderr naming the file and what it is."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(lines) == 1, done.stderr
    assert f"{shown}: not a regular file: expected a file, got {kind}" in lines[0]


def _fifo(path: Path) -> None:
    if path.exists():
        path.unlink()
    os.mkfifo(path)


def _folder(path: Path) -> None:
    path.mkdir()


PLACES: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "a regression case": ("regressions/refund-agent/INC-1-9.yaml", _fifo,
                          "a named pipe (FIFO)"),
    "an eval case": ("evals/refund-agent/zz-pipe.yaml", _fifo, "a named pipe (FIFO)"),
    "a folder named like a case": ("regressions/refund-agent/zz-folder.yaml", _folder,
                                   "a folder"),
    "a control file": ("agents/refund-agent/review.yaml", _fifo, "a named pipe (FIFO)"),
    "agent.yaml": ("agents/refund-agent/agent.yaml", _fifo, "a named pipe (FIFO)"),
    "an incident file": ("incidents/INC-7.yaml", _fifo, "a named pipe (FIFO)"),
    "the configuration": ("reinstate.toml", _fifo, "a named pipe (FIFO)"),
}


@pytest.mark.parametrize("place", list(PLACES))
def test_check_refuses_a_file_that_is_not_regular_on_both_paths(back_in_full: Workspace,
                                                                place: str) -> None:
    """`check` after a learning check (the light path first) and with no facts (the full
    path) exits 2 naming the file; it never waits on a pipe."""
    root = back_in_full.root
    assert run(root, "check", AGENT).returncode == 0  # learns: the next check starts light
    relative, make, kind = PLACES[place]
    make(root / relative)
    assert_refused(run(root, "check", AGENT), relative, kind)
    for facts in root.glob(".reinstate/.*-inputs.json"):
        facts.unlink()
    assert_refused(run(root, "check", AGENT), relative, kind)


def test_gate_refuses_a_named_pipe_among_the_regression_cases(back_in_full: Workspace) -> None:
    """`gate` with a FIFO named like a case file exits 2 naming it, before any agent runs."""
    relative = "regressions/refund-agent/INC-1-9.yaml"
    os.mkfifo(back_in_full.root / relative)
    assert_refused(run(back_in_full.root, "gate", AGENT), relative, "a named pipe (FIFO)")


def test_ingest_refuses_a_named_pipe_given_as_a_log(back_in_full: Workspace) -> None:
    """A log named on the command line that is a FIFO is refused, not read."""
    pipe = back_in_full.root / "logs" / "pipe.jsonl"
    os.mkfifo(pipe)
    assert_refused(run(back_in_full.root, "ingest", "logs/pipe.jsonl"), "logs/pipe.jsonl",
                   "a named pipe (FIFO)")
    assert run(back_in_full.root, "ingest", LOG).returncode == 0  # a real log still reads


def test_a_socket_named_like_a_case_file_is_refused(back_in_full: Workspace) -> None:
    """A UNIX socket where a case file belongs is refused (opening one fails: ENXIO)."""
    # A socket's path must be short: bind it in a short folder, then move it into place.
    relative = "regressions/refund-agent/zz-socket.yaml"
    with (tempfile.TemporaryDirectory(dir="/tmp") as short,
          socket.socket(socket.AF_UNIX) as listening):
        listening.bind(f"{short}/s")
        Path(short, "s").rename(back_in_full.root / relative)
        done = run(back_in_full.root, "check", AGENT)
    assert_refused(done, relative, "a socket or a device")


def test_the_shared_reader_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    """:func:`read_regular` (behind every reader) reads a file whole or up to a limit and
    refuses a FIFO, a folder and a device as InvalidInput, without waiting."""
    data = tmp_path / "case.yaml"
    data.write_bytes(b"x" * 100_000)
    assert read_regular(data) == data.read_bytes()
    assert read_regular(data, 10) == b"x" * 11  # one more than the limit, to tell
    assert read_text(data) == "x" * 100_000
    pipe = tmp_path / "pipe.yaml"
    os.mkfifo(pipe)
    for path, kind in ((pipe, "a named pipe (FIFO)"), (tmp_path, "a folder"),
                       (Path("/dev/null"), "a device")):
        with writer_later(pipe), pytest.raises(
                InvalidInput, match=re.escape(f"not a regular file: expected a file, got {kind}")):
            read_regular(path)
        with writer_later(pipe), pytest.raises(InvalidInput, match="not a regular file"):
            read_text(path)
    with pytest.raises(FileNotFoundError):
        read_regular(tmp_path / "missing.yaml")
