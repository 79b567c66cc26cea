"""The subprocess adapter: a long-lived agent process speaking JSON lines.

The protocol, one JSON object a line. reinstate writes
``{"type": "start", "case": ID, "trial": N, "messages": [...], "context": {...},
"tools": [...]}``; the agent answers with any number of ``{"type": "tool_call", "tool": T,
"arguments": {...}}`` (each answered by ``{"type": "tool_result", "result": ...}`` or
``{"type": "tool_result", "error": "...", "denied": true|false}``), optional
``{"type": "reasoning", "content": "..."}`` and ``{"type": "usage", "input_tokens": N,
"output_tokens": N}``, and finally ``{"type": "output", "content": "..."}`` (or
``{"type": "error", "message": "..."}`` when it cannot answer).
Processes are started once and reused; one that dies or writes something else is
reported with what it wrote and the end of its stderr, and replaced for the next trial.

Each process runs confined (see :mod:`evalsuite._sandbox`): its own session and process
group, killed whole with SIGKILL when it is stopped, so a grandchild holding the pipes
cannot hold the gate; a PID namespace of its own where the platform allows, so nothing it
started outlives it; an allowlisted environment; a sandbox when one is available.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evalsuite._agent import (
    AgentCrashed,
    AgentSpec,
    SubprocessAdapterSpec,
    TransportError,
    register_adapter,
)
from evalsuite._case import EvalCase
from evalsuite._sandbox import Confinement, Isolation, choose_sandbox, describe
from evalsuite._session import AgentSession, MissingFixture, ToolDenied, ToolFailed

_LIMIT = 16 * 1024 * 1024  # the longest line an agent may write
# What a trial's error keeps of the agent's own words: each stderr line of the tail, and
# its error message. Kept whole, twenty 16 MiB stderr lines made one errored trial's error
# 320 MiB of text, held until the verdict (and written into the run file) for every
# errored trial, until the system killed the gate and no verdict was stored.
_SAID = 1000


def _clipped(text: str) -> str:
    """``text``, cut to :data:`_SAID` characters, saying so."""
    if len(text) <= _SAID:
        return text
    return f"{text[:_SAID]}… ({len(text) - _SAID:,} more characters)"


class _Reported(Exception):
    """The agent answered with an error message instead of an output."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


# How long a killed process group may take to be reaped before its pipes are dropped.
_REAP_S = 5.0


class _Worker:
    """One running agent process, its confinement and the tail of what it wrote to stderr."""

    def __init__(self, process: asyncio.subprocess.Process, confinement: Confinement) -> None:
        self.process = process
        self.confinement = confinement
        self.stderr: collections.deque[str] = collections.deque(maxlen=20)
        self._drain = asyncio.ensure_future(self._read_stderr())

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        async for line in self.process.stderr:
            self.stderr.append(_clipped(line.decode(errors="replace").rstrip()))

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
        # A leftover in the group may hold stderr open: never wait on it for long.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.process.wait()), 1)
        await asyncio.wait([self._drain], timeout=1)
        code = self.process.returncode
        if code is None:
            return self.crashed("closed its output mid-conversation")
        return self.crashed(f"exited with code {code} mid-conversation")

    async def stop(self) -> None:
        """Kill the whole process group, detached-in-group children included, then let go
        of the pipes even if something outside the group still holds them."""
        killed = False
        if hasattr(os, "killpg"):  # POSIX: the process leads a group of its own
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
                killed = True
        # Only without the group kill: Popen.kill() polls first, and reaping the process
        # here would leave asyncio's child watcher waiting for a pid it can never see.
        if not killed and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        try:
            await asyncio.wait_for(asyncio.shield(self.process.wait()), _REAP_S)
        except TimeoutError:
            pass
        finally:
            self._drain.cancel()
            transport = getattr(self.process, "_transport", None)
            if transport is not None:
                transport.close()
            if not self.confinement.pid_namespace:  # else its end ended all it started
                await asyncio.to_thread(self.confinement.kill_leftovers)
            self.confinement.remove()


class ProcessPool:
    """A pool of confined agent processes, each handling one conversation at a time."""

    def __init__(self, agent: AgentSpec, command: Sequence[str], cwd: Path, processes: int,
                 env: Mapping[str, str], isolation: Isolation | None, *,
                 announces_ready: bool = False) -> None:
        self.agent = agent
        # reinstate's own worker writes {"type": "ready"} once the agent is imported.
        self._announces_ready = announces_ready
        self._command = list(command)
        self._cwd = cwd
        self._env = dict(env)
        self._isolation = isolation or Isolation()
        # Resolved now, so an unavailable sandbox is an error before any agent runs.
        self._sandbox = choose_sandbox(self._isolation.sandbox)
        self.isolation_used = describe(self._sandbox)
        """What confinement the agent's processes got, for the verdict."""
        self._idle: list[_Worker] = []
        self._slots = asyncio.Semaphore(processes)
        self._limit = processes
        self._all: set[_Worker] = set()

    async def _start(self) -> _Worker:
        try:
            confinement = Confinement(self._isolation, self._sandbox, self._env)
        except ValueError as exc:
            raise AgentCrashed(f"cannot start {self._command[0]}: {exc}") from None
        try:
            process = await asyncio.create_subprocess_exec(
                *confinement.command(self._command, self._cwd),
                cwd=self._cwd, limit=_LIMIT,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=confinement.start_env, start_new_session=True,
            )
        except OSError as exc:
            confinement.remove()
            raise AgentCrashed(f"cannot start {self._command[0]}: {exc}") from None
        worker = _Worker(process, confinement)
        self._all.add(worker)
        if self._announces_ready:
            try:
                ready = await worker.receive()
            except BaseException:
                self._all.discard(worker)
                await worker.stop()
                raise
            if ready.get("type") != "ready":
                self._all.discard(worker)
                await worker.stop()
                raise worker.crashed(f"sent {ready!r} before it was ready"[:300])
        return worker

    async def start(self, count: int) -> None:
        """Start up to ``count`` processes before the first trial, side by side, so their
        start is not counted against any trial's timeout. One that cannot start is left
        for a trial to report."""
        wanted = min(count, self._limit) - len(self._all)
        started = await asyncio.gather(*(self._start() for _ in range(max(wanted, 0))),
                                       return_exceptions=True)
        self._idle.extend(w for w in started if isinstance(w, _Worker))

    async def respond(self, case: EvalCase, trial: int, session: AgentSession) -> str:
        """Hold one conversation with an idle process."""
        async with self._slots:
            worker = self._idle.pop() if self._idle else await self._start()
            healthy = False
            try:
                answer = await self._converse(worker, case, trial, session)
                healthy = True
                return answer
            except _Reported as reported:
                healthy = True
                if reported.retry:
                    raise TransportError(str(reported)) from None
                raise AgentCrashed(str(reported)) from None
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
            if kind == "error":
                text = _clipped(str(message.get("message", "the agent reported an error")))
                # The process ended the conversation cleanly: it may serve the next one.
                raise _Reported(text, retry=message.get("retry") is True)
            if kind == "tool_call":
                await worker.send(self._answer(message, session, worker))
            elif kind == "reasoning":
                session.think(str(message.get("content", "")))
            elif kind == "usage":
                cost = message.get("cost_usd")
                session.add_usage(int(message.get("input_tokens") or 0),
                                  int(message.get("output_tokens") or 0),
                                  float(cost) if isinstance(cost, int | float) else None)
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


class SubprocessAdapter(ProcessPool):
    """The agent's own program, speaking JSON lines; ``processes`` copies side by side."""

    def __init__(self, spec: SubprocessAdapterSpec, agent_file: Path, agent: AgentSpec,
                 isolation: Isolation | None = None) -> None:
        super().__init__(agent, spec.command, (agent_file.parent / spec.cwd).resolve(),
                         spec.processes, spec.env, isolation)


register_adapter("subprocess")(SubprocessAdapter)
