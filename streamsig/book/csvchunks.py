"""Chunked reading of large CSV files (plain or gzip) into numpy columns, with ``file:line`` errors.

Shared by the LOBSTER and crypto readers.
"""
from __future__ import annotations

import gzip
import io
import zlib
from contextlib import contextmanager
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import numba as nb
import numpy as np
import pandas as pd

from streamsig.errors import DataError


def open_binary(path: str | Path) -> BinaryIO:
    """Open a file for reading bytes, transparently un-gzipping ``*.gz``."""
    p = Path(path)
    return gzip.open(p, "rb") if p.suffix == ".gz" else open(p, "rb")


@contextmanager
def _readable(path: str | Path) -> Iterator[None]:
    """Turn a broken gzip stream into a one-line :class:`DataError` naming the file."""
    try:
        yield
    except EOFError:
        raise DataError(path, None, "truncated gzip file (it ends before its end-of-stream marker)") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(path, None, f"corrupt gzip file ({exc})") from None


def read_first_line(path: str | Path) -> bytes:
    """The first line of a plain or gzip file (b"" if empty); broken gzip raises DataError."""
    with _readable(path), open_binary(path) as f:
        return f.readline()


def byte_chunks(path: str | Path, chunk_rows: int, skip: int = 0) -> Iterator[tuple[int, bytes]]:
    """Yield ``(number of the first line, bytes of up to chunk_rows whole lines)``.

    Line numbers are 1-based file lines; ``skip`` lines (a header) are dropped.
    The file is read in blocks, so only about one chunk is held in memory. A
    truncated or corrupt ``.gz`` raises :class:`DataError` naming the file.
    """
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be >= 1")
    with _readable(path):
        yield from _byte_chunks(path, chunk_rows, skip)


def _byte_chunks(path: str | Path, chunk_rows: int, skip: int) -> Iterator[tuple[int, bytes]]:
    with open_binary(path) as f:
        for _ in range(skip):
            f.readline()
        line, pending, have, block = skip + 1, b"", 0, 1 << 16
        while True:
            parts = [pending]
            while have < chunk_rows:
                data = f.read(block)
                if not data:
                    break
                parts.append(data)
                have += data.count(b"\n")
                block = min(block * 2, 1 << 24)
            buf = b"".join(parts)
            if not buf:
                return
            if have >= chunk_rows:
                nl = np.flatnonzero(np.frombuffer(buf, np.uint8) == 10)
                cut = int(nl[chunk_rows - 1]) + 1
                out, pending, have = buf[:cut], buf[cut:], have - chunk_rows
                yield line, out
                line += chunk_rows
            else:
                yield line, buf
                return


@nb.njit(cache=True)
def _scan_lines(buf, n):
    starts = np.empty(n, np.int64)
    ends = np.empty(n, np.int64)
    commas = np.zeros(n, np.int64)
    k, s, c = 0, 0, 0
    for i in range(buf.shape[0] + 1):
        if i < buf.shape[0] and buf[i] != 10:
            if buf[i] == 44:
                c += 1
            continue
        if k == n:
            break
        e = i - 1 if i > s and buf[i - 1] == 13 else i
        starts[k], ends[k], commas[k] = s, e, c
        k, s, c = k + 1, i + 1, 0
    return starts, ends, commas


def line_starts(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start and end (exclusive, before any ``\\r\\n``) byte offsets and comma count of each line.

    >>> [a.tolist() for a in line_starts(b"ab,c\\n\\nx\\r\\nlast")]
    [[0, 5, 6, 9], [4, 5, 7, 13], [1, 0, 0, 0]]
    """
    n = data.count(b"\n") + (not data.endswith(b"\n"))
    return _scan_lines(np.frombuffer(data, np.uint8), n)


def _check_columns(path, line0: int, starts, ends, counts, ncols: int) -> None:
    bad = np.flatnonzero((counts != ncols - 1) | (ends == starts))
    if bad.size:
        i = int(bad[0])
        reason = "empty line" if ends[i] == starts[i] else f"expected {ncols} columns, got {counts[i] + 1}"
        raise DataError(path, line0 + i, reason)


@nb.njit(cache=True)
def _parse_ints(buf, starts, ends, ncols, first):
    n = starts.shape[0]
    out = np.zeros((n, ncols - first), np.int64)
    for r in range(n):
        i, e = starts[r], ends[r]
        for _ in range(first):
            while i < e and buf[i] != 44:
                i += 1
            i += 1
        for col in range(first, ncols):
            neg = i < e and buf[i] == 45
            if neg:
                i += 1
            v = 0
            nd = 0
            while i < e and buf[i] != 44:
                ch = buf[i]
                if ch < 48 or ch > 57 or nd >= 18:
                    return out, r, col
                v = v * 10 + (ch - 48)
                nd += 1
                i += 1
            if nd == 0:
                return out, r, col
            out[r, col - first] = -v if neg else v
            i += 1
    return out, -1, -1


def parse_int_chunk(path: str | Path, line0: int, data: bytes, names: list[str],
                    first: int = 0) -> np.ndarray:
    """Integer CSV bytes (no header) -> ``(lines, len(names) - first)`` int64 array.

    Columns before ``first`` are skipped unparsed. Raises :class:`DataError`
    naming the first empty line, wrong column count or non-integer cell.

    >>> parse_int_chunk("o.csv", 1, b"1,-2\\n30,4", ["a", "b"]).tolist()
    [[1, -2], [30, 4]]
    >>> parse_int_chunk("o.csv", 1, b"1,2\\n3,4.5\\n", ["a", "b"])
    Traceback (most recent call last):
    ...
    streamsig.errors.DataError: o.csv:2: column b: '4.5' is not an integer
    """
    starts, ends, counts = line_starts(data)
    _check_columns(path, line0, starts, ends, counts, len(names))
    out, r, c = _parse_ints(np.frombuffer(data, np.uint8), starts, ends, len(names), first)
    if r >= 0:
        cell = data[starts[r]:ends[r]].split(b",")[c].decode("utf-8", "replace")
        raise DataError(path, line0 + r, f"column {names[c]}: {cell!r} is not an integer")
    return out


def parse_chunk(path: str | Path, line0: int, data: bytes, names: list[str],
                dtypes: Mapping[str, object], usecols: list[str] | None = None) -> pd.DataFrame:
    """Parse CSV bytes (no header, no quoting) into a frame with ``names``.

    Raises :class:`DataError` naming the first line that is empty, has the
    wrong number of columns, or holds a value its column's dtype rejects.

    >>> parse_chunk("m.csv", 1, b"1,2\\n3,4\\n", ["a", "b"], {"a": "int64"})["a"].tolist()
    [1, 3]
    >>> parse_chunk("m.csv", 1, b"1,2\\nx,4\\n", ["a", "b"], {"a": "int64"})
    Traceback (most recent call last):
    ...
    streamsig.errors.DataError: m.csv:2: column a: 'x' is not an integer
    """
    _check_columns(path, line0, *line_starts(data), len(names))
    try:
        return pd.read_csv(io.BytesIO(data), header=None, names=names, dtype=dtypes,
                           usecols=usecols, skip_blank_lines=False, engine="c")
    except (ValueError, TypeError, OverflowError) as exc:
        _raise_bad_cell(path, line0, data, names, dtypes, usecols, exc)
        raise  # pragma: no cover


def _raise_bad_cell(path, line0, data, names, dtypes, usecols, exc) -> None:
    """Find the first cell that broke a typed parse and raise a DataError for it."""
    raw = pd.read_csv(io.BytesIO(data), header=None, names=names, dtype=str,
                      keep_default_na=False, usecols=usecols, skip_blank_lines=False)
    first: tuple[int, str] | None = None
    for col, dt in dtypes.items():
        try:
            kind = np.dtype(dt).kind  # type: ignore[call-overload]
        except TypeError:
            kind = "O"  # e.g. "category"
        if kind not in "iuf" or col not in raw:
            continue
        num = pd.to_numeric(raw[col].str.strip(), errors="coerce")
        bad = num.isna().to_numpy().copy()
        if kind in "iu":
            ok = ~bad
            bad[ok] = (num[ok] % 1 != 0).to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            what = "an integer" if kind in "iu" else "a number"
            if first is None or i < first[0]:
                first = (i, f"column {col}: {raw[col].iloc[i]!r} is not {what}")
    if first is None:
        raise DataError(path, line0, f"cannot parse the chunk starting here: {exc}") from exc
    raise DataError(path, line0 + first[0], first[1]) from exc
