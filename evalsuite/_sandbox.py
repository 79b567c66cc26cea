"""Where agent code runs: its own process group, an allowlisted environment, a sandbox.

The agent under evaluation is untrusted code. Every agent process the python and
subprocess adapters start gets:

- its own session and process group, killed whole (SIGKILL) when its case ends, times out
  or the adapter closes; under Landlock, where the kernel allows unprivileged user
  namespaces, also a PID namespace of its own, so that every process it starts, even one
  that left the group and re-executed itself with another environment, dies with it
  (bubblewrap gives one too); elsewhere a sweep for processes still carrying its private
  ``TMPDIR`` after the group kill, which such a process escapes;
- an environment built from an allowlist: ``PATH``, ``LANG``, ``LC_ALL`` and ``TZ`` from
  the gate's environment, ``HOME`` and ``TMPDIR`` pointing at a private temporary folder,
  the names listed in ``[agent] env`` of ``reinstate.toml``, and the values ``agent.yaml``
  sets; nothing else, and never ``REINSTATE_SIGNING_KEY``;
- on Linux, a sandbox that lets it write only to that private folder (removed after the
  process ends): Landlock, applied by a tiny launcher that restricts itself and then
  executes the agent, so every descendant inherits the rules; or bubblewrap when Landlock
  is unavailable. Under Landlock the agent can read every top-level folder except
  ``/proc`` (so it cannot read the gate's environment or memory), and, from Landlock ABI
  6, cannot signal processes outside its sandbox. Under either, it reads nothing of
  :attr:`Isolation.hidden` (the state store, its lock files, the store's credentials).

:func:`describe` says which of these the agent got, for the verdict.

Nothing the workspace sets runs before the sandbox holds. The launcher is started in
Python's isolated mode (``-I``: no ``PYTHONPATH``, no ``sitecustomize`` from the agent's
folder, no script folder on the path) with an environment of reinstate's own: the agent's
(which may set ``PYTHONPATH`` or ``LD_PRELOAD``) travels inside it as one inert value and
becomes the agent's environment only in the ``execve`` after the rules apply. Under
bubblewrap the same launcher runs inside the sandbox, so ``bwrap`` itself never starts
with the agent's environment either.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from evalsuite._errors import EvalsuiteError

SandboxChoice = Literal["auto", "landlock", "bubblewrap", "none"]
SANDBOXES: tuple[SandboxChoice, ...] = ("auto", "landlock", "bubblewrap", "none")

BASIC_ENV = ("PATH", "LANG", "LC_ALL", "TZ")
"""Harmless names always passed from the gate's environment when set."""

PROTECTED_ENV = frozenset({"REINSTATE_SIGNING_KEY"})
"""Names that never reach an agent, whatever the workspace lists."""

LAUNCHER = Path(__file__).with_name("_sandbox_launch.py")
"""Run by path, not with ``-m``: importing the evalsuite package would slow every start."""

AGENT_ENV = "REINSTATE_AGENT_ENV"
"""Where the launcher finds the agent's environment (JSON), to hand it over only in the
``execve`` that starts the agent, after the sandbox applies."""


class SandboxUnavailable(EvalsuiteError):
    """The sandbox the workspace asks for cannot be used on this machine."""

    exit_code = 3


def protected_env_problem(name: str) -> str | None:
    """Why ``name`` may not be passed to an agent, or None when it may."""
    if name in PROTECTED_ENV:
        return (f"'{name}' never reaches the agent under evaluation (it holds the gate's "
                f"signing key); remove it")
    if not name or "=" in name or "\x00" in name:
        return f"expected an environment variable name, got {name!r}"
    return None


@dataclass(frozen=True)
class Isolation:
    """How agent processes are confined; the gate builds it from ``[agent]`` in the workspace.

    Attributes:
        env: Names passed from the gate's environment besides the basics (``PATH``,
            ``LANG``, ``LC_ALL``, ``TZ``).
        sandbox: ``auto`` (the first available of Landlock and bubblewrap, else none),
            ``landlock``, ``bubblewrap`` (an error when unavailable) or ``none``.
        read_only: Folders the agent may read under Landlock; empty means every
            top-level folder except ``/proc``.
        hidden: Files and folders the agent may not read at all, even where it may read
            the folder they are in (the state store and its lock files, the store's
            credential files); enforced by both sandboxes, not without one.
    """

    env: tuple[str, ...] = ()
    sandbox: SandboxChoice = "auto"
    read_only: tuple[Path, ...] = ()
    hidden: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        for name in self.env:
            problem = protected_env_problem(name)
            if problem is not None:
                raise ValueError(problem)
        if self.sandbox not in SANDBOXES:
            raise ValueError(f"sandbox must be one of {', '.join(SANDBOXES)}, "
                             f"got {self.sandbox!r}")


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 without Landlock."""
    try:
        import landlock

        return int(landlock.landlock_abi_version())
    except Exception:  # an old kernel, a kernel without it, a missing package
        return 0


def landlock_problem() -> str | None:
    """Why Landlock cannot be used here, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "Landlock is a Linux feature"
    try:
        import landlock

        abi = int(landlock.landlock_abi_version())
    except Exception as exc:  # an old kernel, a kernel without it, a missing package
        return f"the kernel refused it ({exc})".replace("\n", " ")
    return None if abi >= 1 else f"unusable Landlock ABI {abi}"


@functools.cache
def bubblewrap_problem() -> str | None:
    """Why bubblewrap cannot be used here, or None when it can (tried once per process)."""
    import subprocess  # only here: reading a workspace's config (`reinstate mode`) runs nothing

    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bwrap is not on PATH"
    try:
        subprocess.run([bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                        "--unshare-pid", "--die-with-parent", "true"],
                       capture_output=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bwrap cannot create a sandbox here ({exc})"
    return None


@functools.cache
def pid_namespace_problem() -> str | None:
    """Why the Landlock launcher cannot put agents in user and PID namespaces of their own
    here, or None when it can (tried once per process, by starting it so)."""
    import subprocess

    if not sys.platform.startswith("linux"):
        return "PID namespaces are a Linux feature"
    second = "import os, sys; sys.exit(os.getpid() != 2)"  # the agent, after the init
    try:
        done = subprocess.run([sys.executable, "-I", str(LAUNCHER), "--pid-namespace", "--",
                               sys.executable, "-I", "-S", "-c", second],
                              env={AGENT_ENV: "{}"}, capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"the launcher could not be tried ({exc})"
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        return (said[-1] if said else f"exit {done.returncode}").removeprefix(
            "reinstate sandbox: ")
    return None


def pid_namespace(sandbox: Literal["landlock", "bubblewrap", "none"]) -> bool:
    """Whether every process an agent starts ends with it: bubblewrap's PID namespace, or
    the one the Landlock launcher makes where the kernel allows it."""
    if sandbox == "bubblewrap":
        return True
    return sandbox == "landlock" and pid_namespace_problem() is None


def choose_sandbox(choice: SandboxChoice) -> Literal["landlock", "bubblewrap", "none"]:
    """The sandbox ``choice`` resolves to on this machine.

    Raises:
        SandboxUnavailable: ``landlock`` or ``bubblewrap`` was asked for and cannot be used.
    """
    if choice == "none":
        return "none"
    if choice in ("auto", "landlock"):
        problem = landlock_problem()
        if problem is None:
            return "landlock"
        if choice == "landlock":
            raise SandboxUnavailable(_unavailable("landlock", problem))
    problem = bubblewrap_problem()
    if problem is None:
        return "bubblewrap"
    if choice == "bubblewrap":
        raise SandboxUnavailable(_unavailable("bubblewrap", problem))
    return "none"


def _unavailable(choice: str, problem: str) -> str:
    return (f"reinstate.toml: $.agent.sandbox: \"{choice}\" is not available on this machine "
            f"({problem}); expected a sandbox it has, \"auto\" or \"none\"")


def agent_environment(names: Sequence[str], values: Mapping[str, str],
                      home: Path) -> dict[str, str]:
    """The whole environment of an agent process: the allowlist, nothing else.

    Raises:
        ValueError: ``values`` sets a protected name.
    """
    env = {name: os.environ[name] for name in (*BASIC_ENV, *names)
           if name in os.environ and name not in PROTECTED_ENV}
    for name in values:
        problem = protected_env_problem(name)
        if problem is not None:
            raise ValueError(problem)
    env.update(values)
    env["HOME"] = env["TMPDIR"] = str(home)
    return env


class Confinement:
    """One agent process's private folder, environment and sandboxed command line."""

    def __init__(self, isolation: Isolation, sandbox: Literal["landlock", "bubblewrap", "none"],
                 values: Mapping[str, str]) -> None:
        self.sandbox = sandbox
        self.pid_namespace = pid_namespace(sandbox)
        """Every process the agent starts dies with it; no sweep is needed."""
        self.home = Path(tempfile.mkdtemp(prefix="reinstate-agent-"))
        _LIVE_HOMES.add(self.home)
        try:
            self.env = agent_environment(isolation.env, values, self.home)
        except ValueError:
            self.remove()
            raise
        self._read_only = isolation.read_only
        self._hidden = hidden_places(isolation.hidden)

    def command(self, argv: Sequence[str], cwd: Path) -> list[str]:
        """``argv`` wrapped in the sandbox, ready to start in ``cwd`` with :attr:`start_env`."""
        launcher = [sys.executable, "-I", str(LAUNCHER)]
        if self.sandbox == "landlock":
            reads = [arg for path in self._read_only for arg in ("--read", str(path))]
            reads += [arg for path in self._hidden for arg in ("--hide", str(path))]
            namespace = ["--pid-namespace"] if self.pid_namespace else []
            # Linux only (prctl); bubblewrap's --die-with-parent does the same.
            gate = ["--gate", str(os.getpid())] if sys.platform.startswith("linux") else []
            return [*launcher, "--writable", str(self.home), *namespace, *gate, *reads, "--",
                    *argv]
        if self.sandbox == "bubblewrap":
            bwrap = shutil.which("bwrap") or "bwrap"
            return [bwrap, "--ro-bind", "/", "/", *masks(self._hidden),
                    "--dev", "/dev", "--proc", "/proc", "--unshare-pid", "--die-with-parent",
                    "--new-session",
                    "--bind", str(self.home), str(self.home), "--chdir", str(cwd), "--",
                    *launcher, "--", *argv]
        return list(argv)

    @property
    def start_env(self) -> dict[str, str]:
        """The environment the command starts with: the agent's own without a sandbox;
        else reinstate's, carrying the agent's for the launcher to hand over once the
        sandbox holds (``TMPDIR`` kept, so :meth:`kill_leftovers` finds the launcher too)."""
        if self.sandbox == "none":
            return dict(self.env)
        return {"HOME": str(self.home), "TMPDIR": str(self.home),
                AGENT_ENV: json.dumps(self.env)}

    def kill_leftovers(self) -> int:
        """SIGKILL every process still started with this private folder as its TMPDIR.

        A grandchild that left the agent's process group (``setsid``, a double fork)
        escapes the group kill; under Landlock it can write nothing, and this sweep ends
        it too unless it rewrote its environment (an ``execve`` with another one is
        enough), which is why a PID namespace is used wherever the kernel allows it, and
        then this sweep is not needed. Linux only (reads ``/proc``); returns how many
        processes were killed.
        """
        marker = f"\0TMPDIR={self.home}\0".encode()
        killed = 0
        proc = Path("/proc")
        if not proc.is_dir():
            return 0
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if marker in b"\0" + (entry / "environ").read_bytes():
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed += 1
            except OSError:
                continue  # gone, or not ours to read
        return killed

    def remove(self) -> None:
        """Delete the private folder and whatever the agent left in it."""
        shutil.rmtree(self.home, ignore_errors=True)
        _LIVE_HOMES.discard(self.home)


def hidden_places(paths: Sequence[Path]) -> list[Path]:
    """``paths`` as the sandboxes hide them: absolute, links resolved, and each one that
    does not exist yet replaced by its first missing folder, so that what is created there
    during the run (a store's ``-wal`` file, its folder) is hidden too."""
    places: set[Path] = set()
    for path in paths:
        place = path.resolve()
        while place.parent != place and not os.path.lexists(place.parent):
            place = place.parent
        places.add(place)
    return sorted(places)


def masks(hidden: Sequence[Path]) -> list[str]:
    """bubblewrap arguments that hide ``hidden`` (from :func:`hidden_places`): each folder
    holding a hidden path becomes an empty read-only folder into which every other entry
    is bound back, so an entry made there later (a store's ``-shm`` file) is not seen."""
    args: list[str] = []
    parents = sorted({place.parent for place in hidden}, key=lambda p: (len(p.parts), p))
    for parent in parents:
        if any(parent == place or place in parent.parents for place in hidden):
            continue  # inside a hidden folder: gone already
        try:
            entries = sorted(parent.iterdir())
        except OSError:
            continue  # not a folder we can list: nothing under it can be read either
        args += ["--tmpfs", str(parent)]
        for entry in entries:
            if entry in hidden:
                continue
            if entry.is_symlink():  # kept a link: what it points to is hidden where it is
                args += ["--symlink", str(entry.readlink()), str(entry)]
            else:
                args += ["--ro-bind-try", str(entry), str(entry)]
        args += ["--remount-ro", str(parent)]
    return args


# Private folders of agent processes not stopped yet: an adapter nobody closed (a one-off
# run_trial) must not leave them behind when the gate's process ends.
_LIVE_HOMES: set[Path] = set()


@atexit.register
def _remove_leftover_homes() -> None:
    for home in list(_LIVE_HOMES):
        shutil.rmtree(home, ignore_errors=True)


def describe(sandbox: Literal["landlock", "bubblewrap", "none"]) -> dict[str, str]:
    """What isolation agent processes get, as the verdict records it.

    ``processes`` is ``pid-namespace`` when every process an agent starts ends with its
    case, ``process-group+sweep`` when one that left the group and changed its
    environment could outlive it (no user namespaces here, or no sandbox).
    """
    contained = pid_namespace(sandbox)
    scoped = sandbox == "landlock" and landlock_abi() >= 6
    signals = ("its own processes only" + (" (PID namespace)" if contained else
                                           " (Landlock scope)")
               if contained or scoped else "any process of the gate's user")
    writable = {
        "landlock": "only a private temporary folder per agent process, removed after it",
        "bubblewrap": "only a private temporary folder per agent process, removed after it",
        "none": "everything the gate's user can write: no sandbox was available",
    }[sandbox]
    return {
        "process": "own process group, killed whole when its case ends",
        "processes": "pid-namespace" if contained else "process-group+sweep",
        "sandbox": sandbox,
        "environment": f"allowlist: {', '.join(BASIC_ENV)}, HOME and TMPDIR (private), "
                       f"[agent] env, agent.yaml env",
        "writable": writable,
        "proc": "unreadable" if sandbox == "landlock" else
                "own processes only" if sandbox == "bubblewrap" else "readable",
        "signals": signals,
    }


IN_PROCESS = {
    "process": "in-process (isolation: in-process in agent.yaml): the agent shares the "
               "gate's process and could change its result",
    "sandbox": "none",
    "environment": "the gate's whole environment",
    "writable": "everything the gate can write",
}
"""What an agent run in the gate's own process gets: nothing."""


def unisolated(isolation: Mapping[str, str]) -> str | None:
    """The warning a verdict must carry for this isolation, or None when it was confined."""
    if isolation.get("process", "").startswith("in-process"):
        return ("the agent ran UNISOLATED in the gate's own process (isolation: in-process "
                "in agent.yaml): it could have changed this verdict")
    if isolation.get("sandbox") == "none":
        return ("the agent ran WITHOUT A SANDBOX (neither Landlock nor bubblewrap here, or "
                "sandbox = \"none\" in reinstate.toml): it could write the workspace and the "
                "state store")
    return None
