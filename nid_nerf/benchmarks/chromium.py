"""Drive Debian's headless Chromium through the DevTools protocol (no downloads, no extra packages).

Chromium is started with a fresh profile in a temporary folder and `--remote-debugging-port=0`;
the port it picks is read from `DevToolsActivePort` in that profile, and one page target is driven
over a websocket (the `websockets` package that viser already depends on).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image
from websockets.sync.client import connect

from nid_nerf.errors import NIDInputError

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")

# Offline, reproducible, nothing phoned home; software WebGL (SwiftShader) since there is no GPU.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


def find_chromium(explicit: Optional[str] = None) -> str:
    """Path of the Chromium binary (`explicit`, else the first of CHROMIUM_CANDIDATES on PATH)."""
    for name in (explicit,) if explicit else CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    raise NIDInputError(
        f"no Chromium binary found (looked for {explicit or ', '.join(CHROMIUM_CANDIDATES)}); "
        "install Debian's package with `apt-get install -y chromium` or pass --chromium PATH"
    )


def stop_process_group(process: Optional[subprocess.Popen], first_signal: int, timeout: float = 10.0) -> None:
    """Send ``first_signal`` to the process group of ``process`` (if still running); SIGKILL it after ``timeout`` s."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, first_signal)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class HeadlessChromium:
    """One headless Chromium with one page, driven over the DevTools protocol. Use as a context manager."""

    def __init__(self, binary: Optional[str] = None, window_size: tuple[int, int] = (1280, 800), timeout: float = 30.0):
        self.binary = find_chromium(binary)
        self.window_size = window_size
        self.timeout = timeout
        self._profile = Path(tempfile.mkdtemp(prefix="nid-chromium-"))
        self._process: Optional[subprocess.Popen] = None
        self._socket = None
        self._next_id = 0

    def __enter__(self) -> HeadlessChromium:
        width, height = self.window_size
        self._process = subprocess.Popen(
            [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile}", f"--window-size={width},{height}",
             "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        port = self._devtools_port()
        self._socket = connect(self._page_websocket(port), max_size=None, open_timeout=self.timeout)
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._socket is not None:
            try:
                self._socket.close()
            except Exception:  # noqa: BLE001 - closing a browser that may already be gone
                pass
            self._socket = None
        stop_process_group(self._process, signal.SIGTERM)
        self._process = None
        shutil.rmtree(self._profile, ignore_errors=True)

    def _devtools_port(self) -> int:
        marker = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"{self.binary} exited with code {self._process.returncode} on start")
            if marker.exists():
                lines = marker.read_text().split()
                if lines:
                    return int(lines[0])
            time.sleep(0.1)
        raise TimeoutError(f"{self.binary} did not open its DevTools port within {self.timeout:.0f} s")

    def _page_websocket(self, port: int) -> str:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
                targets = json.loads(response.read())
            pages = [t for t in targets if t.get("type") == "page" and "webSocketDebuggerUrl" in t]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.1)
        raise TimeoutError("Chromium opened no page target")

    def call(self, method: str, params: Optional[dict] = None) -> dict:
        """Send one DevTools command and return its result (events that arrive meanwhile are dropped)."""
        assert self._socket is not None, "use HeadlessChromium as a context manager"
        self._next_id += 1
        message_id = self._next_id
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + self.timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"DevTools call {method} got no answer within {self.timeout:.0f} s")
            reply = json.loads(self._socket.recv(timeout=remaining))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"DevTools {method} failed: {reply['error']}")
                return reply.get("result", {})

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})

    def evaluate(self, expression: str) -> Any:
        """Value of a JavaScript expression in the page (JSON-serialisable values only)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript error: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def wheel(self, x: float, y: float, delta_y: float) -> None:
        """One mouse-wheel event at page coordinates (x, y); positive delta_y scrolls down."""
        self.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        self.call("Input.dispatchMouseEvent", {"type": "mouseWheel", "x": x, "y": y, "deltaX": 0, "deltaY": delta_y})

    def screenshot(self) -> np.ndarray:
        """The page as an RGB uint8 array [H, W, 3]."""
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
