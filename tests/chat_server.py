"""A real local OpenAI-compatible chat-completions endpoint, for tests of the HTTP adapter."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Model = Callable[[dict[str, Any]], dict[str, Any]]
"""Request body → completion: what the test scripts the model to answer."""


class ChatServer:
    """An HTTP server on a free local port that records each request (body, headers, time)
    and answers it with ``model``, after answering the status codes in ``fail_first`` (with
    ``fail_body`` and ``fail_headers``)."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.fail_first: list[int] = []  # status codes to answer with before working
        self.fail_body: dict[str, Any] | None = None  # the JSON body of those answers
        self.fail_headers: dict[str, str] = {}  # and their headers (Retry-After)
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []  # each request's headers, names lowercased
        self.times: list[float] = []  # when each request arrived (time.monotonic)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.times.append(time.monotonic())
                server.headers.append({k.lower(): v for k, v in self.headers.items()})
                server.requests.append(body)
                if server.fail_first:
                    self.send_response(server.fail_first.pop(0))
                    for name, value in server.fail_headers.items():
                        self.send_header(name, value)
                    error = json.dumps(server.fail_body).encode() if server.fail_body else b""
                    self.send_header("Content-Length", str(len(error)))
                    if error:
                        self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(error)
                    return
                completion = server.model(body)
                if body.get("stream"):
                    self._stream(completion)
                    return
                reply = json.dumps(completion).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def _stream(self, completion: dict[str, Any]) -> None:
                """The completion as server-sent chunks, as the API streams it."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for chunk in stream_chunks(completion):
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/chat/completions"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop serving and free the port."""
        self.httpd.shutdown()
        self.httpd.server_close()


def stream_chunks(completion: dict[str, Any]) -> list[dict[str, Any]]:
    """A ``chat.completion`` as the ``chat.completion.chunk`` deltas a streaming call gets:
    the role, the text in two pieces, each tool call's name then its arguments in two
    pieces, the finish reason, and the usage last."""
    base = {k: completion[k] for k in ("id", "created", "model") if k in completion}
    base["object"] = "chat.completion.chunk"
    choice = completion["choices"][0]
    message = choice["message"]
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    text = message.get("content") or ""
    if text:
        half = len(text) // 2
        deltas += [{"content": text[:half]}, {"content": text[half:]}]
    for index, call in enumerate(message.get("tool_calls") or []):
        arguments = call["function"]["arguments"]
        half = len(arguments) // 2
        deltas.append({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                       "function": {"name": call["function"]["name"],
                                                    "arguments": arguments[:half]}}]})
        deltas.append({"tool_calls": [{"index": index,
                                       "function": {"arguments": arguments[half:]}}]})
    chunks = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]}
              for d in deltas]
    chunks.append({**base, "choices": [{"index": 0, "delta": {},
                                        "finish_reason": choice.get("finish_reason")}]})
    if "usage" in completion:
        chunks.append({**base, "choices": [], "usage": completion["usage"]})
    return chunks
