"""Mode readings an agent's runtime may be answered from memory for ``cache_s`` seconds."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


class RecentReadings(Generic[T]):
    """One process's readings by (workspace as given, where it is found from, agent).

    Without a folder the workspace is found from ``REINSTATE_WORKSPACE`` or the working
    directory, and a relative folder from the working directory, so those are part of what
    a reading was for. A reading older than
    ``cache_s`` is never served: the caller reads again, and whatever that read answers
    (``suspended`` for an unreadable store) is the answer.
    """

    def __init__(self) -> None:
        self._kept: dict[tuple[str, str, str], tuple[float, T]] = {}
        self._lock = threading.Lock()

    def read(self, agent: str, workspace: Path | str | None, cache_s: float,
             read: Callable[[], T]) -> T:
        """The reading kept for this agent and workspace when younger than ``cache_s``,
        else ``read()``'s (kept when ``cache_s`` is above 0)."""
        # A relative folder names another workspace from another working directory.
        found_from = "" if workspace is not None and Path(workspace).is_absolute() else (
            f"{os.environ.get('REINSTATE_WORKSPACE', '')}|{Path.cwd()}")
        key = (str(workspace) if workspace is not None else "", found_from, agent)
        if cache_s > 0:
            with self._lock:
                kept = self._kept.get(key)
            if kept is not None and time.monotonic() - kept[0] < cache_s:
                return kept[1]
        now = time.monotonic()
        reading = read()
        if cache_s > 0:
            with self._lock:
                self._kept[key] = (now, reading)
        return reading
