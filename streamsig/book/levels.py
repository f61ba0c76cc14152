"""Level snapshots to book events: diff two rows of top-L levels per side, and row checks.

Shared by the LOBSTER and crypto snapshot readers.
"""
from __future__ import annotations

from collections.abc import Callable

import numba as nb
import numpy as np



@nb.njit(cache=True)
def _diff_side(pp, ps, cp, cs, sign, sets, r, side, o_row, o_side, o_px, o_sz, o_lvl, k, write):
    """Merge one side of two rows (valid where size > 0, ``sign*price`` ascending)."""
    n1, n2 = pp.shape[0], cp.shape[0]
    i = 0
    j = 0
    while True:
        while i < n1 and not ps[i] > 0:
            i += 1
        while j < n2 and not cs[j] > 0:
            j += 1
        if i >= n1 and j >= n2:
            return k
        if j >= n2 or (i < n1 and sign * pp[i] < sign * cp[j]):
            if not sets:
                if write:
                    o_row[k], o_side[k], o_px[k], o_sz[k], o_lvl[k] = r, side, pp[i], 0.0, i
                k += 1
            i += 1
        elif i >= n1 or sign * cp[j] < sign * pp[i]:
            if sets:
                if write:
                    o_row[k], o_side[k], o_px[k], o_sz[k], o_lvl[k] = r, side, cp[j], cs[j], j
                k += 1
            j += 1
        else:
            if sets and cs[j] != ps[i]:
                if write:
                    o_row[k], o_side[k], o_px[k], o_sz[k], o_lvl[k] = r, side, cp[j], cs[j], j
                k += 1
            i += 1
            j += 1


@nb.njit(cache=True)
def _diff_rows(apx, asz, bpx, bsz, write, o_row, o_side, o_px, o_sz, o_lvl):
    k = 0
    for r in range(apx.shape[0] - 1):
        for sets in (False, True):
            k = _diff_side(apx[r], asz[r], apx[r + 1], asz[r + 1], 1, sets, r, 0,
                           o_row, o_side, o_px, o_sz, o_lvl, k, write)
            k = _diff_side(bpx[r], bsz[r], bpx[r + 1], bsz[r + 1], -1, sets, r, 1,
                           o_row, o_side, o_px, o_sz, o_lvl, k, write)
    return k


def diff_levels(ask_px: np.ndarray, ask_sz: np.ndarray, bid_px: np.ndarray,
                bid_sz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Level updates that turn each book row into the next.

    Inputs are ``(n + 1, L)`` arrays of integer ticks and sizes; row 0 is the
    state before the first row. A level is present where its size is > 0; asks
    must be ascending and bids descending among present levels. Returns
    ``(row, is_bid, price, size, level)`` with ``row`` in ``0..n-1``. Per row:
    ask deletions, bid deletions, then ask and bid sets, each best price first;
    ``level`` is the 0-based position in the row the price was read from.

    >>> px = lambda *r: np.array(r, np.int64)
    >>> sz = lambda *r: np.array(r, np.float64)
    >>> out = diff_levels(px([0], [101], [102]), sz([0], [5], [5]),
    ...                   px([0], [99], [99]), sz([0], [2], [3]))
    >>> [a.tolist() for a in out]
    [[0, 0, 1, 1, 1], [False, True, False, False, True], [101, 99, 101, 102, 99], [5.0, 2.0, 0.0, 5.0, 3.0], [0, 0, 0, 0, 0]]
    """
    args = [np.ascontiguousarray(a, t) for a, t in
            ((ask_px, np.int64), (ask_sz, np.float64), (bid_px, np.int64), (bid_sz, np.float64))]
    outs = (np.empty(0, np.int64), np.empty(0, np.uint8), np.empty(0, np.int64),
            np.empty(0, np.float64), np.empty(0, np.int32))
    n = _diff_rows(*args, False, *outs)
    outs = (np.empty(n, np.int64), np.empty(n, np.uint8), np.empty(n, np.int64),
            np.empty(n, np.float64), np.empty(n, np.int32))
    _diff_rows(*args, True, *outs)
    row, side, price, size, level = outs
    return row, side.astype(bool), price, size, level


def check_rows(ask_px: np.ndarray, ask_sz: np.ndarray, bid_px: np.ndarray, bid_sz: np.ndarray,
               fmt: Callable[[int], str] = str) -> tuple[int, str] | None:
    """First ``(row, reason)`` whose levels are gappy, out of order or crossed.

    Present levels (size > 0) must come first, asks strictly ascending, bids
    strictly descending, and best ask > best bid. ``fmt`` renders a tick price.

    >>> a = np.array([[10, 11], [10, 9]]); s = np.ones((2, 2))
    >>> check_rows(a, s, np.array([[9, 8], [9, 8]]), s)
    (1, 'ask prices not increasing at level 2 (10 then 9)')
    """
    found: list[tuple[int, str]] = []
    for name, px, sz, sgn, word in (("ask", ask_px, ask_sz, 1, "increasing"),
                                    ("bid", bid_px, bid_sz, -1, "decreasing")):
        valid = sz > 0
        gap = valid[:, 1:] & ~valid[:, :-1]
        order = valid[:, 1:] & valid[:, :-1] & (sgn * (px[:, 1:] - px[:, :-1]) <= 0)
        for mask, kind in ((gap, "gap"), (order, "order")):
            rows = np.flatnonzero(mask.any(axis=1))
            if rows.size:
                r = int(rows[0])
                lv = int(np.argmax(mask[r])) + 1
                if kind == "gap":
                    why = f"{name} level {lv + 1} is set after an empty level {lv}"
                else:
                    why = f"{name} prices not {word} at level {lv + 1} ({fmt(px[r, lv - 1])} then {fmt(px[r, lv])})"
                found.append((r, why))
    both = (ask_sz[:, 0] > 0) & (bid_sz[:, 0] > 0) & (ask_px[:, 0] <= bid_px[:, 0])
    rows = np.flatnonzero(both)
    if rows.size:
        r = int(rows[0])
        found.append((r, f"crossed book: best ask {fmt(ask_px[r, 0])} <= best bid {fmt(bid_px[r, 0])}"))
    return min(found, key=lambda t: t[0]) if found else None


def mark_eob(rows: np.ndarray) -> np.ndarray:
    """True at the last element of each run of equal values in ``rows``.

    >>> mark_eob(np.array([0, 0, 1, 2, 2])).tolist()
    [False, True, True, False, True]
    """
    last = np.ones(len(rows), bool)
    last[:-1] = rows[1:] != rows[:-1]
    return last
