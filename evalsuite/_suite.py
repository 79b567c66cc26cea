"""Loading a directory of case files (the eval suite, or a regression set)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import TypeVar

from evalsuite._case import EvalCase
from evalsuite._documents import line_of, parse_model, parse_yaml, read_text, refuse_link
from evalsuite._errors import InvalidInput, display_path

C = TypeVar("C", bound=EvalCase)


def case_files(directory: Path) -> list[Path]:
    """The case files of a directory, in a stable order; a link (folder or file) is refused."""
    if not refuse_link(directory).is_dir():
        return []
    # One scandir, sorted by name: a gate lists each folder several times, and at 10,000
    # files an lstat per file and a sort of Path objects cost seconds. Each entry's type
    # comes with the listing, so telling a link costs no call. Names in one folder sort
    # as their paths do.
    names: list[str] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            suffix = _suffix(entry.name)
            if suffix in _CASE_SUFFIXES:
                if entry.is_symlink():
                    refuse_link(directory / entry.name)
                names.append(entry.name)
            elif suffix.lower() in _CASE_SUFFIXES:
                raise InvalidInput(directory / entry.name, "", _NEVER_READ.format(
                    why="its suffix is not .yaml or .yml in lower case",
                    folder=display_path(directory)))
            elif entry.is_dir(follow_symlinks=False) and (nested := _yaml_under(entry.path)):
                raise InvalidInput(Path(nested), "", _NEVER_READ.format(
                    why="it is in a subfolder", folder=display_path(directory)))
    names.sort()
    return [directory / name for name in names]


_CASE_SUFFIXES = (".yaml", ".yml")
# A case file put where it is never read would be a case the gate silently never runs.
_NEVER_READ = ("a case file that is never read: {why}; case files are the .yaml and .yml "
               "files directly in {folder}/, so move or rename it")


def _yaml_under(folder: str) -> str | None:
    """The first YAML file anywhere under ``folder``, or None."""
    for root, _, files in os.walk(folder):
        for name in sorted(files):
            if _suffix(name).lower() in _CASE_SUFFIXES:
                return str(Path(root) / name)
    return None


def _suffix(name: str) -> str:
    """A file name's suffix as :attr:`Path.suffix` reads it (``.yaml`` alone has none)."""
    dot = name.rfind(".")
    return name[dot:] if 0 < dot < len(name) - 1 else ""


def load_cases(directory: Path, model: type[C], agent: str, *,
               digests: dict[Path, str] | None = None) -> dict[Path, C]:
    """Every case in ``directory``, validated, for ``agent``; ids must be unique.

    With ``digests``, each file's SHA-256 (of the very bytes parsed) is added to it, so a
    fingerprint of the cases need not read them again.
    """
    return dict(read_cases(directory, model, agent, digests=digests))


def read_cases(directory: Path, model: type[C], agent: str, *,
               digests: dict[Path, str] | None = None,
               only: Collection[Path] | None = None) -> Iterator[tuple[Path, C]]:
    """:func:`load_cases` one case at a time, in the same order with the same checks.

    For a caller that keeps each case in another form (e.g. :class:`PackedCases`): the
    models need not all be alive at once. With ``only``, the other files are not read at
    all (``eval --cases`` chooses them by :func:`case_index`), and ids must be unique among
    the files read.
    """
    seen: dict[str, Path] = {}
    for path in case_files(directory):
        if only is not None and path not in only:
            continue
        text = read_text(path)
        case = parse_model(model, parse_yaml(text, path), path, text)
        if digests is not None:  # read_text decoded strict UTF-8: encoding gives the bytes
            digests[path] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if case.agent != agent:
            raise InvalidInput(
                path, "$.agent", f"expected '{agent}' (the agent this folder is for), "
                f"got '{case.agent}'", line=line_of(read_text(path), ["agent"]),
            )
        if case.id in seen:
            raise InvalidInput(
                path, "$.id", f"case id '{case.id}' is already used by {seen[case.id].name}",
                line=line_of(read_text(path), ["id"]),
            )
        seen[case.id] = path
        yield path, case
