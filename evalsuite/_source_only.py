"""Workspace Python the gate imports itself runs from its source, never from a cache.

Python runs a ``__pycache__`` file in place of its source when the file's recorded size
and time match the source's (or always, for an unchecked-hash file). No fingerprint
covers ``__pycache__`` (Python writes it as it likes), so a file planted there after a
gate would change what an in-process agent or a predicate module does without making the
verdict stale. So the Python reinstate runs agent code in (the gate's own process for an
in-process agent, the python adapter's worker) compiles the source it reads, and writes no
cache into the workspace either. (Predicate modules run from the very bytes their digest
was taken of: :mod:`evalsuite._predicate_imports`.) Standard library only: the worker imports it
by path.
"""

from __future__ import annotations

import sys
from importlib.machinery import (
    BYTECODE_SUFFIXES,
    EXTENSION_SUFFIXES,
    SOURCE_SUFFIXES,
    ExtensionFileLoader,
    FileFinder,
    SourceFileLoader,
    SourcelessFileLoader,
)
from pathlib import Path
from types import CodeType


class SourceOnlyLoader(SourceFileLoader):
    """A source file's loader that neither reads nor writes a bytecode cache."""

    def get_code(self, fullname: str) -> CodeType:
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)


# Folders whose modules (and packages' modules) are imported from source only.
_ROOTS: set[Path] = set()


def _finder(entry: str) -> FileFinder:
    """The path hook: a finder with the source-only loader for a folder under a root."""
    folder = Path(entry or ".").absolute()
    if not any(folder.is_relative_to(root) for root in _ROOTS):
        raise ImportError("not a workspace folder")  # the next hook takes it
    # Compiled files and extension modules in the folder itself are files like any other
    # (fingerprinted with the agent); only __pycache__ is never looked at.
    return FileFinder(entry, (ExtensionFileLoader, EXTENSION_SUFFIXES),
                      (SourceOnlyLoader, SOURCE_SUFFIXES),
                      (SourcelessFileLoader, BYTECODE_SUFFIXES))


def import_from_source(root: Path) -> None:
    """From now on, every module found in ``root`` or below it is run from its source."""
    root = root.absolute()
    if _finder not in sys.path_hooks:
        sys.path_hooks.insert(0, _finder)
    _ROOTS.add(root)
    # Finders already made for these folders would still read the cache.
    for entry in [e for e in sys.path_importer_cache
                  if Path(e or ".").absolute().is_relative_to(root)]:
        del sys.path_importer_cache[entry]
