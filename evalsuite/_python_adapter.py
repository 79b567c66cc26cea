"""The Python adapter: ``module:function``, sync or async, in a confined child process.

By default the function runs in a process of its own (:mod:`evalsuite._python_worker`,
started with this Python inside the sandbox and spoken to with the subprocess adapter's
JSON-lines protocol), so an agent that patches the gate's code or ends its process only
affects that child. ``isolation: in-process`` calls it in this process instead, for
trusted code and speed; the verdict then says the agent ran unisolated.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
import queue
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evalsuite._agent import (
    AgentCrashed,
    AgentSpec,
    PythonAdapterSpec,
    register_adapter,
)
from evalsuite._case import EvalCase
from evalsuite._files import read_regular
from evalsuite._sandbox import IN_PROCESS, Isolation
from evalsuite._session import AgentSession
from evalsuite._source_only import import_from_source
from evalsuite._subprocess_adapter import ProcessPool

# The engine bounds the trials in flight; the pool needs no bound of its own.
_UNBOUNDED = 1024

WORKER = Path(__file__).with_name("_python_worker.py")
"""Run by path, not with ``-m``: importing the evalsuite package would slow every start."""


class PythonAdapter:
    """Calls ``respond(session)`` in a confined child process, or in-process if asked."""

    def __init__(self, spec: PythonAdapterSpec, agent_file: Path, agent: AgentSpec,
                 isolation: Isolation | None = None) -> None:
        self.agent = agent
        self._spec = spec
        root = (agent_file.parent / spec.path).resolve()
        self._inner: ProcessPool | InProcessPythonAdapter
        if spec.isolation == "in-process":
            self._inner = InProcessPythonAdapter(spec, agent_file, agent)
        else:
            self._inner = ProcessPool(agent, [sys.executable, str(WORKER), str(root),
                                              spec.target],
                                      root, spec.processes or _UNBOUNDED, spec.env,
                                      isolation, announces_ready=True)
        self.isolation_used = self._inner.isolation_used
        """What confinement the agent got, for the verdict."""

    async def start(self, count: int) -> None:
        """Start ``count`` child processes before the first trial (none in-process)."""
        if isinstance(self._inner, ProcessPool):
            await self._inner.start(count)

    async def respond(self, case: EvalCase, trial: int, session: AgentSession) -> str:
        """The agent's answer; its tool calls go through ``session``."""
        return await self._inner.respond(case, trial, session)

    async def aclose(self) -> None:
        """Stop the agent's processes."""
        await self._inner.aclose()


class InProcessPythonAdapter:
    """Calls ``respond(session)`` in this process; a sync function runs in a worker thread.

    The thread lets trials of a blocking agent overlap and lets a trial's timeout stop
    waiting for it (Python cannot stop the thread itself; it finishes in the background).
    """

    def __init__(self, spec: PythonAdapterSpec, agent_file: Path, agent: AgentSpec) -> None:
        self._spec = spec
        self.agent = agent
        self._root = (agent_file.parent / spec.path).resolve()
        self._function: Callable[[AgentSession], Any] | None = None
        self._is_async = False
        self.isolation_used = dict(IN_PROCESS)

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
            self._is_async = inspect.iscoroutinefunction(function)
        return self._function

    async def respond(self, case: EvalCase, trial: int, session: AgentSession) -> str:
        """Call the agent and check it answered with text."""
        function = self._load()
        answer = await function(session) if self._is_async else await _in_thread(function,
                                                                                  session)
        if not isinstance(answer, str):
            raise AgentCrashed(
                f"{self._spec.target} returned {type(answer).__name__}, expected the answer as str"
            )
        return answer

    async def aclose(self) -> None:
        """Nothing to release: a trial's thread ends with it, or is abandoned on timeout."""


class _DaemonThreads:
    """Worker threads that never keep the process alive.

    concurrent.futures' pool joins its threads at exit, so one agent that never returns
    would hold `reinstate gate` open after its verdict; a thread per trial costs several
    times the engine's own overhead. These threads are reused and are daemons.
    """

    def __init__(self, limit: int) -> None:
        self._work: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._count = 0
        self._limit = limit

    def submit(self, item: Callable[[], None]) -> None:
        """Run ``item`` on an idle thread, or a new one while under the limit."""
        self._work.put(item)
        with self._lock:
            if self._idle == 0 and self._count < self._limit:
                self._count += 1
                threading.Thread(target=self._serve, name="reinstate-agent",
                                 daemon=True).start()

    def _serve(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            item = self._work.get()
            with self._lock:
                self._idle -= 1
            item()


_THREADS = _DaemonThreads(limit=256)


async def _in_thread(function: Callable[[AgentSession], Any], session: AgentSession) -> Any:
    """Call a blocking agent on a worker thread; the event loop stays free meanwhile.

    A thread that never returns is abandoned when its trial times out. An agent calling
    sys.exit() fails its trial only.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if done.cancelled():  # the trial timed out and moved on
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def work() -> None:
        try:
            result = function(session)
        except SystemExit as exc:
            loop.call_soon_threadsafe(settle, None, AgentCrashed(
                f"the agent tried to end the process (sys.exit({exc.code!r}))"))
        except BaseException as exc:
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    _THREADS.submit(work)
    return await done


register_adapter("python")(PythonAdapter)


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
    # A module this folder provides must come from this folder, even when a same-named one
    # from a folder no longer tracked is back in sys.modules (pytester restores snapshots).
    own = {p.stem for p in root.glob("*.py")} | {p.parent.name for p in root.glob("*/__init__.py")}
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] in own and not _lies_in(module, root):
            del sys.modules[name]
            continue
        if (name == module_name and root in stale) or any(_lies_in(module, r) for r in stale):
            del sys.modules[name]
    for old in stale:
        _ROOTS.pop(old, None)
        while str(old) in sys.path:
            sys.path.remove(str(old))
    if str(root) in sys.path:
        sys.path.remove(str(root))
    sys.path.insert(0, str(root))
    import_from_source(root)  # never a __pycache__ file in place of the source
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
            digest.update(read_regular(path))
    return digest.hexdigest()
