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
Source = Annotated[str, typer.Option("--source", help="Where book events come from: synthetic | lobster | crypto.")]
Data = Annotated[Optional[Path], typer.Option(
    "--data", help="LOBSTER message file or folder of pairs; crypto book file (Tardis book_snapshot_N or "
    "incremental_book_L2, trades beside it are merged); synthetic scenario TOML (optional).")]
Levels = Annotated[Optional[int], typer.Option("--levels", min=1, help="Book levels per side used for features.")]
Symbols = Annotated[Optional[str], typer.Option("--symbols", help="Comma-separated symbols to keep (default: all).")]
Updates = Annotated[Optional[int], typer.Option("--updates", min=1, help="Synthetic only: updates per symbol.")]
Seed = Annotated[Optional[int], typer.Option("--seed", help="Synthetic only: generator seed.")]


def _symbols(s: str | None) -> list[str] | None:
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def open_data(source: str, data: Path | None, levels: int | None, symbols: str | None,
              updates: int | None = None, seed: int | None = None):  # noqa: ANN201
    """Feeds for the shared data options (see :func:`streamsig.book.sources.open_feeds`)."""
    from streamsig.book.sources import open_feeds

    return open_feeds(source, data, levels, _symbols(symbols), n_updates=updates, seed=seed)


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
    """``max`` -> None (as fast as possible), else a positive multiple of real time."""
    if speed.lower() in ("max", "inf", "0"):
        return None
    try:
        v = float(speed.lower().rstrip("x"))
    except ValueError:
        raise DataError("--speed", None, f"expected a number or 'max', got {speed!r}") from None
    if v <= 0:
        raise DataError("--speed", None, f"must be > 0, got {speed!r}")
    return v
