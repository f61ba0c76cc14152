"""The live page: an HTTP server for the static files in ``streamsig/serve/static`` on its own port.

The page itself opens the websocket of :class:`~streamsig.serve.ws.SignalServer`
(its port comes from ``/config.json``) with the token from its URL
(``?token=...``) or a prompt. The files carry no data and need no token; every
record comes over the authenticated websocket. Nothing is loaded from
elsewhere: the page's script and styles are these files.

>>> PageServer("127.0.0.1", 0, ws_port=8765).url("t 1")
'http://127.0.0.1:0/?token=t+1'
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import urlencode, urlsplit

TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
CSP = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'"


def static_files() -> dict[str, bytes]:
    """The page's files by URL path ("/" is ``index.html``)."""
    root = resources.files("streamsig.serve") / "static"
    files = {"/" + f.name: f.read_bytes() for f in root.iterdir() if f.is_file() and f.name.rpartition(".")[2]
             in {t.lstrip(".") for t in TYPES}}
    files["/"] = files["/index.html"]
    return files


class PageServer:
    """Serves the live page on ``host:port`` (0 picks a free port) from a background thread."""

    def __init__(self, host: str, port: int, ws_port: int) -> None:
        self.host, self.port, self.ws_port = host, port, ws_port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, token: str | None = None, host: str | None = None) -> str:
        """The page's address, with ``token`` in its query if given."""
        query = "?" + urlencode({"token": token}) if token else ""
        return f"http://{host or self.host}:{self.port}/{query}"

    def origins(self) -> list[str]:
        """The browser origins of this page (for the websocket server's Origin check)."""
        hosts = {self.host, "127.0.0.1", "localhost"} if self.host in ("127.0.0.1", "localhost") else {self.host}
        return [f"{scheme}://{h}:{self.port}" for h in sorted(hosts) for scheme in ("http", "https")]

    def start(self) -> "PageServer":
        """Bind and serve in a daemon thread; :attr:`port` is the bound port afterwards."""
        files = static_files()
        config = json.dumps({"ws_port": self.ws_port, "protocol": 2}).encode()

        class Handler(BaseHTTPRequestHandler):
            server_version = "streamsig"

            def do_GET(self) -> None:  # noqa: N802
                path = urlsplit(self.path).path
                if path == "/config.json":
                    self._send(200, "application/json", config)
                elif path in files:
                    self._send(200, TYPES["." + path.rpartition(".")[2]] if "." in path else TYPES[".html"],
                               files[path])
                else:
                    self._send(404, "text/plain; charset=utf-8", b"not found\n")

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Security-Policy", CSP)
                self.send_header("X-Content-Type-Options", "nosniff")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="streamsig-page", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
