"""A real local OpenAI-compatible chat-completions endpoint, for tests of the HTTP adapter."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Model = Callable[[dict[str, Any]], dict[str, Any]]
"""Request body → completion: what the test scripts the model to answer."""


class ChatServer:
    """An HTTP server on a free local port that records each request and answers it with
    ``model``, after answering the status codes in ``fail_first``."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.fail_first: list[int] = []  # status codes to answer with before working
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                if server.fail_first:
                    self.send_response(server.fail_first.pop(0))
                    self.end_headers()
                    return
                reply = json.dumps(server.model(body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/chat/completions"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop serving and free the port."""
        self.httpd.shutdown()
        self.httpd.server_close()
