"""The refund agent as a long-lived process speaking reinstate's JSON-lines protocol.

This is how a team whose agent is not importable Python (another language, another
runtime) lets reinstate reach it: read a "start" line, ask for tools with "tool_call"
lines and read each "tool_result", end with an "output" line.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from refund_agent import respond


class ToolFailed(Exception):
    """A tool answered with an error."""


class ToolDenied(ToolFailed):
    """The permission layer refused the call."""


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


class Session:
    """What ``respond`` expects, backed by the protocol."""

    def __init__(self, start: dict[str, Any]) -> None:
        self.messages = start["messages"]
        self.context = start.get("context", {})

    def call_tool(self, tool: str, arguments: dict[str, Any] | None = None) -> Any:
        send({"type": "tool_call", "tool": tool, "arguments": arguments or {}})
        answer = json.loads(sys.stdin.readline())
        if "error" in answer:
            raise (ToolDenied if answer.get("denied") else ToolFailed)(answer["error"])
        return answer["result"]

    def think(self, text: str) -> None:
        send({"type": "reasoning", "content": text})


def main() -> None:
    for line in sys.stdin:
        start = json.loads(line)
        send({"type": "output", "content": respond(Session(start))})


if __name__ == "__main__":
    main()
