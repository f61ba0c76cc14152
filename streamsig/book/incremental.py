"""Tardis ``incremental_book_L2`` files as book events.

Consecutive rows sharing ``timestamp`` and ``is_snapshot`` form one batch (one
exchange depth message); a snapshot block starts with ``CLEAR|SNAPSHOT``.
Timestamps are µs (Tardis) and become ns; they are taken as given, not required
to increase (a diff that arrived while a REST snapshot was in flight can step
back). ``seq`` counts emitted batches from 0. A delete (``amount`` 0) of a
level the local book never held is normal on a diff stream; the feature kernel
counts it as a benign delete, not a reject.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from streamsig.book import events as E
from streamsig.book.levels import mark_eob
from streamsig.book.tabular import TabularFile, choice, concat
from streamsig.errors import DataError


class IncrementalReader:
    """Tardis ``incremental_book_L2`` rows -> ``DEPTH`` batches.

    Columns used: ``symbol, timestamp, local_timestamp, is_snapshot, side``
    (``bid``/``ask``), ``price, amount`` (absolute level size, 0 deletes).
    A batch never splits across chunks.
    """

    REQUIRED = ["symbol", "timestamp", "local_timestamp", "is_snapshot", "side", "price", "amount"]

    def __init__(self, path: str | Path, symbol: str | None = None, tick_size: float | None = None,
                 chunk_rows: int = 100_000, instruments: Mapping[str, Mapping[str, object]] | None = None,
                 sample_rows: int = 100_000) -> None:
        self._src = TabularFile(path, chunk_rows, symbol, "symbol", ["price"], tick_size, self.REQUIRED, instruments,
                                sample_rows=sample_rows)
        self.path, self.symbol, self.tick_size = self._src.path, self._src.symbol, self._src.tick_size
        self.instrument = self._src.instrument

    def __iter__(self) -> Iterator[np.ndarray]:
        src = self._src
        dtypes = {"timestamp": "int64", "local_timestamp": "int64", "is_snapshot": "category",
                  "side": "category", "price": "float64", "amount": "float64"}
        carry: dict[str, np.ndarray] | None = None
        seq = 0
        for lines, df in src.frames(dtypes):
            cur = self._arrays(lines, df)
            if carry is not None:
                cur = {k: np.concatenate([carry[k], cur[k]]) for k in cur}
            n = len(cur["ts"])
            if not n:
                continue
            start = _batch_starts(cur)
            cut = int(np.flatnonzero(start)[-1])
            carry = {k: v[cut:] for k, v in cur.items()}
            if cut:
                ev = _incremental_events({k: v[:cut] for k, v in cur.items()}, start[:cut], seq)
                seq = int(ev["seq"][-1]) + 1
                yield ev
        if carry is not None and len(carry["ts"]):
            yield _incremental_events(carry, _batch_starts(carry), seq)

    def read_all(self) -> np.ndarray:
        """All events in one array."""
        return concat(self)

    def _arrays(self, lines: np.ndarray, df: pd.DataFrame) -> dict[str, np.ndarray]:
        src = self._src
        snap = choice(df["is_snapshot"], ("false", "true"), src.path, lines) == 1
        bid = choice(df["side"], ("ask", "bid"), src.path, lines) == 1
        amount = df["amount"].to_numpy(np.float64)
        bad = ~np.isfinite(amount)
        if bad.any():
            raise DataError(src.path, int(lines[int(np.argmax(bad))]), "amount is missing or NaN")
        src.check_sizes(amount, lines, "amount")
        ticks = src.ticks(df["price"].to_numpy(np.float64), np.ones(len(df), bool), lines, "price")
        return {"ts": df["timestamp"].to_numpy(np.int64) * 1000,
                "lts": df["local_timestamp"].to_numpy(np.int64) * 1000,
                "snap": snap, "bid": bid, "price": ticks, "size": amount}


def _batch_starts(a: Mapping[str, np.ndarray]) -> np.ndarray:
    start = np.ones(len(a["ts"]), bool)
    start[1:] = (a["ts"][1:] != a["ts"][:-1]) | (a["snap"][1:] != a["snap"][:-1])
    return start


def _incremental_events(a: Mapping[str, np.ndarray], start: np.ndarray, seq0: int) -> np.ndarray:
    n = len(start)
    batch = np.cumsum(start) - 1
    clear_at = np.flatnonzero(start & a["snap"])
    src = np.concatenate([clear_at, np.arange(n)])
    key = np.concatenate([2 * clear_at, 2 * np.arange(n) + 1])
    order = np.argsort(key, kind="stable")
    src, is_clear = src[order], np.concatenate([np.ones(len(clear_at), bool), np.zeros(n, bool)])[order]
    ev = E.empty(len(src))
    depth = np.where(a["bid"][src], E.DEPTH | E.BUY, E.DEPTH | E.SELL) | np.where(a["snap"][src], E.SNAPSHOT, 0)
    b = batch[src]
    ev["flags"] = np.where(is_clear, E.CLEAR | E.SNAPSHOT, depth).astype(np.uint32) \
        | np.where(mark_eob(b), E.EOB, 0).astype(np.uint32)
    ev["price"] = np.where(is_clear, 0, a["price"][src])
    ev["size"] = np.where(is_clear, 0.0, a["size"][src])
    ev["exch_ts"], ev["local_ts"] = a["ts"][src], a["lts"][src]
    ev["seq"] = seq0 + b
    return ev
