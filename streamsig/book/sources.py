"""One way to open any data source: ``open_feeds(source, data, levels, symbols)``.

Every CLI command and the Python API go through here, so training, backtest and
the live producer read the same events from the same file.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamsig.errors import DataError

SOURCES = ("synthetic", "lobster", "crypto")
#: the synthetic scenario used when ``--data`` is not given (three symbols, planted OFI signal)
DEFAULT_SCENARIO = Path(__file__).resolve().parents[2] / "producers" / "synthetic.toml"


@dataclass
class Feed:
    """The events of one symbol from one file (or generator), in chunks."""

    symbol: str
    tick_size: float
    levels: int
    label: str  #: where the events come from (file name or scenario)
    chunks: Callable[[], Iterator[np.ndarray]]  #: a fresh iterator on each call
    size_hint: int | None = None  #: rows or updates, for progress bars

    def read_all(self) -> np.ndarray:
        from streamsig.book.events import EVENT_DTYPE

        parts = list(self.chunks())
        return np.concatenate(parts) if parts else np.zeros(0, EVENT_DTYPE)


def _synthetic(data: Path | None, levels: int | None, symbols: list[str] | None,
               n_updates: int | None, seed: int | None) -> list[Feed]:
    from dataclasses import replace

    from streamsig.book import synthetic as syn

    if data is None and DEFAULT_SCENARIO.exists():
        data = DEFAULT_SCENARIO
    cfg = syn.load_scenario(data) if data else syn.SyntheticConfig(symbols=("SYN0", "SYN1", "SYN2"))
    over: dict[str, object] = {}
    if levels:
        over["levels"] = levels
    if symbols:
        over["symbols"] = tuple(symbols)
    if n_updates:
        over["n_updates"] = n_updates
    if seed is not None:
        over["seed"] = seed
    cfg = replace(cfg, **over) if over else cfg
    feeds = []
    for i, sym in enumerate(cfg.symbols):
        def chunks(i: int = i) -> Iterator[np.ndarray]:
            return syn.iter_symbol(cfg, i)
        feeds.append(Feed(sym, cfg.tick_size, cfg.levels, f"synthetic:{sym}", chunks, cfg.n_updates))
    return feeds


def _lobster(data: Path, levels: int | None, symbols: list[str] | None) -> list[Feed]:
    from streamsig.book.lobster import LobsterReader, lobster_pairs

    feeds = []
    for msg in lobster_pairs(data):
        rd = LobsterReader(msg, levels=levels)
        if symbols and rd.symbol not in symbols:
            continue
        feeds.append(Feed(rd.symbol, rd.tick_size, rd.levels, msg.name,
                          lambda msg=msg: iter(LobsterReader(msg, levels=levels)), None))
    if not feeds:
        raise DataError(data, None, f"no LOBSTER message files for symbols {symbols}")
    return feeds


def _crypto(data: Path, levels: int | None, symbols: list[str] | None) -> list[Feed]:
    from streamsig.book import crypto

    name = data.name
    if "incremental_book" in name:
        cls = crypto.IncrementalReader
    elif "trades" in name:
        raise DataError(data, None, "a trades file has no book; pass the book file (trades beside it are merged)")
    else:
        cls = crypto.SnapshotReader
    first = cls(data, levels=levels) if cls is crypto.SnapshotReader else cls(data)
    syms = symbols or [first.symbol]
    feeds = []
    trades = _trades_beside(data)
    for sym in syms:
        def chunks(sym: str = sym) -> Iterator[np.ndarray]:
            rd = cls(data, levels=levels, symbol=sym) if cls is crypto.SnapshotReader else cls(data, symbol=sym)
            if trades is None:
                yield from rd
                return
            book = rd.read_all()
            tr = crypto.TradesReader(trades, symbol=sym, tick_size=rd.tick_size).read_all()
            yield crypto.merge_events(book, tr)
        rd0 = cls(data, levels=levels, symbol=sym) if cls is crypto.SnapshotReader else cls(data, symbol=sym)
        lv = levels or getattr(rd0, "levels", None) or 10
        feeds.append(Feed(sym, rd0.tick_size, lv, name, chunks, None))
    return feeds


def _trades_beside(path: Path) -> Path | None:
    """Tardis naming: ``..._book_snapshot_10_...`` / ``..._incremental_book_L2_...`` -> ``..._trades_...``."""
    for key in ("incremental_book_L2", "book_snapshot_25", "book_snapshot_10", "book_snapshot_5"):
        if key in path.name:
            cand = path.with_name(path.name.replace(key, "trades"))
            return cand if cand.exists() else None
    return None


def open_feeds(source: str, data: str | Path | None = None, levels: int | None = None,
               symbols: list[str] | None = None, n_updates: int | None = None,
               seed: int | None = None) -> list[Feed]:
    """Open ``source`` (synthetic | lobster | crypto) as one feed per symbol/file.

    A missing path or unknown source raises :class:`DataError` in one line.
    """
    if source not in SOURCES:
        raise DataError(source, None, f"unknown source (choose one of {', '.join(SOURCES)})")
    path = Path(data) if data else None
    if path is not None and not path.exists():
        raise DataError(path, None, "no such file or directory")
    if source == "synthetic":
        return _synthetic(path, levels, symbols, n_updates, seed)
    if path is None:
        raise DataError(source, None, "--data is required for this source")
    if source == "lobster":
        return _lobster(path, levels, symbols)
    return _crypto(path, levels, symbols)
