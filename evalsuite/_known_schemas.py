"""JSON Schemas already found valid, remembered per user across processes.

Checking a user's JSON Schema against the draft 2020-12 meta-schema needs jsonschema, whose
import is the largest single part of the start-up of ``reinstate mode`` and ``check``: they
read incident and control files whose tool-argument schemas must be valid (fail closed),
and those schemas seldom change. So a schema that passed the full check leaves a marker,
named by the digest of its canonical JSON, in the user's cache folder; the next process that
meets the very same schema skips jsonschema. Only a *pass* is remembered: an invalid schema
is checked, and refused with its place, every time.

The digest also covers this package's checking code and the installed jsonschema (its
location and the size and time of its validators module), so an upgrade of either is a
fresh start. The folder is used only when it belongs to this user and nobody else can
write it; the agent under evaluation cannot write it either (its sandbox writes only its
own temporary home). ``REINSTATE_CACHE_DIR`` moves the folder; set empty, it turns the
cache off. A folder that cannot be written costs only speed: every schema is then checked.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

CACHE_ENV = "REINSTATE_CACHE_DIR"
"""The environment variable naming the cache folder (empty: no cache)."""

_FOLDER = "valid-json-schemas"


def cache_folder() -> Path | None:
    """Where valid schemas are remembered: ``$REINSTATE_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/reinstate``, else ``~/.cache/reinstate``; None when turned off."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen is not None:
        return Path(chosen) / _FOLDER if chosen else None
    xdg = os.environ.get("XDG_CACHE_HOME")
    try:
        base = Path(xdg) if xdg else Path.home() / ".cache"
    except (RuntimeError, KeyError):  # no home folder to be found: no cache
        return None
    return base / "reinstate" / _FOLDER


@cache
def _salt() -> bytes:
    """What a remembered answer depends on besides the schema: the checking code here and
    in :mod:`evalsuite._schemas` (RE2 patterns, refused keyword pairs) and the installed
    jsonschema, found without importing it."""
    digest = hashlib.sha256()
    for module in (__file__, str(Path(__file__).with_name("_schemas.py"))):
        digest.update(Path(module).read_bytes())
    spec = find_spec("jsonschema")
    origin = spec.origin if spec is not None else None
    if origin is not None:
        validators = Path(origin).with_name("validators.py")
        facts = validators.stat()
        digest.update(f"{validators}|{facts.st_size}|{facts.st_mtime_ns}".encode())
    return digest.digest()


def _string_keys(value: Any) -> bool:
    """Whether every mapping in ``value`` has only string keys (``json.dumps`` would turn
    ``1`` or ``True`` into the key of another schema's spelling)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _string_keys(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_string_keys(v) for v in value)
    return True


def _key(schema: Any) -> str | None:
    """The marker's name for ``schema``; None for a value JSON cannot spell exactly (a date
    from YAML, a non-string key, NaN), which is always checked in full."""
    if not _string_keys(schema):
        return None
    try:
        canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(_salt() + canonical.encode()).hexdigest()


def _usable(folder: Path) -> bool:
    """Whether ``folder`` is this user's own and writable by nobody else: a marker anyone
    else could plant would let an invalid schema through."""
    try:
        facts = folder.stat()
    except OSError:
        return False
    return (stat.S_ISDIR(facts.st_mode) and facts.st_uid == os.getuid()
            and not facts.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def known_valid(schema: Any) -> bool:
    """Whether this exact schema passed the full check before (in any process of this
    user, with this code and this jsonschema)."""
    folder = cache_folder()
    if folder is None:
        return False
    try:
        key = _key(schema)
    except OSError:  # the code or jsonschema cannot be read: check in full
        return False
    return key is not None and _usable(folder) and (folder / key).is_file()


def remember_valid(schema: Any) -> None:
    """Leave the marker for a schema that has just passed the full check. A folder that
    cannot be made or written is left alone: the next process checks the schema again."""
    folder = cache_folder()
    if folder is None:
        return
    try:
        key = _key(schema)
        if key is None:
            return
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _usable(folder):
            return
        # An empty file: created whole or not at all, so there is nothing to write atomically.
        os.close(os.open(folder / key, os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError:
        return
