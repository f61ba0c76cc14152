"""The order book: sorted price levels per side in fixed-capacity numpy arrays.

Bids are kept best-first (descending ticks), asks best-first (ascending). A
``DEPTH`` event sets the size at one price (0 deletes); a ``CLEAR`` empties both
sides. Levels worse than the capacity are dropped, so a book of capacity C
mirrors the best C levels of the source (exact while fewer than C levels are
deleted from above, which is the case for top-of-book features with a margin).

The level kernels here are the only code that edits a book; the feature kernel
(:mod:`streamsig.features.kernel`) calls them per event.

>>> import numpy as np
>>> from streamsig.book import events as E
>>> ev = E.empty(3)
>>> ev["flags"] = [E.DEPTH | E.BUY, E.DEPTH | E.SELL, E.DEPTH | E.BUY | E.EOB]
>>> ev["price"] = [100, 102, 101]
>>> ev["size"] = [5.0, 7.0, 2.0]
>>> b = Book(capacity=4)
>>> b.apply(ev).tolist()
[0, 0, 0]
>>> b.best_bid(), b.best_ask(), b.bid_sz[:b.n_bid].tolist()
(101, 102, [2.0, 5.0])
"""
from __future__ import annotations

import numba as nb
import numpy as np

from streamsig.book import events as E

_OK = 0
_BENIGN_DELETE = int(E.Reason.BENIGN_DELETE)


@nb.njit(cache=True, inline="always")
def _find(px: np.ndarray, n: int, price: int, is_bid: bool) -> int:
    """Index of ``price`` or its insertion point in a best-first side."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        better = px[mid] > price if is_bid else px[mid] < price
        if better:
            lo = mid + 1
        else:
            hi = mid
    return lo


@nb.njit(cache=True)
def set_level(px: np.ndarray, sz: np.ndarray, n: int, price: int, size: float, is_bid: bool) -> tuple[int, int]:
    """Set the size at ``price`` on one side; returns ``(new_n, reason)``.

    Size 0 deletes the level. Deleting a level the side does not hold is a
    no-op: ``OK`` when it lies beyond a full side (a level we dropped for
    capacity), else ``BENIGN_DELETE`` (counted, not an error). Exchanges send
    such deletes routinely: a diff stream deletes levels outside the local
    book's depth, levels already removed, and levels that came and went
    within one update.
    """
    cap = px.shape[0]
    i = _find(px, n, price, is_bid)
    found = i < n and px[i] == price
    if size == 0.0:
        if found:
            for j in range(i, n - 1):
                px[j] = px[j + 1]
                sz[j] = sz[j + 1]
            return n - 1, _OK
        if n == cap and i >= n:
            return n, _OK
        return n, _BENIGN_DELETE
    if found:
        sz[i] = size
        return n, _OK
    if i >= cap:
        return n, _OK
    last = n if n < cap else cap - 1
    for j in range(last, i, -1):
        px[j] = px[j - 1]
        sz[j] = sz[j - 1]
    px[i] = price
    sz[i] = size
    return (n + 1 if n < cap else n), _OK


class Book:
    """One symbol's book: ``bid_px/bid_sz/ask_px/ask_sz`` arrays and counts.

    This is a convenience view for tools and tests; the stream and the
    backtest keep the same arrays inside :class:`streamsig.features.FeatureState`.
    """

    def __init__(self, capacity: int = 64, tick_size: float = 0.01) -> None:
        self.capacity, self.tick_size = capacity, tick_size
        self.bid_px = np.zeros(capacity, np.int64)
        self.ask_px = np.zeros(capacity, np.int64)
        self.bid_sz = np.zeros(capacity, np.float64)
        self.ask_sz = np.zeros(capacity, np.float64)
        self.n_bid = 0
        self.n_ask = 0

    def apply(self, events: np.ndarray) -> np.ndarray:
        """Apply DEPTH/CLEAR events; returns a reason code per event."""
        out = np.zeros(len(events), np.uint8)
        nbid, nask = _apply(events, self.bid_px, self.bid_sz, self.ask_px, self.ask_sz,
                            self.n_bid, self.n_ask, out)
        self.n_bid, self.n_ask = int(nbid), int(nask)
        return out

    def best_bid(self) -> int | None:
        return int(self.bid_px[0]) if self.n_bid else None

    def best_ask(self) -> int | None:
        return int(self.ask_px[0]) if self.n_ask else None

    def snapshot_events(self, seq: int, ts_ns: int) -> np.ndarray:
        """CLEAR|SNAPSHOT followed by every held level; the last carries EOB."""
        n = 1 + self.n_bid + self.n_ask
        ev = E.empty(n)
        ev["seq"], ev["exch_ts"], ev["local_ts"] = seq, ts_ns, ts_ns
        ev["flags"][0] = E.CLEAR | E.SNAPSHOT
        nb_ = self.n_bid
        ev["flags"][1:1 + nb_] = E.DEPTH | E.BUY | E.SNAPSHOT
        ev["price"][1:1 + nb_] = self.bid_px[:nb_]
        ev["size"][1:1 + nb_] = self.bid_sz[:nb_]
        ev["level"][1:1 + nb_] = np.arange(nb_)
        ev["flags"][1 + nb_:] = E.DEPTH | E.SELL | E.SNAPSHOT
        ev["price"][1 + nb_:] = self.ask_px[:self.n_ask]
        ev["size"][1 + nb_:] = self.ask_sz[:self.n_ask]
        ev["level"][1 + nb_:] = np.arange(self.n_ask)
        ev["flags"][-1] |= E.EOB
        return ev


@nb.njit(cache=True)
def _apply(ev, bpx, bsz, apx, asz, nbid, nask, out):
    for k in range(ev.shape[0]):
        f = ev[k]["flags"]
        if f & E.CLEAR:
            nbid = 0
            nask = 0
        if f & E.DEPTH:
            if f & E.BUY:
                nbid, r = set_level(bpx, bsz, nbid, ev[k]["price"], ev[k]["size"], True)
            else:
                nask, r = set_level(apx, asz, nask, ev[k]["price"], ev[k]["size"], False)
            out[k] = r
    return nbid, nask
