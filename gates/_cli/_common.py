"""What every command shares: the workspace, the actor, the console."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from rich.console import Console

    from gates._config import Workspace


def console(*, stderr: bool = False) -> Console:
    """A rich console for stdout (or stderr) whose lines are not wrapped when they go to a
    file or a pipe, so logs stay greppable, and that writes out every hidden character it
    is given to print (:class:`ShowHidden`): commands print what agents, logs and people
    wrote."""
    from rich.console import Console  # only commands that print through rich pay for it

    from gates._reports.visible_console import ShowHidden

    made = Console(stderr=stderr)
    made.soft_wrap = not made.is_terminal
    made.push_render_hook(ShowHidden())
    return made


@dataclass
class Context:
    """Options given before the command."""

    workspace_dir: Path | None
    actor: str

    @cached_property
    def out(self) -> Console:
        """The console for the command's output, made on first use."""
        return console()

    @cached_property
    def err(self) -> Console:
        """The console for warnings and progress, made on first use."""
        return console(stderr=True)

    def out_is_terminal(self) -> bool:
        """Whether the output goes to a terminal, as rich decides it; rich is not imported
        for output that surely does not (a pipe or a file, no ``FORCE_COLOR`` or
        ``TTY_COMPATIBLE``), so a deploy job's ``reinstate mode`` never loads it."""
        forced = "FORCE_COLOR" in os.environ or os.environ.get("TTY_COMPATIBLE", "") == "1"
        try:
            maybe = forced or sys.stdout.isatty()
        except (AttributeError, ValueError):  # no stdout, or a closed one
            maybe = forced
        return maybe and self.out.is_terminal

    def workspace(self, *, containing: bool = False) -> Workspace:
        """The workspace, found from ``-C`` or the working directory upwards; the logs
        the command reads are grouped into runs as its ``[ingest]`` settings say.
        ``containing``: for a command that can only make an agent safer, an invalid
        ``[notify]`` is set aside, not refused (:meth:`Workspace.find`)."""
        from evalsuite import sessions_grouped_by
        from gates._config import Workspace

        found = Workspace.find(self.workspace_dir, containing=containing)
        click.get_current_context().with_resource(
            sessions_grouped_by(found.config.ingest.session_attributes))
        return found


def default_actor() -> str:
    """Who is acting: ``REINSTATE_ACTOR``, else the login name."""
    try:
        return os.environ.get("REINSTATE_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def ctx() -> Context:
    """The current command's context."""
    found: Any = click.get_current_context().find_object(Context)
    assert isinstance(found, Context)
    return found


def split_list(value: str) -> list[str]:
    """``legal, compliance`` → ``["legal", "compliance"]``."""
    return [part.strip() for part in value.split(",") if part.strip()]


F = TypeVar("F", bound=Callable[..., Any])


def engine_options(command: F) -> F:
    """``--engine local|ray`` and ``--workers N``, for the commands that run work."""
    command = click.option(
        "--workers", type=int,
        help="With --engine ray: Ray tasks in flight at once (default: the cluster's "
             "CPUs).")(command)
    return click.option(
        "--engine", default="local", show_default=True,
        help="Where the work runs: local (this machine's processes) or ray (Ray tasks on "
             "$RAY_ADDRESS's cluster, or a local one; needs reinstate[ray]). The results "
             "are the same.")(command)
