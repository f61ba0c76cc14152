"""Headless Chromium driven over its DevTools protocol (websocket JSON-RPC), for the live-page test."""
from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio"]


def chromium_path() -> str | None:
    """Debian's chromium, if installed."""
    for p in (shutil.which("chromium"), "/usr/bin/chromium"):
        if p and os.access(p, os.X_OK):
            return p
    return None


class Browser:
    """One headless Chromium with a fresh profile, and its first page target."""

    def __init__(self, binary: str, profile: Path, width: int = 1280, height: int = 720) -> None:
        self.binary, self.profile, self.size = binary, profile, (width, height)
        self.proc: subprocess.Popen | None = None
        self.ws: Any = None
        self._ids = itertools.count(1)

    async def __aenter__(self) -> "Browser":
        import websockets

        self.profile.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [self.binary, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             "--remote-debugging-address=127.0.0.1", f"--window-size={self.size[0]},{self.size[1]}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start: {self.proc.stderr.read().decode()[-1500:]}")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            (page,) = [t for t in json.loads(r.read()) if t["type"] == "page"][:1]
        self.ws = await websockets.connect(page["webSocketDebuggerUrl"], max_size=None)
        await self.call("Page.enable")
        await self.call("Runtime.enable")
        await self.call("Emulation.setDeviceMetricsOverride", width=self.size[0], height=self.size[1],
                        deviceScaleFactor=1, mobile=False)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (events in between are dropped)."""
        cid = next(self._ids)
        await self.ws.send(json.dumps({"id": cid, "method": method, "params": params}))
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if msg.get("id") == cid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def open(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def js(self, expr: str) -> Any:
        """The JSON value of a JavaScript expression in the page."""
        res = await self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expr}: {res['exceptionDetails'].get('text')}")
        return res["result"].get("value")

    async def poll(self, expr: str, timeout_s: float, every_s: float = 0.25) -> Any:
        """Evaluate ``expr`` until it is truthy; return it, or the last value after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        value = None
        while time.monotonic() < deadline:
            try:
                value = await self.js(expr)
            except RuntimeError:
                value = None  # page still loading
            if value:
                return value
            await asyncio.sleep(every_s)
        return value

    async def screenshot(self) -> bytes:
        """A PNG of the viewport."""
        res = await self.call("Page.captureScreenshot", format="png")
        return base64.b64decode(res["data"])


def png_pixels(png: bytes) -> np.ndarray:
    """Decode a PNG to an (h, w, channels) float array in 0..1 (matplotlib's reader)."""
    from matplotlib import image

    return np.asarray(image.imread(io.BytesIO(png), format="png"))
