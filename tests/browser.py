"""Headless Chromium driven over the DevTools protocol, to see a page as a person would.

Chromium talks on two pipes (``--remote-debugging-pipe``: it reads fd 3 and writes fd 4,
messages separated by NUL), so no websocket library and no port are needed, and the
network stays closed. The tests that use it fail, never skip, when Chromium is missing:
CI installs it (``.ci/run``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

# The flags a closed network needs: nothing may try to phone home and wait for it.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--remote-debugging-pipe"]
TIMEOUT = 30.0


def chromium_path() -> str:
    """The Chromium binary; an AssertionError (a failing test) when it is not installed."""
    found = os.environ.get("REINSTATE_CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser")
    assert found, ("headless Chromium is needed to test the HTML report: "
                   "apt-get install -y chromium (nox -s tests does this as root)")
    return found


class Browser:
    """One headless Chromium with a fresh profile, and one page in it."""

    def __init__(self, width: int = 1280, height: int = 900) -> None:
        self._profile = tempfile.mkdtemp(prefix="reinstate-chromium-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        command = [chromium_path(), *FLAGS, f"--user-data-dir={self._profile}",
                   f"--window-size={width},{height}", "about:blank"]
        # bash puts the pipe ends on fds 3 and 4, where Chromium expects them.
        self._process = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{to_chrome_r} 4>&{from_chrome_w}', "bash", *command],
            pass_fds=(to_chrome_r, from_chrome_w), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.send("Target.attachToTarget", targetId=target,
                                  flatten=True)["sessionId"]
        self.send("Page.enable", session=True)
        self.send("Emulation.setDeviceMetricsOverride", session=True, width=width,
                  height=height, deviceScaleFactor=1, mobile=False)

    def send(self, method: str, *, session: bool = False, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                result: dict[str, Any] = reply.get("result", {})
                return result
            self._events.append(reply)

    def _receive(self) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_chrome], [], [], max(left, 0))
            assert ready, "Chromium did not answer in time"
            chunk = os.read(self._from_chrome, 1 << 16)
            assert chunk, "Chromium closed the pipe"
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        parsed: dict[str, Any] = json.loads(message)
        return parsed

    def open(self, path: Path | str) -> None:
        """Load a file (or a URL) and wait until it has loaded."""
        self._events.clear()
        url = path if isinstance(path, str) else path.resolve().as_uri()
        self.send("Page.navigate", session=True, url=url)
        self.wait_for_load(url)

    def wait_for_load(self, what: str = "the page") -> None:
        """Wait for the next page load (after a navigation, or a form the page submitted);
        clear the events first to wait for a load still to come."""
        deadline = time.monotonic() + TIMEOUT
        while not any(e.get("method") == "Page.loadEventFired" for e in self._events):
            assert time.monotonic() < deadline, f"{what} did not finish loading"
            self._events.append(self._receive())

    def act(self, expression: str) -> None:
        """Run JavaScript that makes the page navigate (a click on a form's button), and
        wait until the new page has loaded."""
        self._events.clear()
        self.evaluate(expression)
        self.wait_for_load("the page after the action")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.send("Runtime.evaluate", session=True, expression=expression,
                           returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """Save the whole page, top to bottom, as a PNG."""
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        width = int(self.evaluate("document.documentElement.clientWidth"))
        shot = self.send("Page.captureScreenshot", session=True, format="png",
                         captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        """End Chromium and remove its profile."""
        with contextlib.suppress(AssertionError, OSError):  # it may go before it answers
            self.send("Browser.close")
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)
        shutil.rmtree(self._profile, ignore_errors=True)
