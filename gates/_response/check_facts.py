"""The check inputs: what a full ``check`` accepted, remembered for the light check.

After a full check, each fact the light check (:mod:`gates._response.check_light`) relies
on is worked out again by the full functions from the very bytes whose digest keys it:
the configuration by :func:`parse_config` (its digest and places), agent.yaml by the
:class:`AgentSpec` model (its version, adapters and ``sources:``), each control file's
parsed digest by :func:`control_bytes_digest`, and "these controls load" by
:func:`load_controls` over exactly those texts. A fact is remembered only when that
passes, so a file the full read refuses is never trusted. The file lives beside the SQLite
store (:func:`inputs_path`), written atomically; a write that fails costs only speed.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any

from evalsuite import (
    AgentSpec,
    PythonAdapterSpec,
    ReinstateError,
    ReplayAdapterSpec,
    SubprocessAdapterSpec,
    parse_model,
    parse_yaml,
    write_atomic,
)
from gates._config import Workspace, parse_config
from gates._response.check_light import (
    INPUTS_VERSION,
    PACKAGES,
    check_salt,
    code_stamp,
    fact_key,
    inputs_path,
)
from gates._store.mode_facts import remember_mode_inputs
from gates._store.mode_light import read_file, read_previous

# Facts kept per section at most: older ones go first (a workspace whose files change
# often must not grow the file without end).
_KEEP = 256


def remember_check_inputs(workspace: Workspace, agent: str) -> None:
    """Remember what a full check of ``agent`` accepted (and the mode inputs), so the next
    check of an unchanged workspace needs no model. Never raises."""
    remember_mode_inputs(workspace)
    with suppress(Exception):
        _remember(workspace, agent)


def _reinstate_modules() -> list[str]:
    """Every reinstate module loaded now, by file: the code that decided the facts."""
    root = Path(__file__).resolve().parents[2]
    owned = {str(root / package) for package in PACKAGES}
    found = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and any(path.startswith(f"{p}{os.sep}") for p in owned):
            found.add(path)
    return sorted(found)


def _unchanged_code(code: object, stamp: object) -> bool:
    """Whether the modules a facts file lists are, by size and time, those it was written
    under."""
    if not (isinstance(code, list) and all(isinstance(p, str) for p in code)):
        return False
    try:
        return code_stamp(code) == stamp
    except OSError:  # a module gone
        return False


def _remember(workspace: Workspace, agent: str) -> None:
    from gates._controls.files import CONTROL_FILES, load_controls
    from gates._verdict.fingerprint import config_digest, config_file, control_bytes_digest

    config = workspace.config
    state_path = workspace.state_path
    if (config.state.url is not None or not state_path.is_file()
            or config.rules.predicate_modules or config.signing.public_key is not None):
        return  # the light check answers only over SQLite, without predicates or a key
    if not os.access(state_path.parent, os.W_OK):
        return  # a read-only deployment: checking files again would only cost time
    path = inputs_path(state_path)
    before = read_previous(path, state_path)
    fresh = (isinstance(before, dict) and before.get("salt") == check_salt()
             and before.get("control_files") == list(CONTROL_FILES)
             and _unchanged_code(before.get("code"), before.get("code_stamp")))
    old = {s: (before.get(s) if fresh and isinstance(before.get(s), dict) else {})
           for s in ("workspaces", "agents", "controls", "loaded")}
    new: dict[str, dict[str, Any]] = {s: {} for s in old}

    where = config_file(workspace)
    raw = read_file(where)
    key = fact_key("workspace", str(workspace.root), where.name, raw)
    if key not in old["workspaces"]:
        parsed = parse_config(where, raw)
        if parsed is None or parsed != config:
            return  # changed since the check read it
        paths = parsed.paths
        new["workspaces"][key] = {
            "agents": paths.agents, "evals": paths.evals, "regressions": paths.regressions,
            "incidents": paths.incidents, "state": paths.state, "logs": paths.logs,
            "config_digest": config_digest(parsed),
            "full_case_digests": parsed.gate.full_case_digests}

    directory = workspace.agent_dir(agent)
    agent_file = directory / "agent.yaml"
    agent_raw = read_file(agent_file)
    key = fact_key("agent.yaml", str(directory), agent_raw)
    if key not in old["agents"]:
        text = agent_raw.decode("utf-8")
        spec = parse_model(AgentSpec, parse_yaml(text, agent_file), agent_file, text)
        adapters: list[list[str]] = []
        for adapter in [spec.adapter, *spec.adapters.values()]:  # as agent_sources reads
            if isinstance(adapter, PythonAdapterSpec):
                adapters.append(["folder", adapter.path])
            elif isinstance(adapter, SubprocessAdapterSpec):
                adapters.append(["folder", adapter.cwd])
            elif isinstance(adapter, ReplayAdapterSpec):
                adapters.append(["file", adapter.log])
        new["agents"][key] = {"version": spec.version, "adapters": adapters,
                              "sources": list(spec.sources)}

    texts: dict[str, str] = {}
    control_raw: list[bytes] = []
    for name in CONTROL_FILES:
        held = read_file(directory / name)
        control_raw.append(held)
        texts[name] = held.decode("utf-8")
        key = fact_key("control", name, held)
        if key not in old["controls"]:
            new["controls"][key] = control_bytes_digest(held)
    key = fact_key("loaded", agent, str(directory), str(workspace.root), where.name, raw,
                   *control_raw)
    if key not in old["loaded"]:
        try:
            load_controls(directory, agent, root=workspace.root,
                          predicate_modules=config.rules.predicate_modules, texts=texts)
        except ReinstateError:
            return  # they do not load: nothing to remember
        new["loaded"][key] = True

    # Taken after the load: every module that decided a fact is loaded by now. Facts kept
    # from before were decided by the modules listed then, unchanged since.
    code = sorted({*(before["code"] if fresh else ()), *_reinstate_modules()})
    if not any(new.values()) and code == before.get("code"):
        return  # nothing new: no write
    stamp = code_stamp(code)
    merged = {s: dict(list({**old[s], **new[s]}.items())[-_KEEP:]) for s in old}
    write_atomic(path, json.dumps({"schema_version": INPUTS_VERSION, "salt": check_salt(),
                                   "code_stamp": stamp, "code": code,
                                   "control_files": list(CONTROL_FILES), **merged}) + "\n")

