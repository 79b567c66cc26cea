"""The HTTP adapter: an OpenAI-compatible chat-completions endpoint, with the tool loop here.

reinstate sends the case's messages and the agent's tool definitions; each tool call the
model asks for is answered from the sandbox (denials and tool errors go back as the tool
message), until the model answers in text or ``max_turns`` model calls are spent.
Connection failures, timeouts and HTTP 5xx are transport errors (retried by the runner);
other HTTP errors and unreadable responses are the agent's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
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
from evalsuite._sandbox import Isolation
from evalsuite._session import AgentSession, MissingFixture, ToolFailed


class HttpAdapter:
    """Talks to one chat-completions URL with one connection pool."""

    def __init__(self, spec: HttpAdapterSpec, agent_file: Path, agent: AgentSpec,
                 isolation: Isolation | None = None) -> None:
        # No agent code runs here, so there is nothing to confine: isolation is unused.
        self._spec = spec
        self.agent = agent
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        import httpx

        if self._client is None:
            headers = {}
            if self._spec.api_key_env:
                key = os.environ.get(self._spec.api_key_env)
                if not key:
                    raise AgentCrashed(f"environment variable {self._spec.api_key_env} is not "
                                       f"set: the endpoint needs an API key")
                headers["Authorization"] = f"Bearer {key}"
            self._client = httpx.AsyncClient(headers=headers,
                                             timeout=self._spec.request_timeout_s)
        return self._client

    async def _complete(self, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        try:
            response = await self._http().post(self._spec.url, json=body)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise TransportError(f"{self._spec.url}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 500:
            raise TransportError(f"{self._spec.url}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise AgentCrashed(f"{self._spec.url}: HTTP {response.status_code}: "
                               f"{response.text[:300]}")
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

    async def respond(self, case: EvalCase, trial: int, session: AgentSession) -> str:
        """Run the tool loop until the model answers in text."""
        messages: list[dict[str, Any]] = [dict(m) for m in session.messages]
        tools = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                   "parameters": t.parameters}}
                 for t in session.tools]
        for _ in range(self._spec.max_turns):
            body: dict[str, Any] = {"model": self._spec.model, "messages": messages}
            if tools:
                body["tools"] = tools
            if self._spec.temperature is not None:
                body["temperature"] = self._spec.temperature
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


register_adapter("http")(HttpAdapter)
