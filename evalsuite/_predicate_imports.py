"""The modules predicate code runs, and what its ``import`` statements may reach.

The verdict's fingerprint covers the files of the modules ``[rules] predicate_modules``
lists (a module's ``.py`` file, or every ``.py`` file in its package's folder), and the
runtime guard watches those files. So predicate code must never run a workspace file
outside them: a helper ``rules/limits.py`` imported by the listed ``rules/refund_rules.py``
could be edited after a passing gate without making the verdict stale, and Python's own
import would keep the first copy in ``sys.modules`` (and may run a ``__pycache__`` file)
where the guard reloads the predicates.

So every module predicate code runs is loaded here, from the very bytes digested, into a
:class:`ModuleGraph` of the workspace; each module gets its own ``__import__`` that
serves the listed modules (and their packages) from the graph and refuses a workspace
module the configuration does not list, naming it. Anything else (the standard library,
installed packages, a virtual environment kept in the workspace) is imported as usual.
A graph is used only while every file it ran (or looked for and did not find) is as it
was: after any edit, the next load runs every module afresh.
"""

from __future__ import annotations

import builtins
import hashlib
import sys
import threading
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evalsuite._errors import InvalidInput
from evalsuite._files import read_regular

_MISSING = "missing"
_CACHE = "__pycache__"


def allows(allowed: Sequence[str], name: str) -> bool:
    """Whether ``name`` is a module ``allowed`` lists, or a module inside one of them."""
    return any(name == a or name.startswith(a + ".") for a in allowed)


class ModuleGraph:
    """The predicate modules of one workspace, as loaded from the files' current bytes."""

    def __init__(self, root: Path, allowed: Sequence[str],
                 sources: Mapping[Path, bytes] | None = None) -> None:
        self.root = root.resolve()
        self.allowed = tuple(allowed)
        self.modules: dict[str, types.ModuleType] = {}
        self.files: dict[Path, str] = {}  # every file looked at: its digest, or missing
        # The listed modules' files as a caller read and digested them (by path; a file
        # not here is missing): every module runs from these bytes, even one first
        # imported when a predicate is called, long after (a file rewritten since, its
        # stamp put back, would otherwise run code nobody digested).
        self.sources = sources

    def current(self) -> bool:
        """Whether every file the graph ran or looked for is as it was (a graph of given
        ``sources`` always is: it never reads a file)."""
        return self.sources is not None or all(
            _digest(path) == digest for path, digest in self.files.items())

    def load(self, name: str) -> types.ModuleType:
        """The module ``name`` (a listed one, or a package above one), run if not yet."""
        if name in self.modules:
            return self.modules[name]
        if _CACHE in name.split("."):
            # The fingerprint and the ratchet pass over __pycache__ folders (Python's
            # caches, rewritten at will), so a module kept in one is code no verdict covers.
            raise ImportError(f"predicate code imports '{name}' from a {_CACHE} folder, "
                              f"which no fingerprint covers; move it beside the module "
                              f"that imports it", name=name)
        parent_name, _, last = name.rpartition(".")
        parent = self.load(parent_name) if parent_name else None
        if name in self.modules:  # the parent's code imported it
            return self.modules[name]
        folder = self.root if parent is None else _folder(parent, name)
        base = folder / last
        if not allows(self.allowed, name):
            if any(self.allowed_below(name)):
                return self._package(name, base, parent, last)  # its __init__ never runs
            raise self._unlisted(name, base)
        for file, package in ((base.with_suffix(".py"), False),
                              (base / "__init__.py", True)):
            source = self._read(file)
            if source is not None:
                return self._run(name, file, source, package, parent, last)
        if base.is_dir():
            return self._package(name, base, parent, last)
        raise ModuleNotFoundError(f"no module '{name}' in the workspace "
                                  f"(looked for {self._relative(base.with_suffix('.py'))})",
                                  name=name)

    def allowed_below(self, name: str) -> list[str]:
        """The listed modules inside package ``name``."""
        return [a for a in self.allowed if a.startswith(name + ".")]

    def serves(self, name: str) -> bool:
        """Whether ``name`` is found in the graph, never on ``sys.path``: it lies in a
        listed module, or in a package above one."""
        top = name.partition(".")[0]
        return allows(self.allowed, top) or bool(self.allowed_below(top))

    def _read(self, file: Path) -> bytes | None:
        try:
            if self.sources is None:
                source = read_regular(file)
            elif (given := self.sources.get(file)) is not None:
                source = given
            else:
                raise FileNotFoundError(file)
        except FileNotFoundError:
            self.files[file] = _MISSING
            return None
        if not file.resolve().is_relative_to(self.root):
            raise ImportError(f"{self._relative(file)} leads outside the workspace")
        self.files[file] = hashlib.sha256(source).hexdigest()
        return source

    def _run(self, name: str, file: Path, source: bytes, package: bool,
             parent: types.ModuleType | None, last: str) -> types.ModuleType:
        digest = self.files[file]
        # A private name per content, so two workspaces never share a module; run from the
        # very bytes digested (never a __pycache__ file, which no fingerprint covers).
        module = types.ModuleType(f"_reinstate_predicate_{digest[:16]}")
        module.__file__ = str(file)
        if package:
            module.__path__ = [str(file.parent)]
        module.__package__ = name if package else name.rpartition(".")[0]
        module.__dict__["__builtins__"] = self._builtins(module)
        self.modules[name] = module  # before it runs, as Python does: imports may cycle
        try:
            exec(compile(source, str(file), "exec"), module.__dict__)
        except BaseException:
            del self.modules[name]
            raise
        if parent is not None:
            setattr(parent, last, module)
        return module

    def _package(self, name: str, folder: Path, parent: types.ModuleType | None,
                 last: str) -> types.ModuleType:
        module = types.ModuleType(f"_reinstate_predicate_package_{name}")
        module.__path__ = [str(folder)]
        module.__package__ = name
        self.modules[name] = module
        if parent is not None:
            setattr(parent, last, module)
        return module

    def _unlisted(self, name: str, base: Path) -> ImportError:
        where = next((p for p in (base.with_suffix(".py"), base / "__init__.py", base)
                      if p.exists()), None)
        if where is None:
            return ModuleNotFoundError(f"no module '{name}' in the workspace", name=name)
        return _not_listed(name, self._relative(where))

    def _relative(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def _builtins(self, module: types.ModuleType) -> dict[str, Any]:
        """The module's builtins: Python's, but ``import`` goes through the graph."""
        graph = self

        def import_(name: str, globals: Mapping[str, Any] | None = None,
                    locals: Mapping[str, Any] | None = None,
                    fromlist: Sequence[str] | None = (), level: int = 0) -> Any:
            return graph.import_(module, name, fromlist or (), level)

        return {**builtins.__dict__, "__import__": import_}

    def import_(self, importer: types.ModuleType, name: str, fromlist: Sequence[str],
                level: int) -> Any:
        """What an ``import`` statement in ``importer`` gets, as ``__import__`` answers."""
        if level > 0:
            name = _absolute(name, importer.__package__ or "", level)
        if not self.serves(name):  # Python's import, outside the graph's lock
            found = builtins.__import__(name, None, None, fromlist, 0)
            self._refuse_workspace(name, fromlist)
            return found
        with _LOCK:
            return self._import_served(name, fromlist)

    def _import_served(self, name: str, fromlist: Sequence[str]) -> Any:
        module = self.load(name)
        if not fromlist:
            return self.load(name.partition(".")[0])
        if hasattr(module, "__path__"):
            items = list(fromlist)
            if "*" in items:
                items += list(getattr(module, "__all__", ()))
            for item in items:
                if item != "*" and not hasattr(module, item):
                    try:
                        self.load(f"{name}.{item}")
                    except ModuleNotFoundError as exc:
                        if exc.name != f"{name}.{item}":
                            raise  # from x import y: no y is Python's ImportError, later
        return module

    def _refuse_workspace(self, name: str, fromlist: Sequence[str]) -> None:
        """Refuse a module imported the usual way whose file lies in the workspace."""
        parts = name.split(".")
        names = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        names += [f"{name}.{item}" for item in fromlist]
        for each in names:
            file = getattr(sys.modules.get(each), "__file__", None)
            if isinstance(file, str) and self._in_workspace(Path(file)):
                raise _not_listed(each, self._relative(Path(file).resolve()))

    def _in_workspace(self, file: Path) -> bool:
        real = file.resolve()
        if not real.is_relative_to(self.root):
            return False
        # A virtual environment kept in the workspace holds installed packages, not the
        # team's code: as outside it.
        for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}:
            place = Path(prefix).resolve()
            if place != self.root and place.is_relative_to(self.root) \
                    and real.is_relative_to(place):
                return False
        return True


def interrupted(exc: BaseException) -> bool:
    """Whether ``exc``, raised while predicate code ran, must go on up rather than count as
    the predicate failing: only a KeyboardInterrupt on the main thread, where Python
    delivers a person's Ctrl-C. Predicate code that raised SystemExit ended the gate with
    exit 0 and no verdict (at import), or killed a trial's thread and left the gate waiting
    for ever (in a call)."""
    return isinstance(exc, KeyboardInterrupt) \
        and threading.current_thread() is threading.main_thread()


def _not_listed(name: str, where: str) -> ImportError:
    return ImportError(f"predicate code imports '{name}' ({where}), a workspace module "
                       f"[rules] predicate_modules does not list: its code would not be in "
                       f"the verdict's fingerprint; list it (or its package) there",
                       name=name)


def _folder(parent: types.ModuleType, name: str) -> Path:
    path = getattr(parent, "__path__", None)
    if not path:
        parent_name = name.rpartition(".")[0]
        raise ModuleNotFoundError(f"no module '{name}': '{parent_name}' is not a package",
                                  name=name)
    return Path(path[0])


def _absolute(name: str, package: str, level: int) -> str:
    bits = package.rsplit(".", level - 1)
    if not package or len(bits) < level:
        raise ImportError("attempted relative import beyond the predicate modules' "
                          "top-level package")
    return f"{bits[0]}.{name}" if name else bits[0]


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(read_regular(path)).hexdigest()
    except FileNotFoundError:
        return _MISSING
    except (OSError, ValueError):
        return "unreadable"


_LOCK = threading.RLock()
# By workspace, listed modules and, for a graph of given sources, their digest.
_GRAPHS: dict[tuple[Path, tuple[str, ...], str | None], ModuleGraph] = {}


def load_module(name: str, root: Path, allowed: Sequence[str],
                sources: Mapping[Path, bytes] | None = None) -> types.ModuleType:
    """The listed module ``name`` of the workspace at ``root``, with what it imports.

    Loaded once while none of the files it ran changed; run afresh, with every module it
    imports, after any edit of one. With ``sources`` (the listed modules' files' bytes by
    path), every module is run from those bytes only, never read from disk.

    Raises:
        ValueError: It cannot be loaded: its code raised, or imports a workspace module
            ``allowed`` does not list (named).
        InvalidInput: A file of it is a named pipe, socket, device or folder.
    """
    pinned = None if sources is None else hashlib.sha256(b"".join(
        f"{path}\0{hashlib.sha256(data).hexdigest()}\0".encode()
        for path, data in sorted(sources.items()))).hexdigest()
    key = (root.resolve(), tuple(allowed), pinned)
    with _LOCK:
        graph = _GRAPHS.get(key)
        if graph is None or not graph.current():
            graph = _GRAPHS[key] = ModuleGraph(root, allowed, sources)
        try:
            return graph.load(name)
        except InvalidInput:
            _GRAPHS.pop(key, None)
            raise  # a file that is no file: named as such (exit 2)
        except BaseException as exc:
            _GRAPHS.pop(key, None)  # half-run modules are never reused
            if interrupted(exc):
                raise
            file = name.replace(".", "/") + ".py"
            why = str(exc) if isinstance(exc, ImportError) else repr(exc)
            raise ValueError(f"cannot import {file}: {why}") from None
