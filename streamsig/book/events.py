"""The one book-event layout shared by files, Kafka frames and replay buffers.

Every source (LOBSTER, crypto L2, synthetic) becomes an array of ``EVENT_DTYPE``.
An event either sets the absolute size of one price level (``DEPTH``; size 0
deletes the level), reports a trade (``TRADE``), or clears the book before a
snapshot (``CLEAR``). ``EOB`` (end of batch) marks the last event of an atomic
update: the book is consistent after it, and features are computed there.

Prices are integer ticks; ``price_ticks * tick_size`` is the price.

>>> ev = empty(2)
>>> ev.dtype.itemsize
64
>>> ev["flags"][0] = DEPTH | BUY | EOB
>>> describe_flags(int(ev["flags"][0]))
'DEPTH|BUY|EOB'
"""
from __future__ import annotations

import enum

import numpy as np

# Flag bits (hftbacktest-style bit fields).
DEPTH = 1 << 0  #: set the size of one price level (0 deletes it)
TRADE = 1 << 1  #: a trade printed at ``price`` for ``size``; BUY/SELL is the aggressor side
CLEAR = 1 << 2  #: clear both sides of the book (a snapshot follows)
BUY = 1 << 3  #: bid side (for DEPTH) / buyer-initiated (for TRADE)
SELL = 1 << 4  #: ask side (for DEPTH) / seller-initiated (for TRADE)
EOB = 1 << 5  #: end of an atomic batch: the book is consistent after this event
SNAPSHOT = 1 << 6  #: part of a full book snapshot (a resync point)
HALT = 1 << 7  #: trading halt marker (LOBSTER type 7); no book change

FLAG_NAMES = {
    DEPTH: "DEPTH", TRADE: "TRADE", CLEAR: "CLEAR", BUY: "BUY",
    SELL: "SELL", EOB: "EOB", SNAPSHOT: "SNAPSHOT", HALT: "HALT",
}

EVENT_DTYPE = np.dtype(
    [
        ("flags", "<u4"),
        ("level", "<i4"),  # source level hint (0-based) or -1; informational only
        ("exch_ts", "<i8"),  # exchange timestamp, ns since epoch (or since midnight for LOBSTER)
        ("local_ts", "<i8"),  # receive / producer timestamp, ns
        ("seq", "<i8"),  # per-symbol sequence; events of one batch share it
        ("price", "<i8"),  # integer ticks
        ("size", "<f8"),  # absolute level size (DEPTH) or traded size (TRADE)
        ("order_id", "<i8"),
        ("aux", "<f8"),  # spare (e.g. LOBSTER message type)
    ],
    align=True,
)
assert EVENT_DTYPE.itemsize == 64


class Reason(enum.IntEnum):
    """Why an event or batch was rejected. 0 means accepted."""

    OK = 0
    NAN = 1  #: NaN or infinite size
    NEGATIVE_SIZE = 2
    ZERO_SIZE_ADD = 3  #: size 0 for a level the book does not hold
    SEQUENCE = 4  #: sequence went backwards, or repeats an already closed batch
    CROSSED = 5  #: best bid >= best ask after a consistent batch
    OFF_TICK = 6  #: price not a whole number of ticks
    BAD_FLAGS = 7  #: no side, or both sides, on a depth event
    RESYNC = 8  #: dropped while waiting for a snapshot after an earlier reject
    DUPLICATE = 9  #: a snapshot event of an update already applied (skipped, not an error)
    BENIGN_DELETE = 10  #: a delete of a level the book does not hold: a counted no-op, not an error
    SEQUENCE_JUMP = 11  #: a frame starts further ahead of the applied sequence than the window allows
    UNKNOWN_SYMBOL = 12  #: a symbol beyond the worker's cap or outside its allow-list
    BAD_SYMBOL = 13  #: a symbol name that is not printable text (controls, NUL, bidi, spaces)
    BAD_PRICE = 14  #: a price too far from zero to be a real quote in ticks
    BAD_TICK = 15  #: a tick size that differs from the symbol's or makes prices absurd
    BAD_COUNT = 16  #: a frame with no events


def empty(n: int) -> np.ndarray:
    """A zeroed event array of length ``n`` (level = -1)."""
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["level"] = -1
    return ev


def describe_flags(flags: int) -> str:
    """Human-readable flag names, e.g. ``'DEPTH|BUY|EOB'``."""
    return "|".join(name for bit, name in FLAG_NAMES.items() if flags & bit) or "NONE"


def to_ticks(prices: np.ndarray, tick_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Convert float prices to integer ticks.

    Returns ``(ticks, off_grid)`` where ``off_grid`` marks prices that are not a
    whole number of ticks (beyond 1e-6 of a tick), so callers can reject them
    with :attr:`Reason.OFF_TICK`.
    """
    x = np.asarray(prices, dtype=np.float64) / tick_size
    ticks = np.rint(x)
    off = np.abs(x - ticks) > 1e-6
    return ticks.astype(np.int64), off
