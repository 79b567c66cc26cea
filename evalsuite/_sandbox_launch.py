"""Restrict this process with Landlock, then become the agent: ``… [--writable DIR] -- CMD…``.

Run by path with the gate's Python in isolated mode (``-I``), never imported by the gate.
Landlock rules are inherited by every descendant and survive ``execve``, so the agent and
anything it starts, detached or not, can write only to ``DIR`` and read every top-level
folder except ``/proc`` (or only the ``--read`` folders given), never a ``--hide`` path
(the state store, its credential files); where the kernel's Landlock
can scope signals (ABI 6), they cannot signal any process outside the sandbox either.
Without ``--writable`` it only hands the environment over (inside bubblewrap, which
confines it already).

With ``--pid-namespace`` it first moves into a new user namespace (mapping only the gate's
own uid and gid, so the agent sees itself as the same user), applies the rules, and forks
the first process of a new PID namespace: a small init of this file's own that forks the
agent, reaps what is orphaned in the namespace and ends when the agent does. When it ends
(or this launcher does: ``PR_SET_PDEATHSIG``) the kernel kills every process left in the
namespace, even one that left the process group and re-executed itself with an empty
environment. The agent is not that first process because the kernel drops every signal
such a process sends itself without a handler (``kill(getpid(), SIGKILL)`` would return).
This launcher stays outside the namespace, holds none of the agent's pipes, and exits as
the agent did (a signal as the same signal); a SIGTERM, SIGINT or SIGHUP it receives is
passed on to the agent. The gate asks for this only after a trial run of it worked
(:func:`evalsuite._sandbox.pid_namespace_problem`); asked, and refused, it exits 126.

The agent's environment arrives as JSON in ``REINSTATE_AGENT_ENV`` and becomes the agent's
only in the ``execve``: this process starts with reinstate's environment, so nothing the
workspace sets (``LD_PRELOAD``, ``PYTHONPATH``) acts before the rules do. Standard library
and ``landlock`` only, to start fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import stat
import sys
from pathlib import Path

TYPE_CHECKING = False  # not `typing`'s: importing it costs more than the namespaces
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
PR_SET_PDEATHSIG = 1
LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
LANDLOCK_SCOPE_SIGNAL = 1 << 1
RELAYED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
"""Signals this launcher passes on to the agent in its PID namespace."""


def apply_landlock(writable: str, readable: list[Path], hidden: list[Path]) -> None:
    """Restrict this process (and all it starts) to writing ``writable`` only, reading
    nothing of ``hidden``, and signalling only processes inside the sandbox where the
    kernel can scope signals."""
    from landlock import FSAccess, Ruleset, landlock_abi_version

    read = FSAccess.EXECUTE | FSAccess.READ_FILE | FSAccess.READ_DIR
    read_file = FSAccess.EXECUTE | FSAccess.READ_FILE
    # Writing /dev/null and the terminal is harmless; creating files there is not allowed.
    device = read_file | FSAccess.WRITE_FILE
    if landlock_abi_version() >= 5:
        device |= FSAccess.IOCTL_DEV
    ruleset = Ruleset()
    if not readable:
        # Every top-level entry but /proc: the gate's environment and memory stay unread.
        readable = [path for path in sorted(Path("/").iterdir()) if path.name != "proc"]
    carved: set[Path] = set()
    for path in readable:
        _allow_reading(ruleset, path, hidden, carved, read, read_file, device)
    ruleset.allow(writable)
    ruleset.apply()
    if landlock_abi_version() >= 6:
        scope_outside()


def _allow_reading(ruleset: Any, path: Path, hidden: list[Path], carved: set[Path],
                   read: Any, read_file: Any, device: Any) -> None:
    """Let the sandbox read ``path`` except what lies in ``hidden`` (absolute, resolved).

    A Landlock right given on a folder reaches everything under it and cannot be taken
    back below, so a folder holding a hidden path gets only the right to list its names,
    and each of its entries is granted on its own, the hidden ones never; an entry created
    after this (a store's ``-shm`` file) is unreadable too. Entries are granted where they
    resolve to, so a link cannot lead back into what is hidden."""
    from landlock import FSAccess

    try:
        resolved = path.resolve(strict=True)
        mode = resolved.stat().st_mode
    except (OSError, RuntimeError):
        return  # a dangling link, a loop or a vanished mount grants nothing
    if any(resolved == place or place in resolved.parents for place in hidden):
        return
    if stat.S_ISDIR(mode) and any(resolved in place.parents for place in hidden):
        if resolved in carved:
            return
        carved.add(resolved)
        if not _allow(ruleset, resolved, FSAccess.READ_DIR):
            return
        try:
            entries = sorted(resolved.iterdir())
        except OSError:
            return
        for entry in entries:
            _allow_reading(ruleset, entry, hidden, carved, read, read_file, device)
    elif stat.S_ISDIR(mode):
        if _allow(ruleset, resolved, read) and resolved == Path("/dev"):
            _allow_devices(ruleset, resolved, device)
    else:  # a file, or a named pipe, socket or device that a folder's right reached too
        _allow(ruleset, resolved, read_file)


def _allow(ruleset: Any, path: Path, rules: Any) -> bool:
    """Grant ``rules`` on ``path``; False when it vanished meanwhile (another agent's
    private folder removed as its case ended), which grants nothing."""
    try:
        ruleset.allow(path, rules=rules)
    except OSError:
        return False
    return True


def _allow_devices(ruleset: Any, dev: Path, device: Any) -> None:
    """Writing ``dev``'s devices (``null``, the terminals under ``pts``), entry by entry: a
    right given on ``/dev`` itself would reach the files under ``/dev/shm`` and
    ``/dev/mqueue``, which other programs of the gate's user keep there."""
    for entry in sorted(dev.iterdir()):
        try:
            mode = entry.lstat().st_mode
        except OSError:
            continue
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ruleset.allow(entry, rules=device)
        elif stat.S_ISDIR(mode) and entry.name == "pts":
            for terminal in entry.iterdir():
                try:
                    if stat.S_ISCHR(terminal.lstat().st_mode):
                        ruleset.allow(terminal, rules=device)
                except OSError:
                    continue


def scope_outside() -> None:
    """Stack a Landlock layer that only scopes (ABI 6): this process and all it starts can
    signal each other, never a process outside (the gate, another agent), and connect to no
    abstract unix socket made outside (a session bus, another program's control socket).

    The ``landlock`` package's ruleset knows file rights only, so this layer's
    ``landlock_ruleset_attr`` (file rights, network rights, scopes) is built here and
    passed through the package's own syscall wrappers; ``no_new_privs`` is already set.
    """
    import ctypes

    from landlock.plumbing import RulesetAttr, get_create_ruleset, get_restrict_self

    class ScopedRulesetAttr(ctypes.Structure):
        _fields_ = [("handled_access_fs", ctypes.c_uint64),
                    ("handled_access_net", ctypes.c_uint64),
                    ("scoped", ctypes.c_uint64)]

    attr = ScopedRulesetAttr(0, 0, LANDLOCK_SCOPE_SIGNAL | LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET)
    ruleset = get_create_ruleset()(ctypes.cast(ctypes.pointer(attr), ctypes.POINTER(RulesetAttr)),
                                   ctypes.sizeof(attr), 0)
    try:
        get_restrict_self()(ruleset, 0)
    finally:
        os.close(ruleset)


def enter_namespaces() -> None:
    """Move into a new user namespace, seeing the same uid and gid in it, and make the
    next child of this process the first of a new PID namespace.

    Raises:
        OSError: the kernel refused (no unprivileged user namespaces here).
    """
    import ctypes

    uid, gid = os.geteuid(), os.getegid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWPID) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"unshare: {os.strerror(code)}")
    for name, line in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                       ("gid_map", f"{gid} {gid} 1")):
        handle = os.open(f"/proc/self/{name}", os.O_WRONLY)
        try:
            os.write(handle, line.encode())
        finally:
            os.close(handle)


def run_in_namespaces(become_agent: Callable[[], NoReturn]) -> NoReturn:
    """Fork the new PID namespace's first process, which forks the agent and reaps
    whatever is orphaned in the namespace; exit as the agent did. Neither process holds
    the agent's pipes: their end is the agent's, as without the namespace."""
    import ctypes

    mask = signal.pthread_sigmask(signal.SIG_BLOCK, RELAYED)  # until each can pass them on
    alive, alive_keeper = os.pipe()  # EOF on `alive`: this process is gone
    report, reporter = os.pipe()  # the agent's wait status, from the namespace's first
    init = _fork()
    if init == 0:
        os.close(alive_keeper)
        os.close(report)
        if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL,
                                                   0, 0, 0) != 0:
            os._exit(126)
        os.set_blocking(alive, False)
        try:
            if os.read(alive, 1) == b"":  # the launcher died before the prctl held
                os._exit(126)
        except BlockingIOError:
            pass  # alive: from now on its death kills this process, and so the namespace
        os.close(alive)
        agent = _fork()
        if agent == 0:
            os.close(reporter)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            become_agent()
        status = _wait_relaying(agent, orphans=True)
        os.write(reporter, str(status).encode())
        os._exit(0)  # and the kernel kills whatever is left in the namespace
    os.close(alive)
    os.close(reporter)
    status = _wait_relaying(init, orphans=False)
    said = os.read(report, 32)
    _exit_as(int(said) if said else status)


def _fork() -> int:
    """``os.fork()``; exit 126 with one line when the system refuses."""
    try:
        return os.fork()
    except OSError as exc:
        print(f"reinstate sandbox: cannot start the agent's PID namespace: {exc}",
              file=sys.stderr)
        sys.exit(126)


def _wait_relaying(child: int, *, orphans: bool) -> int:
    """Wait for ``child`` (reaping any other child meanwhile when ``orphans``), passing
    on the signals in :data:`RELAYED`; its wait status."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)

    def relay(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for signum in RELAYED:
        signal.signal(signum, relay)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, RELAYED)
    while True:
        pid, status = os.waitpid(-1 if orphans else child, 0)
        if pid == child:
            return status


def _exit_as(status: int) -> NoReturn:
    """Exit with the wait ``status`` of the agent: its code, or killed by its signal
    (without a core file)."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        os._exit(code)
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if -code not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(-code, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [-code])
    os.kill(os.getpid(), -code)
    os._exit(128 - code)


def die_with(gate: int) -> None:
    """Be killed when the gate that started this process ends, however it ends (SIGKILL,
    a cancelled CI job): without it the agent, its PID namespace held up by this process,
    lived on after the gate, still reading the workspace and holding locks on the state
    store. Exit 126 when the gate is already gone."""
    import ctypes

    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL,
                                               0, 0, 0) != 0:
        print("reinstate sandbox: cannot tie the agent to the gate's life (prctl)",
              file=sys.stderr)
        sys.exit(126)
    if os.getppid() != gate:  # it died before the prctl held
        sys.exit(126)


def agent_env() -> dict[str, str]:
    """The agent's environment as the gate handed it over; exit 126 without a whole one
    (the agent never starts with this process's environment by accident)."""
    try:
        env = json.loads(os.environ["REINSTATE_AGENT_ENV"])
        if isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str)
                                         for k, v in env.items()):
            return env
    except (KeyError, ValueError):
        pass
    print("reinstate sandbox: REINSTATE_AGENT_ENV: expected the agent's environment as a "
          "JSON object of strings", file=sys.stderr)
    sys.exit(126)


def main() -> None:
    """Apply the rules and execute the agent's command; exit 126 when that fails."""
    parser = argparse.ArgumentParser(prog="reinstate-sandbox")
    parser.add_argument("--writable")
    parser.add_argument("--read", action="append", default=[])
    parser.add_argument("--hide", action="append", default=[])
    parser.add_argument("--pid-namespace", action="store_true")
    parser.add_argument("--gate", type=int)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run after --")
    if args.gate is not None:
        die_with(args.gate)
    env = agent_env()
    if args.pid_namespace:
        try:
            enter_namespaces()
        except OSError as exc:  # asked for, so never run without: the verdict says it held
            print(f"reinstate sandbox: cannot enter new user and PID namespaces: {exc}",
                  file=sys.stderr)
            sys.exit(126)
    if args.writable is not None:
        try:
            apply_landlock(args.writable, [Path(p) for p in args.read],
                           [Path(p) for p in args.hide])
        except Exception as exc:  # the agent never runs unconfined by accident
            print(f"reinstate sandbox: cannot apply Landlock: {exc}", file=sys.stderr)
            sys.exit(126)
    if args.pid_namespace:
        run_in_namespaces(lambda: execute(command, env))
    execute(command, env)


def execute(command: list[str], env: dict[str, str]) -> NoReturn:
    """Become the agent's command; exit 127 when it cannot start."""
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        print(f"cannot start {command[0]}: {exc.strerror}", file=sys.stderr)
        sys.exit(127)
    except ValueError as exc:  # a NUL byte in the command or the environment
        print(f"cannot start {command[0]}: {exc}", file=sys.stderr)
        sys.exit(127)


if __name__ == "__main__":
    main()
