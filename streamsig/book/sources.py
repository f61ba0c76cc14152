"""One way to open any data source: ``open_feeds(source, data, levels, symbols)``.

Every CLI command and the Python API go through here, so training, backtest and
the live producer read the same events from the same file. Each :class:`Feed`
carries its :class:`~streamsig.book.instrument.Instrument` (tick, contract,
fees) and ``notes`` on what was detected (layout, time unit, depth chosen).

``source="auto"`` (or None) detects the source from ``data``: a ``.toml``
scenario is synthetic; LOBSTER message files by name (``..._message_<L>.csv``);
crypto files by header (Tardis ``incremental_book_L2``, ``book_snapshot_N``,
the snapshot layouts of :mod:`streamsig.book.snapshots`). Files that hold no
book (Tardis ``quotes`` and ``trades``), LOBSTER orderbook files and folders of
crypto files get a one-line error saying what they are and what to pass.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamsig.book.instrument import Instrument
from streamsig.errors import DataError

SOURCES = ("synthetic", "lobster", "crypto")
#: the synthetic scenario used when ``--data`` is not given (three symbols, planted OFI signal)
DEFAULT_SCENARIO = Path(__file__).resolve().parents[2] / "producers" / "synthetic.toml"
_INCREMENTAL = {"is_snapshot", "side", "price", "amount"}
_QUOTES = {"ask_amount", "ask_price", "bid_price", "bid_amount"}
_TRADES = {"id", "side", "price", "amount"}
_DATA_SUFFIXES = (".csv", ".gz", ".parquet", ".pq")


@dataclass
class Feed:
    """The events of one symbol from one file (or generator), in chunks."""

    symbol: str
    tick_size: float
    levels: int
    label: str  #: where the events come from (file name or scenario)
    chunks: Callable[[], Iterator[np.ndarray]]  #: a fresh iterator on each call
    size_hint: int | None = None  #: rows or updates, for progress bars
    instrument: Instrument | None = None  #: tick, contract and fees (None: a plain linear unit)
    notes: list[str] = field(default_factory=list)  #: what was detected or chosen, one line each

    def __post_init__(self) -> None:
        if self.instrument is None:
            self.instrument = Instrument(self.symbol, tick_size=self.tick_size, tick_from="source default")

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
        inst = Instrument(sym, venue="synthetic", tick_size=cfg.tick_size, tick_from="scenario")
        feeds.append(Feed(sym, cfg.tick_size, cfg.levels, f"synthetic:{sym}", chunks, cfg.n_updates, inst))
    return feeds


def _lobster(data: Path, levels: int | None, symbols: list[str] | None, tick_size: float | None,
             instruments: Mapping[str, Mapping[str, object]] | None) -> list[Feed]:
    from streamsig.book.lobster import LobsterReader, lobster_pairs, pick_depths

    msgs, notes = pick_depths(lobster_pairs(data), levels)
    feeds = []
    for msg in msgs:
        rd = LobsterReader(msg, levels=levels, tick_size=tick_size, instruments=instruments)
        if symbols and rd.symbol not in symbols:
            continue
        tick = rd.tick_size
        mine = [n for n in notes if n.startswith(msg.name.split("_message_")[0] + ":")]
        feeds.append(Feed(rd.symbol, tick, rd.levels, msg.name,
                          lambda msg=msg, tick=tick: iter(LobsterReader(msg, levels=levels, tick_size=tick)),
                          None, rd.instrument, mine))
    if not feeds:
        raise DataError(data, None, f"no LOBSTER message files for symbols {symbols}")
    return feeds


def _crypto(data: Path, levels: int | None, symbols: list[str] | None, tick_size: float | None,
            columns: Path | None, instruments: Mapping[str, Mapping[str, object]] | None) -> list[Feed]:
    from streamsig.book.incremental import IncrementalReader
    from streamsig.book.snapshots import SnapshotColumns, SnapshotReader
    from streamsig.book.tabular import read_header
    from streamsig.book.trades import TradesReader, merge_events

    if data.is_dir():
        raise DataError(data, None, _folder_says(data))
    kind = "snapshot" if columns is not None else _crypto_kind(data, read_header(data))
    colmap = SnapshotColumns.load(columns) if columns is not None else None

    def reader(sym: str | None, tick: float | None = tick_size):  # noqa: ANN202
        if kind == "incremental":
            return IncrementalReader(data, symbol=sym, tick_size=tick, instruments=instruments)
        return SnapshotReader(data, columns=colmap, levels=levels, symbol=sym, tick_size=tick,
                              instruments=instruments)

    first = reader(None)
    syms = symbols or [first.symbol]
    feeds = []
    trades = _trades_beside(data)
    for sym in syms:
        rd0 = first if sym == first.symbol else reader(sym)
        tick = rd0.tick_size

        def chunks(sym: str = sym, tick: float = tick) -> Iterator[np.ndarray]:
            rd = reader(sym, tick)
            if trades is None:
                yield from rd
                return
            book = rd.read_all()
            tr = TradesReader(trades, symbol=sym, tick_size=tick).read_all()
            yield merge_events(book, tr)
        lv = levels or getattr(rd0, "levels", None) or 10
        notes = []
        if kind == "snapshot":
            notes.append(f"layout {rd0.columns.name}, {rd0.levels} levels, timestamps {_unit_words(rd0.time_unit)}")
        else:
            notes.append("Tardis incremental_book_L2, timestamps epoch µs")
        if trades is not None:
            notes.append(f"trades merged from {trades.name}")
        feeds.append(Feed(sym, tick, lv, data.name, chunks, None, rd0.instrument, notes))
    return feeds


def _unit_words(unit: str) -> str:
    return {"iso": "ISO datetime text", "s": "epoch seconds", "ms": "epoch ms", "us": "epoch µs",
            "ns": "epoch ns"}.get(unit, unit)


def _crypto_kind(path: Path, names: list[str]) -> str:
    """``incremental`` or ``snapshot`` from a header; book-less files raise what they are."""
    from streamsig.book.snapshots import detect_layout

    header = set(names)
    if _INCREMENTAL <= header:
        return "incremental"
    if _QUOTES <= header and not any(c.startswith("asks[") for c in header):
        raise DataError(path, None, "quotes files are not book files (best bid/ask only); pass the "
                        "book_snapshot_N or incremental_book_L2 file of the same day")
    if _TRADES <= header and "is_snapshot" not in header:
        raise DataError(path, None, "a trades file has no book; pass the book file (trades beside it are merged)")
    detect_layout(names, path)
    return "snapshot"


def _folder_says(path: Path) -> str:
    files = sorted(f.name for f in path.iterdir() if f.is_file() and f.name.endswith(_DATA_SUFFIXES))
    kinds = sorted({k for k in ("incremental_book_L2", "book_snapshot", "quotes", "trades")
                    if any(k in f for f in files)})
    what = f"a folder of {len(files)} crypto files ({', '.join(kinds) or 'unrecognised'})"
    return f"{what}; crypto sources read one book file: pass --data <folder>/<one book_snapshot_N or " \
           "incremental_book_L2 file>"


def detect_source(data: Path) -> str:
    """``synthetic``, ``lobster`` or ``crypto`` for a path, or a one-line DataError listing the sources."""
    from streamsig.book.lobster import _MSG_RE, _OB_RE
    from streamsig.book.snapshots import detect_layout
    from streamsig.book.tabular import read_header

    if data.is_dir():
        names = [f.name for f in data.iterdir() if f.is_file()]
        if any(_MSG_RE.fullmatch(n) for n in names):
            return "lobster"
        if any(n.endswith(_DATA_SUFFIXES) for n in names):
            raise DataError(data, None, _folder_says(data))
        raise DataError(data, None, f"no data files in this folder (sources: {', '.join(SOURCES)})")
    if data.suffix == ".toml":
        return "synthetic"
    if _MSG_RE.fullmatch(data.name) or _OB_RE.fullmatch(data.name):
        return "lobster"
    try:
        header = read_header(data)
    except (UnicodeDecodeError, OSError) as exc:
        raise DataError(data, None, f"cannot read a header ({exc}); pass --source ({', '.join(SOURCES)})") from None
    cols = set(header)
    if _INCREMENTAL <= cols or _QUOTES <= cols or _TRADES <= cols:
        return "crypto"
    try:
        detect_layout(header, data)
        return "crypto"
    except DataError:
        pass
    raise DataError(data, None, f"cannot tell the source from this file; pass --source ({', '.join(SOURCES)}), "
                    "and for another snapshot layout --columns map.toml")


def _trades_beside(path: Path) -> Path | None:
    """Tardis naming: ``..._book_snapshot_10_...`` / ``..._incremental_book_L2_...`` -> ``..._trades_...``."""
    for key in ("incremental_book_L2", "book_snapshot_25", "book_snapshot_10", "book_snapshot_5"):
        if key in path.name:
            cand = path.with_name(path.name.replace(key, "trades"))
            return cand if cand.exists() else None
    return None


def open_feeds(source: str | None, data: str | Path | None = None, levels: int | None = None,
               symbols: list[str] | None = None, n_updates: int | None = None,
               seed: int | None = None, *, tick_size: float | None = None, columns: str | Path | None = None,
               instruments: str | Path | Mapping[str, Mapping[str, object]] | None = None) -> list[Feed]:
    """Open ``source`` (synthetic | lobster | crypto | auto) as one feed per symbol/file.

    ``tick_size`` overrides every feed's tick; ``instruments`` is a TOML file
    (or mapping) of per-symbol :class:`Instrument` fields; ``columns`` a
    snapshot column map (crypto). A missing path or unknown source raises
    :class:`DataError` in one line.
    """
    from streamsig.book.instrument import load_table

    path = Path(data) if data else None
    if path is not None and not path.exists():
        raise DataError(path, None, "no such file or directory")
    if source in (None, "auto"):
        source = detect_source(path) if path is not None else "synthetic"
    if source not in SOURCES:
        raise DataError(source, None, f"unknown source (choose one of {', '.join(SOURCES)})")
    table = load_table(instruments) if isinstance(instruments, (str, Path)) else instruments
    if source == "synthetic":
        if path is not None and path.suffix != ".toml":
            raise DataError(path, None, f"not a synthetic scenario (.toml); this looks like {detect_source(path)} "
                            f"data: pass --source {detect_source(path)} or leave --source out")
        return _synthetic(path, levels, symbols, n_updates, seed)
    if path is None:
        raise DataError(source, None, "--data is required for this source")
    if source == "lobster":
        return _lobster(path, levels, symbols, tick_size, table)
    return _crypto(path, levels, symbols, tick_size, Path(columns) if columns else None, table)
