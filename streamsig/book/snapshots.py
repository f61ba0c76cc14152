"""Per-level snapshot files (one row per book state) as diffed book events.

Layouts, detected from the header by :func:`detect_layout` (or given as a
:class:`SnapshotColumns`, e.g. from ``--columns map.toml``):

* Tardis ``book_snapshot_N``: ``asks[0].price, asks[0].amount, bids[0]...``, µs.
* Level columns ``bid_price_1..N, bid_size_1..N, ask_price_1..N, ask_size_1..N``
  (level 1 best) with a ``timestamp`` column.
* The Kaggle 1-second crypto snapshots (``system_time, midpoint, spread,
  bids_distance_i, bids_notional_i, asks_distance_i, asks_notional_i``): level
  ``i``'s price is ``midpoint * (1 + distance)`` and its size ``notional /
  price``. This is approximate: the distances are rounded floats, so each
  price is rounded to the nearest tick (two levels landing on one tick are
  merged, sizes added), and sizes are base units recovered from notionals.
  The tick is inferred from the best bid and ask, ``midpoint -/+ spread / 2``.

Timestamps (``time_unit="auto"``) are detected from the first cell: datetime
text (ISO) or epoch s / ms / µs / ns by magnitude
(:func:`streamsig.book.tabular.time_unit_of`); :attr:`SnapshotReader.time_unit`
says what was found.

Consecutive rows are diffed into ``DEPTH`` updates plus ``EOB``; the first row
is ``CLEAR|SNAPSHOT``; a row equal to the one before emits nothing. Levels
leaving the top N are deleted. ``seq`` counts emitted batches from 0.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np

from streamsig.book import events as E
from streamsig.book.levels import check_rows, diff_levels, mark_eob
from streamsig.book.tabular import UNIT_NS, TabularFile, concat, read_header, time_dtype, time_ns, time_unit_of
from streamsig.config import Config
from streamsig.errors import DataError


@dataclass(frozen=True)
class SnapshotColumns(Config):
    """Column names of a per-level snapshot file; never guessed by position.

    Level patterns use ``{i}`` for the level number, counted from
    ``first_level`` (best level). ``time_unit`` is how ``timestamp`` (and
    ``local_timestamp``) are written: ``s``, ``ms``, ``us``, ``ns``, ``iso``
    (datetime strings) or ``auto`` (detected from the first row). With
    ``midpoint`` set, the price columns hold the relative distance from that
    column's price and the size columns the notional (the Kaggle 1-second
    layout). Load one from a dict, or a JSON / TOML file with the same keys
    via :meth:`load` (the :class:`~streamsig.config.Config` loaders).

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
    time_unit: str = "auto"
    midpoint: str | None = None
    spread: str | None = None
    name: str = "custom"

    def __post_init__(self) -> None:
        if self.time_unit not in (*UNIT_NS, "iso", "auto"):
            raise ValueError(f"time_unit must be one of s, ms, us, ns, iso, auto; got {self.time_unit!r}")
        for name in ("bid_price", "bid_size", "ask_price", "ask_size"):
            if "{i}" not in getattr(self, name):
                raise ValueError(f"{name} pattern {getattr(self, name)!r} has no {{i}}")

    def level(self, i: int) -> tuple[str, str, str, str]:
        """``(ask price, ask size, bid price, bid size)`` column names of level ``i``."""
        return (self.ask_price.format(i=i), self.ask_size.format(i=i),
                self.bid_price.format(i=i), self.bid_size.format(i=i))

    @classmethod
    def load(cls, path: str | Path) -> SnapshotColumns:
        """Read a ``.toml`` (or ``.json``) column map; ``name`` defaults to the file name.

        Errors are one :class:`~streamsig.errors.DataError` line (the :class:`~streamsig.config.Config` loader).
        """
        got = super().load(path)
        return got if got.name != "custom" else replace(got, name=Path(path).name)


#: Tardis ``book_snapshot_N`` CSV (``asks[0].price``, ..., µs timestamps).
TARDIS_BOOK_SNAPSHOT = SnapshotColumns(
    timestamp="timestamp", local_timestamp="local_timestamp", symbol="symbol",
    bid_price="bids[{i}].price", bid_size="bids[{i}].amount",
    ask_price="asks[{i}].price", ask_size="asks[{i}].amount", first_level=0, time_unit="us",
    name="Tardis book_snapshot_N")

#: ``timestamp`` and ``bid_price_1``, ``bid_size_1``, ``ask_price_1``, ``ask_size_1``, ... (level 1 best).
KAGGLE_LEVELS = SnapshotColumns(
    timestamp="timestamp", bid_price="bid_price_{i}", bid_size="bid_size_{i}",
    ask_price="ask_price_{i}", ask_size="ask_size_{i}", first_level=1, time_unit="auto",
    name="bid_price_i / ask_size_i levels")

#: Kaggle 1-second crypto snapshots: distances from ``midpoint`` and notionals per level.
KAGGLE_1S = SnapshotColumns(
    timestamp="system_time", bid_price="bids_distance_{i}", bid_size="bids_notional_{i}",
    ask_price="asks_distance_{i}", ask_size="asks_notional_{i}", first_level=0, time_unit="auto",
    midpoint="midpoint", spread="spread", name="Kaggle 1-second (midpoint, distance, notional)")

LAYOUTS = (TARDIS_BOOK_SNAPSHOT, KAGGLE_LEVELS, KAGGLE_1S)
_TIME_COLUMNS = ("timestamp", "system_time", "time", "ts", "datetime", "date")


def detect_layout(header: Sequence[str], path: object = "") -> SnapshotColumns:
    """The snapshot layout of a header; a one-line DataError listing the known ones otherwise.

    >>> detect_layout(["timestamp", "bid_price_1", "bid_size_1", "ask_price_1", "ask_size_1"]).name
    'bid_price_i / ask_size_i levels'
    """
    cols = set(header)
    for lay in LAYOUTS:
        if all(c in cols for c in lay.level(lay.first_level)):
            ts = lay.timestamp
            if ts not in cols:
                ts = next((c for c in _TIME_COLUMNS if c in cols), header[0] if header else ts)
            return replace(lay, timestamp=ts)
    names = "; ".join(lay.name for lay in LAYOUTS)
    raise DataError(path, 1, f"unknown snapshot layout (known: {names}); describe it with --columns map.toml")


class SnapshotReader:
    """Per-level snapshot rows (CSV or Parquet) -> diffed ``DEPTH`` batches.

    ``columns`` defaults to the layout detected from the header; ``levels``
    to every level whose four columns are in the header. A level is present
    where its size is > 0 (empty cells are absent levels). Each emitted batch
    is one changed row; ``level`` holds the 0-based level index. ``tick_size``
    and ``instruments`` (a per-symbol table) override the inferred tick.
    """

    def __init__(self, path: str | Path, columns: SnapshotColumns | None = None, levels: int | None = None,
                 symbol: str | None = None, tick_size: float | None = None, chunk_rows: int = 50_000,
                 instruments: Mapping[str, Mapping[str, object]] | None = None, sample_rows: int = 100_000) -> None:
        header = read_header(Path(path))
        cols = columns or detect_layout(header, path)
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
        required = [cols.timestamp, *([cols.local_timestamp] if cols.local_timestamp else []),
                    *([cols.midpoint] if cols.midpoint else [])]
        sample = _touch_sample(path, header, cols, sample_rows) if cols.midpoint else None
        self._src = src = TabularFile(path, chunk_rows, symbol, cols.symbol, self._ap + self._bp, tick_size,
                                      required + [c for x in lv for c in x], instruments, sample=sample,
                                      sample_rows=sample_rows)
        if cols.time_unit == "auto":
            first = src.first_value(cols.timestamp)
            cols = replace(cols, time_unit=time_unit_of(first) if first is not None else "us")
        self.columns = cols
        self.time_unit = cols.time_unit
        self.path, self.symbol, self.tick_size = src.path, src.symbol, src.tick_size
        self.instrument = src.instrument

    def __iter__(self) -> Iterator[np.ndarray]:
        cols, src, L = self.columns, self._src, self.levels
        tdt = time_dtype(cols.time_unit)
        dtypes: dict[str, object] = {cols.timestamp: tdt}
        if cols.local_timestamp:
            dtypes[cols.local_timestamp] = tdt
        if cols.midpoint:
            dtypes[cols.midpoint] = "float64"
        dtypes.update(dict.fromkeys(self._ap + self._as + self._bp + self._bs, "float64"))
        prev = (np.zeros(L, np.int64), np.zeros(L), np.zeros(L, np.int64), np.zeros(L))
        seq, first = 0, True
        for lines, df in src.frames(dtypes):
            if not len(df):
                continue
            ts = time_ns(df[cols.timestamp], cols.time_unit, src.path, lines)
            lts = time_ns(df[cols.local_timestamp], cols.time_unit, src.path, lines) if cols.local_timestamp else ts
            ap, asz, bp, bsz = (df[c].to_numpy(np.float64) for c in (self._ap, self._as, self._bp, self._bs))
            if cols.midpoint:
                mid = df[cols.midpoint].to_numpy(np.float64)[:, None]
                ap, bp = mid * (1.0 + np.abs(ap)), mid * (1.0 - np.abs(bp))
            src.check_sizes(asz, lines, self._as)
            src.check_sizes(bsz, lines, self._bs)
            asz, bsz = np.nan_to_num(asz), np.nan_to_num(bsz)
            at = src.ticks(ap, asz > 0, lines, self._ap, rounding=bool(cols.midpoint))
            bt = src.ticks(bp, bsz > 0, lines, self._bp, rounding=bool(cols.midpoint))
            if cols.midpoint:  # notional -> size at the rounded price, so equal rows stay equal
                tick = self.tick_size
                asz = np.where(at > 0, asz / np.maximum(at, 1) / tick, 0.0)
                bsz = np.where(bt > 0, bsz / np.maximum(bt, 1) / tick, 0.0)
                at, asz = _merge_equal(at, asz)
                bt, bsz = _merge_equal(bt, bsz)
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
        return concat(self)


def _touch_sample(path: str | Path, header: Sequence[str], cols: SnapshotColumns, chunk_rows: int) -> list[object]:
    """Best bid and ask (``midpoint -/+ spread/2``, exact decimals) of the first rows, for tick inference."""
    if not cols.spread or cols.spread not in header or not cols.midpoint:
        return []
    from streamsig.book.csvchunks import byte_chunks, parse_chunk

    p = Path(path)
    out: list[object] = []
    for line0, data in byte_chunks(p, chunk_rows, skip=1):
        df = parse_chunk(p, line0, data, list(header), {cols.midpoint: str, cols.spread: str},
                         [cols.midpoint, cols.spread])
        for m, s in zip(df[cols.midpoint], df[cols.spread]):
            try:
                dm, ds = Decimal(str(m).strip()), Decimal(str(s).strip())
            except InvalidOperation:
                continue
            out += [dm - ds / 2, dm + ds / 2]
        break
    return out


def _merge_equal(px: np.ndarray, sz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Add the size of a level that rounded onto the tick of the level before it into that one."""
    px, sz = px.copy(), sz.copy()
    r = np.arange(len(px))
    last = np.zeros(len(px), np.int64)
    for j in range(1, px.shape[1]):
        here = sz[:, j] > 0
        dup = here & (sz[r, last] > 0) & (px[:, j] == px[r, last])
        sz[r[dup], last[dup]] += sz[dup, j]
        sz[dup, j] = 0.0
        last = np.where(here & ~dup, j, last)
    order = np.argsort(~(sz > 0), axis=1, kind="stable")
    return np.take_along_axis(px, order, 1), np.take_along_axis(sz, order, 1)
