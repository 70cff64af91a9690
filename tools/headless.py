"""Headless Chromium driven over the DevTools protocol (CDP), for the report's browser test and its
screenshot. Uses the system's Chromium (Debian package ``chromium``); downloads nothing.

    with Browser.launch() as browser:
        page = browser.open("file:///.../index.html")
        page.count("svg")            # elements in the rendered DOM
        page.errors                  # console errors and uncaught exceptions
        page.screenshot(path)        # full-page PNG
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import websocket

INSTALL_HINT = "apt-get install -y chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
]


def find_chromium() -> str | None:
    for name in (os.environ.get("LAKESEG_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (path := shutil.which(name)):
            return path
    return None


@dataclass
class Page:
    ws: websocket.WebSocket
    events: list[dict] = field(default_factory=list)
    _next: int = 0

    def call(self, method: str, params: dict | None = None, timeout: float = 30) -> dict:
        self._next += 1
        ident = self._next
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == ident:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result") or {}
            self.events.append(msg)
        raise TimeoutError(f"no answer to {method} within {timeout}s")

    def wait_for(self, event: str, timeout: float = 30) -> dict:
        for msg in self.events:
            if msg.get("method") == event:
                return msg
        self.ws.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            self.events.append(msg)
            if msg.get("method") == event:
                return msg
        raise TimeoutError(f"{event} did not happen within {timeout}s")

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    KEYS = {"Tab": 9, "Enter": 13, "Escape": 27, "ArrowUp": 38, "ArrowDown": 40, "End": 35, "Home": 36}

    def press(self, key: str, times: int = 1, shift: bool = False) -> None:
        """Key presses as a keyboard sends them (keyDown, then keyUp) to whatever has the focus."""
        code = self.KEYS[key]
        for _ in range(times):
            for kind in ("rawKeyDown", "keyUp"):
                self.call(
                    "Input.dispatchKeyEvent",
                    {
                        "type": kind,
                        "key": key,
                        "code": key,
                        "windowsVirtualKeyCode": code,
                        "nativeVirtualKeyCode": code,
                        "modifiers": 8 if shift else 0,
                    },
                )
                if kind == "rawKeyDown" and key == "Enter":
                    self.call("Input.dispatchKeyEvent", {"type": "char", "key": key, "text": "\r"})

    @property
    def focused(self) -> str:
        """The id (or tag name) of the element that has the keyboard focus."""
        return self.evaluate(
            "document.activeElement ? (document.activeElement.id || document.activeElement.tagName) : ''"
        )

    def count(self, selector: str) -> int:
        return int(self.evaluate(f"document.querySelectorAll({json.dumps(selector)}).length"))

    @property
    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries seen so far."""
        out = []
        for msg in self.events:
            method, params = msg.get("method"), msg.get("params") or {}
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails") or {}
                out.append((details.get("exception") or {}).get("description") or details.get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and (params.get("entry") or {}).get("level") == "error":
                out.append(params["entry"].get("text", ""))
        return out

    @property
    def requests(self) -> list[str]:
        """URLs the page asked for (the page itself included)."""
        return [m["params"]["request"]["url"] for m in self.events if m.get("method") == "Network.requestWillBeSent"]

    def screenshot(self, path: Path | None = None, width: int = 1200, height: int | None = None) -> bytes:
        """A PNG of the page from its top: all of it (up to 16,000 px), or its first ``height`` pixels."""
        metrics = self.call("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        clip = {"x": 0, "y": 0, "width": width, "height": min(int(size["height"]), height or 16000), "scale": 1}
        data = base64.b64decode(
            self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})["data"]
        )
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(data)
        return data


class Browser:
    def __init__(self, proc: subprocess.Popen, port: int, profile: str):
        self.proc, self.port, self.profile = proc, port, profile

    @classmethod
    def launch(cls, binary: str | None = None, timeout: float = 30) -> Browser:
        binary = binary or find_chromium()
        if binary is None:
            raise FileNotFoundError(f"Chromium not found; install it with `{INSTALL_HINT}`")
        profile = tempfile.mkdtemp(prefix="lakeseg-chromium-")
        proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + timeout
        port = None
        while time.monotonic() < deadline and port is None:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            if m := re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line):
                port = int(m.group(1))
        if port is None:
            proc.kill()
            shutil.rmtree(profile, ignore_errors=True)
            raise RuntimeError(f"Chromium ({binary}) did not start its DevTools endpoint")
        # Keep draining stderr so Chromium never blocks on a full pipe.
        import threading

        threading.Thread(target=proc.stderr.read, daemon=True).start()
        return cls(proc, port, profile)

    def _targets(self) -> list[dict]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as resp:
            return json.load(resp)

    def open(self, url: str, *, width: int = 1200, height: int = 900, settle: float = 0.5) -> Page:
        target = next(t for t in self._targets() if t.get("type") == "page")
        ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        page = Page(ws)
        for domain in ("Runtime", "Log", "Page", "Network"):
            page.call(f"{domain}.enable")
        page.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        page.call("Page.navigate", {"url": url})
        page.wait_for("Page.loadEventFired")
        time.sleep(settle)  # let charts finish drawing
        return page

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def png_is_blank(data: bytes) -> bool:
    """True when a PNG's decoded scanlines hold (almost) a single colour."""
    import zlib

    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    return len(set(raw[:4_000_000])) < 8
