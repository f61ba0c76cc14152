"""Options and helpers every ``streamsig`` subcommand shares (one set of data options)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from streamsig.errors import DataError

console = Console(stderr=True, soft_wrap=True)

# ---- the shared data options ------------------------------------------------------------
Source = Annotated[str, typer.Option("--source", help="Where book events come from: synthetic | lobster | crypto "
                                     "(default: detected from --data; synthetic without --data).")]
Data = Annotated[Optional[Path], typer.Option(
    "--data", help="LOBSTER message file or folder of pairs; crypto book file (Tardis book_snapshot_N or "
    "incremental_book_L2, trades beside it are merged); synthetic scenario TOML (optional).")]
Levels = Annotated[Optional[int], typer.Option("--levels", min=1, help="Book levels per side used for features.")]
Symbols = Annotated[Optional[str], typer.Option("--symbols", help="Comma-separated symbols to keep (default: all).")]
Updates = Annotated[Optional[int], typer.Option("--updates", min=1, help="Synthetic only: updates per symbol.")]
Seed = Annotated[Optional[int], typer.Option("--seed", help="Synthetic only: generator seed.")]
TickSize = Annotated[Optional[float], typer.Option(
    "--tick-size", help="Price tick of every symbol (default: --instruments, else inferred from the data's price grid).")]
Columns = Annotated[Optional[Path], typer.Option(
    "--columns", help="TOML (or JSON) column map of a snapshot layout not detected from the header "
    "(keys: timestamp, bid_price, bid_size, ask_price, ask_size with {i}, first_level, time_unit...).")]
Instruments = Annotated[Optional[Path], typer.Option(
    "--instruments", help="TOML table of instruments: [SYMBOL] tick_size, lot_size, contract = linear|inverse, "
    "multiplier, quote, settle, taker_fee_bps, maker_fee_bps.")]


def _symbols(s: str | None) -> list[str] | None:
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def open_data(source: str, data: Path | None, levels: int | None, symbols: str | None,
              updates: int | None = None, seed: int | None = None, tick_size: float | None = None,
              columns: Path | None = None, instruments: Path | None = None, quiet: bool = False):  # noqa: ANN201
    """Feeds for the shared data options (see :func:`streamsig.book.sources.open_feeds`).

    The default ``--source synthetic`` with a ``--data`` that is no scenario
    file means "detect the source". Each file's tick (and how it was found) and
    what was detected are stated on stderr, one line per feed.
    """
    from streamsig.book.sources import open_feeds

    if source == "synthetic" and data is not None and data.suffix != ".toml":
        source = "auto"
    feeds = open_feeds(source, data, levels, _symbols(symbols), n_updates=updates, seed=seed,
                       tick_size=tick_size, columns=columns, instruments=instruments)
    if not quiet:
        for f in feeds:
            if f.label.startswith("synthetic:"):
                continue
            inst = f.instrument
            kind = f", {inst.contract} x{inst.multiplier:g} in {inst.currency}" if inst.inverse else ""
            _NOTES.append(f"{f.label}: {f.symbol} tick {f.tick_size:g} ({inst.tick_from}){kind}"
                          + "".join(f"; {n}" for n in f.notes))
    return feeds


_NOTES: list[str] = []


def flush_notes() -> None:
    """Print what :func:`open_data` detected (each file's tick and how it was found, layout, time unit,
    depth chosen), once. Commands call it when they have read their data; on an error the notes
    are dropped so the error stays the one line."""
    for line in _NOTES:
        console.print(line, highlight=False)
    _NOTES.clear()


def feature_spec(levels: int, spec_file: Path | None = None):  # noqa: ANN201
    """A FeatureSpec for ``levels``, optionally overridden by a TOML file of FeatureSpec fields."""
    import tomllib

    from streamsig.features import FeatureSpec

    kw: dict[str, object] = {"levels": levels}
    if spec_file:
        try:
            raw = tomllib.loads(spec_file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise DataError(spec_file, None, f"cannot read feature spec: {exc}") from None
        for k, v in raw.items():
            kw[k] = tuple(v) if isinstance(v, list) else v
    try:
        return FeatureSpec(**kw)  # type: ignore[arg-type]
    except TypeError as exc:
        raise DataError(spec_file or "feature spec", None, str(exc)) from None


def progress() -> Progress:
    """A rich progress bar on stderr."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=console,
                    disable=not console.is_terminal)


def parse_speed(speed: str) -> float | None:
    """``max`` -> None (as fast as possible), else a positive multiple of real time (0 is an error)."""
    if speed.lower() in ("max", "inf"):
        return None
    try:
        v = float(speed.lower().rstrip("x"))
    except ValueError:
        raise DataError("--speed", None, f"expected a number or 'max', got {speed!r}") from None
    if not v > 0:
        raise DataError("--speed", None, f"must be > 0 (or 'max' for as fast as possible), got {speed!r}")
    return v
