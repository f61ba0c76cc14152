"""Replay feeds onto ``book-events``: framed, keyed by symbol, paced, with periodic snapshots.

One task per feed (symbol). Pacing follows the events' exchange timestamps:
at ``speed`` 1 an event goes out when as much wall time has passed since the
start as exchange time since the first event (``speed`` 10 is ten times
faster; ``None`` is as fast as possible). Every ``snapshot_every`` events the
producer inserts a full snapshot of its own copy of the book (CLEAR|SNAPSHOT
events carrying the sequence of the update just closed): a healthy consumer
skips it as already applied, one that lost events resynchronises on it.

With ``requests_topic`` the producer also serves snapshot requests (JSON
records ``{"symbol": ...}`` that a worker sends when a symbol cannot be
restored or saw a gap): the requested symbol gets a snapshot at its next
update boundary instead of waiting for the periodic one.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from streamsig.book import events as E
from streamsig.book.book import Book
from streamsig.book.sources import Feed
from streamsig.wire.frames import Framer
from streamsig.wire.topics import closed

log = logging.getLogger(__name__)

REQUESTS_READY_S = 10.0  #: longest wait for the snapshot-request consumer's partitions before the replay starts


@dataclass
class ProduceStats:
    events: int = 0
    frames: int = 0
    snapshots: int = 0
    requested: int = 0  #: snapshots sent in answer to a request
    per_symbol: dict[str, int] = field(default_factory=dict)
    last_seq: dict[str, int] = field(default_factory=dict)  #: last sequence sent per symbol
    epoch: int = 0  #: the producer session id written in every frame
    resent: int = 0  #: frames sent again after the broker failed to take them


def with_snapshots(ev: np.ndarray, book: Book, every: int, since: int) -> tuple[list[np.ndarray], int, int]:
    """Split ``ev`` at batch ends roughly every ``every`` events and insert book snapshots.

    Returns (pieces, events since the last snapshot, snapshots inserted); ``book``
    is advanced over ``ev``.
    """
    if every <= 0:
        book.apply(ev)
        return [ev], since + len(ev), 0
    pieces: list[np.ndarray] = []
    eob = np.flatnonzero(ev["flags"] & E.EOB)
    start, n_snap = 0, 0
    while True:
        due = start + max(0, every - since)
        k = np.searchsorted(eob, due - 1)
        if k >= len(eob):
            break
        cut = int(eob[k]) + 1
        part = ev[start:cut]
        book.apply(part)
        last = part[-1]
        pieces += [part, book.snapshot_events(int(last["seq"]), int(last["exch_ts"]))]
        n_snap += 1
        since, start = 0, cut
    rest = ev[start:]
    if len(rest):
        book.apply(rest)
        pieces.append(rest)
    return pieces, since + len(rest), n_snap


async def _replay_feed(feed: Feed, send: Callable[[str, bytes], "asyncio.Future"], speed: float | None,
                       frame_size: int, frame_delay_ns: int, snapshot_every: int, t0: float, ts0: int | None,
                       stats: ProduceStats, on_events: Callable[[int], None] | None,
                       stop: asyncio.Event | None, epoch: int = 0, wanted: set[str] | None = None) -> None:
    framer = Framer(feed.symbol, frame_size, frame_delay_ns if speed else None, tick_size=feed.tick_size,
                    epoch=epoch)
    book = Book(capacity=max(4 * feed.levels, 64), tick_size=feed.tick_size)
    since = 0
    for sub in _slices(feed.chunks(), 512 if wanted is not None else 0):
        pieces, since, n_snap = with_snapshots(sub, book, snapshot_every, since)
        stats.snapshots += n_snap
        if wanted and feed.symbol in wanted and len(sub) and sub["flags"][-1] & E.EOB:
            wanted.discard(feed.symbol)
            last = sub[-1]
            pieces.append(book.snapshot_events(int(last["seq"]), int(last["exch_ts"])))
            stats.snapshots += 1
            stats.requested += 1
        for piece in pieces:
            if speed:
                await _paced(piece, framer, send, speed, t0, ts0, stats, stop)
            else:
                for fr in framer.add(piece):
                    await send(feed.symbol, fr)
                    stats.frames += 1
                await asyncio.sleep(0)
            stats.events += len(piece)
            stats.per_symbol[feed.symbol] = stats.per_symbol.get(feed.symbol, 0) + len(piece)
            if len(piece):
                stats.last_seq[feed.symbol] = int(piece["seq"][-1])
            if on_events:
                on_events(len(piece))
            if stop is not None and stop.is_set():
                break
        if stop is not None and stop.is_set():
            break
    last = framer.flush()
    if last is not None:
        await send(feed.symbol, last)
        stats.frames += 1


def _slices(chunks: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """The chunks cut after an update end every ``size`` events or so (0: as they are)."""
    for chunk in chunks:
        if size <= 0 or len(chunk) <= size:
            yield chunk
            continue
        eob = np.flatnonzero(chunk["flags"] & E.EOB)
        start = 0
        while start < len(chunk):
            k = np.searchsorted(eob, start + size - 1)
            cut = int(eob[k]) + 1 if k < len(eob) else len(chunk)
            yield chunk[start:cut]
            start = cut


async def _serve_requests(bootstrap: str, topic: str, symbols: set[str], wanted: set[str],
                          stop: asyncio.Event, ready: asyncio.Event) -> None:
    """Add the symbols named by new records on ``topic`` to ``wanted`` until ``stop`` is set.

    ``ready`` is set once the consumer's position on every partition is fixed, so
    a request sent after the replay starts is never skipped as "before latest".
    """
    import json

    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="latest", fetch_max_wait_ms=50)
    try:
        await c.start()
        t_end = time.monotonic() + REQUESTS_READY_S
        while not c.assignment() and time.monotonic() < t_end:
            await asyncio.sleep(0.05)
        for tp in c.assignment():
            await c.position(tp)
    finally:
        ready.set()  # on failure the replay goes on; the periodic snapshots still heal a symbol
    try:
        while not stop.is_set():
            batch = await c.getmany(timeout_ms=100)
            for msgs in batch.values():
                for m in msgs:
                    try:
                        sym = json.loads(m.value)["symbol"]
                    except (ValueError, KeyError, TypeError):
                        continue
                    if sym in symbols:
                        log.warning("snapshot requested for %s", sym)
                        wanted.add(sym)
    finally:
        await closed(c.stop())


async def _paced(piece: np.ndarray, framer: Framer, send, speed: float, t0: float, ts0: int | None,
                 stats: ProduceStats, stop: asyncio.Event | None) -> None:
    ts = piece["exch_ts"]
    base = int(ts[0]) if ts0 is None else ts0
    due = t0 + (ts - base) / 1e9 / speed
    i, n = 0, len(piece)
    while i < n:
        now = time.monotonic()
        j = int(np.searchsorted(due, now, side="right"))
        if j <= i:
            wait = float(due[i]) - now
            poll = framer.deadline_ns
            if poll is not None:
                wait = min(wait, max(0.0, (poll - time.monotonic_ns()) / 1e9))
            await asyncio.sleep(max(wait, 0.0))
            fr = framer.poll()
            if fr is not None:
                await send(framer.symbol, fr)
                stats.frames += 1
            if stop is not None and stop.is_set():
                return
            continue
        for fr in framer.add(piece[i:j]):
            await send(framer.symbol, fr)
            stats.frames += 1
        i = j


async def produce(feeds: Sequence[Feed], bootstrap: str, topic: str, speed: float | None = None,
                  frame_size: int = 500, frame_delay_ms: float = 5.0, snapshot_every: int = 10_000,
                  on_events: Callable[[int], None] | None = None, stop: asyncio.Event | None = None,
                  stats: ProduceStats | None = None, epoch: int | None = None,
                  requests_topic: str | None = None) -> ProduceStats:
    """Replay ``feeds`` onto ``topic`` (see module doc); returns counts (also filled in ``stats``).

    Every frame carries ``epoch``, this run's producer session id (default: the
    start time in ns, so a later run has a larger one).
    """
    from aiokafka import AIOKafkaProducer

    from aiokafka.errors import KafkaError

    from streamsig.wire.health import Outage, quiet_client_logs

    stats = stats if stats is not None else ProduceStats()
    epoch = time.time_ns() if epoch is None else epoch
    stats.epoch = epoch

    quiet_client_logs()
    outage = Outage("producer", broker=bootstrap)
    prod = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0 if speed else 5, acks=1,
                            max_request_size=4 * 1024 * 1024, enable_idempotence=False,
                            request_timeout_ms=5000, retry_backoff_ms=200)
    while True:  # the broker may not be up yet: wait for it with backoff
        try:
            await prod.start()
            break
        except KafkaError as exc:
            await asyncio.sleep(outage.failed(exc))
    outage.recovered()
    pending: list[tuple[asyncio.Future, str, bytes]] = []

    async def send_now(symbol: str, frame: bytes) -> None:
        """Send one frame, retrying through a broker outage with capped backoff."""
        while True:
            try:
                await prod.send_and_wait(topic, frame, key=symbol.encode())
                outage.recovered()
                return
            except KafkaError as exc:
                await asyncio.sleep(outage.failed(exc))

    async def settle() -> None:
        """Wait for the queued sends; resend, in order, those the broker did not take."""
        batch = list(pending)
        pending.clear()  # other feeds' tasks go on queueing while this one waits
        for fut, symbol, frame in batch:
            try:
                await fut
            except KafkaError as exc:
                stats.resent += 1
                outage.failed(exc)
                await send_now(symbol, frame)
        if batch:
            outage.recovered()

    async def send(symbol: str, frame: bytes) -> None:
        while True:
            try:
                pending.append((await prod.send(topic, frame, key=symbol.encode()), symbol, frame))
                break
            except KafkaError as exc:
                await asyncio.sleep(outage.failed(exc))
        if len(pending) >= 256:
            await settle()

    wanted: set[str] | None = None
    serving: asyncio.Task | None = None
    done = asyncio.Event()
    if requests_topic:
        wanted = set()
        ready = asyncio.Event()
        serving = asyncio.create_task(_serve_requests(bootstrap, requests_topic, {f.symbol for f in feeds},
                                                      wanted, done, ready))
        await ready.wait()
    try:
        ts0 = None
        if speed:
            firsts = [int(next(iter(f.chunks()))["exch_ts"][0]) for f in feeds]
            ts0 = min(firsts)
        t0 = time.monotonic()
        await asyncio.gather(*(_replay_feed(f, send, speed, frame_size, int(frame_delay_ms * 1e6),
                                            snapshot_every, t0, ts0, stats, on_events, stop, epoch, wanted)
                               for f in feeds))
        await settle()
        await prod.flush()
    finally:
        done.set()
        if serving is not None:
            await serving
        await closed(prod.stop())
    return stats
