"""``reinstate mode AGENT --follow``: every mode change as it commits, from PostgreSQL's
``LISTEN``/``NOTIFY``, so containment reaches each runtime without polling."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from evalsuite import InvalidInput
from gates._cli._common import Context
from gates._config import Workspace
from gates._errors import StoreUnavailable
from gates._reports.terminal import mode_line, plain
from gates._store.access import ModeReading, held_to_proof, open_store, read_mode
from gates._store.backends import SQLiteStore

if TYPE_CHECKING:
    from gates._store.postgres import PostgresStore


def _emit(c: Context, reading: ModeReading, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(reading.model_dump(mode="json")))
    elif c.out.is_terminal:
        c.out.print(mode_line(reading))
    else:
        click.echo(reading.mode)  # flushed at once: a runtime reads it line by line
    if reading.degraded:
        c.err.print(f"[yellow]warning:[/] {plain(reading.degraded)}")


def follow_mode(c: Context, workspace: Workspace, agent: str, as_json: bool) -> int:
    """Print the agent's mode now, then again after every mode change of it, until
    interrupted. A lost connection prints ``suspended`` and exits 3 (fail closed: a
    supervisor restarts the follower)."""
    store = open_store(workspace)
    if isinstance(store, SQLiteStore):
        raise InvalidInput(None, "--follow", "expected a workspace whose [state] url is a "
                                             "postgresql:// URL (it listens for changes); "
                                             "the SQLite store can only be asked again")
    try:
        # Listening before the first reading: no change falls between the two.
        with store.listening() as changes:
            _emit(c, _reading(workspace, agent, store), as_json)
            for change in changes:
                if change.get("agent") == agent:
                    _emit(c, _reading(workspace, agent, store), as_json)
    except StoreUnavailable as exc:
        _emit(c, ModeReading(agent=agent, mode="suspended", degraded=str(exc),
                             reason="state store unreachable: failing closed"), as_json)
        return 3
    return 3  # the listening connection ended: never silently


def _reading(workspace: Workspace, agent: str, store: PostgresStore) -> ModeReading:
    # As `reinstate mode` answers: a full on unproven controls reads review.
    return held_to_proof(workspace, agent, read_mode(workspace, agent, store), store)
