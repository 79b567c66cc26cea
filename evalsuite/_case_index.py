"""Each case file's id without validating the file: what ``eval --cases`` selects by.

A case's id lives only inside its file (an eval case's file name is the user's choice),
so selecting cases by id would otherwise validate every file of the suite, and at 10,000
cases that costs nearly as much as running them all. The index reads each file's bytes
(the fingerprint digests them anyway) and looks its SHA-256 up in a small per-folder
cache of ``digest -> id``; only a file not seen before is scanned, through libyaml's
parser events, for its top-level ``id`` (without building the document). The cache lives
in the user's cache folder (``REINSTATE_CACHE_DIR``, as :mod:`evalsuite._known_schemas`),
used only when it belongs to this user and nobody else can write it; set empty, every
file is scanned.

An id only chooses which files are read: every chosen file is then read and validated in
full, so a wrong cache entry can never let an invalid case run. A file whose id cannot be
found this way (not YAML, no plain string ``id``) is chosen, so its load reports what is wrong
with it: a selection never hides a file it could not classify.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import yaml

from evalsuite._documents import (
    _CUserFileLoader,
    _libyaml_usable,
    parse_yaml,
    read_text,
    write_atomic,
)
from evalsuite._errors import InvalidInput
from evalsuite._known_schemas import _usable, cache_folder
from evalsuite._suite import case_files

_FOLDER = "case-ids"
# Written into the cache file: a cache of another shape is ignored, never misread.
_FORMAT = 1
_RESOLVER = yaml.resolver.Resolver()
_STR = "tag:yaml.org,2002:str"


class CaseFile(NamedTuple):
    """A case file as the index saw it."""

    path: Path
    """The file."""
    digest: str
    """SHA-256 of its bytes, as read."""
    id: str | None
    """Its top-level ``id``; None when the file does not say one plainly (its full load
    reports why)."""


def case_index(directories: Iterable[Path]) -> list[CaseFile]:
    """Every case file of ``directories`` (in :func:`case_files` order) with its id.

    Raises :class:`InvalidInput` for a file that cannot be read at all (missing, too
    large, not UTF-8), as loading it would.
    """
    return [entry for directory in directories for entry in _folder_index(directory)]


def _folder_index(directory: Path) -> list[CaseFile]:
    cache = _cache_file(directory)
    known = _read_cache(cache) if cache is not None else {}
    entries: list[CaseFile] = []
    for path in case_files(directory):
        text = read_text(path)
        # read_text decoded strict UTF-8: encoding gives the very bytes, as read_cases does.
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        entries.append(CaseFile(path, digest, known[digest] if digest in known
                                else _parsed_id(text, path)))
    # Only today's files are kept, so the cache never outgrows the folder.
    current = {e.digest: e.id for e in entries if e.id is not None}
    if cache is not None and current != known:
        _write_cache(cache, current)
    return entries


def _parsed_id(text: str, path: Path) -> str | None:
    """The document's top-level string ``id``, as the full load would construct it.

    With libyaml, from its events alone (several times faster than building the document):
    any shape whose constructed id the events do not plainly give (a tag, an alias, a
    merge key, a value that resolves to no string, more than one document) is None, so the
    file is read in full. Without libyaml, the document is parsed as the full load parses it.
    """
    if not _libyaml_usable():
        try:
            document = parse_yaml(text, path)
        except InvalidInput:
            return None
        case_id = document.get("id") if isinstance(document, dict) else None
        return case_id if isinstance(case_id, str) else None
    loader = _CUserFileLoader(text)
    try:
        return _top_level_id(loader)
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()


def _top_level_id(events: yaml.SafeLoader) -> str | None:
    """The top-level ``id`` of a single-document mapping, read from parser events."""
    for expected in (yaml.StreamStartEvent, yaml.DocumentStartEvent, yaml.MappingStartEvent):
        event = events.get_event()  # type: ignore[no-untyped-call]
        if not isinstance(event, expected) or getattr(event, "tag", None) is not None:
            return None
    found: str | None = None
    keys: set[str] = set()
    while True:
        key = events.get_event()  # type: ignore[no-untyped-call]
        if isinstance(key, yaml.MappingEndEvent):
            break
        if isinstance(key, yaml.AliasEvent) or getattr(key, "tag", None) is not None:
            return None  # an aliased or tagged key could construct to 'id' or '<<'
        if isinstance(key, yaml.ScalarEvent):
            if key.value in keys:
                return None  # a key set twice: the load refuses the file, and says so
            keys.add(key.value)
        is_id = isinstance(key, yaml.ScalarEvent) and key.value == "id"
        if isinstance(key, yaml.ScalarEvent) and key.value == "<<":
            return None  # a merge key may bring an id of its own
        _skip_node(events, key)
        value = events.get_event()  # type: ignore[no-untyped-call]
        if is_id:
            if not isinstance(value, yaml.ScalarEvent) or value.tag is not None:
                return None
            # Resolved as the composer resolves it: a plain 12, true or ~ is no string.
            if _RESOLVER.resolve(  # type: ignore[no-untyped-call]
                    yaml.ScalarNode, value.value, value.implicit) != _STR:
                return None
            found = value.value
        _skip_node(events, value)
    if not isinstance(events.get_event(), yaml.DocumentEndEvent):  # type: ignore[no-untyped-call]
        return None
    return found if isinstance(events.get_event(),  # type: ignore[no-untyped-call]
                               yaml.StreamEndEvent) else None


def _skip_node(events: yaml.SafeLoader, start: yaml.Event) -> None:
    """Read past the rest of the node ``start`` began (nothing for a scalar or alias)."""
    depth = int(isinstance(start, yaml.CollectionStartEvent))
    while depth:
        event = events.get_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _cache_file(directory: Path) -> Path | None:
    """The cache of ``directory``'s ids, named by its resolved path; None when the cache is
    turned off or cannot be found."""
    schemas = cache_folder()
    if schemas is None:
        return None
    name = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()
    return schemas.parent / _FOLDER / f"{name}.json"


def _read_cache(cache: Path) -> dict[str, str]:
    """The remembered ``digest -> id`` pairs; none when the cache is missing, malformed or
    in a folder someone else could write."""
    if not _usable(cache.parent):
        return {}
    try:
        data = json.loads(cache.read_bytes())
    except (OSError, ValueError):
        return {}
    ids = data.get("ids") if isinstance(data, dict) and data.get("format") == _FORMAT else None
    if not isinstance(ids, dict):
        return {}
    return {k: v for k, v in ids.items() if isinstance(k, str) and isinstance(v, str)}


def _write_cache(cache: Path, ids: dict[str, str]) -> None:
    """Replace the cache whole (a reader sees the old one or the new one); a folder that
    cannot be made or written costs only speed."""
    try:
        cache.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if _usable(cache.parent):
            write_atomic(cache, json.dumps({"format": _FORMAT, "ids": ids},
                                           separators=(",", ":")), private=True)
    except OSError:
        return
