"""The subprocess adapter: a long-lived agent process speaking JSON lines.

The protocol, one JSON object a line. reinstate writes
``{"type": "start", "case": ID, "trial": N, "messages": [...], "context": {...},
"tools": [...]}``; the agent answers with any number of ``{"type": "tool_call", "tool": T,
"arguments": {...}}`` (each answered by ``{"type": "tool_result", "result": ...}`` or
``{"type": "tool_result", "error": "...", "denied": true|false}``), optional
``{"type": "reasoning", "content": "..."}`` and ``{"type": "usage", "input_tokens": N,
"output_tokens": N}``, and finally ``{"type": "output", "content": "..."}``.
Processes are started once and reused; one that dies or writes something else is
reported with what it wrote and the end of its stderr, and replaced for the next trial.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
from pathlib import Path
from typing import Any

from evalsuite._agent import AgentCrashed, AgentSpec, SubprocessAdapterSpec, register_adapter
from evalsuite._case import EvalCase
from evalsuite._session import AgentSession, MissingFixture, ToolDenied, ToolFailed

_LIMIT = 16 * 1024 * 1024  # the longest line an agent may write


class _Worker:
    """One running agent process and the tail of what it wrote to stderr."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.stderr: collections.deque[str] = collections.deque(maxlen=20)
        self._drain = asyncio.ensure_future(self._read_stderr())

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        async for line in self.process.stderr:
            self.stderr.append(line.decode(errors="replace").rstrip())

    def crashed(self, what: str) -> AgentCrashed:
        tail = " | ".join(self.stderr) if self.stderr else "nothing on stderr"
        return AgentCrashed(f"agent process {what} (stderr: {tail})")

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(message).encode() + b"\n")
            await self.process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            raise await self._died() from None

    async def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        try:
            line = await self.process.stdout.readline()
        except ValueError:
            raise self.crashed(f"wrote a line longer than {_LIMIT} bytes") from None
        if not line:
            raise await self._died()
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            raise self.crashed(f"wrote garbage instead of a JSON line: {line[:200]!r}") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise self.crashed(f"wrote a line without a 'type': {line[:200]!r}")
        return message

    async def _died(self) -> AgentCrashed:
        code = await self.process.wait()
        await asyncio.wait([self._drain], timeout=1)
        return self.crashed(f"exited with code {code} mid-conversation")

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        self._drain.cancel()


class SubprocessAdapter:
    """A pool of agent processes, each handling one conversation at a time."""

    def __init__(self, spec: SubprocessAdapterSpec, agent_file: Path, agent: AgentSpec) -> None:
        self._spec = spec
        self.agent = agent
        self._cwd = (agent_file.parent / spec.cwd).resolve()
        self._idle: list[_Worker] = []
        self._slots = asyncio.Semaphore(spec.processes)
        self._all: set[_Worker] = set()

    async def _start(self) -> _Worker:
        try:
            process = await asyncio.create_subprocess_exec(
                *self._spec.command, cwd=self._cwd, limit=_LIMIT,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env={**os.environ, **self._spec.env},
            )
        except OSError as exc:
            raise AgentCrashed(f"cannot start {self._spec.command[0]}: {exc}") from None
        worker = _Worker(process)
        self._all.add(worker)
        return worker

    async def respond(self, case: EvalCase, trial: int, session: AgentSession) -> str:
        """Hold one conversation with an idle process."""
        async with self._slots:
            worker = self._idle.pop() if self._idle else await self._start()
            healthy = False
            try:
                answer = await self._converse(worker, case, trial, session)
                healthy = True
                return answer
            finally:
                if healthy:
                    self._idle.append(worker)
                else:  # its state is unknown after an error or a timeout: never reuse it
                    self._all.discard(worker)
                    await worker.stop()

    async def _converse(self, worker: _Worker, case: EvalCase, trial: int,
                        session: AgentSession) -> str:
        await worker.send({
            "type": "start", "case": case.id, "trial": trial, "messages": session.messages,
            "context": session.context,
            "tools": [{"name": t.name, "description": t.description,
                       "parameters": t.parameters} for t in session.tools],
        })
        while True:
            message = await worker.receive()
            kind = message["type"]
            if kind == "output":
                content = message.get("content")
                if not isinstance(content, str):
                    raise worker.crashed("sent an output without text content")
                return content
            if kind == "tool_call":
                await worker.send(self._answer(message, session, worker))
            elif kind == "reasoning":
                session.think(str(message.get("content", "")))
            elif kind == "usage":
                session.add_usage(int(message.get("input_tokens") or 0),
                                  int(message.get("output_tokens") or 0))
            else:
                raise worker.crashed(f"sent an unknown message type {kind!r}")

    def _answer(self, message: dict[str, Any], session: AgentSession,
                worker: _Worker) -> dict[str, Any]:
        tool, arguments = message.get("tool"), message.get("arguments", {})
        if not isinstance(tool, str) or not isinstance(arguments, dict):
            raise worker.crashed(f"sent a tool call without a tool name and arguments object: "
                                 f"{message!r}"[:300])
        try:
            return {"type": "tool_result", "result": session.call_tool(tool, arguments)}
        except MissingFixture:
            raise
        except ToolDenied as exc:
            return {"type": "tool_result", "error": str(exc), "denied": True}
        except ToolFailed as exc:
            return {"type": "tool_result", "error": str(exc), "denied": False}

    async def aclose(self) -> None:
        """Stop every process."""
        for worker in list(self._all):
            await worker.stop()
        self._all.clear()
        self._idle.clear()


register_adapter("subprocess")(SubprocessAdapter)
