"""Restrict this process with Landlock, then become the agent: ``… [--writable DIR] -- CMD…``.

Run by path with the gate's Python in isolated mode (``-I``), never imported by the gate.
Landlock rules are inherited by every descendant and survive ``execve``, so the agent and
anything it starts, detached or not, can write only to ``DIR`` and read every top-level
folder except ``/proc`` (or only the ``--read`` folders given). Without ``--writable`` it
only hands the environment over (inside bubblewrap, which confines it already).

The agent's environment arrives as JSON in ``REINSTATE_AGENT_ENV`` and becomes the agent's
only in the ``execve``: this process starts with reinstate's environment, so nothing the
workspace sets (``LD_PRELOAD``, ``PYTHONPATH``) acts before the rules do. Standard library
and ``landlock`` only, to start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from pathlib import Path


def apply_landlock(writable: str, readable: list[Path]) -> None:
    """Restrict this process (and all it starts) to writing ``writable`` only."""
    from landlock import FSAccess, Ruleset, landlock_abi_version

    read = FSAccess.EXECUTE | FSAccess.READ_FILE | FSAccess.READ_DIR
    read_file = FSAccess.EXECUTE | FSAccess.READ_FILE
    # Writing /dev/null and the terminal is harmless; creating files there is not allowed.
    device = read | FSAccess.WRITE_FILE
    if landlock_abi_version() >= 5:
        device |= FSAccess.IOCTL_DEV
    ruleset = Ruleset()
    if not readable:
        # Every top-level entry but /proc: the gate's environment and memory stay unread.
        readable = [path for path in sorted(Path("/").iterdir()) if path.name != "proc"]
    for path in readable:
        try:
            mode = path.stat().st_mode
        except OSError:
            continue  # a dangling link or a vanished mount grants nothing
        if stat.S_ISDIR(mode):
            ruleset.allow(path, rules=device if path == Path("/dev") else read)
        elif stat.S_ISREG(mode):
            ruleset.allow(path, rules=read_file)
    ruleset.allow(writable)
    ruleset.apply()


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
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run after --")
    env = agent_env()
    if args.writable is not None:
        try:
            apply_landlock(args.writable, [Path(p) for p in args.read])
        except Exception as exc:  # the agent never runs unconfined by accident
            print(f"reinstate sandbox: cannot apply Landlock: {exc}", file=sys.stderr)
            sys.exit(126)
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
