"""Signal frames: one symbol's signal records for the book frames processed together.

The worker takes the frames waiting on a partition together and answers each
symbol's with one signal frame (one book frame when there is no backlog);
:func:`split_signals` cuts a long answer into messages under a size limit.

Layout (little-endian): a 104-byte header, then ``count`` raw ``SIGNAL_DTYPE`` rows::

    offset size field
         0    4 magic b"SSGS"
         4    1 schema version (4: the header carries the producer session id;
               3, written before it, is read with epoch 0; others are refused)
         5    1 symbol length (1..16)
         6    1 model id length (0..32)
         7    1 reserved
         8   16 symbol, utf-8, NUL padded
        24   32 model id, utf-8, NUL padded
        56    8 producer timestamp of the earliest book frame answered, ns since epoch
        64    8 worker published timestamp (signals handed to the producer), ns since epoch
        72    8 last sequence the worker applied (answers every book frame up to it)
        80    4 count
        84    8 worker received timestamp (the book frames taken from the stream), ns
              since epoch
        92    4 reserved, zero
        96    8 producer session id (epoch) of the book frames answered (not in version 3,
              whose header ends at 96)

The three stamps let every later hop split its latency by stage (see
``docs/latency.md``).

Every feature row gets a record (sequence, exchange time, class probabilities,
target position, mid, best bid/ask price and size), so a consumer can join
signals to the book by sequence.

>>> import numpy as np
>>> rec = np.zeros(2, SIGNAL_DTYPE); rec["seq"] = [5, 6]; rec["target"] = [0.0, 1.0]
>>> f = decode_signals(encode_signals("BTC", "lgbm-1", rec, 10, 20, 6, worker_received_ns=15))
>>> (f.symbol, f.model_id, f.last_seq, f.records["target"].tolist())
('BTC', 'lgbm-1', 6, [0.0, 1.0])
>>> (f.producer_ts_ns, f.worker_received_ns, f.worker_ts_ns)
(10, 15, 20)
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamsig.book.records import SIGNAL_DTYPE
from streamsig.wire.frames import FrameError

MAGIC = b"SSGS"
VERSION = 4
_HEADER = struct.Struct("<4sBBBB16s32sqqqIqIq")
HEADER_SIZE = _HEADER.size
assert HEADER_SIZE == 104
_HEADER_V3 = struct.Struct("<4sBBBB16s32sqqqIqI")  #: version 3: the same fields without the epoch
assert _HEADER_V3.size == 96


@dataclass(frozen=True, slots=True)
class SignalFrame:
    """A decoded signal frame; ``records`` is a read-only view of the payload."""

    symbol: str
    model_id: str
    producer_ts_ns: int
    worker_ts_ns: int
    last_seq: int
    records: np.ndarray
    worker_received_ns: int = 0  #: when the worker took the book frames from the stream (0: unknown)
    epoch: int = 0  #: producer session id of the book frames answered


def encode_signals(symbol: str, model_id: str, records: np.ndarray, producer_ts_ns: int,
                   worker_ts_ns: int, last_seq: int, epoch: int = 0, *, worker_received_ns: int = 0) -> bytes:
    """Encode one symbol's signal records (``SIGNAL_DTYPE``) answering session ``epoch``.

    ``worker_ts_ns`` is the published stamp.
    """
    sym, mid = symbol.encode(), model_id.encode()[:32]
    if not 1 <= len(sym) <= 16:
        raise ValueError(f"symbol must be 1..16 utf-8 bytes: {symbol!r}")
    head = _HEADER.pack(MAGIC, VERSION, len(sym), len(mid), 0, sym, mid, producer_ts_ns, worker_ts_ns,
                        last_seq, len(records), worker_received_ns, 0, epoch)
    return head + np.ascontiguousarray(records, SIGNAL_DTYPE).tobytes()


def decode_signals(data: bytes) -> SignalFrame:
    """Parse a signal frame (version 4, or 3 with epoch 0); raise :class:`FrameError` with a reason if invalid.

    >>> v3 = _HEADER_V3.pack(MAGIC, 3, 1, 1, 0, b"S", b"m", 10, 20, 7, 0, 15, 0)
    >>> f = decode_signals(v3)
    >>> (f.symbol, f.last_seq, f.worker_received_ns, f.epoch, len(f.records))
    ('S', 7, 15, 0, 0)
    """
    ver = data[4] if len(data) > 4 else None
    head = _HEADER_V3 if ver == 3 else _HEADER
    if len(data) < head.size:
        raise FrameError(f"short signal frame: {len(data)} bytes")
    fields = head.unpack_from(data, 0)
    magic, ver, ls, lm, res, sym, mid, pts, wts, last, count, rts, res2 = fields[:13]
    epoch = fields[13] if ver == VERSION else 0
    if magic != MAGIC or ver not in (3, VERSION):
        raise FrameError(f"not a signal frame (magic {magic!r}, version {ver})")
    if res or res2:
        raise FrameError(f"signal frame version {ver} has non-zero reserved bytes")
    if len(data) != head.size + count * SIGNAL_DTYPE.itemsize:
        raise FrameError(f"signal frame length {len(data)} does not match count {count}")
    if not 1 <= ls <= 16 or lm > 32:
        raise FrameError(f"signal frame symbol/model length {ls}/{lm} out of range")
    rec = np.frombuffer(data, SIGNAL_DTYPE, count, head.size)
    try:
        return SignalFrame(sym[:ls].decode(), mid[:lm].decode(), pts, wts, last, rec, rts, epoch)
    except UnicodeDecodeError as exc:
        raise FrameError("signal frame symbol or model id is not utf-8") from exc


def max_signals_for(max_bytes: int) -> int:
    """Most records one signal message may hold to stay within ``max_bytes``.

    >>> max_signals_for(1_000_000)
    11362
    """
    return max(1, (max_bytes - HEADER_SIZE) // SIGNAL_DTYPE.itemsize)


def split_signals(symbol: str, model_id: str, records: np.ndarray, producer_ts_ns: int, worker_ts_ns: int,
                  last_seq: int, epoch: int = 0, max_bytes: int = 1_000_000, *,
                  worker_received_ns: int = 0) -> list[bytes]:
    """``records`` as signal messages of at most ``max_bytes`` each, in sequence order.

    Every message but the last answers up to its own last record; the last
    one answers ``last_seq``, so a consumer never waits on a sequence that a
    later part of the same answer still holds.

    >>> rec = np.zeros(5, SIGNAL_DTYPE); rec["seq"] = [1, 2, 3, 4, 5]
    >>> parts = [decode_signals(m) for m in split_signals("S", "m", rec, 0, 0, 9, max_bytes=HEADER_SIZE + 2 * 88)]
    >>> [(p.records["seq"].tolist(), p.last_seq) for p in parts]
    [([1, 2], 2), ([3, 4], 4), ([5], 9)]
    """
    per = max_signals_for(max_bytes)
    out = []
    for i in range(0, max(len(records), 1), per):
        part = records[i:i + per]
        last = last_seq if i + per >= len(records) else int(part["seq"][-1])
        out.append(encode_signals(symbol, model_id, part, producer_ts_ns, worker_ts_ns, last, epoch,
                                  worker_received_ns=worker_received_ns))
    return out


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 6)


def signal_dicts(frame: SignalFrame, changes_only: bool = False, last_target: float | None = None
                 ) -> list[dict[str, Any]]:
    """JSON-ready dicts of a frame's records (optionally only where the target changed)."""
    out = []
    prev = last_target
    for r in frame.records.tolist():
        seq, ts, pd_, pf, pu, tgt = r[:6]
        if changes_only and prev is not None and tgt == prev:
            continue
        prev = tgt
        out.append({"type": "signal", "symbol": frame.symbol, "model": frame.model_id, "seq": seq,
                    "exch_ts_ns": ts, "producer_ts_ns": frame.producer_ts_ns,
                    "worker_received_ns": frame.worker_received_ns, "worker_ts_ns": frame.worker_ts_ns,
                    "p_down": _num(pd_), "p_flat": _num(pf), "p_up": _num(pu), "target": tgt})
    return out


def to_json(obj: dict[str, Any]) -> str:
    """Compact JSON (the websocket and dead-letter edge)."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)
