"""The mode inputs: what the full read accepted, remembered for the light read.

After a full read of a mode, the workspace's configuration file and each incident file
are checked again by the very functions the full read uses (:func:`parse_config`,
:meth:`IncidentBook.parse`), from the bytes whose digest is remembered, so a file is
remembered only when those exact bytes pass. What is remembered of each is what a mode
reads from it. The file lives beside the SQLite store (:func:`inputs_path`), written
atomically; it holds only files present now, and a write that fails costs only speed.
"""

from __future__ import annotations

import json
import os
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from evalsuite import ReinstateError, write_atomic
from gates._config import CONFIG_FILE, Workspace, parse_config
from gates._store.mode_light import (
    INPUTS_VERSION,
    NotSure,
    file_key,
    inputs_path,
    proof_key,
    read_file,
    read_previous,
    salt,
)


@dataclass(frozen=True)
class ProvenControls:
    """An agent's controls the full read found proven, and what it worked that out from
    (:func:`gates._store.mode_light.proof_key`)."""

    agent: str
    controls: dict[str, bytes | None]
    """The four control files' bytes the digests were taken of, by name."""
    verdict_sha256: str | None
    """The agent's latest stored verdict's digest, read before the proof."""
    since: datetime | None
    """The agent's last containment the proof was worked out after."""


def remember_mode_inputs(workspace: Workspace, proven: ProvenControls | None = None) -> None:
    """Remember the workspace's configuration and incident files that pass the full checks
    (and ``proven``: controls found proven), so the next mode read of an unchanged workspace
    needs no model. Never raises."""
    with suppress(Exception):
        _remember(workspace, proven)


def _remember(workspace: Workspace, proven: ProvenControls | None) -> None:
    config = workspace.config
    state_path = workspace.state_path
    if config.state.url is not None or not state_path.is_file():
        return  # the light read answers only over an SQLite store that exists
    if not os.access(state_path.parent, os.W_OK):
        return  # a read-only deployment: checking files again would only cost time
    path = inputs_path(state_path)
    before = read_previous(path, state_path)
    fresh = isinstance(before, dict) and before.get("salt") == salt()
    old_configs = before.get("configs", {}) if fresh else {}
    old_incidents = before.get("incidents", {}) if fresh else {}
    old_proofs = before.get("proofs", {}) if fresh else {}
    configs: dict[str, Any] = {}
    own = workspace.root / CONFIG_FILE
    config_path = own if own.is_file() else workspace.root / "pyproject.toml"
    raw = read_file(config_path)
    key = config_key = file_key(config_path.name, raw)
    checked = old_configs.get(key) if isinstance(old_configs, dict) else None
    if checked is None:
        parsed = parse_config(config_path, raw)
        if parsed is None or parsed.state.url is not None:
            return
        checked = {"agents": parsed.paths.agents, "incidents": parsed.paths.incidents,
                   "state": parsed.paths.state}
    configs[key] = checked
    proofs = {agent: found for agent, found in old_proofs.items()
              if isinstance(agent, str) and isinstance(found, str)} if isinstance(
                  old_proofs, dict) else {}
    if proven is not None and _provable(workspace, config_path, raw):
        proofs[proven.agent] = proof_key(proven.agent, config_key, proven.controls,
                                         proven.verdict_sha256, proven.since)
    book = workspace.incidents()
    incidents: dict[str, Any] = {}
    for incident_id in book.ids():
        path_of = book.path(incident_id)
        try:
            raw = read_file(path_of)
        except (NotSure, OSError):
            continue
        key = file_key(path_of.name, raw)
        known = old_incidents.get(key) if isinstance(old_incidents, dict) else None
        if known is None:
            try:
                incident = book.parse(path_of, raw.decode("utf-8"))
            except (ReinstateError, UnicodeDecodeError):
                continue  # refused: the full read refuses it every time
            known = {"id": incident.id, "agent": incident.agent,
                     "containment": (incident.containment.mode if incident.containment
                                     else None),
                     "restored": incident.restored_at is not None,
                     "closed": incident.closed_at is not None,
                     # What the light check needs to tell whether a verdict covers it
                     # (gates._verdict.coverage).
                     "changes": [[c.id, c.layer] for c in incident.control_changes],
                     "last_recorded": incident.last_recorded_at.isoformat(),
                     "contained_at": (incident.containment.contained_at.isoformat()
                                      if incident.containment else None)}
        incidents[key] = known
    if fresh and before == {"schema_version": INPUTS_VERSION, "salt": salt(),
                            "configs": configs, "incidents": incidents, "proofs": proofs}:
        return  # unchanged: no write
    write_atomic(path, json.dumps({"schema_version": INPUTS_VERSION, "salt": salt(),
                                   "configs": configs, "incidents": incidents,
                                   "proofs": proofs}) + "\n")


def _provable(workspace: Workspace, path: Path, raw: bytes) -> bool:
    """Whether a proof worked out under ``workspace``'s configuration may be remembered
    under the configuration file's bytes ``raw`` read now: they must say that very
    configuration (not one edited since), and name no public key (a key file can change
    under the same configuration) and no predicate module (its files are not in the key)."""
    parsed = parse_config(path, raw)
    return (parsed is not None and parsed == workspace.config
            and parsed.signing.public_key is None and not parsed.rules.predicate_modules)
