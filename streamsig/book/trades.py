"""Tardis ``trades`` files as ``TRADE`` events, and :func:`merge_events` to interleave streams.

``side`` is the taker (aggressor). Timestamps are µs (Tardis) and become ns.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from streamsig.book import events as E
from streamsig.book.tabular import TabularFile, choice, concat
from streamsig.errors import DataError


class TradesReader:
    """Tardis ``trades`` rows -> one ``TRADE|EOB`` event each.

    ``side`` is the taker (aggressor): ``buy`` -> BUY, ``sell`` -> SELL,
    ``unknown`` -> no side. ``order_id`` is the numeric trade ``id`` (-1 if not
    numeric); ``seq`` counts trades.
    """

    REQUIRED = ["symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount"]

    def __init__(self, path: str | Path, symbol: str | None = None, tick_size: float | None = None,
                 chunk_rows: int = 100_000, instruments: Mapping[str, Mapping[str, object]] | None = None,
                 sample_rows: int = 100_000) -> None:
        self._src = TabularFile(path, chunk_rows, symbol, "symbol", ["price"], tick_size, self.REQUIRED, instruments,
                                sample_rows=sample_rows)
        self.path, self.symbol, self.tick_size = self._src.path, self._src.symbol, self._src.tick_size
        self.instrument = self._src.instrument

    def __iter__(self) -> Iterator[np.ndarray]:
        src = self._src
        dtypes = {"timestamp": "int64", "local_timestamp": "int64", "id": str, "side": "category",
                  "price": "float64", "amount": "float64"}
        seq = 0
        for lines, df in src.frames(dtypes):
            if not len(df):
                continue
            side = choice(df["side"], ("unknown", "buy", "sell"), src.path, lines)
            amount = df["amount"].to_numpy(np.float64)
            bad = ~np.isfinite(amount)
            if bad.any():
                raise DataError(src.path, int(lines[int(np.argmax(bad))]), "amount is missing or NaN")
            src.check_sizes(amount, lines, "amount")
            ev = E.empty(len(df))
            ev["price"] = src.ticks(df["price"].to_numpy(np.float64), np.ones(len(df), bool), lines, "price")
            ev["flags"] = E.TRADE | E.EOB | np.array([0, E.BUY, E.SELL], np.uint32)[side]
            ev["size"] = amount
            ev["exch_ts"] = df["timestamp"].to_numpy(np.int64) * 1000
            ev["local_ts"] = df["local_timestamp"].to_numpy(np.int64) * 1000
            ev["order_id"] = pd.to_numeric(df["id"], errors="coerce").fillna(-1).to_numpy(np.int64)
            ev["seq"] = seq + np.arange(len(df))
            seq += len(df)
            yield ev

    def read_all(self) -> np.ndarray:
        """All events in one array."""
        return concat(self)


def merge_events(*arrays: np.ndarray) -> np.ndarray:
    """Interleave event streams by ``exch_ts``, one whole batch at a time.

    A batch ends at an ``EOB`` (or at the end of its array). Each input keeps
    its own order: a batch whose time steps back stays right after its
    predecessor. Ties go to the earlier argument. ``seq`` is renumbered
    0, 1, ... by merged batch so the result is one valid stream.

    >>> a = E.empty(2); a["exch_ts"] = [10, 30]; a["flags"] = E.EOB
    >>> b = E.empty(2); b["exch_ts"] = [20, 20]; b["flags"] = [E.DEPTH, E.DEPTH | E.EOB]
    >>> m = merge_events(a, b)
    >>> m["exch_ts"].tolist(), m["seq"].tolist()
    ([10, 20, 20, 30], [0, 1, 1, 2])
    """
    parts = [a for a in arrays if len(a)]
    if not parts:
        return E.empty(0)
    ev = np.concatenate(parts)
    bounds = np.cumsum([len(a) for a in parts])
    ends = (ev["flags"] & E.EOB) != 0
    ends[bounds - 1] = True
    last = np.flatnonzero(ends)
    first = np.concatenate([[0], last[:-1] + 1])
    key = ev["exch_ts"][last].copy()
    part = np.searchsorted(bounds, last, side="right")
    for p in range(len(parts)):
        m = part == p
        key[m] = np.maximum.accumulate(key[m])
    order = np.argsort(key, kind="stable")
    lens = (last - first + 1)[order]
    offs = np.cumsum(lens) - lens
    idx = np.repeat(first[order] - offs, lens) + np.arange(int(lens.sum()))
    out = ev[idx]
    out["seq"] = np.repeat(np.arange(len(order)), lens)
    return out
