"""The fingerprint's file work, without models: which files an agent is made of, and
their digests.

Split from :mod:`gates._verdict.fingerprint` so that the light ``check``
(:mod:`gates._response.check_light`) computes today's fingerprint with the very same
functions the full one uses, given the workspace's places (:class:`Places`: a
:class:`~gates._config.Workspace`, or the light read's facts) instead of the configuration
model; this module imports neither pydantic nor YAML.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from evalsuite import InvalidInput, read_regular

# Parsed content with more values than this is hashed by its bytes instead: an alias bomb in
# a control file must not stall the fingerprint (loading the file reports it).
CANONICAL_LIMIT = 200_000
SKIPPED_DIRS = frozenset({"__pycache__", ".git"})
# Hex digits kept of each eval and regression case file's digest in ``files``: enough to
# name the file that changed; the case set's full digest decides whether anything did.
CASE_DIGEST = 16
# The fingerprint's summary digests (``config`` and ``predicates`` added later: a verdict
# without them was computed on less than today's fingerprint covers, so it is never current).
SUMMARIES = ("agent_version", "controls", "eval_suite", "regression_set", "agent", "config",
             "predicates")


class Places(Protocol):
    """Where a workspace keeps what the fingerprint walks past (reinstate's own files)."""

    @property
    def root(self) -> Path: ...
    @property
    def state_path(self) -> Path: ...
    @property
    def lock_dir(self) -> Path: ...
    @property
    def incidents_dir(self) -> Path: ...
    @property
    def logs_dir(self) -> Path: ...
    def relative(self, path: Path) -> str: ...


def same(one: str | None, other: str | None) -> bool:
    """Whether two digests of a file agree: equal, or one the start of the other (a case
    file's digest is cut short; verdicts stored before kept it whole)."""
    if one is None or other is None:
        return one is other
    if len(one) == len(other):
        return one == other
    short, whole = sorted((one, other), key=len)
    return len(short) == CASE_DIGEST and whole.startswith(short)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, or a marker for a missing or unreadable file.

    Raises:
        NotARegularFile: A named pipe, socket, device or folder (exit 2): never read.
    """
    try:
        return sha256(read_regular(path))
    except FileNotFoundError:
        return "missing"
    except OSError:  # unreadable: never equal to a digest, so never current
        return "unreadable"


def content_digest(data: Any) -> str:
    """SHA-256 of parsed content as canonical JSON (keys sorted, no whitespace).

    Raises ``ValueError`` for content with no canonical form (mixed key types, a cycle,
    nesting too deep) or with more values than the limit.
    """
    _count_values(data)
    try:
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          default=_tagged)
    except (TypeError, RecursionError) as exc:
        raise ValueError(f"no canonical form: {exc}") from None
    return sha256(text.encode())


def _count_values(data: Any) -> None:
    """Refuse content with more values than the limit, counting every alias expansion."""
    pending, seen = [data], 0
    while pending:
        value = pending.pop()
        seen += 1
        if seen > CANONICAL_LIMIT:
            raise ValueError(f"more than {CANONICAL_LIMIT} values to hash")
        if isinstance(value, dict):
            pending += value.keys()
            pending += value.values()
        elif isinstance(value, list):
            pending += value


def _tagged(value: Any) -> Any:
    """YAML values JSON lacks (dates, sets, bytes), tagged so no string equals them."""
    if isinstance(value, set | frozenset):
        return {"$yaml": "set", "value": sorted(repr(v) for v in value)}
    return {"$yaml": type(value).__name__, "value": repr(value)}


def sha256(data: bytes) -> str:
    """SHA-256 of ``data`` in hex."""
    return hashlib.sha256(data).hexdigest()


def combine(digests: dict[str, str]) -> str:
    """One digest of many, by name: a summary digest of the fingerprint."""
    joined = "\n".join(f"{k} {v}" for k, v in sorted(digests.items()))
    return sha256(joined.encode())


def cut(digests: dict[str, str], whole: bool) -> dict[str, str]:
    """Case files' digests cut short for ``files`` (markers such as ``missing`` kept), or
    kept ``whole``."""
    if whole:
        return digests
    return {path: digest[:CASE_DIGEST] if len(digest) == 64 else digest
            for path, digest in digests.items()}


def walk(folder: Path, workspace: Places) -> Iterator[Path]:
    """Every file under ``folder``, except caches and what reinstate itself writes there
    (the state store, incidents, logs): a restore or a new log line must not make every
    verdict stale."""
    base = folder.resolve()
    state = workspace.state_path
    mine = [d for d in (state.parent, workspace.lock_dir, workspace.incidents_dir,
                        workspace.logs_dir) if d != base]
    owned = [d for d in mine if d.is_relative_to(base)]
    holds_state = state.parent.is_relative_to(base)
    for path, linked in _files_under(folder, base):
        if not SKIPPED_DIRS.isdisjoint(path.parts) or not path.is_file():
            continue
        if not linked and not owned and not holds_state:
            yield path  # the usual agent folder: nothing of reinstate's can be in it
            continue
        real = path.resolve()
        if real.parent == state.parent and real.name.startswith(state.name):
            continue  # the store and its journal files
        # A linked folder may lead anywhere, into reinstate's own folders too.
        if not any(real.is_relative_to(d) for d in (mine if linked else owned)):
            yield path


def _files_under(folder: Path, real: Path) -> Iterator[tuple[Path, bool]]:
    """Every entry under ``folder`` (``real``: where it resolves to), and whether it was
    reached through a folder that is a symbolic link. Linked folders are entered: the agent
    imports and reads through them like any folder, so their files are its own (``rglob``
    passed over them, and they were in no fingerprint). Each is entered once, so a link
    back up the tree ends."""
    entered = {real}
    linked = {Path(folder): False}
    for top, folders, files in os.walk(folder, followlinks=True):
        here = Path(top)
        for name in list(folders):
            child = here / name
            link = child.is_symlink()
            if link:
                target = child.resolve()
                if target in entered:
                    folders.remove(name)
                    continue
                entered.add(target)
            linked[child] = linked[here] or link
        for name in folders:
            yield here / name, linked[here / name]
        for name in files:
            yield here / name, linked[here]


def matches(workspace: Places, agent_file: Path, index: int, pattern: str) -> list[Path]:
    """The files one ``sources:`` glob matches (a matched folder stands for its files)."""
    place = f"$.sources[{index}]"
    if Path(pattern).is_absolute():
        raise InvalidInput(agent_file, place, f"expected a pattern relative to agent.yaml, "
                                              f"got '{pattern}'")
    inside(workspace, agent_file, place, Path(os.path.normpath(agent_file.parent / pattern)))
    try:
        matched = sorted(agent_file.parent.glob(pattern))
    except (ValueError, NotImplementedError) as exc:
        raise InvalidInput(agent_file, place, f"expected a glob pattern: {exc}") from None
    files: list[Path] = []
    for path in matched:
        inside(workspace, agent_file, place, path)
        found = list(walk(path, workspace)) if path.is_dir() else [path]
        for file in found:
            if file.is_file() and SKIPPED_DIRS.isdisjoint(file.parts):
                inside(workspace, agent_file, place, file)
                files.append(file)
    return files


def inside(workspace: Places, agent_file: Path, place: str, path: Path) -> Path:
    """``path``, resolved, if it lies in the workspace: agent.yaml must not reach outside."""
    resolved = path.resolve()
    if not resolved.is_relative_to(workspace.root.resolve()):
        raise InvalidInput(agent_file, place,
                           f"expected a path inside the workspace, got {resolved}")
    return resolved


def _refuse_own_places_inside(workspace: Places, directory: Path) -> None:
    """Refuse reinstate's own folders (the store's, incidents, logs) inside an agent's
    folder: the fingerprint walks past them, so the agent's files kept there (a prompt in
    ``agents/a/data`` with ``[paths] logs = "agents/a/data"``) would never make a verdict
    stale."""
    base = directory.resolve()
    for field, place in (("state", workspace.state_path.parent),
                         ("incidents", workspace.incidents_dir), ("logs", workspace.logs_dir)):
        if place.is_relative_to(base):
            raise InvalidInput(None, f"[paths] {field}",
                               f"expected a place outside the agent's folder "
                               f"{workspace.relative(directory)}, got "
                               f"{workspace.relative(place)}: the agent's own files there "
                               f"would be left out of its fingerprint")


def agent_files(workspace: Places, agent_file: Path, adapters: Sequence[tuple[str, str]],
                patterns: Sequence[str], controls: Collection[str]) -> list[Path]:
    """Every file the agent is made of, agent.yaml first; its ``controls`` files excepted.

    agent.yaml and every file in its folder; for each of ``adapters`` (in agent.yaml's
    order), ``("folder", path)`` adds every file under that folder (a Python adapter's
    ``path``, a subprocess adapter's ``cwd``) and ``("file", path)`` that one file (a
    replay log), both relative to agent.yaml; then every file the ``sources:`` globs
    ``patterns`` match.

    Raises:
        InvalidInput: A path or pattern reaches outside the workspace.
    """
    directory = agent_file.parent
    _refuse_own_places_inside(workspace, directory)
    sources = {agent_file, *walk(directory, workspace)}
    for kind, relative in adapters:
        found = inside(workspace, agent_file, "$.adapter", directory / relative)
        if kind == "folder":
            sources.update(walk(found, workspace))
        else:
            sources.add(found)
    for index, pattern in enumerate(patterns):
        sources.update(matches(workspace, agent_file, index, pattern))
    skipped = {directory / name for name in controls}
    skipped |= {path.resolve() for path in skipped}
    return sorted((p for p in sources if p not in skipped),
                  key=lambda p: (p != agent_file, str(p)))
