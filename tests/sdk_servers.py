"""A real local model API for the real ``openai`` and ``anthropic`` clients: OpenAI Chat
Completions and Responses, Anthropic Messages, each answered in JSON or as a stream of
server-sent events, so tests can log what the SDKs return exactly as teams do."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Script = Callable[[str, dict[str, Any]], dict[str, Any] | list[dict[str, Any]]]
"""(path, request body) → a JSON answer, or the events of a stream (a list)."""


class SdkServer:
    """An HTTP server on a free local port that records each request and answers it with
    ``script``: a dict as JSON, a list as server-sent events (``event:`` named after each
    event's ``type`` where it has one; Chat Completions streams end with ``[DONE]``)."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.clients: list[Any] = []  # SDK clients to close with the server (their sockets)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, body))
                reply = server.script(self.path, body)
                if isinstance(reply, dict):
                    data = json.dumps(reply).encode()
                    self._head("application/json", len(data))
                    self.wfile.write(data)
                    return
                lines = []
                for event in reply:
                    named = f"event: {event['type']}\n" if "type" in event else ""
                    lines.append(f"{named}data: {json.dumps(event)}\n\n")
                if self.path.endswith("/chat/completions"):
                    lines.append("data: [DONE]\n\n")
                data = "".join(lines).encode()
                self._head("text/event-stream", len(data))
                self.wfile.write(data)

            def _head(self, kind: str, length: int) -> None:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(length))
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Close the clients, stop serving and free the port."""
        for client in self.clients:
            client.close()
        self.httpd.shutdown()
        self.httpd.server_close()
