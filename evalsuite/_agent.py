"""How to reach an agent for evals: its ``agent.yaml`` and the adapters that run it."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import Field

from evalsuite._case import EvalCase
from evalsuite._errors import EvalsuiteError, InvalidInput
from evalsuite._record import Record
from evalsuite._run import Output, Run, UserInput
from evalsuite._session import AgentSession

AGENT_NAME = r"^[a-z0-9][a-z0-9._-]*$"


class PythonAdapterSpec(Record):
    """Run the agent as a Python function ``respond(session) -> str``."""

    kind: Literal["python"]
    target: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    """``module:function`` to call with an :class:`AgentSession`."""
    path: str = "."
    """Directory, relative to ``agent.yaml``, to import the module from."""


class AgentSpec(Record):
    """``agents/<agent>/agent.yaml``: what the agent is and how to run it for evals."""

    schema_version: Literal[1] = 1
    """Version of this file's format."""
    name: str = Field(pattern=AGENT_NAME)
    """The agent's name, as used on the command line."""
    version: str
    """The agent's version; part of every verdict's fingerprint."""
    description: str = ""
    """What the agent does, in a sentence."""
    adapter: PythonAdapterSpec
    """How reinstate runs the agent for evals."""


class AgentCrashed(EvalsuiteError):
    """The agent could not be loaded or raised while answering."""

    exit_code = 3


class Adapter(Protocol):
    """Runs an agent on one case and returns what it did."""

    def run(self, case: EvalCase, trial: int) -> Run:
        """Run one trial of ``case``; raise when the agent fails."""
        ...


class PythonAdapter:
    """Calls ``respond(session)`` in this process, answering tools from the case's fixtures."""

    def __init__(self, spec: PythonAdapterSpec, agent_file: Path, agent: AgentSpec) -> None:
        self._spec = spec
        self._root = (agent_file.parent / spec.path).resolve()
        self._agent = agent
        self._function: Callable[[AgentSession], Any] | None = None

    def _load(self) -> Callable[[AgentSession], Any]:
        if self._function is None:
            module_name, function_name = self._spec.target.split(":")
            module = _import_fresh(module_name, self._root)
            function = getattr(module, function_name, None)
            if not callable(function):
                raise AgentCrashed(
                    f"{self._spec.target}: module has no callable '{function_name}'"
                )
            self._function = function
        return self._function

    def run(self, case: EvalCase, trial: int) -> Run:
        """Run one trial of ``case``."""
        function = self._load()
        session = AgentSession(case)
        steps: list[Any] = [UserInput(content=m.content) for m in case.input.messages
                            if m.role == "user"][-1:]
        answer = function(session)
        if session.missing_fixture is not None:
            # The agent may have swallowed the exception; the case is still broken.
            raise session.missing_fixture
        if not isinstance(answer, str):
            raise AgentCrashed(
                f"{self._spec.target} returned {type(answer).__name__}, expected the answer as str"
            )
        steps.extend(session.steps)
        steps.append(Output(content=answer))
        return Run(
            run_id=f"{case.id}#{trial}",
            agent=self._agent.name,
            agent_version=self._agent.version,
            context=case.input.context,
            steps=steps,
        )


def _import_fresh(module_name: str, root: Path) -> Any:
    """Import the agent's module from ``root``, again if any source under ``root`` changed.

    A long-lived process (the demo, a test session) must see a fixed agent after its
    files are replaced, and agents from two folders must never share a module: loading
    from one folder forgets every module loaded from any other agent folder.
    """
    digest = _tree_digest(root)
    stale = [r for r, d in _ROOTS.items() if r != root or d != digest]
    cached = sys.modules.get(module_name)
    if cached is not None and not _lies_in(cached, root):
        stale.append(root)
    for name, module in list(sys.modules.items()):
        if (name == module_name and root in stale) or any(_lies_in(module, r) for r in stale):
            del sys.modules[name]
            # A rewrite within the same second can leave a bytecode cache that looks fresh.
            source = getattr(module, "__file__", None)
            if source:
                Path(importlib.util.cache_from_source(source)).unlink(missing_ok=True)
    for old in stale:
        _ROOTS.pop(old, None)
        while str(old) in sys.path:
            sys.path.remove(str(old))
    if str(root) in sys.path:
        sys.path.remove(str(root))
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise AgentCrashed(f"cannot import the agent module '{module_name}': {exc!r}") from exc
    _ROOTS[root] = digest
    return module


# Agent folders imported from in this process, with the digest of their sources then.
_ROOTS: dict[Path, str] = {}


def _lies_in(module: Any, root: Path) -> bool:
    source = getattr(module, "__file__", None)
    return source is not None and Path(source).resolve().is_relative_to(root)


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" not in path.parts:
            digest.update(path.as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


ADAPTERS: dict[str, type[PythonAdapter]] = {"python": PythonAdapter}


def build_adapter(agent: AgentSpec, agent_file: Path) -> Adapter:
    """The adapter ``agent.yaml`` asks for."""
    factory = ADAPTERS.get(agent.adapter.kind)
    if factory is None:  # pragma: no cover - the model only admits registered kinds
        raise InvalidInput(agent_file, "$.adapter.kind", f"unknown adapter {agent.adapter.kind!r}")
    return factory(agent.adapter, agent_file, agent)

