"""``agent_mode``: the one call an agent's runtime makes, light when it can be."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gates._store.mode_light import light_reading

if TYPE_CHECKING:
    from gates._store.backends import Mode

# (workspace as given, where it is found from, agent) → (when read, the mode) of the light
# read, for ``cache_s``; the full read keeps its own (:func:`mode_reading`).
_MODES: dict[tuple[str, str, str], tuple[float, Mode]] = {}
_MODES_LOCK = threading.Lock()


def agent_mode(agent: str, workspace: Path | str | None = None, *,
               cache_s: float = 0.0) -> Mode:
    """For an agent's runtime: the mode to operate in right now.

    Never raises: a missing or broken workspace, an agent the workspace does not define, a
    broken store or record answers ``suspended``. An unchanged workspace over an SQLite
    store is read without building a model; anything else is read in full.

    Args:
        agent: The agent's name.
        workspace: The workspace folder (default: found from the working directory).
        cache_s: Answer from memory within this many seconds of the last reading, so a
            runtime can ask before every action cheaply; see :func:`mode_reading`.
    """
    found_from = "" if workspace is not None else (
        f"{os.environ.get('REINSTATE_WORKSPACE', '')}|{Path.cwd()}")
    key = (str(workspace) if workspace is not None else "", found_from, agent)
    if cache_s > 0:
        with _MODES_LOCK:
            cached = _MODES.get(key)
        if cached is not None and time.monotonic() - cached[0] < cache_s:
            return cached[1]
    now = time.monotonic()
    light = light_reading(agent, workspace)
    if light is None:  # not sure: the full read, with its own cache and fail-closed answers
        from gates._store.access import mode_reading

        return mode_reading(agent, workspace, cache_s=cache_s).mode
    mode: Mode = light["mode"]
    if cache_s > 0:
        with _MODES_LOCK:
            _MODES[key] = (now, mode)
    return mode
