"""``streamsig demo`` as a subprocess on free ports, for tests that look at it from outside."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from streamsig.live.broker import free_port

ROOT = Path(__file__).resolve().parents[1]


class LiveDemo:
    """Run the demo (embedded broker, synthetic feeds) until the context exits (SIGINT, clean stop)."""

    def __init__(self, cwd: Path, token: str = "t0k", duration_s: float = 90, speed: str = "2",
                 extra: tuple[str, ...] = ()) -> None:
        self.cwd, self.token, self.duration_s, self.speed, self.extra = cwd, token, duration_s, speed, extra
        self.ws_port, self.page_port, self.metrics_port = free_port(), free_port(), free_port()
        self.proc: subprocess.Popen | None = None
        self.out = self.err = ""

    def page_url(self, token: str | None = None) -> str:
        return f"http://127.0.0.1:{self.page_port}/?token={token or self.token}"

    def __enter__(self) -> "LiveDemo":
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamsig.cli", "demo", "--duration", str(self.duration_s), "--speed", self.speed,
             "--ws-port", str(self.ws_port), "--page-port", str(self.page_port),
             "--metrics-port", str(self.metrics_port), "--token", self.token, *self.extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=self.cwd, env=env)
        return self

    def wait_page(self, timeout_s: float = 90) -> None:
        """Until the page server answers (it starts after the worker, trader and websocket server)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.proc.stderr.read()[-2000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.page_port}/config.json", timeout=2).read()
                return
            except OSError:
                time.sleep(0.3)
        raise AssertionError("the demo's page server never came up")

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.out, self.err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.out, self.err = self.proc.communicate()
