"""Every process an agent starts ends with its case: under Landlock the launcher puts the
agent in user and PID namespaces of its own (where the kernel allows them), so a daemon
that left the agent's process group and re-executed itself with an empty environment
(which the TMPDIR sweep cannot find) dies when the agent's process does. Signals to
processes outside the agent's sandbox are refused where Landlock can scope them."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import evalsuite._sandbox as _sandbox
from evalsuite import (
    EvalCase,
    Isolation,
    TrialResult,
    choose_sandbox,
)
from evalsuite._sandbox import LAUNCHER, describe, pid_namespace_problem
from tests.helpers import live_processes_with, one_trial

LANDLOCK = choose_sandbox("auto") == "landlock"
needs_landlock = pytest.mark.skipif(not LANDLOCK, reason="no Landlock here")
needs_namespaces = pytest.mark.skipif(
    not LANDLOCK or pid_namespace_problem() is not None,
    reason=f"no user and PID namespaces here ({pid_namespace_problem()})")
SLEEP = shutil.which("sleep") or "/bin/sleep"

# Double fork, setsid, then execve `sleep` with an empty environment: out of the agent's
# process group and without the TMPDIR the sweep looks for, holding the agent's pipes
# unless told to let go of them. The exec is confirmed through a close-on-exec pipe (EOF:
# it ran; bytes: why not), so a test cannot pass because the daemon never started.
LEAVE_DAEMON = '''
import json, os, sys

def leave_daemon(sleep, marker, keep_pipes=True):
    read, write = os.pipe()
    first = os.fork()
    if first == 0:
        os.close(read)
        os.setsid()
        if os.fork() == 0:
            if not keep_pipes:
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
            try:
                os.execve(sleep, ["sleep", marker], {})
            except OSError as exc:
                os.write(write, f"exec failed: {exc}".encode())
            os._exit(1)
        os._exit(0)
    os.close(write)
    os.waitpid(first, 0)
    failed = b""
    while chunk := os.read(read, 4096):
        failed += chunk
    os.close(read)
    return failed.decode() or "started"
'''

DAEMONIZE = LEAVE_DAEMON + '''
def respond(session):
    started = leave_daemon(os.environ["SLEEP"], os.environ["MARKER"],
                           keep_pipes=os.environ["KEEP_PIPES"] == "yes")
    try:
        os.kill(int(os.environ["GATE_PID"]), 0)
        signal_gate = "allowed"
    except OSError as exc:
        signal_gate = f"denied ({exc.strerror})"
    return json.dumps({"daemon": started, "signal_gate": signal_gate, "pid": os.getpid()})

if __name__ == "__main__":
    for line in sys.stdin:
        print(json.dumps({"type": "output", "content": respond(None)}), flush=True)
'''


def _left_after(marker: str, seconds: float = 5) -> list[int]:
    """The processes with ``marker`` still alive after a bounded wait; killed, so that a
    failing test leaves nothing behind."""
    deadline = time.monotonic() + seconds
    while (left := live_processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left


def _case() -> EvalCase:
    return EvalCase.model_validate({
        "id": "daemon-1", "agent": "support", "tags": ["refund_request"],
        "input": {"messages": [{"role": "user", "content": "Please refund order A-1."}]},
        "expect": [{"kind": "output_contains", "text": "daemon"}],
    })


def _trial(adapter: dict[str, Any], folder: Path, isolation: Isolation) -> TrialResult:
    result: TrialResult = one_trial(adapter, folder / "agent.yaml", _case(), isolation)
    return result


def _daemon_trial(kind: str, folder: Path, marker: str, *, keep_pipes: bool = True,
                  ) -> dict[str, Any]:
    (folder / "daemonize.py").write_text(DAEMONIZE)
    adapter: dict[str, Any] = (
        {"kind": "python", "target": "daemonize:respond"} if kind == "python" else
        {"kind": "subprocess", "command": [sys.executable, "daemonize.py"]})
    adapter["env"] = {"SLEEP": SLEEP, "MARKER": marker, "GATE_PID": str(os.getpid()),
                      "KEEP_PIPES": "yes" if keep_pipes else "no"}
    result = _trial(adapter, folder, Isolation(sandbox="landlock"))
    assert result.run is not None and result.error is None, result.error
    report: dict[str, Any] = json.loads(result.run.final_output() or "{}")
    return report


@pytest.mark.attack
@needs_namespaces
@pytest.mark.parametrize("kind", ["subprocess", "python"])
def test_a_daemon_with_an_empty_environment_dies_with_its_case(kind: str,
                                                               tmp_path: Path) -> None:
    """Double fork, setsid, execve with no environment: gone once the eval returns; the
    agent saw itself in a PID namespace (after the launcher's init)."""
    marker = f"600.{os.getpid()}{len(kind)}1"
    report = _daemon_trial(kind, tmp_path, marker)
    assert report["daemon"] == "started"
    assert _left_after(marker) == []
    assert report["pid"] == 2  # the launcher's init is 1


@pytest.mark.attack
@needs_landlock
@pytest.mark.parametrize("kind", ["subprocess", "python"])
def test_without_namespaces_the_agent_still_runs_and_the_verdict_says_so(
        kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where user namespaces are refused, the agent runs as before (process group and
    TMPDIR sweep), the isolation recorded says its processes were not contained, and it
    still cannot signal the gate when Landlock scopes signals (ABI 6)."""
    monkeypatch.setattr(_sandbox, "pid_namespace_problem", lambda: "refused for the test")
    assert describe("landlock")["processes"] == "process-group+sweep"
    marker = f"600.{os.getpid()}{len(kind)}3"
    # Letting go of the pipes: one holding them would make the gate wait out its reaping.
    report = _daemon_trial(kind, tmp_path, marker, keep_pipes=False)
    for pid in live_processes_with(marker):  # the known gap this fallback records
        os.kill(pid, signal.SIGKILL)
    assert report["daemon"] == "started"
    assert report["pid"] > 2
    if _sandbox.landlock_abi() >= 6:
        assert report["signal_gate"].startswith("denied"), report


@pytest.mark.attack
@needs_landlock
def test_the_agent_cannot_signal_the_gate(tmp_path: Path) -> None:
    """Signal 0 to the gate's pid (harmless, but checked like any signal) is refused."""
    report = _daemon_trial("subprocess", tmp_path, f"600.{os.getpid()}5", keep_pipes=False)
    _left_after(f"600.{os.getpid()}5", 0)
    assert report["signal_gate"].startswith("denied"), report


def test_the_isolation_recorded_says_whether_processes_were_contained(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`processes` in the verdict's isolation: a PID namespace, or the group and sweep;
    `signals`: whom the agent can signal."""
    assert describe("bubblewrap")["processes"] == "pid-namespace"
    assert describe("none")["processes"] == "process-group+sweep"
    assert describe("none")["signals"] == "any process of the gate's user"
    monkeypatch.setattr(_sandbox, "landlock_abi", lambda: 6)
    monkeypatch.setattr(_sandbox, "pid_namespace_problem", lambda: "refused for the test")
    assert describe("landlock")["processes"] == "process-group+sweep"
    assert describe("landlock")["signals"] == "its own processes only (Landlock scope)"
    monkeypatch.setattr(_sandbox, "landlock_abi", lambda: 5)
    assert describe("landlock")["signals"] == "any process of the gate's user"
    monkeypatch.setattr(_sandbox, "pid_namespace_problem", lambda: None)
    assert describe("landlock")["processes"] == "pid-namespace"
    assert describe("landlock")["signals"] == "its own processes only (PID namespace)"


def _launch(args: list[str], command: list[str], env: dict[str, str] | None,
            **kwargs: Any) -> subprocess.CompletedProcess[str]:
    handed = env if env is not None else {
        "REINSTATE_AGENT_ENV": json.dumps({"PATH": os.environ.get("PATH", "")})}
    return subprocess.run([sys.executable, "-I", str(LAUNCHER), *args, "--", *command],
                          env=handed, capture_output=True, text=True, timeout=60, **kwargs)


@needs_namespaces
def test_exit_statuses_come_through_the_namespace(tmp_path: Path) -> None:
    """0, the agent's own code, 126 without a whole environment handed over (the command
    never runs), 127 for a missing command, and a signal as the same signal."""
    args = ["--writable", str(tmp_path), "--pid-namespace"]
    mark = tmp_path / "ran.txt"
    touch = [sys.executable, "-c", f"import os; open({str(mark)!r}, 'w').write(str(os.getpid()))"]
    done = _launch(args, touch, None)
    assert done.returncode == 0, done.stderr
    assert mark.read_text() == "2"
    mark.unlink()
    done = _launch(args, touch, {"REINSTATE_AGENT_ENV": '{"A": 1}'})
    assert done.returncode == 126, done.stderr
    assert "REINSTATE_AGENT_ENV: expected the agent's environment" in done.stderr
    assert not mark.exists()
    done = _launch(args, ["no-such-command-here"], None)
    assert done.returncode == 127, done.stderr
    assert "cannot start no-such-command-here" in done.stderr
    done = _launch(args, [sys.executable, "-c", "raise SystemExit(7)"], None)
    assert done.returncode == 7, done.stderr
    done = _launch(args, [sys.executable, "-c",
                          "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], None)
    assert done.returncode == -signal.SIGKILL, done.stderr


@needs_namespaces
def test_the_pipes_and_the_group_kill_work_through_the_namespace(tmp_path: Path) -> None:
    """A long-lived agent answers line by line over stdin and stdout through the extra
    process; killing the group ends it, and its detached, re-executed daemon with it."""
    marker = f"600.{os.getpid()}7"
    (tmp_path / "echo.py").write_text(LEAVE_DAEMON + textwrap.dedent(f"""
        leave_daemon({SLEEP!r}, {marker!r})
        for line in sys.stdin:
            print(line.strip().upper(), flush=True)
    """))
    launcher = subprocess.Popen(
        [sys.executable, "-I", str(LAUNCHER), "--writable", str(tmp_path), "--pid-namespace",
         "--", sys.executable, str(tmp_path / "echo.py")],
        env={"REINSTATE_AGENT_ENV": json.dumps({})}, start_new_session=True, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert launcher.stdin is not None and launcher.stdout is not None
    try:
        for word in ("one", "two"):
            launcher.stdin.write(word + "\n")
            launcher.stdin.flush()
            assert launcher.stdout.readline() == word.upper() + "\n"
        assert live_processes_with(marker)  # the daemon runs, outside the agent's group
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait(timeout=30)
        launcher.stdin.close()
        launcher.stdout.close()
        assert launcher.stderr is not None
        launcher.stderr.close()
    assert _left_after(marker) == []


@needs_namespaces
def test_the_agent_in_its_namespace_still_writes_only_its_folder(tmp_path: Path) -> None:
    """Namespaces add to Landlock, never replace it: the folder outside stays unwritten."""
    private = tmp_path / "private"
    private.mkdir()
    outside = tmp_path / "outside.txt"
    code = (f"import os\nopen({str(private / 'ok')!r}, 'w').write('x')\n"
            f"try:\n    open({str(outside)!r}, 'w')\nexcept OSError as exc:\n"
            f"    raise SystemExit(5)\n")
    done = _launch(["--writable", str(private), "--pid-namespace"],
                   [sys.executable, "-c", code], None)
    assert done.returncode == 5, done.stderr
    assert (private / "ok").exists() and not outside.exists()


@needs_namespaces
def test_a_sigterm_to_the_launcher_ends_the_agent_as_sigterm(tmp_path: Path) -> None:
    """SIGTERM to the launcher reaches the agent, which ends by it as it would without the
    namespace (no handler: terminated); the launcher ends by the same signal."""
    ready = tmp_path / "ready"
    code = (f"import time\nopen({str(ready)!r}, 'w').close()\ntime.sleep(600)\n")
    launcher = subprocess.Popen(
        [sys.executable, "-I", str(LAUNCHER), "--writable", str(tmp_path), "--pid-namespace",
         "--", sys.executable, "-c", code],
        env={"REINSTATE_AGENT_ENV": "{}"}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=30) == -signal.SIGTERM
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait(timeout=30)


@needs_namespaces
def test_the_namespace_dies_with_the_launcher_alone(tmp_path: Path) -> None:
    """SIGKILL to the launcher only (not its group) still ends the agent and its daemon."""
    marker = f"600.{os.getpid()}9"
    (tmp_path / "agent.py").write_text(LEAVE_DAEMON + textwrap.dedent(f"""
        leave_daemon({SLEEP!r}, {marker!r}, keep_pipes=False)
        print("ready", flush=True)
        sys.stdin.readline()
    """))
    launcher = subprocess.Popen(
        [sys.executable, "-I", str(LAUNCHER), "--writable", str(tmp_path), "--pid-namespace",
         "--", sys.executable, str(tmp_path / "agent.py")],
        env={"REINSTATE_AGENT_ENV": "{}"}, start_new_session=True, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert launcher.stdin is not None and launcher.stdout is not None
    try:
        assert launcher.stdout.readline() == "ready\n"
        assert live_processes_with(marker)
        launcher.kill()
        launcher.wait(timeout=30)
        assert _left_after(marker) == []
        assert launcher.stdout.read() == ""  # the agent is gone: its pipe is closed
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGKILL)
        launcher.stdin.close()
        launcher.stdout.close()


@needs_landlock
@pytest.mark.skipif(_sandbox.landlock_abi() < 6, reason="Landlock scopes need ABI 6")
def test_the_agent_cannot_reach_an_abstract_unix_socket_made_outside(tmp_path: Path) -> None:
    """An abstract unix socket the gate's side listens on (as a session bus or a program's
    control socket would) cannot be connected to from inside; one the agent makes itself can."""
    name = f"\0reinstate-test-{os.getpid()}-{time.monotonic_ns()}"
    code = textwrap.dedent(f"""
        import socket, sys
        mine = socket.socket(socket.AF_UNIX)
        mine.bind({name!r} + "-inside")
        mine.listen()
        socket.socket(socket.AF_UNIX).connect({name!r} + "-inside")
        try:
            socket.socket(socket.AF_UNIX).connect({name!r})
        except PermissionError:
            sys.exit(5)
        sys.exit(0)
    """)
    with contextlib.closing(socket.socket(socket.AF_UNIX)) as outside:
        outside.bind(name)
        outside.listen()
        for namespaces in ([], ["--pid-namespace"] if pid_namespace_problem() is None else []):
            done = _launch(["--writable", str(tmp_path), *namespaces],
                           [sys.executable, "-c", code], None)
            assert done.returncode == 5, done.stderr
