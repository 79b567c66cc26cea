"""``reinstate review serve``: the review queue as a small local web page.

One page, no script and no outside resource: the pending items with approve / reject /
edit forms, and the latest decisions. The page decides as the person who started the
server, so it is guarded like a local tool that acts for them:

- it listens on 127.0.0.1 unless told otherwise;
- a random token made when the server starts is in the address it prints, and the page
  is shown only to a request that carries it: any process on the machine can connect to
  the port (the agent under review among them), and one that could read the page would
  read its forms' token and decide as the reviewer;
- every form carries that token, and a POST without it is refused (another site's page
  cannot decide through the reviewer's browser);
- a request addressed by a name that is not this machine's (a DNS name rebound to this
  address) is refused, and the page may not be framed.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from evalsuite import InvalidInput, ReinstateError
from gates._cli.review import parse_args_json
from gates._errors import ReviewDecided, StoreUnavailable, UnknownReview
from gates._reports.review_page import review_page_html
from gates._store.review_queue import ReviewQueue

# The largest form the page sends (edited arguments included); more is refused unread.
MAX_FORM_BYTES = 1 << 20
# What the page may load and where its forms may go: nothing outside, no framing.
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class ReviewServer(ThreadingHTTPServer):
    """The page's HTTP server: the queue, who decides, and the forms' token."""

    daemon_threads = True

    def __init__(self, queue: ReviewQueue, *, host: str, port: int, actor: str) -> None:
        super().__init__((host, port), _Handler)
        self.queue = queue
        self.actor = actor
        self.token = secrets.token_urlsafe(32)
        # The names a request may address the page by: the address it was started on,
        # this machine's own names and IP literals. A DNS name rebound to this address
        # (another site's page reaching the reviewer's local server) is none of them.
        self.names = {host.strip("[]").lower(), "localhost", socket.gethostname().lower(),
                      socket.getfqdn().lower()}

    @property
    def url(self) -> str:
        """The server's address, without the token (what a refusal names)."""
        host = str(self.server_address[0])
        return f"http://{f'[{host}]' if ':' in host else host}:{self.server_address[1]}/"

    @property
    def page_url(self) -> str:
        """Where a reviewer opens the page: the address with the token that shows it."""
        return f"{self.url}?{urlencode({'token': self.token})}"

    def where(self) -> str:
        """The store the queue is in, as the page names it."""
        return self.queue._where()


class _Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    server_version = "reinstate-review"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: every decision is in the audit log, and requests are not news."""

    def do_GET(self) -> None:
        """The page (``/``); anything else is not found."""
        if not self._host_ok():
            return
        path = urlsplit(self.path).path
        if path != "/":
            self._send(HTTPStatus.NOT_FOUND, "not found", "text/plain")
            return
        query = parse_qs(urlsplit(self.path).query)
        if not _same(query.get("token", [""])[0], self.server.token):
            # The page holds the forms' token: shown to whoever connects, it would let any
            # local process (the agent under review) approve as the reviewer.
            self._send(HTTPStatus.FORBIDDEN, "refused: open the address `reinstate review "
                       "serve` printed (it carries the page's token)", "text/plain")
            return
        done = query.get("done", [""])[0]
        message = ""
        if done:
            try:
                item = self.server.queue.get(done)
                message = (f"{item.id} {item.status} by {item.decided_by}: "
                           f"{item.decision_reason}")
            except ReinstateError:
                message = ""
        self._page(HTTPStatus.OK, message)

    def do_POST(self) -> None:
        """A decision from a form: token checked, then approve / reject / edit."""
        if not self._host_ok():
            return
        if urlsplit(self.path).path != "/decide":
            self._send(HTTPStatus.NOT_FOUND, "not found", "text/plain")
            return
        form = self._form()
        if form is None:
            return
        if not _same(form.get("csrf", ""), self.server.token):
            self._send(HTTPStatus.FORBIDDEN, "refused: the form's token is missing or not "
                       "this server's (reload the page)", "text/plain")
            return
        try:
            item = self._decide(form)
        except (UnknownReview, ReviewDecided) as exc:
            status = HTTPStatus.NOT_FOUND if isinstance(exc, UnknownReview) else \
                HTTPStatus.CONFLICT
            self._page(status, str(exc), problem=True)
            return
        except StoreUnavailable as exc:
            self._unreadable(exc)
            return
        except ReinstateError as exc:
            self._page(HTTPStatus.BAD_REQUEST, str(exc), problem=True)
            return
        # After a POST, a redirect: reloading the page never sends the decision again.
        self.send_response(HTTPStatus.SEE_OTHER)
        self.send_header("Location",
                         f"/?{urlencode({'token': self.server.token, 'done': item.id})}")
        self.send_header("Content-Length", "0")
        for name, value in _SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()

    def _decide(self, form: dict[str, str]) -> Any:
        queue, actor = self.server.queue, self.server.actor
        review, action, reason = form.get("id", ""), form.get("action", ""), form.get(
            "reason", "")
        if action == "approve":
            return queue.approve(review, actor=actor, reason=reason)
        if action == "reject":
            return queue.reject(review, actor=actor, reason=reason)
        if action == "edit":
            args = parse_args_json(form["args"], "new arguments") if "args" in form else None
            return queue.edit(review, actor=actor, reason=reason, args=args,
                              text=form.get("text"))
        raise UnknownAction(action)

    def _form(self) -> dict[str, str] | None:
        kind = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            length = -1
        if kind != "application/x-www-form-urlencoded" or not 0 <= length <= MAX_FORM_BYTES:
            self._send(HTTPStatus.BAD_REQUEST, "expected a form of at most 1 MiB",
                       "text/plain")
            return None
        body = self.rfile.read(length).decode("utf-8", errors="replace")
        return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}

    def _host_ok(self) -> bool:
        """Only requests addressed to this server by its own name or an IP address."""
        name = urlsplit(f"//{self.headers.get('Host', '')}").hostname or ""
        if name in self.server.names or _ip_literal(name):
            return True
        self._send(HTTPStatus.MISDIRECTED_REQUEST, "refused: this page answers only at "
                   f"{self.server.url}", "text/plain")
        return False

    def _page(self, status: HTTPStatus, message: str, *, problem: bool = False) -> None:
        queue = self.server.queue
        try:
            pending = queue.items(status="pending")
            html = review_page_html(
                pending, [i for i in queue.items(status=None) if i.status != "pending"],
                token=self.server.token, actor=self.server.actor, where=self.server.where(),
                message=message, problem=problem, unlike=queue.unlike_submitted(pending))
        except StoreUnavailable as exc:
            self._unreadable(exc, message if problem else "")
            return
        self._send(status, html, "text/html; charset=utf-8")

    def _unreadable(self, exc: StoreUnavailable, before: str = "") -> None:
        """The store cannot be read or written: say so, and show no form (nothing can be
        decided on a queue that cannot be read; what waits stays held)."""
        said = f"{before}\n" if before and before != str(exc) else ""
        self._send(HTTPStatus.SERVICE_UNAVAILABLE,
                   f"{said}error: {exc}\nNothing was decided here; what waits stays held.",
                   "text/plain; charset=utf-8")

    def _send(self, status: HTTPStatus, body: str, kind: str) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in _SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _same(given: str, token: str) -> bool:
    """Whether ``given`` is the server's token (compared in constant time)."""
    return hmac.compare_digest(given.encode(), token.encode())


def _ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class UnknownAction(ReinstateError):
    """A form asked for something other than approve, reject or edit."""

    def __init__(self, action: str) -> None:
        super().__init__(f"action: expected approve, reject or edit, not {action!r}")


def serve(queue: ReviewQueue, *, host: str, port: int, actor: str,
          say: Callable[[str], None], stop: threading.Event | None = None) -> int:
    """Serve the page until Ctrl-C (or ``stop``); prints its address first."""
    try:
        server = ReviewServer(queue, host=host, port=port, actor=actor)
    except OSError as exc:  # taken, not this machine's, or no such name: say which
        raise InvalidInput(None, "--host/--port", f"an address this machine can listen on, "
                                                  f"not {host}:{port} "
                                                  f"({exc.strerror or exc})") from None
    say(f"review queue: {server.page_url} (deciding as {actor}; Ctrl-C stops)")
    sys.stdout.flush()  # a script (or a test) reads the address before the first request
    if stop is not None:
        def stop_when_told() -> None:
            stop.wait()
            server.shutdown()
        threading.Thread(target=stop_when_told, daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
