"""An agent's mode read without pydantic: the common case of ``reinstate mode`` and
``agent_mode``, answered only when it is sure to be the full read's answer.

The full read (:func:`gates._store.access.read_mode`) validates the configuration and every
incident file with their models, which costs more start-up than a runtime's question is
worth. This reader computes the same answer from the same trust roots (the configuration,
the SQLite store, the incident files), but it trusts a configuration or an incident file
only when the very same bytes were accepted by the full models before: the full path
remembers, beside the state store, the digest of each file it accepted and the few facts
a mode reads from it (the *mode inputs*, :mod:`gates._store.mode_facts`). The store's mode
row and audit entries are read with :mod:`sqlite3` and checked field by field, more
strictly than the models check them.

It answers only in the clean case. Anything else (a file not seen before or changed, a
link, a PostgreSQL store, a missing or garbled store, a row or an entry of an odd shape, an
incident holding the agent stricter than the store says) is :data:`None`, "not sure", and
the caller reads in full, with the full read's errors, warnings and exit codes. It never
writes anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import stat
import tomllib
from contextlib import closing
from datetime import UTC, datetime
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from evalsuite import InvalidInput, read_regular
from gates._store.chain_sql import AUDIT_COLUMNS, held_checkpoint

MODES = ("suspended", "review", "full")  # most restrictive first, as the store has them
CONFIG_FILE = "reinstate.toml"
# What a user file may hold at most (evalsuite's MAX_USER_FILE_BYTES; a test keeps them
# equal): a larger one is refused by the full read, so this reader is not sure of it.
MAX_FILE_BYTES = 4 * 1024 * 1024
# The most the mode-inputs file may hold before it is ignored.
MAX_INPUTS_BYTES = 16 * 1024 * 1024
INPUTS_VERSION = 4  # 2: each incident's control changes and last recorded time; 3: when
# contained; 4: the controls proven for each agent (:func:`proof_key`)
INCIDENT_ID = re.compile(r"INC-[1-9][0-9]*")
# The only time stamp the store writes (``datetime.isoformat`` of a UTC time): anything
# else is left to the full read.
_STAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{6})?"
                    r"\+00:00")
_SCHEMA_VERSION = "1"  # the SQLite store's schema version (gates._store.backends._VERSION)
# The code that decides whether a file is accepted: when any of it changes (an upgrade),
# every remembered file is read in full again.
_DECIDERS = ("regressions/_incident.py", "regressions/_incidents.py", "gates/_config.py",
             "gates/_store/mode_light.py", "gates/_store/mode_facts.py",
             "evalsuite/_documents.py", "evalsuite/_record.py",
             # whether an agent's controls are proven (a remembered proof counts only
             # under the code that worked it out)
             "gates/_store/control_proof.py", "gates/_store/access.py",
             "gates/_verdict/fingerprint.py", "gates/_verdict/fingerprint_files.py")
# The four control files (gates._controls.files.CONTROL_FILES, which a test keeps equal):
# their bytes are part of what a remembered proof is keyed by.
CONTROL_FILES = ("permissions.yaml", "acceptance.yaml", "review.yaml", "checklist.yaml")


class NotSure(Exception):
    """The light read cannot vouch for its answer: read in full."""


@cache
def salt() -> str:
    """A digest of the code that decides what is accepted, and of the installed pydantic
    (found without importing it): remembered inputs count only under the same."""
    digest = hashlib.sha256(f"v{INPUTS_VERSION}".encode())
    root = Path(__file__).resolve().parents[2]
    for name in _DECIDERS:
        digest.update((root / name).read_bytes())
    spec = find_spec("pydantic")
    if spec is not None and spec.origin is not None:
        held = Path(spec.origin).with_name("version.py").stat()
        digest.update(f"{spec.origin}|{held.st_size}|{held.st_mtime_ns}".encode())
    return digest.hexdigest()


def file_key(name: str, raw: bytes) -> str:
    """The key a file is remembered under: its name (an incident's id is its file name)
    and its bytes, under :func:`salt`."""
    return hashlib.sha256(f"{salt()}\0{name}\0".encode() + raw).hexdigest()


def inputs_path(state_path: Path) -> Path:
    """The mode-inputs file beside the SQLite store ``state_path`` (so whoever may change
    it may already change the store)."""
    return state_path.with_name(f".{state_path.name}.mode-inputs.json")


def read_file(path: Path) -> bytes:
    """A user file's bytes, read as the full read reads it; a link, a folder or a file
    too large is not sure."""
    if path.is_symlink():
        raise NotSure(f"{path}: not a plain file")
    try:
        raw = read_regular(path, MAX_FILE_BYTES)  # a named pipe is refused, never waited on
    except (InvalidInput, OSError):  # missing, unreadable, or not a regular file
        raise NotSure(f"{path}: not a plain file") from None
    if len(raw) > MAX_FILE_BYTES:
        raise NotSure(f"{path}: too large")
    return raw


def proof_key(agent: str, config_key: str, controls: dict[str, bytes | None],
              verdict_sha256: str | None, since: datetime | None) -> str:
    """What a proof of ``agent``'s controls (:func:`gates._store.control_proof.
    controls_unproven`) was worked out from, as one key: the configuration file (by its
    :func:`file_key`), the four control files' bytes by name (None: missing), the digest
    of the agent's latest stored verdict and its last containment (None: never), under
    :func:`salt`. The full read remembers the key of controls it found proven; the light
    read answers ``full`` only when its own inputs give that key again."""
    digest = hashlib.sha256(f"{salt()}\0proof\0{agent}\0{config_key}\0"
                            f"{verdict_sha256 or '-'}\0".encode())
    digest.update(("-" if since is None else since.astimezone(UTC).isoformat()).encode())
    for name in sorted(controls):
        raw = controls[name]
        digest.update(f"\0{name}\0".encode())
        digest.update(b"missing" if raw is None else hashlib.sha256(raw).hexdigest().encode())
    return digest.hexdigest()


def read_previous(path: Path, state_path: Path) -> Any:
    """A facts file as last written, for its writer to build on; an empty object when it
    is missing, not JSON, or not one the readers would trust (:func:`read_inputs`): facts
    someone else planted are dropped, never carried into a file the store's owner writes."""
    try:
        return json.loads(read_inputs(path, state_path)) if path.exists() else {}
    except (NotSure, OSError, ValueError, RecursionError):
        return {}


def light_reading(agent: str, workspace: Path | str | None = None) -> dict[str, Any] | None:
    """``agent``'s mode as :meth:`ModeReading.model_dump` (``mode="json"``) would give it
    from the full read, or None when not sure (the caller then reads in full).

    Args:
        agent: The agent's name.
        workspace: The workspace folder (``-C``); by default found as
            :meth:`Workspace.find` finds it.
    """
    try:
        return _reading(agent, Path(workspace) if workspace is not None else None)
    except Exception:  # anything unexpected: not sure, and the full read says
        return None


def _reading(agent: str, start: Path | None) -> dict[str, Any] | None:
    root, name, raw = _config_file(start)
    state = _state_setting(name, raw)
    state_path = _inside(root, state)
    inputs = _inputs(inputs_path(state_path), state_path)
    config = inputs["configs"].get(file_key(name, raw))
    if not isinstance(config, dict) or config.get("state") != state:
        return None  # a configuration the full read has not accepted
    agents_dir = _inside(root, _text(config, "agents"))
    if not agents_dir.is_dir() or agent not in {
            p.parent.name for p in agents_dir.glob("*/agent.yaml")}:
        return None  # the full read names the agent it does not know
    record, logged, verdict_sha256 = _store(state_path, agent)
    entries = [detail for _, detail in logged]
    incidents = _incidents(_inside(root, _text(config, "incidents")), inputs["incidents"],
                           agent)
    if _behind_the_log(record, entries, {facts.get("id") for facts in incidents}):
        return None  # the log holds a stricter story than the row: the full read says it
    held = _held_mode(incidents, entries)
    if held is not None and (record is None or MODES.index(held) < MODES.index(record[0])):
        return None  # degraded: the full read words the warning
    if (record is None or record[0] == "full") and inputs["proofs"].get(agent) != proof_key(
            agent, file_key(name, raw), _controls(agents_dir / agent), verdict_sha256,
            _last_contained(incidents, logged)):
        return None  # full on controls not proven as they are now: the full read says
    if record is None:
        return {"agent": agent, "mode": "full", "since": None, "actor": None,
                "reason": "never contained", "degraded": None}
    mode, since, actor, reason = record
    return {"agent": agent, "mode": mode, "since": _json_stamp(since), "actor": actor,
            "reason": reason, "degraded": None}


def _config_file(start: Path | None) -> tuple[Path, str, bytes]:
    """The workspace root and its configuration file's name and bytes, found as
    :meth:`Workspace.find` finds them; a ``pyproject.toml`` passed over is not sure (the
    full read checks it)."""
    env = os.environ.get("REINSTATE_WORKSPACE")
    here = Path(env) if env and start is None else (start or Path.cwd())
    here = here.resolve()
    for folder in (here, *here.parents):
        own = folder / CONFIG_FILE
        if own.exists():  # as the full read: one that is no plain file is not sure
            return folder, CONFIG_FILE, read_file(own)
        pyproject = folder / "pyproject.toml"
        if pyproject.exists():
            raw = read_file(pyproject)
            tool = tomllib.loads(raw.decode("utf-8")).get("tool")
            if isinstance(tool, dict) and isinstance(tool.get("reinstate"), dict):
                return folder, "pyproject.toml", raw
            raise NotSure(f"{pyproject}: passed over")
        if start is not None or env:
            break
    raise NotSure("no workspace")


def _state_setting(name: str, raw: bytes) -> str:
    """``[paths] state`` as the file says it, to find the mode inputs beside the store
    (the remembered facts must then agree)."""
    data: Any = tomllib.loads(raw.decode("utf-8"))
    if name != CONFIG_FILE:
        data = data["tool"]["reinstate"]
    if "state" in data:  # a PostgreSQL store: never a local file, whatever facts say
        raise NotSure("[state]")
    paths = data.get("paths", {})
    state = paths.get("state", ".reinstate/state.db") if isinstance(paths, dict) else None
    if not isinstance(state, str):
        raise NotSure("paths.state")
    return state


def _inside(root: Path, relative: str) -> Path:
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise NotSure(f"{relative}: outside the workspace")
    return path


def _text(facts: dict[str, Any], key: str) -> str:
    value = facts.get(key)
    if not isinstance(value, str):
        raise NotSure(key)
    return value


def read_inputs(path: Path, state_path: Path) -> bytes:
    """A facts file's bytes beside the store ``state_path``, when only whoever may write
    the store can have written them: a plain file (never a link) of the store's owner (or
    root) that nobody else may write, in a folder of the store's owner (or root) that
    nobody else may write (else anyone could have renamed another file over it), its
    checks made on the very descriptor it is read from (never swapped between the two)."""
    owner = state_path.stat().st_uid
    folder = path.parent.stat()
    if folder.st_mode & stat.S_IWOTH or folder.st_uid not in (owner, 0):
        raise NotSure(f"{path.parent}: a folder others may write")
    handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(handle, "rb") as opened:
        held = os.fstat(opened.fileno())
        if (not stat.S_ISREG(held.st_mode) or held.st_mode & stat.S_IWOTH
                or held.st_uid not in (owner, 0) or held.st_size > MAX_INPUTS_BYTES):
            raise NotSure(f"{path}: not a plain file only the store's owners may write")
        raw = opened.read(MAX_INPUTS_BYTES + 1)
    if len(raw) > MAX_INPUTS_BYTES:
        raise NotSure(f"{path}: too large")
    return raw


def _inputs(path: Path, state_path: Path) -> dict[str, dict[str, Any]]:
    """The remembered inputs, when only the store's owners may have written them
    (:func:`read_inputs`) and they are this version's, under today's :func:`salt`."""
    data = json.loads(read_inputs(path, state_path))
    if (not isinstance(data, dict) or data.get("schema_version") != INPUTS_VERSION
            or data.get("salt") != salt() or not isinstance(data.get("configs"), dict)
            or not isinstance(data.get("incidents"), dict)
            or not isinstance(data.get("proofs"), dict)):
        raise NotSure(f"{path}: not this version's")
    return data


def _store(path: Path, agent: str) -> tuple[tuple[str, str, str, str] | None,
                                               list[tuple[str, dict[str, Any]]], str | None]:
    """The agent's modes row (mode, since, actor, reason), the time and details of its
    ``mode`` entries, oldest first, and the SHA-256 of its latest verdict's stored text (as
    :meth:`SQLiteStore.latest_verdict_sha256` takes it; None: no verdict). Every entry the
    full read would parse is parsed here, more strictly: the agent's mode entries before a
    whole checkpoint (all of the agent's entries without one), and every entry after it."""
    if not path.is_file() or path.stat().st_size == 0:
        raise NotSure("no store, or an empty one")
    with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30)) as conn:
        conn.execute("BEGIN")  # one snapshot for every read below
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if version is None or version[0] != _SCHEMA_VERSION:
            raise NotSure("schema version")
        row = conn.execute("SELECT agent, mode, since, actor, reason FROM modes WHERE "
                           "agent = ?", (agent,)).fetchone()
        record = None if row is None else _mode_row(row, agent)
        point = held_checkpoint(conn)
        # Two index searches joined, not one OR: SQLite answers an OR of these by reading
        # every row of the table.
        own = "agent = ? AND action = 'mode'" if point is not None else "agent = ?"
        after = point[0] if point is not None else 0
        rows = conn.execute(
            f"SELECT {AUDIT_COLUMNS} FROM audit WHERE {own} AND seq <= ? UNION ALL "
            f"SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > ? ORDER BY seq",
            (agent, after, after)).fetchall()
        verdict_sha256 = _latest_verdict_sha256(conn, agent)
    details = [_entry_detail(r) for r in rows]
    return record, [(r[1], d) for r, d in zip(rows, details, strict=True)
                    if r[4] == agent and r[3] == "mode"], verdict_sha256


def _latest_verdict_sha256(conn: sqlite3.Connection, agent: str) -> str | None:
    """As the store reads it: the stored text's bytes through SQLite's blob handle."""
    row = conn.execute("SELECT id FROM verdicts WHERE agent = ? ORDER BY id DESC LIMIT 1",
                       (agent,)).fetchone()
    if row is None:
        return None
    digest = hashlib.sha256()
    with conn.blobopen("verdicts", "body", row[0], readonly=True) as blob:
        while chunk := blob.read(1 << 16):
            digest.update(chunk)
    return digest.hexdigest()


def _controls(folder: Path) -> dict[str, bytes | None]:
    """The agent's four control files' bytes by name; one that is missing, a link or too
    large is not sure."""
    return {name: read_file(folder / name) for name in CONTROL_FILES}


def _last_contained(incidents: list[dict[str, Any]],
                    logged: list[tuple[str, dict[str, Any]]]) -> datetime | None:
    """When the agent was last contained, as :meth:`Standing.last_contained_at` finds it:
    the latest of its incident files' containments and of its mode entries naming an
    incident."""
    times: list[object] = [facts.get("contained_at") for facts in incidents
                           if facts.get("contained_at") is not None]
    times += [at for at, detail in logged if isinstance(detail.get("incident"), str)]
    found = [datetime.fromisoformat(t) if isinstance(t, str) else None for t in times]
    known = [t for t in found if t is not None and t.tzinfo is not None]
    if len(known) != len(found):
        raise NotSure("a containment's time")
    return max(known, default=None)


def _mode_row(row: tuple[Any, ...], agent: str) -> tuple[str, str, str, str]:
    name, mode, since, actor, reason = row
    if not (name == agent and mode in MODES and _is_stamp(since) and isinstance(actor, str)
            and isinstance(reason, str)):
        raise NotSure("modes row")
    return mode, since, actor, reason


def _entry_detail(row: tuple[Any, ...]) -> dict[str, Any]:
    seq, at, actor, action, agent, reason, detail, prev_hash, digest = row
    if not (type(seq) is int and _is_stamp(at) and isinstance(actor, str)
            and isinstance(action, str) and (agent is None or isinstance(agent, str))
            and isinstance(reason, str) and isinstance(detail, str)
            and isinstance(prev_hash, str) and isinstance(digest, str)):
        raise NotSure(f"audit entry {seq}")
    parsed = json.loads(detail)
    if not isinstance(parsed, dict):
        raise NotSure(f"audit entry {seq}")
    return parsed


def _is_stamp(value: object) -> bool:
    if not isinstance(value, str) or not _STAMP.fullmatch(value):
        return False
    datetime.fromisoformat(value)  # a 31st of February raises: not sure
    return True


def _json_stamp(stamp: str) -> str:
    """A stored UTC time stamp as pydantic prints it in JSON."""
    return f"{stamp.removesuffix('+00:00')}Z"


def _incidents(folder: Path, remembered: dict[str, Any], agent: str) -> list[dict[str, Any]]:
    """The facts of the agent's incidents; every incident file of the workspace must be
    one the full read accepted, byte for byte (it reads them all)."""
    if not folder.is_dir():
        return []
    found: list[dict[str, Any]] = []
    for path in folder.glob("INC-*.yaml"):
        if not INCIDENT_ID.fullmatch(path.stem):
            continue
        facts = remembered.get(file_key(path.name, read_file(path)))
        if not isinstance(facts, dict) or facts.get("id") != path.stem:
            raise NotSure(f"{path}: not accepted before")
        if facts.get("agent") == agent:
            found.append(facts)
    return found


def _behind_the_log(record: tuple[str, str, str, str] | None, entries: list[dict[str, Any]],
                    files: set[Any]) -> bool:
    """Whether the modes row is not the mode the agent's last mode entry set, or an entry
    contains the agent for an incident none of its files records, with no restore of it
    after (as :func:`gates._store.access.standing` finds them)."""
    last = entries[-1].get("mode") if entries else None
    if (record[0] if record is not None else None) != last:
        return True
    open_without_file: set[str] = set()
    for detail in entries:
        named, listed = detail.get("incident"), detail.get("incidents")
        if isinstance(named, str) and named not in files:
            open_without_file.add(named)
        elif named is not None and not isinstance(named, str):
            raise NotSure("an entry's incident")
        if detail.get("mode") == "full" and isinstance(listed, list):
            open_without_file.difference_update(i for i in listed if isinstance(i, str))
    return bool(open_without_file)


def _held_mode(incidents: list[dict[str, Any]], entries: list[dict[str, Any]]) -> str | None:
    """The strictest containment of the agent's incidents that are not restored as far as
    the audit log vouches (as :func:`gates._store.access.standing` decides it)."""
    restored: set[str] = set()
    for detail in entries:
        if not (detail.get("incident") is None or isinstance(detail.get("incident"), str)):
            raise NotSure("an entry's incident")
        listed = detail.get("incidents")
        if detail.get("mode") == "full" and isinstance(listed, list):
            if not all(isinstance(i, str) for i in listed):
                raise NotSure("an entry's incidents")
            restored.update(listed)
    held: list[str] = []
    for facts in incidents:
        says_restored, closed, contained = (facts.get("restored"), facts.get("closed"),
                                            facts.get("containment"))
        if not (isinstance(says_restored, bool) and isinstance(closed, bool)
                and contained in (None, "review", "suspended")):
            raise NotSure("incident facts")
        if says_restored and facts["id"] not in restored:
            is_open = True  # forged or unknown: the full read reopens it
        elif not says_restored and facts["id"] in restored:
            # A restore the file does not record: an interrupted restore or a store edit;
            # only the latest verdict tells them apart, and the full read reads it.
            raise NotSure(f"{facts['id']}: a restore its file does not record")
        else:
            is_open = not says_restored and not closed
        if is_open and contained is not None:
            held.append(contained)
    return min(held, key=MODES.index, default=None)
