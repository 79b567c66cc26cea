"""The HTTP adapter: an OpenAI-compatible chat-completions endpoint, with the tool loop here.

reinstate sends the agent's system prompt, the case's context and messages, and the agent's
tool definitions, with the headers ``agent.yaml`` configures; each tool call the model asks
for is answered from the sandbox (denials and tool errors go back as the tool message),
until the model answers in text or ``max_turns`` model calls are spent.

Connection failures, timeouts and an endpoint busy or unavailable (HTTP 429, 502, 503,
504) are transport errors, retried by the runner after any ``Retry-After``. Every other
HTTP error (a 500 from a gateway with no key, a 401, a 400) and an unreadable response is
the case's error, carrying the server's message: asking again would only repeat it.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when first used: most gates never reach an HTTP agent
    import httpx

from evalsuite._agent import (
    AgentCrashed,
    AgentSpec,
    HttpAdapterSpec,
    TransportError,
    register_adapter,
)
from evalsuite._case import EvalCase
from evalsuite._errors import InvalidInput
from evalsuite._files import read_regular
from evalsuite._sandbox import Isolation
from evalsuite._session import AgentSession, MissingFixture, ToolFailed

# Busy, unavailable, or a gateway that could not reach the model: another attempt may work.
TRANSIENT = frozenset({429, 502, 503, 504})


class HttpAdapter:
    """Talks to one chat-completions URL with one connection pool."""

    def __init__(self, spec: HttpAdapterSpec, agent_file: Path, agent: AgentSpec,
                 isolation: Isolation | None = None) -> None:
        # No agent code runs here, so there is nothing to confine: isolation is unused.
        self._spec = spec
        self.agent = agent
        place = _place(spec, agent)
        # Read now, so a missing secret or prompt stops the run before its first case.
        self._headers = _headers(spec, agent_file, place)
        self._system = _system_prompt(spec, agent_file, place)
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(headers=self._headers,
                                             timeout=self._spec.request_timeout_s)
        return self._client

    async def _complete(self, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        try:
            async with self._http().stream("POST", self._spec.url, json=body) as response:
                await _read_bounded(response, self._spec.url)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise TransportError(f"{self._spec.url}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            said = f"{self._spec.url}: HTTP {response.status_code}"
            if response.reason_phrase:
                said += f" {response.reason_phrase}"
            message = _server_message(response)
            said += f": {message}" if message else " (no message)"
            if response.status_code in TRANSIENT:
                raise TransportError(said, retry_after=_retry_after(response))
            raise AgentCrashed(said)
        try:
            data = response.json()
            message = data["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise AgentCrashed(f"{self._spec.url}: not a chat completion: "
                               f"{response.text[:300]!r}") from None
        if not isinstance(message, dict):
            raise AgentCrashed(f"{self._spec.url}: the choice has no message object")
        usage = data.get("usage") or {}
        return {"message": message, "usage": usage}

    def _opening(self, session: AgentSession) -> list[dict[str, Any]]:
        """The conversation as sent: the system prompt, the context, the case's messages."""
        messages: list[dict[str, Any]] = []
        if self._system is not None:
            messages.append({"role": "system", "content": self._system})
        if session.context and self._spec.context == "message":
            messages.append({"role": "system", "content": "Context (JSON): " + json.dumps(
                session.context, ensure_ascii=False, sort_keys=True)})
        return messages + [dict(m) for m in session.messages]

    async def respond(self, case: EvalCase, trial: int, session: AgentSession) -> str:
        """Run the tool loop until the model answers in text."""
        messages = self._opening(session)
        tools = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                   "parameters": t.parameters}}
                 for t in session.tools]
        for _ in range(self._spec.max_turns):
            body: dict[str, Any] = {"model": self._spec.model, "messages": messages}
            if tools:
                body["tools"] = tools
            if self._spec.temperature is not None:
                body["temperature"] = self._spec.temperature
            if session.context and self._spec.context == "body":
                body["context"] = session.context
            reply = await self._complete(body)
            message, usage = reply["message"], reply["usage"]
            session.add_usage(int(usage.get("prompt_tokens") or 0),
                              int(usage.get("completion_tokens") or 0))
            calls = message.get("tool_calls") or []
            if not calls:
                content = message.get("content")
                if not isinstance(content, str):
                    raise AgentCrashed(f"{self._spec.url}: the answer has neither tool calls "
                                       f"nor text")
                return content
            messages.append({"role": "assistant", "content": message.get("content"),
                             "tool_calls": calls})
            for call in calls:
                messages.append(self._answer(call, session))
        raise AgentCrashed(f"the model did not answer within {self._spec.max_turns} turns")

    def _answer(self, call: Any, session: AgentSession) -> dict[str, Any]:
        try:
            call_id, function = call["id"], call["function"]
            name, raw = function["name"], function.get("arguments") or "{}"
        except (KeyError, TypeError):
            raise AgentCrashed(f"{self._spec.url}: malformed tool call {call!r}"[:300]) from None
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            # The model wrote broken arguments: it is told, as a real tool runtime would.
            return {"role": "tool", "tool_call_id": call_id,
                    "content": json.dumps({"error": f"arguments are not a JSON object: {raw}"})}
        try:
            result: Any = session.call_tool(name, arguments)
            content = json.dumps(result)
        except MissingFixture:
            raise
        except ToolFailed as exc:
            content = json.dumps({"error": str(exc)})
        return {"role": "tool", "tool_call_id": call_id, "content": content}

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None



MAX_BODY = 64 * 1024 * 1024
"""Bytes of one response (decompressed) the adapter reads: four times what a trial may
record, so any answer a trial can hold fits, escaped."""


async def _read_bounded(response: httpx.Response, url: str) -> None:
    """Read ``response``'s body, at most :data:`MAX_BODY` bytes once decompressed.

    Read whole, an endpoint's endless or gzip-bombed body grew the gate's memory until the
    system killed it, with no verdict stored (the last one stood); now it is the trial's
    error. The body is then the response's, as ``read()`` leaves it.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_BODY:
            raise AgentCrashed(f"{url}: HTTP {response.status_code}: answered with more "
                               f"than {MAX_BODY:,} bytes; expected one chat completion")
        chunks.append(chunk)
    response._content = b"".join(chunks)  # what response.read() sets


def _place(spec: HttpAdapterSpec, agent: AgentSpec) -> str:
    """Where in ``agent.yaml`` this adapter is written, for error messages."""
    if spec is agent.adapter:
        return "$.adapter"
    return next((f"$.adapters.{name}" for name, other in agent.adapters.items()
                 if other is spec), "$.adapter")


def _headers(spec: HttpAdapterSpec, agent_file: Path, place: str) -> dict[str, str]:
    """The configured headers with their ``${VAR}`` filled in from the environment.

    Raises:
        InvalidInput: A variable is not set (or empty); the message names the file, the
            header and the variable, never a value.
    """
    headers: dict[str, str] = {}
    if spec.api_key_env:
        key = os.environ.get(spec.api_key_env)
        if not key:
            raise InvalidInput(agent_file, f"{place}.api_key_env",
                               f"environment variable {spec.api_key_env} is not set: the "
                               f"endpoint needs an API key")
        headers["Authorization"] = f"Bearer {key}"
    for name, value in spec.headers.items():
        template = Template(value)
        for variable in template.get_identifiers():
            if not os.environ.get(variable):
                raise InvalidInput(agent_file, f"{place}.headers.{name}",
                                   f"environment variable {variable} is not set (the "
                                   f"header's value is read from it)")
        headers[name] = template.substitute(os.environ)
    return headers


def _system_prompt(spec: HttpAdapterSpec, agent_file: Path, place: str) -> str | None:
    if spec.system_prompt_file is None:
        return spec.system_prompt
    path = agent_file.parent / spec.system_prompt_file
    try:
        return read_regular(path).decode("utf-8")
    except (OSError, UnicodeDecodeError, InvalidInput) as exc:
        raise InvalidInput(agent_file, f"{place}.system_prompt_file",
                           f"expected a readable UTF-8 file at {spec.system_prompt_file} "
                           f"({type(exc).__name__}: {getattr(exc, 'strerror', None) or exc})"
                           ) from None


def _server_message(response: httpx.Response) -> str:
    """What the server said went wrong: an OpenAI-style ``error.message``, another JSON
    ``message``/``detail``/``error``, or the start of the body."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:300]
        for key in ("message", "detail", "error"):
            if isinstance(data.get(key), str):
                return str(data[key])[:300]
    return json.dumps(data)[:300]


def _retry_after(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (given as seconds or as an HTTP date)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, its zone unstated
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


register_adapter("http")(HttpAdapter)
