"""``reinstate check`` without pydantic, YAML or the control models: the deploy job's common
case (an unchanged workspace, a current passing verdict, nothing open), answered only when
it is sure to be the full check's answer.

The full check (:func:`gates._response.clearance.check`) validates the configuration, the
incident files and agent.yaml with their models, loads the four control files (pydantic
models, CEL, JSON Schema, RE2) to prove they still load today, fingerprints the agent's
files, verifies the audit log from its checkpoint and reads the latest verdict. This module
establishes each of the same conditions from the same trust roots, in the way the light
``mode`` read does (:mod:`gates._store.mode_light`): a file counts only when its exact bytes
were accepted by the full models before, under the same code.

What it trusts, and why that is sound:

- **Whether it may answer at all**: today's configuration file alone, read with
  :mod:`tomllib` (:func:`today_settings`): a ``[signing]`` table (a public key the full
  check verifies the verdict's signature against), a ``[state]`` table (a PostgreSQL
  store), ``[rules]`` (predicate modules), a table it does not know: not sure, whatever a
  facts file says. Its places (``[paths]``) and ``full_case_digests`` come from the same
  read; remembered ones must agree. A facts file can only make it defer or save work.
- **Configuration and incident files**: the mode inputs (``mode_facts``), as ``mode`` does.
- **agent.yaml, the control files' parsed digests, the configuration's digest and places**:
  the *check inputs* (:mod:`gates._response.check_facts`), remembered after a full check
  from the very bytes that the full functions parsed, keyed by a digest of those bytes, the
  file's name and place, and :func:`check_salt`.
- **"The controls still load today"**: remembered only after :func:`load_controls` loaded
  those exact bytes (control files and configuration) for that agent in that workspace.
  With identical bytes a load can still fail only if the code or the libraries that load
  them changed, or the load reads something else. So :func:`check_salt` covers the Python
  version, the installed pydantic, pydantic-core, PyYAML, jsonschema, CEL, RE2, msgspec and
  their own dependencies (size and modification time of each package's entry file, found
  without importing it)
  and every reinstate module the full check had loaded (size and modification time, the
  test Python itself applies to its bytecode cache). The load reads nothing else: no
  environment variable, no other file; except the predicate modules a workspace allows,
  which are Python code importing anything: a workspace with ``[rules] predicate_modules``
  is never remembered (always the full check).
- **Today's fingerprint**: computed here with the full fingerprint's own functions
  (:mod:`gates._verdict.fingerprint_files`) from those facts: every case file, source
  file and adapter folder is read or walked again, as the full fingerprint does.
- **The audit log and the verdict**: read with :mod:`sqlite3`, more strictly than the models
  read them: a checkpoint whose structure is whole (the store's own test), no entry after
  it, the head at it, the agent's mode and approval entries and last verdict entry
  re-hashed and exactly those the store tallied with the checkpoint, the modes row as the
  last mode entry set it, the latest verdict's text hashing to exactly the digest its entry
  records, and that entry right after the head the verdict was stamped with.

It answers only "cleared" (exit 0): an agent with an open incident, a failing, stale or
missing verdict, a public key to check a signature against, notes, a PostgreSQL store,
anything not seen before, and any oddity is :data:`None`, "not sure", and the caller runs
the full check, with its reasons, errors and exit codes. The facts files count only when
whoever may write the store wrote them (:func:`mode_light.read_inputs`: the store owner's,
in a folder nobody else may write), since the full check trusts the store; a verdict text
Python's json reads otherwise than pydantic's parser (:mod:`gates._verdict.plain_json`) is
not sure. It never writes anything.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import sys
import tomllib
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from evalsuite import ReinstateError
from gates._store import mode_light
from gates._store.chain_sql import (
    AUDIT_COLUMNS,
    DECIDING,
    held_checkpoint,
    linked_to,
    recorded_tally,
    tally_of,
)
from gates._store.mode_light import NotSure, read_file
from gates._verdict import coverage
from gates._verdict.fingerprint_files import (
    SUMMARIES,
    agent_files,
    combine,
    cut,
    file_digest,
    same,
    sha256,
)
from gates._verdict.plain_json import plain_json

INPUTS_VERSION = 1
# The libraries a control load, a configuration or an incident check runs on, and theirs:
# a change to any of them (an upgrade) may turn a load that passed into one that fails.
LIBRARIES = ("pydantic", "pydantic_core", "yaml", "jsonschema", "cel", "re2", "msgspec",
             "annotated_types", "typing_extensions", "typing_inspection", "referencing",
             "rpds", "jsonschema_specifications", "attrs")
# Reinstate's own packages: each of their modules the full check loaded is in the salt.
PACKAGES = ("evalsuite", "regressions", "gates", "reinstate")
# The one line ``signature_line`` gives when no public key is configured.
UNSIGNED = ("unsigned: no public key is configured ([signing] public_key in reinstate.toml, "
            "or --public-key), so only the state store vouches for this verdict")
# A verdict's creation time exactly as pydantic writes it in JSON (UTC, ``Z``; six digits
# of a fraction, none when it is zero), so the answer prints it as the full check does.
_CREATED = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                      r"(\.(?!000000)[0-9]{6})?Z")
_OUTCOMES = ("pass", "fail", "error", "inconclusive")
# The configuration's tables (gates._config.Config's fields) and its places with their
# defaults (gates._config.Paths); a test keeps both equal to the models'.
CONFIG_TABLES = frozenset({"schema_version", "paths", "containment", "gate", "logging",
                           "rules", "ingest", "signing", "agent", "notify", "state"})
PLACES = {"agents": "agents", "evals": "evals", "regressions": "regressions",
          "incidents": "incidents", "state": ".reinstate/state.db", "logs": "logs"}


def inputs_path(state_path: Path) -> Path:
    """The check-inputs file beside the SQLite store ``state_path``."""
    return state_path.with_name(f".{state_path.name}.check-inputs.json")


@cache
def check_salt() -> str:
    """The mode salt, the Python version and the installed libraries a control load uses:
    remembered facts count only under the same."""
    digest = hashlib.sha256(f"check v{INPUTS_VERSION}\0{mode_light.salt()}\0{sys.version}"
                            f"\0{sys.prefix}".encode())
    for name in LIBRARIES:
        spec = find_spec(name)
        origin = spec.origin if spec is not None else None
        if origin is None:
            digest.update(f"\0{name}: none".encode())
            continue
        held = Path(origin).stat()
        digest.update(f"\0{name}|{origin}|{held.st_size}|{held.st_mtime_ns}".encode())
    return digest.hexdigest()


def code_stamp(paths: Iterable[str]) -> str:
    """A digest of each reinstate module file's path, size and modification time (a file
    gone raises ``OSError``): the code that loaded the remembered facts."""
    digest = hashlib.sha256()
    for path in paths:
        held = Path(path).stat()
        digest.update(f"{path}|{held.st_size}|{held.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def fact_key(*parts: str | bytes) -> str:
    """The key a fact is remembered under: its parts (names, places, a file's bytes)
    under :func:`check_salt`."""
    digest = hashlib.sha256(check_salt().encode())
    for part in parts:
        raw = part.encode() if isinstance(part, str) else part
        digest.update(f"\0{len(raw)}\0".encode() + raw)
    return digest.hexdigest()


@dataclass(frozen=True)
class LightPlaces:
    """A workspace's places as the full read finds them (:class:`gates._config.Workspace`),
    from remembered relative paths."""

    root: Path
    state_path: Path
    incidents_dir: Path
    logs_dir: Path

    @property
    def lock_dir(self) -> Path:
        """Lock files, beside the store (as :attr:`Workspace.lock_dir`)."""
        return self.state_path.parent / "locks"

    def relative(self, path: Path) -> str:
        """A path as the workspace names it (as :meth:`Workspace.relative`)."""
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)


def light_clearance(agent: str, workspace: Path | str | None = None) -> dict[str, Any] | None:
    """``agent``'s clearance as ``Clearance.model_dump(mode="json")`` would give it from the
    full check when that check clears it; None when not sure (the caller checks in full).

    Args:
        agent: The agent's name.
        workspace: The workspace folder (``-C``); by default found as
            :meth:`Workspace.find` finds it.
    """
    try:
        return _clearance(agent, Path(workspace) if workspace is not None else None)
    except Exception:  # anything unexpected: not sure, and the full check says
        return None


def _clearance(agent: str, start: Path | None) -> dict[str, Any] | None:
    root, name, raw = mode_light._config_file(start)
    # Whether to answer at all is decided from today's configuration, never a facts file.
    settings = today_settings(name, raw)
    state_path = mode_light._inside(root, settings["state"])
    mode_inputs = mode_light._inputs(mode_light.inputs_path(state_path), state_path)
    facts = _inputs(inputs_path(state_path), state_path)
    config_key = mode_light.file_key(name, raw)
    if not isinstance(mode_inputs["configs"].get(config_key), dict):
        return None  # a configuration the full read has not accepted
    place = _fact(facts, "workspaces", fact_key("workspace", str(root), name, raw))
    if any(place.get(key) != value for key, value in settings.items()):
        raise NotSure("remembered places that are not the configuration's")
    places = LightPlaces(root=root, state_path=state_path,
                         incidents_dir=mode_light._inside(root, settings["incidents"]),
                         logs_dir=mode_light._inside(root, settings["logs"]))
    agents_dir = mode_light._inside(root, settings["agents"])
    if not agents_dir.is_dir() or agent not in {
            p.parent.name for p in agents_dir.glob("*/agent.yaml")}:
        return None  # the full check names the agent it does not know
    # Mode first: the light mode read must answer full (an incident holding the agent, a
    # containment, anything odd: the full check words it).
    reading = mode_light.light_reading(agent, start)
    if reading is None or reading["mode"] != "full":
        return None
    directory = agents_dir / agent
    agent_raw = read_file(directory / "agent.yaml")
    spec = _fact(facts, "agents", fact_key("agent.yaml", str(directory), agent_raw))
    names = facts["control_files"]
    control_raw = {n: read_file(directory / n) for n in names}
    controls = {n: _text(facts["controls"], fact_key("control", n, control_raw[n]))
                for n in names}
    loaded = fact_key("loaded", agent, str(directory), str(root), name, raw,
                      *(control_raw[n] for n in names))
    if facts["loaded"].get(loaded) is not True:
        return None  # these controls were never loaded under this code
    today = _fingerprint(places, agent, directory, agent_raw, spec, controls, names,
                         {**place, **settings}, config_file=root / name)
    verdict = _store_verdict(state_path, agent, mode_inputs, places.incidents_dir)
    if verdict is None or not _unchanged(today, verdict["fingerprint"]):
        return None
    return {"agent": agent, "cleared": True, "mode": "full", "blockers": [], "reasons": [],
            "notes": [], "verdict_outcome": verdict["outcome"],
            "verdict_created_at": verdict["created_at"], "signed": False,
            "signature": UNSIGNED}


def today_settings(name: str, raw: bytes) -> dict[str, Any]:
    """What the light check needs of the configuration file, from its bytes today (read
    with :mod:`tomllib`, no model): each of ``[paths]`` (its default unless set) and
    ``[gate] full_case_digests``.

    Not sure (:class:`NotSure`) whenever the full check would do what this one does not: a
    ``[signing]`` table (a public key the verdict's signature is checked against), a
    ``[state]`` table (a PostgreSQL store), ``[rules] predicate_modules`` (modules the
    control load imports, digests the fingerprint holds), or a table or a value of a kind
    the full read may refuse. A facts file is only asked afterwards, and can only agree.
    """
    data: Any = tomllib.loads(raw.decode("utf-8"))
    if name != mode_light.CONFIG_FILE:
        data = data["tool"]["reinstate"]
    if not isinstance(data, dict) or not set(data) <= CONFIG_TABLES:
        raise NotSure("a configuration table the light check does not know")
    tables = {t: data.get(t, {}) for t in ("paths", "gate", "signing", "state", "rules")}
    if not all(isinstance(table, dict) for table in tables.values()):
        raise NotSure("a configuration table that is no table")
    if tables["signing"]:
        raise NotSure("[signing]: the full check verifies the verdict's signature")
    if tables["state"]:
        raise NotSure("[state]: the store is not the SQLite file")
    if tables["rules"]:  # predicate_modules, even an empty list: the full read decides
        raise NotSure("[rules]: predicate modules")
    paths = tables["paths"]
    found: dict[str, Any] = {key: paths.get(key, default) for key, default in PLACES.items()}
    found["full_case_digests"] = tables["gate"].get("full_case_digests", False)
    if not (set(paths) <= set(PLACES) and all(isinstance(found[k], str) for k in PLACES)
            and isinstance(found["full_case_digests"], bool)):
        raise NotSure("[paths] or [gate]")
    return found


def _inputs(path: Path, state_path: Path) -> dict[str, Any]:
    """The remembered check inputs, when only the store's owners may have written them
    (:func:`mode_light.read_inputs`) and they are this version's, under today's salt and
    code."""
    data = json.loads(mode_light.read_inputs(path, state_path))
    if (not isinstance(data, dict) or data.get("schema_version") != INPUTS_VERSION
            or data.get("salt") != check_salt()):
        raise NotSure(f"{path}: not this version's")
    code = data.get("code")
    if (not isinstance(code, list) or not code or not all(isinstance(p, str) for p in code)
            or data.get("code_stamp") != code_stamp(code)):
        raise NotSure(f"{path}: reinstate's code changed")
    names = data.get("control_files")
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise NotSure("control_files")
    for section in ("workspaces", "agents", "controls", "loaded"):
        if not isinstance(data.get(section), dict):
            raise NotSure(section)
    return data


def _fact(facts: dict[str, Any], section: str, key: str) -> dict[str, Any]:
    found = facts[section].get(key)
    if not isinstance(found, dict):
        raise NotSure(f"{section}: not remembered")
    return found


def _text(facts: dict[str, Any], key: str) -> str:
    value = facts.get(key)
    if not isinstance(value, str):
        raise NotSure(key)
    return value


def _fingerprint(places: LightPlaces, agent: str, directory: Path, agent_raw: bytes,
                 spec: dict[str, Any], controls: dict[str, str], names: list[str],
                 place: dict[str, Any], config_file: Path) -> dict[str, Any]:
    """Today's fingerprint as :func:`gates._verdict.fingerprint.fingerprint` computes it
    (``model_dump`` of it), from the remembered facts and the files as they are now."""
    adapters = spec.get("adapters")
    patterns = spec.get("sources")
    whole = place.get("full_case_digests")
    if not (isinstance(adapters, list) and all(
            isinstance(a, list) and len(a) == 2 and a[0] in ("folder", "file")
            and isinstance(a[1], str) for a in adapters)
            and isinstance(patterns, list) and all(isinstance(p, str) for p in patterns)
            and isinstance(whole, bool)):
        raise NotSure("agent facts")
    agent_file = directory / "agent.yaml"
    try:
        sources = agent_files(places, agent_file, [(a[0], a[1]) for a in adapters], patterns,
                              names)
    except ReinstateError as exc:
        raise NotSure(str(exc)) from None
    source = {places.relative(agent_file): sha256(agent_raw),
              **{places.relative(p): file_digest(p) for p in sources if p != agent_file}}
    config = {places.relative(config_file): _text(place, "config_digest")}
    control_digests = {places.relative(directory / n): controls[n] for n in names}
    evals = _case_digests(places, mode_light._inside(places.root, _text(place, "evals")) / agent)
    regressions = _case_digests(
        places, mode_light._inside(places.root, _text(place, "regressions")) / agent)
    return {"agent_version": _text(spec, "version"), "controls": combine(control_digests),
            "eval_suite": combine(evals), "regression_set": combine(regressions),
            "agent": combine(source), "config": combine(config), "predicates": combine({}),
            "files": {**config, **control_digests, **cut(evals, whole),
                      **cut(regressions, whole), **source}}


def _case_digests(places: LightPlaces, directory: Path) -> dict[str, str]:
    """Each case file's digest by workspace path (``fingerprint.case_digests``); a link,
    which the full read refuses, is not sure."""
    if directory.is_symlink():
        raise NotSure(f"{directory}: a link")
    if not directory.is_dir():
        return {}
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))
    if any(p.is_symlink() for p in files):
        raise NotSure(f"{directory}: a link")
    prefix = places.relative(directory)
    return {f"{prefix}/{p.name}": file_digest(p) for p in files}


def _unchanged(today: dict[str, Any], stored: dict[str, Any]) -> bool:
    """Whether ``Fingerprint.changed_since`` of the two is empty: every file's digest the
    same, and every summary digest equal (a summary the verdict lacks differs)."""
    files = stored["files"]
    if set(files) != set(today["files"]):
        return False
    if not all(same(today["files"][p], files[p]) for p in files):
        return False
    return all(today[name] == stored.get(name) for name in SUMMARIES)


# --- the store ---------------------------------------------------------------------------


def _store_verdict(path: Path, agent: str, mode_inputs: dict[str, Any],
                   incidents_dir: Path) -> dict[str, Any] | None:
    """The agent's latest verdict, when the audit log verifies from its checkpoint as the
    full check verifies it, every incident of the agent is restored as the log vouches,
    every containment names an incident file, and the verdict passed; else None."""
    if not path.is_file() or path.stat().st_size == 0:
        raise NotSure("no store, or an empty one")
    with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30)) as conn:
        conn.execute("BEGIN")  # one snapshot for every read below
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if version is None or version[0] != mode_light._SCHEMA_VERSION:
            raise NotSure("schema version")
        point = held_checkpoint(conn)
        head = conn.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
        if point is None or head is None or head[0] != f"{point[0]}:{point[1]}":
            return None  # entries after the checkpoint, or none: the full check verifies
        if not linked_to(conn, *point):
            return None  # an entry removed or rewritten: the full check names it
        if conn.execute("SELECT 1 FROM audit WHERE seq > ?", (point[0],)).fetchone():
            return None
        recorded = recorded_tally(conn, agent)
        if recorded is None or recorded[0] != point:
            return None  # a store made before tallies, or an edited one
        tally = recorded[1]
        deciding = _entries(conn, "agent = ? AND action IN (?, ?)", (agent, *DECIDING))
        mode_row = conn.execute("SELECT mode FROM modes WHERE agent = ?", (agent,)).fetchone()
        text_row = conn.execute("SELECT body FROM verdicts WHERE agent = ? ORDER BY id DESC "
                                "LIMIT 1", (agent,)).fetchone()
        if text_row is None or not isinstance(text_row[0], str):
            return None
        text = text_row[0]
        verdict = _verdict(text, agent)
        entries = _entries(conn, "agent = ? AND action = 'verdict' AND seq > ?",
                           (agent, verdict["audit_head"]["seq"]))
    modes = [e for e in deciding if e["action"] == "mode"]
    if not all(_intact(e) for e in deciding):
        return None
    if tally_of([(e["seq"], e["action"], e["hash"]) for e in deciding]).deciding != \
            tally.deciding:
        return None  # one hidden from the decision (its agent or action edited), or added
    expected = modes[-1]["detail"].get("mode") if modes else None
    if (mode_row[0] if mode_row is not None else None) != expected:
        return None  # the modes table and the log disagree: the full check names it
    if expected not in (None, "full"):
        return None  # held in this snapshot (the mode read before may be of another)
    if (not entries or not _intact(entries[-1])
            or (entries[-1]["seq"], entries[-1]["hash"]) != tally.verdict):
        return None
    if (entries[-1]["seq"], entries[-1]["prev_hash"]) != (
            verdict["audit_head"]["seq"] + 1, verdict["audit_head"]["hash"]):
        return None  # not where the store wrote it (an older verdict stored again)
    own = entries[-1]["detail"]
    stamp = {k: v for k, v in verdict["fingerprint"].items() if k != "files"}
    if (own.get("sha256") != hashlib.sha256(text.encode()).hexdigest()
            or own.get("outcome") != verdict["outcome"] or own.get("fingerprint") != stamp):
        return None
    if not _incidents_restored(agent, modes, mode_inputs, incidents_dir, verdict):
        return None
    return verdict if verdict["outcome"] == "pass" else None


def _entries(conn: sqlite3.Connection, where: str,
             values: tuple[object, ...]) -> list[dict[str, Any]]:
    rows = conn.execute(f"SELECT {AUDIT_COLUMNS} FROM audit WHERE {where} ORDER BY seq",
                        values).fetchall()
    found = []
    for row in rows:
        detail = mode_light._entry_detail(row)  # every field of the type the model wants
        seq, at, actor, action, name, reason, _, prev_hash, digest = row
        found.append({"seq": seq, "at": at, "actor": actor, "action": action, "agent": name,
                      "reason": reason, "detail": detail, "prev_hash": prev_hash,
                      "hash": digest})
    return found


def _intact(entry: dict[str, Any]) -> bool:
    """Whether an entry still hashes to itself (``gates._store.backends.entry_hash``)."""
    at = datetime.fromisoformat(entry["at"]).isoformat()
    body = json.dumps([entry["seq"], at, entry["actor"], entry["action"], entry["agent"],
                       entry["reason"], entry["detail"], entry["prev_hash"]],
                      sort_keys=True, separators=(",", ":"), default=str)
    return bool(hashlib.sha256(body.encode()).hexdigest() == entry["hash"])


def _incidents_restored(agent: str, modes: list[dict[str, Any]], mode_inputs: dict[str, Any],
                        incidents_dir: Path, verdict: dict[str, Any]) -> bool:
    """Whether every incident of the agent says restored, the log holds its restore (none
    open, forged or unknown) and ``verdict`` covers it (:func:`coverage.covers`, the full
    check's rule), and every containment names an incident file."""
    incidents = mode_light._incidents(incidents_dir, mode_inputs["incidents"], agent)
    restored: set[str] = set()
    for entry in modes:
        detail = entry["detail"]
        listed = detail.get("incidents")
        if detail.get("mode") == "full" and isinstance(listed, list):
            restored.update(i for i in listed if isinstance(i, str))
    known = {facts.get("id") for facts in incidents}
    verified = coverage.verified_changes(
        _Verification(v["incident"], v["change"], v["layer"], v["verified"])
        for check in verdict["checks"]
        if check["name"] == "control_changes" and check.get("data") is not None
        for v in check["data"].get("verifications", []))
    made = datetime.fromisoformat(verdict["created_at"])
    for facts in incidents:
        if facts.get("restored") is not True or facts.get("id") not in restored:
            return False
        contained = facts.get("contained_at", "")  # none remembered: not sure
        if not coverage.covers(verified, made, facts["id"], _changes_of(facts),
                               contained=(None if contained is None
                                          else _stamp_of(contained, "contained_at")),
                               closed=facts.get("closed") is True,
                               last_recorded=_stamp_of(facts.get("last_recorded"))):
            return False
    for entry in modes:
        named = entry["detail"].get("incident")
        if isinstance(named, str) and named not in known:
            return False
    return True


@dataclass(frozen=True)
class _Verification:
    """A verification as the light verdict read checked it (:func:`_changes`)."""

    incident: str
    change: str
    layer: str
    verified: bool


def _changes_of(facts: dict[str, Any]) -> list[tuple[str, str]]:
    """An incident's control changes as its remembered facts list them."""
    listed = facts.get("changes")
    if not (isinstance(listed, list) and all(
            isinstance(c, list) and len(c) == 2 and all(isinstance(p, str) for p in c)
            for c in listed)):
        raise NotSure("incident facts: changes")
    return [(c[0], c[1]) for c in listed]


def _stamp_of(value: object, name: str = "last_recorded") -> datetime:
    """A remembered time (``datetime.isoformat`` of an aware time)."""
    if not isinstance(value, str):
        raise NotSure(f"incident facts: {name}")
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        raise NotSure(f"incident facts: {name}") from None
    if stamp.tzinfo is None:
        raise NotSure(f"incident facts: {name}")
    return stamp


def _verdict(text: str, agent: str) -> dict[str, Any]:
    """The deciding fields of a stored verdict, checked as strictly as
    :class:`~gates._verdict.stored.StoredVerdict` checks them; odd ones are not sure (a
    text :mod:`json` reads otherwise than pydantic's parser too)."""
    if not plain_json(text):
        raise NotSure("verdict text")
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("schema_version") != 2 or (
            type(data.get("schema_version")) is not int):
        raise NotSure("verdict version")
    outcome, created, head = data.get("outcome"), data.get("created_at"), data.get("audit_head")
    if not (data.get("agent") == agent and outcome in _OUTCOMES and isinstance(created, str)
            and _CREATED.fullmatch(created) and isinstance(head, dict)
            and type(head.get("seq")) is int and head["seq"] >= 0
            and isinstance(head.get("hash"), str)):
        raise NotSure("verdict fields")
    datetime.fromisoformat(created).astimezone(UTC)  # a 31st of February: not sure
    checks = data.get("checks")
    if not isinstance(checks, list):
        raise NotSure("verdict checks")
    for check in checks:
        if not (isinstance(check, dict) and isinstance(check.get("name"), str)
                and check.get("outcome") in _OUTCOMES
                and (check.get("data") is None or isinstance(check["data"], dict))):
            raise NotSure("a verdict check")
        if check["name"] == "control_changes" and check.get("data") is not None:
            _changes(check["data"])
    found = data.get("fingerprint")
    if not (isinstance(found, dict) and set(found) <= {*SUMMARIES, "files"}
            and isinstance(found.get("files"), dict)
            and all(isinstance(k, str) and isinstance(v, str)
                    for k, v in found["files"].items())
            and all(isinstance(found.get(n), str) for n in SUMMARIES)):
        raise NotSure("verdict fingerprint")
    return data


def _changes(data: object) -> None:
    """A control-changes check's data of the shape the light verdict read requires."""
    if not isinstance(data, dict):
        raise NotSure("control changes")
    listed = data.get("verifications", [])
    if not isinstance(listed, list):
        raise NotSure("verifications")
    for item in listed:
        if not (isinstance(item, dict) and all(isinstance(item.get(k), str)
                                               for k in ("incident", "change", "layer"))
                and type(item.get("verified")) is bool):
            raise NotSure("a verification")
