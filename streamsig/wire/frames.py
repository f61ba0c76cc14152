"""The frame codec: many book events of one symbol in one Kafka message.

Layout (little-endian, 64-byte header, then ``count`` raw ``EVENT_DTYPE`` rows)::

    offset size field
         0    4 magic b"SSGF"
         4    1 schema version (2)
         5    1 symbol length in bytes (1..16)
         6    2 event itemsize (64)
         8   16 symbol, utf-8, NUL padded
        24    8 first sequence (seq of the first event; -1 when count is 0)
        32    4 count
        36    4 tick size in units of 1e-8 (0 = not given); tick = units / 1e8
        40    8 producer timestamp, ns since epoch (non-decreasing within a session)
        48    8 producer session id (epoch): a new one per producer run, larger than the last
        56    8 reserved, zero

The session id tells a restarted producer, whose sequences start again, from
a redelivery of frames already applied. The header length is a multiple of 16, so the events of a ``bytes`` payload
start 8-byte aligned and :func:`decode_frame` returns an aligned, zero-copy,
read-only ``np.frombuffer`` view.

>>> from streamsig.book.events import empty
>>> ev = empty(3); ev["seq"] = [7, 7, 8]
>>> f = decode_frame(encode_frame("BTC-USD", ev, 123, epoch=5))
>>> (f.symbol, f.first_seq, f.count, f.producer_ts_ns, f.epoch, f.events["seq"].tolist())
('BTC-USD', 7, 3, 123, 5, [7, 7, 8])
"""
from __future__ import annotations

import base64
import hashlib
import json
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamsig.book.events import EVENT_DTYPE

MAGIC = b"SSGF"
VERSION = 2
SYMBOL_BYTES = 16
_HEADER = struct.Struct("<4sBBH16sqIIqqq")
HEADER_SIZE = _HEADER.size
assert HEADER_SIZE == 64
ITEMSIZE = EVENT_DTYPE.itemsize
_SEQ = struct.Struct("<q")
_SEQ_OFFSET = EVENT_DTYPE.fields["seq"][1]


class FrameError(ValueError):
    """A payload that is not a valid frame; ``reason`` says why in one line."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded frame. ``events`` is a read-only view into the payload."""

    version: int
    symbol: str
    first_seq: int
    count: int
    producer_ts_ns: int
    events: np.ndarray
    tick_size: float = 0.0
    epoch: int = 0  #: producer session id


def max_events_for(max_bytes: int) -> int:
    """Most events a frame may hold so that it fits in ``max_bytes``.

    >>> max_events_for(1_048_576)
    16383
    """
    return max(0, (max_bytes - HEADER_SIZE) // ITEMSIZE)


def tick_units(tick_size: float) -> int:
    """The header's integer form of a tick size (1e-8 units); exact for decimal ticks.

    >>> tick_units(0.01), tick_units(0.01) / 1e8 == 0.01
    (1000000, True)
    """
    units = round(tick_size * 1e8)
    if tick_size and (units < 1 or units >= 1 << 32 or abs(units / 1e8 - tick_size) > 1e-12 * tick_size):
        raise ValueError(f"tick size {tick_size} is not a multiple of 1e-8 below 42.9")
    return int(units)


def encode_frame(symbol: str, events: np.ndarray, producer_ts_ns: int, tick_size: float = 0.0,
                 epoch: int = 0) -> bytes:
    """One frame holding ``events`` (an ``EVENT_DTYPE`` array, possibly empty) from session ``epoch``."""
    sym = symbol.encode("utf-8")
    if not 1 <= len(sym) <= SYMBOL_BYTES:
        raise ValueError(f"symbol must be 1..{SYMBOL_BYTES} utf-8 bytes, got {len(sym)}: {symbol!r}")
    if events.dtype != EVENT_DTYPE:
        raise ValueError(f"events must have EVENT_DTYPE, got {events.dtype}")
    if events.ndim != 1:
        raise ValueError(f"events must be 1-D, got shape {events.shape}")
    count = len(events)
    first_seq = int(events["seq"][0]) if count else -1
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    header = _HEADER.pack(MAGIC, VERSION, len(sym), ITEMSIZE, sym, first_seq, count, tick_units(tick_size),
                          producer_ts_ns, epoch, 0)
    return b"".join((header, np.ascontiguousarray(events).data))


def decode_frame(data: bytes | bytearray | memoryview) -> Frame:
    """Parse a frame without copying its events; raise :class:`FrameError` if invalid."""
    n = len(data)
    if n < HEADER_SIZE:
        raise FrameError(f"short buffer: {n} bytes, a frame header needs {HEADER_SIZE}")
    magic, version, sym_len, itemsize, sym, first_seq, count, tick, ts, epoch, spare = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise FrameError(f"bad magic {bytes(magic)!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise FrameError(f"unknown frame version {version}, this build reads {VERSION}")
    if itemsize != ITEMSIZE:
        raise FrameError(f"event itemsize {itemsize}, expected {ITEMSIZE}")
    if not 1 <= sym_len <= SYMBOL_BYTES:
        raise FrameError(f"symbol length {sym_len} outside 1..{SYMBOL_BYTES}")
    if any(sym[sym_len:]):
        raise FrameError("symbol padding is not NUL")
    if epoch < 0 or spare:
        raise FrameError(f"bad session fields: epoch {epoch}, reserved {spare}")
    try:
        symbol = bytes(sym[:sym_len]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError(f"symbol is not utf-8: {bytes(sym[:sym_len])!r}") from exc
    expected = HEADER_SIZE + count * ITEMSIZE
    if n != expected:
        raise FrameError(f"length mismatch: header says {count} events ({expected} bytes), got {n} bytes")
    if count:
        (seq0,) = _SEQ.unpack_from(data, HEADER_SIZE + _SEQ_OFFSET)
        if seq0 != first_seq:
            raise FrameError(f"first_seq {first_seq} != seq of first event {seq0}")
    events = np.frombuffer(data, dtype=EVENT_DTYPE, count=count, offset=HEADER_SIZE)
    if events.flags.writeable:
        events.flags.writeable = False
    return Frame(VERSION, symbol, first_seq, count, ts, events, tick / 1e8, epoch)


def peek_symbol(data: bytes | bytearray | memoryview) -> str:
    """The symbol of a frame, reading only its header."""
    if len(data) < HEADER_SIZE or bytes(data[:4]) != MAGIC:
        raise FrameError("not a frame header")
    sym_len = data[5]
    if not 1 <= sym_len <= SYMBOL_BYTES:
        raise FrameError(f"symbol length {sym_len} outside 1..{SYMBOL_BYTES}")
    return bytes(data[8 : 8 + sym_len]).decode("utf-8", errors="replace")


RAW_KEEP_BYTES = 64 * 1024  #: most bytes of a rejected message a dead letter carries


def dead_letter_record(
    symbol: str | None,
    reason: str,
    seq: int | None,
    detail: str | Mapping[str, Any] | None,
    raw: bytes | None,
    ts_ns: int | None = None,
    keep_bytes: int = RAW_KEEP_BYTES,
) -> bytes:
    """A JSON dead-letter record; ``raw`` travels base64-encoded, cut to ``keep_bytes``.

    ``raw_len`` and ``raw_sha256`` describe the whole message, so a record
    stays far below any request limit and still identifies what was rejected.

    >>> rec = dead_letter_record("X", "bad magic", None, "from p0@12", b"\\x00\\xff")
    >>> parse_dead_letter(rec)["raw"]
    b'\\x00\\xff'
    >>> big = parse_dead_letter(dead_letter_record("X", "BAD_FRAME", None, None, bytes(10_000), keep_bytes=16))
    >>> (len(big["raw"]), big["raw_len"], big["raw_truncated"], big["raw_sha256"][:8])
    (16, 10000, True, '95b532cc')
    """
    body: dict[str, Any] = {
        "v": 1,
        "symbol": symbol,
        "reason": reason,
        "seq": seq,
        "detail": detail,
        "raw_len": None if raw is None else len(raw),
        "raw_b64": None if raw is None else base64.b64encode(bytes(raw[:keep_bytes])).decode("ascii"),
    }
    if raw is not None:
        body["raw_sha256"] = hashlib.sha256(raw).hexdigest()
        body["raw_truncated"] = len(raw) > keep_bytes
    if ts_ns is not None:
        body["ts_ns"] = ts_ns
    return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")


def parse_dead_letter(data: bytes) -> dict[str, Any]:
    """Read a dead-letter record back; adds ``raw`` (bytes or None)."""
    body: dict[str, Any] = json.loads(data)
    b64 = body.get("raw_b64")
    body["raw"] = None if b64 is None else base64.b64decode(b64)
    return body


class Framer:
    """Accumulate one symbol's events and emit frames bounded by count or by age.

    A frame is emitted when ``max_events`` are pending, or when the oldest
    pending event has waited ``max_delay_ns`` (checked in :meth:`add` and
    :meth:`poll`; call :meth:`poll` by :attr:`deadline_ns` when input is idle).
    ``max_delay_ns=None`` bounds by count only; ``0`` emits on every call.
    ``clock`` (monotonic) drives the delay, ``wall_clock`` stamps frames (never
    backwards); ``epoch`` is the producer session id written in every frame.

    >>> from streamsig.book.events import empty
    >>> fr = Framer("X", max_events=2)
    >>> [decode_frame(f).count for f in fr.add(empty(5))], fr.pending
    ([2, 2], 1)
    >>> decode_frame(fr.flush()).count, fr.flush()
    (1, None)
    """

    def __init__(
        self,
        symbol: str,
        max_events: int = 500,
        max_delay_ns: int | None = 5_000_000,
        *,
        tick_size: float = 0.0,
        epoch: int = 0,
        clock: Callable[[], int] = time.monotonic_ns,
        wall_clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {max_events}")
        if max_delay_ns is not None and max_delay_ns < 0:
            raise ValueError(f"max_delay_ns must be >= 0 or None, got {max_delay_ns}")
        encode_frame(symbol, np.empty(0, EVENT_DTYPE), 0)  # validates the symbol
        self.symbol = symbol
        self.tick_size = tick_size
        self.epoch = epoch
        tick_units(tick_size)  # validates it
        self.max_events = max_events
        self.max_delay_ns = max_delay_ns
        self._clock = clock
        self._wall = wall_clock
        self._buf = np.empty(max_events, dtype=EVENT_DTYPE)
        self._n = 0
        self._since: int | None = None  # clock value when the oldest pending event arrived
        self._stamp = 0  # last producer timestamp: stamps never go backwards within a session

    @property
    def pending(self) -> int:
        """Events waiting for the next frame."""
        return self._n

    @property
    def deadline_ns(self) -> int | None:
        """Clock value at which pending events are due, or None."""
        if self._since is None or self.max_delay_ns is None:
            return None
        return self._since + self.max_delay_ns

    def add(self, events: np.ndarray, now_ns: int | None = None) -> list[bytes]:
        """Append events; return the frames that became due (possibly none)."""
        if events.dtype != EVENT_DTYPE:
            raise ValueError(f"events must have EVENT_DTYPE, got {events.dtype}")
        now = self._clock() if now_ns is None else now_ns
        out: list[bytes] = []
        i, n = 0, len(events)
        while i < n:
            if self._since is None:
                self._since = now
            take = min(self.max_events - self._n, n - i)
            self._buf[self._n : self._n + take] = events[i : i + take]
            self._n += take
            i += take
            if self._n == self.max_events:
                out.append(self._emit())
        frame = self.poll(now)
        if frame is not None:
            out.append(frame)
        return out

    def poll(self, now_ns: int | None = None) -> bytes | None:
        """A frame if the oldest pending event is at least ``max_delay_ns`` old."""
        deadline = self.deadline_ns
        if deadline is None:
            return None
        now = self._clock() if now_ns is None else now_ns
        return self._emit() if now >= deadline else None

    def flush(self) -> bytes | None:
        """A frame of everything pending, or None when nothing is."""
        return self._emit() if self._n else None

    def _emit(self) -> bytes:
        self._stamp = max(self._stamp, self._wall())
        frame = encode_frame(self.symbol, self._buf[: self._n], self._stamp, self.tick_size, self.epoch)
        self._n = 0
        self._since = None
        return frame
