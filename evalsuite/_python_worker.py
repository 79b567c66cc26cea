"""A Python agent in a process of its own: ``… _python_worker.py ROOT module:function``.

Run by path by the python adapter (inside the sandbox, which its launcher applied before
this file was read), it imports the agent's module from ``ROOT`` and serves conversations
with the subprocess adapter's JSON-lines protocol: each ``start`` calls the function with
a session that has the API of
:class:`evalsuite.AgentSession` (``messages``, ``context``, ``tools``, ``call_tool``,
``think``, ``add_usage``, ``usage``), whose tool calls go to the gate's real session
through the pipe. Whatever the agent does to this process (patching the gate's code,
``os._exit``) stays in this process. The agent's own prints go to stderr, so they cannot
be taken for the protocol. Standard library only, to start fast.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

# asyncio, inspect, traceback and dataclasses are not imported here: asyncio alone costs
# more than the interpreter's start, and most agents never need it (imported when they do).


class ToolFailed(Exception):
    """Raised to the agent when a fixture answers with an error, as a real tool would."""


class ToolDenied(ToolFailed):
    """Raised to the agent when the permission policy denies the call."""


class ToolSpec:
    """A tool as an agent's model is told about it."""

    def __init__(self, name: str, description: str, parameters: dict[str, Any]) -> None:
        self.name = name
        self.description = description
        self.parameters = parameters

    def __repr__(self) -> str:
        return f"ToolSpec(name={self.name!r})"


class _Pipe:
    """The protocol's lines: read from the gate, written to the gate."""

    def __init__(self, reader: IO[str], writer: IO[str]) -> None:
        self._reader = reader
        self._writer = writer

    def send(self, message: dict[str, Any]) -> None:
        self._writer.write(json.dumps(message) + "\n")
        self._writer.flush()

    def receive(self) -> dict[str, Any] | None:
        line = self._reader.readline()
        if not line:
            return None
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ValueError(f"expected a JSON object from the gate, got {line[:200]!r}")
        return message


class ChildSession:
    """What the agent sees: the gate's session, reached through the pipe."""

    def __init__(self, start: dict[str, Any], pipe: _Pipe, kinds: SimpleNamespace) -> None:
        self._pipe = pipe
        self._kinds = kinds
        self.messages: list[dict[str, str]] = start.get("messages", [])
        self.context: dict[str, Any] = start.get("context", {})
        self.tools = [kinds.ToolSpec(t["name"], t.get("description", ""),
                                     t.get("parameters", {})) for t in start.get("tools", [])]
        self._tokens = [0, 0, 0]
        self._cost: float | None = None

    def call_tool(self, tool: str, arguments: dict[str, Any] | None = None) -> Any:
        """Call a tool; the gate answers from the case's fixtures and records the call."""
        arguments = copy.deepcopy(arguments or {})
        if not isinstance(tool, str) or not isinstance(arguments, dict):
            raise TypeError(f"call_tool needs a tool name and an arguments dict, got "
                            f"{tool!r}, {type(arguments).__name__}")
        self._pipe.send({"type": "tool_call", "tool": tool, "arguments": arguments})
        answer = self._pipe.receive()
        if answer is None:
            raise SystemExit(0)  # the gate hung up: nothing left to answer
        if "error" in answer:
            kinds = _kinds()  # looked up now: the agent may have imported evalsuite since
            kind = kinds.ToolDenied if answer.get("denied") else kinds.ToolFailed
            raise kind(answer["error"])
        return answer.get("result")

    def think(self, text: str) -> None:
        """Record a step of reasoning."""
        self._pipe.send({"type": "reasoning", "content": str(text)})

    def add_usage(self, input_tokens: int = 0, output_tokens: int = 0,
                  cost_usd: float | None = None) -> None:
        """Count what one model call consumed."""
        self._tokens[0] += input_tokens
        self._tokens[1] += output_tokens
        self._tokens[2] += 1
        if cost_usd is not None:
            self._cost = (self._cost or 0.0) + cost_usd
        self._pipe.send({"type": "usage", "input_tokens": input_tokens,
                         "output_tokens": output_tokens, "cost_usd": cost_usd})

    def usage(self) -> Any:
        """What this trial's model calls consumed so far, if any were reported."""
        if not self._tokens[2]:
            return None
        return SimpleNamespace(input_tokens=self._tokens[0], output_tokens=self._tokens[1],
                               model_calls=self._tokens[2], cost_usd=self._cost)


def _kinds() -> SimpleNamespace:
    """evalsuite's own exception and tool classes when the agent imported evalsuite, so
    ``except evalsuite.ToolDenied`` works; this module's otherwise (no slow import)."""
    evalsuite = sys.modules.get("evalsuite")
    if evalsuite is not None:
        return SimpleNamespace(ToolFailed=evalsuite.ToolFailed, ToolDenied=evalsuite.ToolDenied,
                               ToolSpec=evalsuite.ToolSpec)
    return SimpleNamespace(ToolFailed=ToolFailed, ToolDenied=ToolDenied, ToolSpec=ToolSpec)


def _where(exc: BaseException) -> str:
    import traceback

    frame = traceback.extract_tb(exc.__traceback__)[-1:]
    return f" at {frame[0].filename}:{frame[0].lineno}" if frame else ""


def _answer(function: Any, target: str, session: ChildSession) -> dict[str, Any]:
    try:
        answer = function(session)
        if hasattr(answer, "__await__"):
            import asyncio

            answer = asyncio.run(_awaited(answer))
    except SystemExit as exc:
        return {"type": "error",
                "message": f"the agent tried to end the process (sys.exit({exc.code!r}))"}
    except Exception as exc:
        # A timeout or transport error reaching the agent's model is retried, as in-process.
        retry = isinstance(exc, TimeoutError) or type(exc).__name__ == "TransportError"
        return {"type": "error", "message": f"{exc!r}{_where(exc)}", "retry": retry}
    if not isinstance(answer, str):
        return {"type": "error", "message": f"{target} returned {type(answer).__name__}, "
                                            f"expected the answer as str"}
    return {"type": "output", "content": answer}


async def _awaited(answer: Any) -> Any:
    return await answer


def main() -> None:
    """Import the agent, then answer conversations until the gate closes the pipe."""
    root, target = sys.argv[1], sys.argv[2]
    # The protocol keeps private copies of stdin and stdout; the agent's prints go to
    # stderr and its reads of stdin see nothing.
    pipe = _Pipe(os.fdopen(os.dup(0), "r", encoding="utf-8"),
                 os.fdopen(os.dup(1), "w", encoding="utf-8"))
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout = sys.stderr
    # The agent's modules run from their source, never from a __pycache__ file (in no
    # fingerprint) beside it. Beside this file, like the worker: imported while this
    # file's folder still leads the path, which the agent's folder then takes.
    from _source_only import import_from_source  # type: ignore[import-not-found]

    import_from_source(Path(root))
    # This file's folder is not the agent's: its modules must not shadow the agent's.
    sys.path[0] = root
    module_name, function_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
        function = getattr(module, function_name, None)
        loaded = None if callable(function) else {
            "type": "error", "message": f"{target}: module has no callable '{function_name}'"}
    except BaseException as exc:
        function, loaded = None, {
            "type": "error",
            "message": f"cannot import the agent module '{module_name}': {exc!r}"}
    pipe.send({"type": "ready"})  # imported (or not): the gate may start the clock now
    while True:
        start = pipe.receive()
        if start is None:
            return
        if start.get("type") != "start":
            continue
        pipe.send(loaded or _answer(function, target, ChildSession(start, pipe, _kinds())))


if __name__ == "__main__":
    main()
