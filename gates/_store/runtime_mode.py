"""``agent_mode``: the one call an agent's runtime makes, light when it can be."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gates._store.mode_light import light_reading
from gates._store.recent import RecentReadings

if TYPE_CHECKING:
    from gates._store.backends import Mode

_MODES: RecentReadings[Mode] = RecentReadings()


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
    return _MODES.read(agent, workspace, cache_s, lambda: _read_now(agent, workspace))


def _read_now(agent: str, workspace: Path | str | None) -> Mode:
    light = light_reading(agent, workspace)
    if light is not None:
        mode: Mode = light["mode"]
        return mode
    from gates._store.access import mode_reading  # not sure: the full, fail-closed read

    return mode_reading(agent, workspace).mode
