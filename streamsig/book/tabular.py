"""One headed CSV or Parquet file of crypto rows: header, symbol, instrument, typed chunks.

Shared by :mod:`streamsig.book.snapshots`, :mod:`streamsig.book.incremental`
and :mod:`streamsig.book.trades`. The instrument (and its tick) is resolved
from the first chunk of the chosen symbol's prices, see
:mod:`streamsig.book.instrument`; every later price is checked against that
tick and an off-grid one is a one-line :class:`~streamsig.errors.DataError`.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from streamsig.book import events as E
from streamsig.book.csvchunks import byte_chunks, parse_chunk, read_first_line
from streamsig.book.instrument import Instrument, resolve
from streamsig.errors import DataError

UNIT_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_NUM = re.compile(r"^-?\d+(\.\d*)?$")


def is_parquet(path: Path) -> bool:
    return path.suffix in (".parquet", ".pq")


def read_header(path: str | Path) -> list[str]:
    """Column names of a CSV (first line) or Parquet file."""
    p = Path(path)
    if is_parquet(p):
        import pyarrow.parquet as pq
        return list(pq.ParquetFile(p).schema_arrow.names)
    line = read_first_line(p).decode("utf-8", "replace").strip()
    if not line:
        raise DataError(p, 1, "no header line")
    return [c.strip() for c in line.split(",")]


def time_unit_of(value: object) -> str:
    """The unit a timestamp cell is written in: ``iso`` for datetime text, else by magnitude.

    Epoch numbers: ``ns`` above 1e17, ``us`` above 1e14, ``ms`` above 1e11, else
    ``s`` (seconds; decimals allowed), i.e. any date from 1973 to 2286.

    >>> [time_unit_of(v) for v in ("2024-07-18 23:57:02.1+00:00", "1721347022", "1721347022123",
    ...                             "1721347022123456", 1721347022123456789, "1721347022.5")]
    ['iso', 's', 'ms', 'us', 'ns', 's']
    """
    s = str(value).strip()
    if not _NUM.match(s):
        return "iso"
    v = abs(float(s))
    return "ns" if v >= 1e17 else "us" if v >= 1e14 else "ms" if v >= 1e11 else "s"


def time_ns(col: pd.Series, unit: str, path: Path, lines: np.ndarray) -> np.ndarray:
    """A timestamp column in ``unit`` (s, ms, us, ns or iso) as int64 ns since the epoch."""
    if unit == "iso":
        try:
            t = pd.to_datetime(col, utc=True, format="mixed")
        except (ValueError, TypeError) as exc:
            raise DataError(path, int(lines[0]), f"bad datetime in this chunk: {exc}") from exc
        bad = t.isna().to_numpy()
        out = t.dt.tz_convert(None).astype("datetime64[ns]").to_numpy().astype(np.int64)
    elif unit == "s":  # decimal text, parsed exactly (a float has no ns resolution at epoch scale)
        txt = col.astype(str).str.strip()
        bad = ~txt.str.fullmatch(r"\d+(\.\d*)?").fillna(False).to_numpy(bool)
        parts = txt.where(~bad, "0").str.split(".", n=1, expand=True).reindex(columns=[0, 1])
        whole = parts[0].astype(np.int64).to_numpy()
        frac = parts[1].fillna("").str[:9].str.ljust(9, "0").astype(np.int64).to_numpy()
        out = whole * 1_000_000_000 + frac
    else:
        out = col.to_numpy(np.int64) * UNIT_NS[unit]
        bad = np.zeros(len(out), bool)
    if bad.any():
        raise DataError(path, int(lines[int(np.argmax(bad))]), f"{col.name}: missing timestamp")
    return out


def time_dtype(unit: str) -> object:
    return str if unit in ("iso", "s") else "int64"


class TabularFile:
    """Header, symbol choice, instrument and filtered chunks of one file.

    ``price_cols`` are read as text from the first ``sample_rows`` rows to infer the tick
    (unless ``tick_size`` or ``instruments`` gives it); ``venue_col`` (Tardis
    ``exchange``) names the venue for the known-instrument table.
    """

    def __init__(self, path: str | Path, chunk_rows: int, symbol: str | None, symbol_col: str | None,
                 price_cols: list[str], tick_size: float | None, required: list[str],
                 instruments: Mapping[str, Mapping[str, object]] | None = None,
                 venue_col: str | None = "exchange", sample: list[object] | None = None,
                 sample_rows: int = 100_000) -> None:
        self.path = Path(path)
        self.chunk_rows = int(chunk_rows)
        self.header = read_header(self.path)
        missing = [c for c in required if c not in self.header]
        if missing:
            raise DataError(self.path, 1, f"missing column {missing[0]!r}")
        self.symbol_col = symbol_col if symbol_col in self.header else None
        venue_col = venue_col if venue_col in self.header else None
        self.symbol_given = symbol is not None
        cols = [c for c in [self.symbol_col, venue_col, *price_cols] if c]
        first = next((df for _, df in self._raw_frames(dict.fromkeys(cols, str), cols, sample_rows)), None)
        if symbol is None:
            if self.symbol_col and first is not None and len(first):
                symbol = str(first[self.symbol_col].iloc[0])
            else:
                symbol = self.path.name.split("_")[0].split(".")[0]
        self.symbol = symbol
        sel = first
        if first is not None and self.symbol_col:
            mine = first[first[self.symbol_col] == symbol]
            sel = mine if len(mine) else first
        venue = str(sel[venue_col].iloc[0]) if venue_col and sel is not None and len(sel) else ""
        if sample is None:
            sample = list(pd.concat([sel[c] for c in price_cols])) if sel is not None and len(sel) and price_cols \
                else []
        self.instrument: Instrument = resolve(symbol, venue, tick_size=tick_size, table=instruments,
                                              sample=sample, where=self.path)
        self.tick_size = self.instrument.tick_size

    def _raw_frames(self, dtypes: dict[str, object], usecols: list[str],
                    rows: int | None = None) -> Iterator[tuple[int, pd.DataFrame]]:
        rows = rows or self.chunk_rows
        if is_parquet(self.path):
            import pyarrow.parquet as pq
            row = 1
            for batch in pq.ParquetFile(self.path).iter_batches(batch_size=rows, columns=usecols):
                df = batch.to_pandas()
                for c, t in dtypes.items():
                    try:
                        df[c] = df[c].astype(t)
                    except (ValueError, TypeError) as exc:
                        raise DataError(self.path, row, f"column {c}: {exc}") from exc
                yield row, df
                row += len(df)
            return
        for line0, data in byte_chunks(self.path, rows, skip=1):
            yield line0, parse_chunk(self.path, line0, data, self.header, dtypes, usecols)

    def first_value(self, col: str) -> object | None:
        """The first cell of ``col`` (text), or None for an empty file."""
        df = next((d for _, d in self._raw_frames({col: str}, [col], 1)), None)
        return None if df is None or not len(df) else df[col].iloc[0]

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

    def ticks(self, px: np.ndarray, present: np.ndarray, lines: np.ndarray, what: str | list[str],
              rounding: bool = False) -> np.ndarray:
        """Prices -> ticks where ``present``; off-grid (unless ``rounding``) or non-positive prices raise."""
        p = np.where(present, px, 0.0)
        t, off = E.to_ticks(np.nan_to_num(p, nan=0.0, posinf=0.0, neginf=0.0), self.tick_size)
        if rounding:
            off = np.zeros_like(off)
        bad = present & (off | ~(p > 0) | ~np.isfinite(p))
        if bad.any():
            r, c = np.argwhere(bad.reshape(len(bad), -1))[0]
            name = what if isinstance(what, str) else what[c]
            v = float(p.reshape(len(p), -1)[r, c])
            if np.isnan(v):
                why = "missing price"
            elif v <= 0:
                why = f"price {v!r} is not positive"
            elif np.isinf(v):
                why = f"price {v!r} is not finite"
            else:
                why = f"price {v!r} is not a multiple of tick {self.tick_size:g}"
                if self.instrument.tick_from.startswith("inferred"):
                    why += " (inferred from the first rows); pass --tick-size"
            raise DataError(self.path, int(lines[r]), f"{name}: {why}")
        return np.where(present, t, 0)

    def check_sizes(self, sz: np.ndarray, lines: np.ndarray, what: str | list[str]) -> None:
        """Negative sizes raise."""
        bad = sz < 0
        if bad.any():
            r, c = np.argwhere(bad.reshape(len(bad), -1))[0]
            name = what if isinstance(what, str) else what[c]
            raise DataError(self.path, int(lines[r]), f"{name}: negative size {float(sz.reshape(len(sz), -1)[r, c])!r}")


def choice(col: pd.Series, allowed: tuple[str, ...], path: Path, lines: np.ndarray) -> np.ndarray:
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


def concat(chunks: object) -> np.ndarray:
    parts = list(chunks)  # type: ignore[call-overload]
    return np.concatenate(parts) if parts else E.empty(0)
