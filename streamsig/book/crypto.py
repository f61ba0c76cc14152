"""Crypto L2 files (Tardis.dev CSV schemas, Kaggle-style snapshots) as book events.

* :class:`SnapshotReader`: one row per book state with per-level columns
  (Tardis ``book_snapshot_N`` or any layout described by
  :class:`SnapshotColumns`), CSV or Parquet. Consecutive rows are diffed into
  ``DEPTH`` updates plus ``EOB``; the first row is ``CLEAR|SNAPSHOT``; a row
  equal to the one before emits nothing. Levels leaving the top N are deleted.
* :class:`IncrementalReader`: Tardis ``incremental_book_L2``. Consecutive rows
  sharing ``timestamp`` and ``is_snapshot`` form one batch (one exchange depth
  message); a snapshot block starts with ``CLEAR|SNAPSHOT``.
* :class:`TradesReader`: Tardis ``trades`` as ``TRADE`` events (side = taker).
* :func:`merge_events`: interleave such streams by exchange time.

Timestamps are converted to ns (Tardis: µs). They are taken as given, not
required to increase (exchange stamps can step back, e.g. a diff that arrived
while a REST snapshot was in flight). ``seq`` counts emitted batches from 0.
Files are read in chunks of ``chunk_rows`` (``.gz`` accepted, no quoting);
Parquet files are read in row batches and errors name 1-based row numbers.

When ``tick_size`` is None it is inferred as ``10**-d`` with ``d`` the largest
number of decimals among the price strings of the first chunk (of the chosen
symbol), e.g. ``"63944.00"`` gives 0.01. This is the price resolution of the
file, which may be finer than the exchange tick. A later price off that grid
raises :class:`~streamsig.errors.DataError`; pass ``tick_size`` explicitly then.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np
import pandas as pd

from streamsig.book import events as E
from streamsig.book.csvchunks import byte_chunks, open_binary, parse_chunk
from streamsig.book.levels import check_rows, diff_levels, mark_eob
from streamsig.config import Config
from streamsig.errors import DataError

_UNIT_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


@dataclass(frozen=True)
class SnapshotColumns(Config):
    """Column names of a per-level snapshot file; never guessed by position.

    Level patterns use ``{i}`` for the level number, counted from
    ``first_level`` (best level). ``time_unit`` is how ``timestamp`` (and
    ``local_timestamp``) are written: ``s``, ``ms``, ``us``, ``ns`` or ``iso``
    (datetime strings). Load one from a dict, or a JSON / TOML file with the
    same keys via :meth:`load` (the :class:`~streamsig.config.Config` loaders).

    >>> KAGGLE_LEVELS.level(1)
    ('ask_price_1', 'ask_size_1', 'bid_price_1', 'bid_size_1')
    >>> SnapshotColumns.from_dict({"timestamp": "t", "bid_price": "b{i}", "bid_size": "bs{i}",
    ...                            "ask_price": "a{i}", "ask_size": "as{i}"}).level(0)
    ('a0', 'as0', 'b0', 'bs0')
    """

    timestamp: str
    bid_price: str
    bid_size: str
    ask_price: str
    ask_size: str
    local_timestamp: str | None = None
    symbol: str | None = None
    first_level: int = 0
    time_unit: str = "us"

    def __post_init__(self) -> None:
        if self.time_unit not in (*_UNIT_NS, "iso"):
            raise ValueError(f"time_unit must be one of s, ms, us, ns, iso; got {self.time_unit!r}")
        for name in ("bid_price", "bid_size", "ask_price", "ask_size"):
            if "{i}" not in getattr(self, name):
                raise ValueError(f"{name} pattern {getattr(self, name)!r} has no {{i}}")

    def level(self, i: int) -> tuple[str, str, str, str]:
        """``(ask price, ask size, bid price, bid size)`` column names of level ``i``."""
        return (self.ask_price.format(i=i), self.ask_size.format(i=i),
                self.bid_price.format(i=i), self.bid_size.format(i=i))


#: Tardis ``book_snapshot_N`` CSV (``asks[0].price``, ..., µs timestamps).
TARDIS_BOOK_SNAPSHOT = SnapshotColumns(
    timestamp="timestamp", local_timestamp="local_timestamp", symbol="symbol",
    bid_price="bids[{i}].price", bid_size="bids[{i}].amount",
    ask_price="asks[{i}].price", ask_size="asks[{i}].amount", first_level=0, time_unit="us")

#: Example of a Kaggle-style layout: ``timestamp`` in ms and ``bid_price_1``,
#: ``bid_size_1``, ``ask_price_1``, ``ask_size_1``, ... with level 1 best.
KAGGLE_LEVELS = SnapshotColumns(
    timestamp="timestamp", bid_price="bid_price_{i}", bid_size="bid_size_{i}",
    ask_price="ask_price_{i}", ask_size="ask_size_{i}", first_level=1, time_unit="ms")


def infer_tick(prices: object) -> float:
    """``10**-d`` for the most decimals ``d`` among price strings.

    Floats (e.g. from Parquet) use their shortest round-trip text.

    >>> infer_tick(["63944.00", "63943.9"]), infer_tick([3424.98, 3425.0]), infer_tick(["7"])
    (0.01, 0.01, 1.0)
    """
    d = 0
    for v in pd.unique(pd.Series(prices).dropna()):
        s = v.strip() if isinstance(v, str) else np.format_float_positional(float(v), trim="-")
        if not s:
            continue
        try:
            exp = Decimal(s).as_tuple().exponent
        except InvalidOperation:
            continue
        if isinstance(exp, int):
            d = max(d, -exp)
    return float(Decimal(1).scaleb(-d))


def _is_parquet(path: Path) -> bool:
    return path.suffix in (".parquet", ".pq")


def _read_header(path: Path) -> list[str]:
    if _is_parquet(path):
        import pyarrow.parquet as pq
        return list(pq.ParquetFile(path).schema_arrow.names)
    with open_binary(path) as f:
        line = f.readline().decode("utf-8").strip()
    if not line:
        raise DataError(path, 1, "no header line")
    return [c.strip() for c in line.split(",")]


class _Source:
    """Header, symbol choice, tick inference and filtered chunks of one file."""

    def __init__(self, path: str | Path, chunk_rows: int, symbol: str | None, symbol_col: str | None,
                 price_cols: list[str], tick_size: float | None, required: list[str]) -> None:
        self.path = Path(path)
        self.chunk_rows = int(chunk_rows)
        self.header = _read_header(self.path)
        missing = [c for c in required if c not in self.header]
        if missing:
            raise DataError(self.path, 1, f"missing column {missing[0]!r}")
        self.symbol_col = symbol_col if symbol_col in self.header else None
        self.symbol_given = symbol is not None
        first = None
        if symbol is None or tick_size is None:
            cols = [c for c in [self.symbol_col, *price_cols] if c]
            first = next((df for _, df in self._raw_frames(dict.fromkeys(cols, str), cols)), None)
        if symbol is None:
            if self.symbol_col and first is not None and len(first):
                symbol = str(first[self.symbol_col].iloc[0])
            else:
                symbol = self.path.name.split("_")[0].split(".")[0]
        self.symbol = symbol
        if tick_size is None:
            sel = first
            if first is not None and self.symbol_col:
                mine = first[first[self.symbol_col] == symbol]
                sel = mine if len(mine) else first
            vals = pd.concat([sel[c] for c in price_cols]) if sel is not None and len(sel) else []
            tick_size = infer_tick(vals)
        self.tick_size = float(tick_size)

    def _raw_frames(self, dtypes: dict[str, object], usecols: list[str]) -> Iterator[tuple[int, pd.DataFrame]]:
        if _is_parquet(self.path):
            import pyarrow.parquet as pq
            row = 1
            for batch in pq.ParquetFile(self.path).iter_batches(batch_size=self.chunk_rows, columns=usecols):
                df = batch.to_pandas()
                for c, t in dtypes.items():
                    try:
                        df[c] = df[c].astype(t)
                    except (ValueError, TypeError) as exc:
                        raise DataError(self.path, row, f"column {c}: {exc}") from exc
                yield row, df
                row += len(df)
            return
        for line0, data in byte_chunks(self.path, self.chunk_rows, skip=1):
            yield line0, parse_chunk(self.path, line0, data, self.header, dtypes, usecols)

    def frames(self, dtypes: dict[str, object]) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
        """Chunks of the chosen symbol's rows with their file line numbers."""
        usecols = list(dict.fromkeys([*([self.symbol_col] if self.symbol_col else []), *dtypes]))
        dt = dict(dtypes)
        if self.symbol_col:
            dt[self.symbol_col] = "category"
        for line0, df in self._raw_frames(dt, usecols):
            lines = line0 + np.arange(len(df))
            if self.symbol_col:
                sym = df[self.symbol_col]
                keep = (sym == self.symbol).to_numpy(bool)
                if not self.symbol_given and not keep.all():
                    i = int(np.argmin(keep))
                    raise DataError(self.path, int(lines[i]),
                                    f"file holds more than one symbol ({self.symbol}, {sym.iloc[i]}); pass symbol=")
                if not keep.all():
                    df, lines = df[keep], lines[keep]
            yield lines, df

    def ticks(self, px: np.ndarray, present: np.ndarray, lines: np.ndarray, what: str | list[str]) -> np.ndarray:
        """Prices -> ticks where ``present``; off-grid or non-positive prices raise."""
        p = np.where(present, px, 0.0)
        t, off = E.to_ticks(np.nan_to_num(p, nan=0.0, posinf=0.0, neginf=0.0), self.tick_size)
        bad = present & (off | ~(p > 0) | ~np.isfinite(p))
        if bad.any():
            r, c = np.argwhere(bad.reshape(len(bad), -1))[0]
            name = what if isinstance(what, str) else what[c]
            v = float(p.reshape(len(p), -1)[r, c])
            why = "missing price" if np.isnan(v) else f"price {v!r} is not positive" if v <= 0 else \
                f"price {v!r} is not finite" if np.isinf(v) else f"price {v!r} is not a multiple of tick {self.tick_size}"
            raise DataError(self.path, int(lines[r]), f"{name}: {why}")
        return np.where(present, t, 0)

    def check_sizes(self, sz: np.ndarray, lines: np.ndarray, what: str | list[str]) -> None:
        """Negative sizes raise."""
        bad = sz < 0
        if bad.any():
            r, c = np.argwhere(bad.reshape(len(bad), -1))[0]
            name = what if isinstance(what, str) else what[c]
            raise DataError(self.path, int(lines[r]), f"{name}: negative size {float(sz.reshape(len(sz), -1)[r, c])!r}")


def _time_ns(col: pd.Series, unit: str, path: Path, lines: np.ndarray) -> np.ndarray:
    if unit == "iso":
        try:
            t = pd.to_datetime(col, utc=True)
        except (ValueError, TypeError) as exc:
            raise DataError(path, int(lines[0]), f"bad datetime in this chunk: {exc}") from exc
        bad = t.isna().to_numpy()
        out = t.dt.tz_convert(None).astype("datetime64[ns]").to_numpy().astype(np.int64)
    elif unit == "s":
        v = col.to_numpy(np.float64)
        bad = ~np.isfinite(v)
        out = np.rint(np.nan_to_num(v) * 1e9).astype(np.int64)
    else:
        out = col.to_numpy(np.int64) * _UNIT_NS[unit]
        bad = np.zeros(len(out), bool)
    if bad.any():
        raise DataError(path, int(lines[int(np.argmax(bad))]), f"{col.name}: missing timestamp")
    return out


def _time_dtype(unit: str) -> object:
    return str if unit == "iso" else ("float64" if unit == "s" else "int64")


class SnapshotReader:
    """Per-level snapshot rows (CSV or Parquet) -> diffed ``DEPTH`` batches.

    ``columns`` defaults to :data:`TARDIS_BOOK_SNAPSHOT`; ``levels`` to every
    level whose four columns are in the header. A level is present where its
    size is > 0 (empty cells are absent levels). Each emitted batch is one
    changed row; ``level`` holds the 0-based level index.
    """

    def __init__(self, path: str | Path, columns: SnapshotColumns | None = None, levels: int | None = None,
                 symbol: str | None = None, tick_size: float | None = None, chunk_rows: int = 50_000) -> None:
        self.columns = cols = columns or TARDIS_BOOK_SNAPSHOT
        header = _read_header(Path(path))
        avail = 0
        while all(c in header for c in cols.level(cols.first_level + avail)):
            avail += 1
        want = avail if levels is None else int(levels)
        if levels is not None and want < 1:
            raise ValueError("levels must be >= 1")
        if want < 1 or want > avail:
            missing = next(c for c in cols.level(cols.first_level + avail) if c not in header)
            raise DataError(path, 1, f"missing column {missing!r}")
        self.levels = want
        lv = [cols.level(cols.first_level + i) for i in range(want)]
        self._ap, self._as, self._bp, self._bs = ([x[k] for x in lv] for k in range(4))
        required = [cols.timestamp, *([cols.local_timestamp] if cols.local_timestamp else [])]
        self._src = _Source(path, chunk_rows, symbol, cols.symbol, self._ap + self._bp, tick_size,
                            required + [c for x in lv for c in x])
        self.path, self.symbol, self.tick_size = self._src.path, self._src.symbol, self._src.tick_size

    def __iter__(self) -> Iterator[np.ndarray]:
        cols, src, L = self.columns, self._src, self.levels
        tdt = _time_dtype(cols.time_unit)
        dtypes: dict[str, object] = {cols.timestamp: tdt}
        if cols.local_timestamp:
            dtypes[cols.local_timestamp] = tdt
        dtypes.update(dict.fromkeys(self._ap + self._as + self._bp + self._bs, "float64"))
        prev = (np.zeros(L, np.int64), np.zeros(L), np.zeros(L, np.int64), np.zeros(L))
        seq, first = 0, True
        for lines, df in src.frames(dtypes):
            if not len(df):
                continue
            ts = _time_ns(df[cols.timestamp], cols.time_unit, src.path, lines)
            lts = _time_ns(df[cols.local_timestamp], cols.time_unit, src.path, lines) if cols.local_timestamp else ts
            ap, asz, bp, bsz = (df[c].to_numpy(np.float64) for c in (self._ap, self._as, self._bp, self._bs))
            src.check_sizes(asz, lines, self._as)
            src.check_sizes(bsz, lines, self._bs)
            asz, bsz = np.nan_to_num(asz), np.nan_to_num(bsz)
            at = src.ticks(ap, asz > 0, lines, self._ap)
            bt = src.ticks(bp, bsz > 0, lines, self._bp)
            hit = check_rows(at, asz, bt, bsz, fmt=lambda t: f"{t * self.tick_size:.10g}")
            if hit is not None:
                raise DataError(src.path, int(lines[hit[0]]), hit[1])
            d_row, d_bid, d_px, d_sz, d_lvl = diff_levels(np.vstack([prev[0], at]), np.vstack([prev[1], asz]),
                                                          np.vstack([prev[2], bt]), np.vstack([prev[3], bsz]))
            prev = (at[-1], asz[-1], bt[-1], bsz[-1])
            nclear = 1 if first else 0
            rows = np.concatenate([np.zeros(nclear, np.int64), d_row])
            flags = np.concatenate([np.full(nclear, E.CLEAR | E.SNAPSHOT, np.uint32),
                                    np.where(d_bid, E.DEPTH | E.BUY, E.DEPTH | E.SELL).astype(np.uint32)])
            if first:
                flags[rows == 0] |= E.SNAPSHOT
                first = False
            order = np.argsort(rows, kind="stable")
            rows = rows[order]
            ev = E.empty(len(rows))
            ev["flags"] = flags[order] | np.where(mark_eob(rows), E.EOB, 0).astype(np.uint32)
            ev["price"] = np.concatenate([np.zeros(nclear, np.int64), d_px])[order]
            ev["size"] = np.concatenate([np.zeros(nclear), d_sz])[order]
            ev["level"] = np.concatenate([np.full(nclear, -1, np.int32), d_lvl])[order]
            ev["exch_ts"], ev["local_ts"] = ts[rows], lts[rows]
            batch = np.cumsum(mark_eob(rows)) - mark_eob(rows)
            ev["seq"] = seq + batch
            seq += len(np.unique(rows))
            if len(ev):
                yield ev

    def read_all(self) -> np.ndarray:
        """All events in one array."""
        return _concat(self)


class IncrementalReader:
    """Tardis ``incremental_book_L2`` rows -> ``DEPTH`` batches.

    Columns used: ``symbol, timestamp, local_timestamp, is_snapshot, side``
    (``bid``/``ask``), ``price, amount`` (absolute level size, 0 deletes).
    A batch never splits across chunks.
    """

    REQUIRED = ["symbol", "timestamp", "local_timestamp", "is_snapshot", "side", "price", "amount"]

    def __init__(self, path: str | Path, symbol: str | None = None, tick_size: float | None = None,
                 chunk_rows: int = 100_000) -> None:
        self._src = _Source(path, chunk_rows, symbol, "symbol", ["price"], tick_size, self.REQUIRED)
        self.path, self.symbol, self.tick_size = self._src.path, self._src.symbol, self._src.tick_size

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
        return _concat(self)

    def _arrays(self, lines: np.ndarray, df: pd.DataFrame) -> dict[str, np.ndarray]:
        src = self._src
        snap = _choice(df["is_snapshot"], ("false", "true"), src.path, lines) == 1
        bid = _choice(df["side"], ("ask", "bid"), src.path, lines) == 1
        amount = df["amount"].to_numpy(np.float64)
        bad = ~np.isfinite(amount)
        if bad.any():
            raise DataError(src.path, int(lines[int(np.argmax(bad))]), "amount is missing or NaN")
        src.check_sizes(amount, lines, "amount")
        ticks = src.ticks(df["price"].to_numpy(np.float64), np.ones(len(df), bool), lines, "price")
        return {"ts": df["timestamp"].to_numpy(np.int64) * 1000,
                "lts": df["local_timestamp"].to_numpy(np.int64) * 1000,
                "snap": snap, "bid": bid, "price": ticks, "size": amount}


def _choice(col: pd.Series, allowed: tuple[str, ...], path: Path, lines: np.ndarray) -> np.ndarray:
    """Index into ``allowed`` of each cell (case and surrounding spaces ignored); others raise."""
    cat = col.astype("category")
    names = [str(c).strip().lower() for c in cat.cat.categories]
    lut = np.array([allowed.index(c) if c in allowed else -1 for c in names] + [-1])
    idx = lut[cat.cat.codes.to_numpy()]
    if (idx < 0).any():
        i = int(np.argmax(idx < 0))
        ok = sorted(allowed)
        raise DataError(path, int(lines[i]), f"{col.name} must be {', '.join(ok[:-1])} or {ok[-1]}, got {col.iloc[i]!r}")
    return idx


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


class TradesReader:
    """Tardis ``trades`` rows -> one ``TRADE|EOB`` event each.

    ``side`` is the taker (aggressor): ``buy`` -> BUY, ``sell`` -> SELL,
    ``unknown`` -> no side. ``order_id`` is the numeric trade ``id`` (-1 if not
    numeric); ``seq`` counts trades.
    """

    REQUIRED = ["symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount"]

    def __init__(self, path: str | Path, symbol: str | None = None, tick_size: float | None = None,
                 chunk_rows: int = 100_000) -> None:
        self._src = _Source(path, chunk_rows, symbol, "symbol", ["price"], tick_size, self.REQUIRED)
        self.path, self.symbol, self.tick_size = self._src.path, self._src.symbol, self._src.tick_size

    def __iter__(self) -> Iterator[np.ndarray]:
        src = self._src
        dtypes = {"timestamp": "int64", "local_timestamp": "int64", "id": str, "side": "category",
                  "price": "float64", "amount": "float64"}
        seq = 0
        for lines, df in src.frames(dtypes):
            if not len(df):
                continue
            side = _choice(df["side"], ("unknown", "buy", "sell"), src.path, lines)
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
        return _concat(self)


def _concat(chunks: object) -> np.ndarray:
    parts = list(chunks)  # type: ignore[call-overload]
    return np.concatenate(parts) if parts else E.empty(0)


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
