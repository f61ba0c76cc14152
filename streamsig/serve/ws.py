"""The websocket signal server: the ``signals`` and ``pnl`` topics, fanned out to clients as JSON.

Protocol (version 2, details in ``docs/observability.md``):

* connect to ``ws://HOST:PORT/?token=TOKEN``; the token is checked before the
  upgrade completes: a missing or unknown token gets HTTP 401, a browser page
  of a foreign origin HTTP 403, and an address with too many failed logins
  HTTP 429;
* the server greets with ``{"type": "hello", "protocol": 2}``;
* ``{"op": "subscribe", "symbols": ["BTCUSDT"] | "*", "all": false}`` and
  ``{"op": "unsubscribe", "symbols": [...] | "*"}`` are acknowledged with
  ``subscribed`` / ``unsubscribed`` and the number of subscriptions held (never
  the list); a bad request gets ``{"type": "error"}``;
* a client holds at most ``max_symbols`` subscriptions, sends messages of at
  most ``max_message_bytes`` (larger ones close the connection with 1009) and
  at most ``rate`` messages per second on average (bursts of ``burst``);
  beyond that it is closed with 1008 ("policy violation");
* ``{"type": "signal", ...}`` carries one signal record: by default only the
  records where the target position changes plus the last record of each
  frame; with ``"all": true`` every record. Its stamps (ns since epoch) follow
  the frame: ``producer_ts_ns``, ``worker_received_ns``, ``worker_ts_ns``
  (published), ``server_ts_ns`` (fetched here) and ``sent_ts_ns`` (written to
  this client). ``{"type": "pnl", ...}`` is the paper trader's P&L record (with
  the mid and microprice it marked at) and ``{"type": "fill", ...}`` one of its fills.

The fan-out never waits for a client: each client has a bounded queue drained
by its own writer task, and a client whose queue is full is closed with code
4408 ("slow consumer") while the others carry on.

>>> SignalServer(None, tokens=["t"]).port
8765
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

import numpy as np

from streamsig.telemetry import WS_CLIENTS, WS_DROPPED, WS_REFUSED, WS_SENT, observe_stage
from streamsig.wire.frames import FrameError
from streamsig.wire.signals import SignalFrame, decode_signals, signal_dicts, to_json
from streamsig.wire.topics import Topics, closed

PROTOCOL = 2
CLOSE_UNAUTHORIZED = 4401  #: protocol 1 closed with this after the upgrade; now the upgrade gets HTTP 401
CLOSE_SLOW_CONSUMER = 4408
CLOSE_POLICY = 1008
ALL_SYMBOLS = "*"
MAX_SYMBOL_CHARS = 64

log = logging.getLogger(__name__)


class _Stamped(str):
    """A signal message's JSON text carrying the stamps its writer completes (still a ``str``)."""

    received_ns: int
    producer_ns: int


@dataclass(eq=False)
class _Client:
    ws: ServerConnection
    queue: asyncio.Queue[tuple[str, int]]  #: (text, producer timestamp of its book frame or 0)
    subs: dict[str, bool] = field(default_factory=dict)  # symbol or "*" -> wants every record
    writer: asyncio.Task[None] | None = None
    dropped: bool = False
    allowance: float = 0.0  # token bucket of the message rate limit
    stamp: float = 0.0

    def wants(self, symbol: str | None) -> bool | None:
        """None: not subscribed; else whether every record (not just changes) is wanted."""
        if symbol is None:
            return True
        mode = self.subs.get(symbol)
        return self.subs.get(ALL_SYMBOLS) if mode is None else mode


def token_from_path(path: str) -> str | None:
    """The ``token`` query parameter of a request path.

    >>> token_from_path("/?token=abc&x=1"), token_from_path("/")
    ('abc', None)
    """
    values = parse_qs(urlsplit(path).query).get("token")
    return values[0] if values else None


def parse_command(raw: str | bytes, subs: dict[str, bool], max_symbols: int = 256) -> dict[str, Any]:
    """Apply one client message to ``subs`` (changed in place); return the reply.

    The reply carries the number of subscriptions held, never the list, so its
    size does not grow with what a client asks for; a client holds at most
    ``max_symbols`` subscriptions.

    >>> subs = {}
    >>> parse_command('{"op": "subscribe", "symbols": ["B", "A"], "all": true}', subs)
    {'type': 'subscribed', 'count': 2, 'all': True}
    >>> parse_command('{"op": "subscribe", "symbols": ["C", "D"]}', subs, max_symbols=3)["error"]
    'at most 3 subscriptions per client'
    >>> parse_command('{"op": "unsubscribe", "symbols": "*"}', subs), subs
    ({'type': 'unsubscribed', 'count': 0}, {})
    >>> parse_command('{"op": "buy"}', subs)["type"]
    'error'
    """
    try:
        msg = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {"type": "error", "error": "message is not JSON"}
    if not isinstance(msg, dict):
        return {"type": "error", "error": "message must be a JSON object"}
    op = msg.get("op")
    if op not in ("subscribe", "unsubscribe"):
        return {"type": "error", "error": "unknown op; use subscribe or unsubscribe"}
    symbols = msg.get("symbols")
    if symbols == ALL_SYMBOLS:
        symbols = [ALL_SYMBOLS]
    if not (isinstance(symbols, list) and symbols
            and all(isinstance(s, str) and 0 < len(s) <= MAX_SYMBOL_CHARS for s in symbols)):
        return {"type": "error", "error": f'symbols must be "*" or a non-empty list of symbol strings '
                                          f'(at most {MAX_SYMBOL_CHARS} characters each)'}
    if op == "subscribe":
        every = msg.get("all", False)
        if not isinstance(every, bool):
            return {"type": "error", "error": "all must be true or false"}
        if len(subs.keys() | set(symbols)) > max_symbols:
            return {"type": "error", "error": f"at most {max_symbols} subscriptions per client"}
        for s in symbols:
            subs[s] = every
        return {"type": "subscribed", "count": len(subs), "all": every}
    if ALL_SYMBOLS in symbols:
        subs.clear()
    for s in symbols:
        subs.pop(s, None)
    return {"type": "unsubscribed", "count": len(subs)}


class LoginLimiter:
    """Failed logins per client address: at most ``failures`` within ``window_s``, then refuse.

    >>> lim = LoginLimiter(failures=2, window_s=10.0)
    >>> lim.fail("1.2.3.4", now=0.0); lim.fail("1.2.3.4", now=1.0)
    >>> lim.blocked("1.2.3.4", now=2.0), lim.blocked("1.2.3.4", now=11.5), lim.blocked("5.6.7.8", now=2.0)
    (True, False, False)
    """

    def __init__(self, failures: int = 10, window_s: float = 60.0, max_addresses: int = 10_000) -> None:
        self.failures, self.window_s, self.max_addresses = failures, window_s, max_addresses
        self._seen: dict[str, deque[float]] = {}

    def _recent(self, addr: str, now: float) -> deque[float] | None:
        q = self._seen.get(addr)
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if q is not None and not q:
            del self._seen[addr]
            return None
        return q

    def blocked(self, addr: str, now: float | None = None) -> bool:
        """True while ``addr`` has used up its failed logins."""
        q = self._recent(addr, time.monotonic() if now is None else now)
        return q is not None and len(q) >= self.failures

    def fail(self, addr: str, now: float | None = None) -> None:
        """Count one failed login of ``addr``."""
        now = time.monotonic() if now is None else now
        if addr not in self._seen and len(self._seen) >= self.max_addresses:
            for old in list(self._seen)[: self.max_addresses // 10 or 1]:  # forget the oldest addresses
                del self._seen[old]
        self._seen.setdefault(addr, deque(maxlen=self.failures)).append(now)


class SignalServer:
    """Websocket fan-out of the ``signals``, ``pnl`` and ``fills`` topics (see the module doc).

    ``bootstrap`` None runs without Kafka (messages come only from
    :meth:`broadcast`). ``port`` 0 picks a free port (read :attr:`port` after
    :meth:`start`). Without ``from_beginning`` the server starts at the end of
    each partition as it is when :meth:`start` returns. Missing topics are
    created with ``partitions`` partitions.
    """

    def __init__(self, bootstrap: str | None, topics: Topics | None = None, host: str = "127.0.0.1",
                 port: int = 8765, tokens: Iterable[str] = (), queue_size: int = 1000, *,
                 from_beginning: bool = False, partitions: int = 4, close_timeout_s: float = 5.0,
                 fetch_max_wait_ms: int = 20, origins: Iterable[str] = (), max_symbols: int = 256,
                 max_message_bytes: int = 4096, rate: float = 20.0, burst: int = 40,
                 login_failures: int = 10, login_window_s: float = 60.0) -> None:
        self.tokens = [t for t in tokens if t]
        if not self.tokens:
            raise ValueError("at least one non-empty token is required")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.bootstrap, self.topics = bootstrap, topics or Topics()
        self.host, self.port, self.queue_size = host, port, queue_size
        self.from_beginning, self.partitions = from_beginning, partitions
        self.close_timeout_s, self.fetch_max_wait_ms = close_timeout_s, fetch_max_wait_ms
        self._clients: set[_Client] = set()
        self._last_target: dict[tuple[str, str], float] = {}
        self._server: Server | None = None
        self._consumer: Any = None
        self._consume_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        #: origins a browser page may connect from besides the server's own (``http://HOST:PORT``)
        self.origins = frozenset(o.rstrip("/") for o in origins)
        for reason in ("token", "origin", "rate_limited", "message_rate"):
            WS_REFUSED.labels(reason)  # every reason's series exists (at 0) from the start
        self.max_symbols, self.max_message_bytes = max_symbols, max_message_bytes
        self.rate, self.burst = rate, burst
        self.logins = LoginLimiter(login_failures, login_window_s)

    @property
    def n_clients(self) -> int:
        """Authenticated clients currently receiving messages."""
        return len(self._clients)

    # ---- lifecycle ------------------------------------------------------------------------
    async def start(self) -> "SignalServer":
        """Position the Kafka consumer (if any), then accept websocket connections."""
        if self.bootstrap:
            await self._start_consumer()
        try:
            self._server = await serve(self._handle, self.host, self.port, compression=None,
                                       max_size=self.max_message_bytes, close_timeout=self.close_timeout_s,
                                       process_request=self.check_request)
        except BaseException:
            await self._stop_consumer()
            raise
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        """Stop consuming, close every connection (code 1001) and the listening socket."""
        await self._stop_consumer()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def __aenter__(self) -> "SignalServer":
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    # ---- fan-out --------------------------------------------------------------------------
    def broadcast(self, msg: dict[str, Any], detail: bool = False) -> int:
        """Queue ``msg`` for every client subscribed to its ``symbol``; return how many got it.

        A message without ``symbol`` goes to every client. ``detail`` messages go
        only to clients that subscribed with ``"all": true``. Never waits.
        """
        return self._fan_out(msg, detail)

    def _fan_out(self, msg: dict[str, Any], detail: bool, stamps: tuple[int, int] | None = None) -> int:
        symbol = msg.get("symbol")
        text: str | None = None
        sent = 0
        for c in list(self._clients):
            mode = c.wants(symbol)
            if mode is None or (detail and not mode):
                continue
            if text is None:
                try:
                    text = to_json(msg)
                except (TypeError, ValueError) as exc:
                    log.warning("message not sent (not JSON-safe: %s): %r", exc, msg)
                    return 0
                if stamps is not None:
                    text = _Stamped(text)
                    text.received_ns, text.producer_ns = stamps
            sent += self._offer(c, text)
        return sent

    def publish_signals(self, frame: SignalFrame, received_ns: int | None = None) -> int:
        """Broadcast a signal frame's records (changes and the last record to everyone); return deliveries."""
        key = (frame.symbol, frame.model_id)
        n = len(frame.records)
        if not n:
            return 0
        modes = {c.wants(frame.symbol) for c in self._clients}
        modes.discard(None)
        target = frame.records["target"]
        prev = self._last_target.get(key)
        self._last_target[key] = float(target[-1])
        if not modes:  # nobody listens: only remember where the target stands
            return 0
        changed = np.empty(n, bool)  # the key records: target changes, and the frame's last record
        changed[0] = prev is None or target[0] != prev
        changed[1:] = target[1:] != target[:-1]
        changed[-1] = True
        rows = np.arange(n) if True in modes else np.flatnonzero(changed)  # JSON only for what is sent
        recs = signal_dicts(replace(frame, records=frame.records[rows]))
        now = time.time_ns() if received_ns is None else received_ns
        stamps = (now, frame.producer_ts_ns)
        sent = 0
        for i, rec in zip(rows.tolist(), recs):
            rec["server_ts_ns"] = now
            sent += self._fan_out(rec, not changed[i], stamps)
        return sent

    def publish_pnl(self, rec: dict[str, Any]) -> int:
        """Broadcast one P&L record from the trader; return deliveries."""
        return self.broadcast({**rec, "type": "pnl"})

    def publish_fill(self, rec: dict[str, Any]) -> int:
        """Broadcast one paper fill from the trader; return deliveries."""
        return self.broadcast({**rec, "type": "fill"})

    def _offer(self, c: _Client, text: str) -> bool:
        if c.dropped:
            return False
        try:
            c.queue.put_nowait(text)
        except asyncio.QueueFull:
            self._drop(c)
            return False
        return True

    def _drop(self, c: _Client) -> None:
        c.dropped = True
        self._clients.discard(c)
        WS_DROPPED.inc()
        if c.writer is not None:
            c.writer.cancel()
        log.warning("dropping slow websocket client %s (queue of %d full)", c.ws.remote_address, self.queue_size)
        self._spawn(self._close(c.ws, CLOSE_SLOW_CONSUMER, "slow consumer"))

    async def _close(self, ws: ServerConnection, code: int, reason: str) -> None:
        # close() first drains what is already buffered, which a stalled client never reads
        try:
            await asyncio.wait_for(ws.close(code, reason), self.close_timeout_s)
        except asyncio.TimeoutError:
            ws.transport.abort()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---- one connection -------------------------------------------------------------------
    def _authorized(self, path: str) -> bool:
        token = token_from_path(path) or ""
        return any(hmac.compare_digest(token.encode(), t.encode()) for t in self.tokens)

    def _origin_ok(self, origin: str, host: str | None) -> bool:
        origin = origin.rstrip("/")
        own = {f"http://{host}", f"https://{host}"} if host else set()
        return origin in own or origin in self.origins

    def allow_origins(self, origins: Iterable[str]) -> None:
        """Also accept browser pages from ``origins`` (e.g. the live page on its own port)."""
        self.origins = self.origins | {o.rstrip("/") for o in origins}

    def check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse a websocket upgrade before it completes: rate-limited address, foreign origin, bad token.

        Requests that are not websocket upgrades are left alone. Neither the
        token nor the query string is ever logged.
        """
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return None
        addr = str(connection.remote_address[0]) if connection.remote_address else "?"
        if self.logins.blocked(addr):
            WS_REFUSED.labels("rate_limited").inc()
            return connection.respond(HTTPStatus.TOO_MANY_REQUESTS, "too many failed logins; try later\n")
        origin = request.headers.get("Origin")
        if origin is not None and not self._origin_ok(origin, request.headers.get("Host")):
            WS_REFUSED.labels("origin").inc()
            log.warning("refused websocket from %s: origin %.100r not allowed", addr, origin)
            return connection.respond(HTTPStatus.FORBIDDEN, "origin not allowed\n")
        if not self._authorized(request.path):
            self.logins.fail(addr)
            WS_REFUSED.labels("token").inc()
            log.warning("refused websocket from %s: missing or wrong token", addr)
            return connection.respond(HTTPStatus.UNAUTHORIZED, "unauthorized: missing or wrong token\n")
        return None

    def _within_rate(self, c: _Client) -> bool:
        now = time.monotonic()
        c.allowance = min(float(self.burst), c.allowance + (now - c.stamp) * self.rate)
        c.stamp = now
        if c.allowance < 1.0:
            return False
        c.allowance -= 1.0
        return True

    async def _handle(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ""
        if not self._authorized(path):  # check_request refused it already; kept for direct callers
            await ws.close(CLOSE_UNAUTHORIZED, "unauthorized: missing or wrong token")
            return
        c = _Client(ws, asyncio.Queue(self.queue_size), allowance=float(self.burst), stamp=time.monotonic())
        c.writer = asyncio.create_task(self._write(c))
        self._offer(c, to_json({"type": "hello", "protocol": PROTOCOL}))
        self._clients.add(c)
        WS_CLIENTS.inc()
        try:
            async for raw in ws:
                if not self._within_rate(c):
                    WS_REFUSED.labels("message_rate").inc()
                    log.warning("closing websocket client %s: over %g messages/s", ws.remote_address, self.rate)
                    await ws.close(CLOSE_POLICY, "message rate limit")
                    break
                if not self._offer(c, to_json(parse_command(raw, c.subs, self.max_symbols))):
                    break
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(c)
            WS_CLIENTS.dec()
            c.writer.cancel()
            if c.dropped:  # let the 4408 close finish before the library closes with 1000
                await ws.wait_closed()

    async def _write(self, c: _Client) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                text = await c.queue.get()
                if type(text) is _Stamped:  # a signal: stamp the moment it is written
                    now = time.time_ns()
                    await c.ws.send(f'{text[:-1]},"sent_ts_ns":{now}}}')
                    observe_stage("server", text.received_ns, now)
                    observe_stage("end_to_end", text.producer_ns, now)
                else:
                    await c.ws.send(text)
                WS_SENT.inc()

    # ---- Kafka ----------------------------------------------------------------------------
    async def _start_consumer(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        from streamsig.wire.topics import ensure_topics

        assert self.bootstrap is not None
        counts = await ensure_topics(self.bootstrap, (self.topics.signals, self.topics.pnl, self.topics.fills),
                                     self.partitions)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest" if self.from_beginning else "latest",
                                    fetch_max_wait_ms=self.fetch_max_wait_ms)
        await consumer.start()
        try:
            tps = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
            consumer.assign(tps)
            if self.from_beginning:
                await consumer.seek_to_beginning(*tps)
            else:
                await consumer.seek_to_end(*tps)
            for tp in tps:  # resolve every position now: "latest" means "when start() returned"
                await consumer.position(tp)
        except BaseException:
            await closed(consumer.stop())
            raise
        self._consumer = consumer
        self._consume_task = asyncio.create_task(self._consume())

    async def _stop_consumer(self) -> None:
        task, self._consume_task = self._consume_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await closed(consumer.stop())

    async def _consume(self) -> None:
        from streamsig.wire.health import BrokerWatch, Outage, quiet_client_logs

        quiet_client_logs()
        assert self.bootstrap is not None
        # the consumer itself reconnects quietly; the watch reports outages and lost topics
        self.watch = BrokerWatch(self.bootstrap, (self.topics.signals, self.topics.pnl), self.partitions,
                                 "server", self.topics.prefix)
        watching = asyncio.create_task(self.watch.run())
        outage = Outage("server-fetch", broker=self.bootstrap)
        try:
            while True:
                try:
                    batch = await self._consumer.getmany(timeout_ms=500)
                except Exception as exc:  # noqa: BLE001 - keep serving; aiokafka reconnects on the next call
                    await asyncio.sleep(outage.failed(exc))  # logged once per outage, retried with backoff
                    continue
                outage.recovered()
                now = time.time_ns()
                for msgs in batch.values():
                    for m in msgs:
                        self.on_record(m.topic, m.value, now)
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)

    def on_record(self, topic: str, value: bytes, received_ns: int | None = None) -> int:
        """Fan out one Kafka record of the ``signals``, ``pnl`` or ``fills`` topic; return deliveries."""
        try:
            if topic == self.topics.signals:
                frame = decode_signals(value)
                observe_stage("worker_to_server", frame.worker_ts_ns, received_ns or time.time_ns())
                return self.publish_signals(frame, received_ns)
            rec = json.loads(value)
            if not isinstance(rec, dict):
                raise ValueError("record is not a JSON object")
            return self.publish_fill(rec) if topic == self.topics.fills else self.publish_pnl(rec)
        except (FrameError, ValueError, UnicodeDecodeError) as exc:
            log.warning("skipping a bad record on %s: %s", topic, exc)
            return 0


async def run_server(bootstrap: str | None, topics: Topics, host: str, port: int, tokens: Iterable[str],
                     queue_size: int = 1000, *, from_beginning: bool = False, partitions: int = 4,
                     stop: asyncio.Event | None = None,
                     on_ready: Callable[[SignalServer], None] | None = None, **limits: Any) -> None:
    """Run a :class:`SignalServer` until ``stop`` is set (or the task is cancelled).

    ``on_ready`` is called once the server is consuming and accepting connections;
    ``limits`` (origins, max_symbols, rate...) go to the server.
    """
    stop = stop or asyncio.Event()
    async with SignalServer(bootstrap, topics, host, port, tokens, queue_size, from_beginning=from_beginning,
                            partitions=partitions, **limits) as server:
        if on_ready is not None:
            on_ready(server)
        await stop.wait()
