"""What every command shares: the workspace, the actor, the console."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from evalsuite import sessions_grouped_by
from gates._config import Workspace


@dataclass
class Context:
    """Options given before the command."""

    workspace_dir: Path | None
    actor: str
    out: Console
    err: Console

    def workspace(self) -> Workspace:
        """The workspace, found from ``-C`` or the working directory upwards; the logs
        the command reads are grouped into runs as its ``[ingest]`` settings say."""
        found = Workspace.find(self.workspace_dir)
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
