"""What the worker and the trader trust of a book frame before any state moves.

Sequences are trusted within bounds. Per symbol a :class:`SequenceGuard` holds
the producer session (epoch) it follows, the last closed sequence it accepted
and the newest producer timestamp it accepted. For each frame it answers:

- ``NEW_SESSION``: the epoch is newer and the frame starts at or below the
  accepted sequence, so the producer restarted and numbers its events again;
  the caller starts the symbol's book and features afresh instead of
  skipping the new session's events as duplicates. A newer session that
  continues the numbering is simply accepted.
- a rejection with a reason (dead letter, nothing moves):

  - ``SEQUENCE_JUMP``: the frame starts more than ``window`` above the
    accepted sequence (a forged or corrupt sequence would otherwise make
    every later event look like a duplicate), or its session id lies more
    than 10 minutes in the future (it would outrank every real session);
  - ``SEQUENCE``: the frame starts at or below the accepted sequence yet was
    produced after the frame that got there, so it is not a redelivery; or it
    belongs to an earlier session and is newer than what was accepted.
- ``ACCEPT`` otherwise. A redelivery (a frame at or below the accepted
  sequence, produced no later than the newest frame accepted) is accepted
  here and dropped by sequence downstream, as before.

Producer timestamps never go backwards within a session (the framer stamps
them so), which is what tells a redelivery from a step back.

:func:`check_symbol` and :func:`check_values` are the other gates: printable
symbol names, and prices, ticks and counts in range.

>>> from streamsig.book import events as E
>>> from streamsig.wire.frames import decode_frame, encode_frame
>>> ev = E.empty(2); ev["seq"] = [5, 6]; ev["flags"] = E.EOB
>>> g = SequenceGuard(window=100)
>>> g.check(decode_frame(encode_frame("S", ev, 10, 0.01, epoch=1)))
(<Verdict.ACCEPT: 0>, None, '')
>>> ev["seq"] = [10**15, 10**15]
>>> g.check(decode_frame(encode_frame("S", ev, 11, 0.01, epoch=1)))[:2]
(<Verdict.REJECT: 2>, <Reason.SEQUENCE_JUMP: 11>)
>>> ev["seq"] = [0, 1]
>>> g.check(decode_frame(encode_frame("S", ev, 12, 0.01, epoch=2)))[0]
<Verdict.NEW_SESSION: 1>
>>> g.check(decode_frame(encode_frame("S", ev, 13, 0.01, epoch=2)))[:2]   # a step back, not a redelivery
(<Verdict.REJECT: 2>, <Reason.SEQUENCE: 4>)
"""
from __future__ import annotations

import enum
import math
import time
from collections.abc import Collection
from typing import Any

import numpy as np

from streamsig.book import events as E
from streamsig.book.events import Reason
from streamsig.wire.frames import Frame

#: largest |price| in ticks: beyond 2**53 ticks a price is no longer exact as float64
MAX_PRICE_TICKS = 1 << 53
#: largest |price| in quote units (price ticks times tick size)
MAX_PRICE_QUOTE = 1e12
DEFAULT_SEQ_WINDOW = 1_000_000
#: a session id is its producer's start time in ns: one further ahead of this clock is forged or broken
MAX_EPOCH_AHEAD_NS = 600 * 10**9
DEFAULT_MAX_SYMBOLS = 512


class Verdict(enum.IntEnum):
    """What to do with a frame."""

    ACCEPT = 0
    NEW_SESSION = 1
    REJECT = 2


class SequenceGuard:
    """One symbol's sequence bounds (see module doc); ``state()``/``restore()`` for checkpoints."""

    def __init__(self, window: int = DEFAULT_SEQ_WINDOW) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self.epoch: int | None = None  #: producer session followed (None: none yet)
        self.closed = -1  #: last closed sequence accepted in this session
        self.last_ts: int | None = None  #: newest producer timestamp accepted (None: unknown)
        #: the session whose numbering the sequences follow; a later session that continues the
        #: numbering keeps it, one that starts again (NEW_SESSION) replaces it
        self.numbered_since: int = 0

    def check(self, frame: Frame) -> tuple[Verdict, Reason | None, str]:
        """Judge one frame; on ACCEPT or NEW_SESSION the guard has taken it in."""
        ev = frame.events
        if frame.epoch > time.time_ns() + MAX_EPOCH_AHEAD_NS:  # it would outrank every real session
            return (Verdict.REJECT, Reason.SEQUENCE_JUMP,
                    f"producer session id {frame.epoch} is ahead of this clock")
        if self.epoch is None:
            self.epoch = self.numbered_since = frame.epoch  # the first frame seen names the session
        elif frame.epoch > self.epoch:
            restarted = self.closed >= 0 and frame.count > 0 and frame.first_seq <= self.closed
            self.epoch, self.last_ts = frame.epoch, None
            if restarted:
                self.closed, self.numbered_since = -1, frame.epoch
            self._take(frame)
            return (Verdict.NEW_SESSION if restarted else Verdict.ACCEPT), None, ""
        redelivery = self.last_ts is None or frame.producer_ts_ns <= self.last_ts
        if frame.epoch < self.epoch:
            if redelivery:
                return Verdict.ACCEPT, None, ""  # an old session's frame seen again: dropped by sequence
            return (Verdict.REJECT, Reason.SEQUENCE,
                    f"frame of producer session {frame.epoch} after session {self.epoch} began")
        w = self.closed
        if w >= 0 and frame.count:
            seq = ev["seq"]
            s0 = frame.first_seq
            if s0 <= w:
                back = seq <= w
                k = int(np.argmin(back)) if not back.all() else len(ev)
                lead = ev[:k]
                snapshot = bool(np.all((lead["flags"] & E.SNAPSHOT) != 0) and np.all(lead["seq"] == w))
                if not snapshot and not redelivery:
                    return (Verdict.REJECT, Reason.SEQUENCE,
                            f"frame starts at sequence {s0}, at or below {w} already applied, "
                            "and is not a redelivery")
            elif s0 > w + self.window:
                return (Verdict.REJECT, Reason.SEQUENCE_JUMP,
                        f"frame starts at sequence {s0}, more than {self.window} above {w}")
        self._take(frame)
        return Verdict.ACCEPT, None, ""

    def _take(self, frame: Frame) -> None:
        ev = frame.events
        if frame.count:
            last = ev[frame.count - 1]
            if last["flags"] & E.EOB:  # the usual case: a frame ends at an update's end
                self.closed = max(self.closed, int(last["seq"]))
            else:
                eob = np.flatnonzero(ev["flags"] & E.EOB)
                if len(eob):
                    self.closed = max(self.closed, int(ev["seq"][eob[-1]]))
        ts = frame.producer_ts_ns
        self.last_ts = ts if self.last_ts is None or ts > self.last_ts else self.last_ts

    def state(self) -> dict[str, Any]:
        """JSON scalars to checkpoint with the symbol's state."""
        return {"epoch": self.epoch, "closed": self.closed, "last_ts": self.last_ts,
                "numbered_since": self.numbered_since}

    def restore(self, st: dict[str, Any] | None, applied: int = -1) -> None:
        """Resume from :meth:`state` output; without one, trust ``applied`` and accept redeliveries."""
        if st:
            self.epoch, self.closed, self.last_ts = st.get("epoch"), int(st.get("closed", -1)), st.get("last_ts")
            self.numbered_since = int(st.get("numbered_since") or 0)
        else:
            self.closed = applied


def check_symbol(symbol: str) -> str | None:
    """Why ``symbol`` may not be used as a label or a file name, or None when it may.

    >>> check_symbol("BTC-USD"), check_symbol("ÄPFEL")
    (None, None)
    >>> check_symbol("A\\u202eB"), check_symbol("A B"), check_symbol("A\\x00")
    ('symbol has a control or format character', 'symbol has white space', 'symbol has a control or format character')
    """
    if not 1 <= len(symbol.encode("utf-8")) <= 16:
        return "symbol must be 1..16 utf-8 bytes"
    if any(c.isspace() for c in symbol):
        return "symbol has white space"
    if not symbol.isprintable():
        return "symbol has a control or format character"
    return None


class SymbolGate:
    """Which symbols one process takes: valid names, an optional allow-list, at most ``max_symbols``."""

    def __init__(self, max_symbols: int = DEFAULT_MAX_SYMBOLS, allow: Collection[str] = ()) -> None:
        if max_symbols < 1:
            raise ValueError(f"max_symbols must be >= 1, got {max_symbols}")
        self.max_symbols = max_symbols
        self.allow = frozenset(allow)

    def check(self, symbol: str, known: Collection[str]) -> tuple[Reason, str] | None:
        """A reason to refuse ``symbol`` (``known`` are the symbols already held), or None."""
        if symbol in known:
            return None
        why = check_symbol(symbol)
        if why is not None:
            return Reason.BAD_SYMBOL, why
        if self.allow and symbol not in self.allow:
            return Reason.UNKNOWN_SYMBOL, "symbol is not in the allow-list"
        if len(known) >= self.max_symbols:
            return Reason.UNKNOWN_SYMBOL, f"already holding {len(known)} symbols (max {self.max_symbols})"
        return None


def check_values(frame: Frame, tick_size: float | None = None) -> tuple[Reason, str] | None:
    """A reason to refuse a whole frame for absurd counts, ticks or prices, or None.

    ``tick_size`` is the symbol's established tick (None for a new symbol).
    """
    if frame.count == 0:
        return Reason.BAD_COUNT, "frame has no events"
    tick = frame.tick_size
    if not (math.isfinite(tick) and tick > 0):
        return Reason.BAD_TICK, f"tick size {tick} is not positive"
    if tick_size is not None and abs(tick - tick_size) > 1e-12 * tick_size:
        return Reason.BAD_TICK, f"tick size {tick:g} differs from the symbol's {tick_size:g}"
    ev = frame.events
    px = ev["price"]
    if len(px) <= 16:  # a small frame (the usual case at low latency): plain numbers are quicker
        vals = px.tolist()
        hi, lo = max(vals), min(vals)
    else:
        hi, lo = int(px.max()), int(px.min())
    limit = min(MAX_PRICE_TICKS, MAX_PRICE_QUOTE / tick)
    if hi < limit and -lo < limit:  # the usual case, whatever the flags
        return None
    priced = (ev["flags"] & (E.DEPTH | E.TRADE)) != 0
    if priced.any():
        px = px[priced]
        hi, lo = int(px.max()), int(px.min())
        worst = hi if hi >= -lo else lo
        if abs(worst) >= MAX_PRICE_TICKS or abs(worst) * tick > MAX_PRICE_QUOTE:
            i = int(np.flatnonzero(priced)[int(np.argmax(px) if worst == hi else np.argmin(px))])
            return Reason.BAD_PRICE, f"event {i}: price {worst} ticks of {tick:g} is out of range"
    return None
