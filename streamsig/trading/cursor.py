"""The book the executor trades against, at any event of a chunk, without the feature kernel.

The drivers (backtest and live trader) step their accounts once per feature
row; the executor needs the book *at* that row, but only while an order is
working. A :class:`BookCursor` holds one symbol's book (the
:mod:`streamsig.book.book` level arrays, with the feature state's capacity) and
applies a chunk's events lazily: ``at(i)`` applies the events up to and
including ``i`` in one compiled call and returns the book (``bid_px``,
``bid_sz``, ``ask_px``, ``ask_sz``, ``n_bid``, ``n_ask``). Rows where no order
is working never need the book, so most of a stream is applied in a few large
calls.

It applies the book rules of the feature kernel (:mod:`streamsig.features.kernel`),
so its book equals the kernel's at every row: a periodic snapshot of a state
already held is skipped, a CLEAR starts over, an event whose sequence steps back
is ignored, NaN/negative sizes and bad side flags are ignored, and after a
sequence gap or a crossed book nothing is applied until the next CLEAR.

The cursor also keeps the ``TRADE`` events that arrived after a chunk's last
row (:attr:`carry`): they belong to the next row, whichever chunk it is in.

>>> from streamsig.book import events as E
>>> ev = E.empty(4)
>>> ev["flags"] = [E.CLEAR | E.SNAPSHOT, E.DEPTH | E.BUY, E.DEPTH | E.SELL | E.EOB, E.DEPTH | E.BUY | E.EOB]
>>> ev["price"] = [0, 99, 101, 100]; ev["size"] = [0, 3.0, 1.0, 2.0]; ev["seq"] = [0, 0, 0, 1]
>>> cur = BookCursor(capacity=4)
>>> cur.begin(ev)
>>> int(cur.at(2).bid_px[0]), int(cur.at(3).bid_px[0])
(99, 100)
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from streamsig.book import events as E
from streamsig.book.book import set_level

_NB, _NA, _LAST, _LAST_EOB, _RESYNC = range(5)


@nb.njit(cache=True)
def _advance(ev, lo, hi, bpx, bsz, apx, asz, st):  # noqa: ANN001, ANN202
    for k in range(lo, hi):
        f = ev[k]["flags"]
        seq = ev[k]["seq"]
        size = ev[k]["size"]
        if (f & E.SNAPSHOT) != 0 and seq <= st[_LAST_EOB] and st[_RESYNC] == 0:
            continue  # a periodic snapshot of a state already held
        stale = False
        if f & E.CLEAR:
            st[_NB] = 0
            st[_NA] = 0
            st[_RESYNC] = 0
            st[_LAST] = seq
            st[_LAST_EOB] = seq - 1
        elif seq < st[_LAST] or seq <= st[_LAST_EOB]:
            stale = True
        elif seq > st[_LAST_EOB] + 1 and st[_LAST] == st[_LAST_EOB]:
            st[_RESYNC] = 1
        ok = not stale and st[_RESYNC] == 0
        if ok and (f & (E.DEPTH | E.TRADE)) != 0:
            if not math.isfinite(size) or size < 0.0:
                ok = False
            elif ((f & E.BUY) != 0) == ((f & E.SELL) != 0) and (f & E.DEPTH) != 0:
                ok = False
        if ok:
            st[_LAST] = seq
            if f & E.DEPTH:
                if f & E.BUY:
                    n, _ = set_level(bpx, bsz, st[_NB], ev[k]["price"], size, True)
                    st[_NB] = n
                else:
                    n, _ = set_level(apx, asz, st[_NA], ev[k]["price"], size, False)
                    st[_NA] = n
        if (f & E.EOB) != 0 and not stale and st[_RESYNC] == 0:
            st[_LAST_EOB] = seq
            st[_LAST] = seq
            if st[_NB] > 0 and st[_NA] > 0 and bpx[0] >= apx[0]:
                st[_RESYNC] = 1


class BookCursor:
    """One symbol's book, advanced lazily over the current chunk (see module doc).

    ``capacity`` is the levels held per side; pass the feature spec's
    ``book_capacity`` so the book matches the kernel's.
    """

    def __init__(self, capacity: int = 64, tick_size: float = 1.0) -> None:
        self.capacity, self.tick_size = int(capacity), float(tick_size)
        self.bid_px = np.zeros(self.capacity, np.int64)
        self.ask_px = np.zeros(self.capacity, np.int64)
        self.bid_sz = np.zeros(self.capacity, np.float64)
        self.ask_sz = np.zeros(self.capacity, np.float64)
        self._st = np.array([0, 0, -1, -1, 1], np.int64)  # n_bid, n_ask, last seq, last closed seq, resync
        self._ev: np.ndarray | None = None
        self._pos = 0  # next event of the chunk to apply
        #: TRADE events after the last row of earlier chunks (EVENT_DTYPE), for the next row
        self.carry: np.ndarray | None = None

    @property
    def n_bid(self) -> int:
        return int(self._st[_NB])

    @property
    def n_ask(self) -> int:
        return int(self._st[_NA])

    @property
    def state(self) -> "BookCursor":
        """The book as it stands (for a call that reads no book)."""
        return self

    def begin(self, events: np.ndarray) -> None:
        """Start a new chunk (the previous one must have been finished)."""
        self._ev, self._pos = events, 0

    def at(self, i: int) -> "BookCursor":
        """The book after event ``i`` of the chunk (``i`` never goes backwards)."""
        if i + 1 < self._pos:
            raise ValueError(f"the cursor is past event {i} (at {self._pos - 1})")
        if i + 1 > self._pos:
            assert self._ev is not None
            _advance(self._ev, self._pos, i + 1, self.bid_px, self.bid_sz, self.ask_px, self.ask_sz, self._st)
            self._pos = i + 1
        return self

    def finish(self, tail_trades: np.ndarray | None = None) -> None:
        """Apply the rest of the chunk; keep ``tail_trades`` (its TRADE events after its last row)."""
        if self._ev is not None and self._pos < len(self._ev):
            self.at(len(self._ev) - 1)
        if tail_trades is not None and len(tail_trades):
            self.carry = tail_trades if self.carry is None else np.concatenate([self.carry, tail_trades])
        self._ev = None
