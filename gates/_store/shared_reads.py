"""Read connections one decision shares.

A store on a server opens a connection for each read: a ``check`` asks the store about
ten questions, the mode three, and each connection costs a round trip or several (more
with TLS to a remote server). Within :func:`sharing`, a store keeps the first read
connection it opens and serves every later read of the same decision from it; the
connection is closed when the decision ends. A connection that broke is never served
again: the next read opens a new one.

Only decisions that run no agent code share (``check``, ``restore`` and its conditions,
the mode's read). The gate does not: its evals run the agent, untrusted, in processes
that could inherit an open connection to the team's store.

Only reads are shared, each statement in its own transaction (autocommit), so a shared
connection sees what others commit as a new one would. Writes keep their own connection
and transaction. Each thread and task has its own decision (a context variable), so a
connection is never used by two at once (an asyncio task started within one would share
it: start none there).
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol


class _Closable(Protocol):
    def close(self) -> Any: ...


_OPEN: ContextVar[dict[Hashable, _Closable] | None] = ContextVar(
    "reinstate_shared_reads", default=None)


@contextmanager
def sharing() -> Iterator[None]:
    """Within it, stores share their read connections; every one is closed at its end. A
    nested call shares the outer one's."""
    if _OPEN.get() is not None:
        yield
        return
    opened: dict[Hashable, _Closable] = {}
    token = _OPEN.set(opened)
    try:
        yield
    finally:
        _OPEN.reset(token)
        for resource in opened.values():
            with contextlib.suppress(Exception):  # closing never hides the decision's end
                resource.close()


def shared(key: Hashable) -> Any | None:
    """The connection kept under ``key`` in the current decision, if any."""
    opened = _OPEN.get()
    return None if opened is None else opened.get(key)


def keep(key: Hashable, resource: _Closable) -> bool:
    """Keep ``resource`` under ``key`` for the rest of the decision (closed at its end);
    False outside one (the caller closes it)."""
    opened = _OPEN.get()
    if opened is None:
        return False
    opened[key] = resource
    return True


def drop(key: Hashable) -> None:
    """Close and forget the connection kept under ``key`` (it broke)."""
    opened = _OPEN.get()
    resource = None if opened is None else opened.pop(key, None)
    if resource is not None:
        with contextlib.suppress(Exception):
            resource.close()
