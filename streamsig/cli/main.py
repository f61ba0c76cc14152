"""The ``streamsig`` command. Every subcommand shares one set of data options."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from streamsig.errors import DataError

from streamsig.cli.options import (Columns, Data, Instruments, Levels, Seed, Source, Symbols, TickSize, Updates,
                                   console, feature_spec, flush_notes, open_data, progress)

app = typer.Typer(help="Real-time limit-order-book signals: replay, features, models, paper trading.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.command()
def features(
    source: Source = "synthetic", data: Data = None, levels: Levels = None, symbols: Symbols = None,
    updates: Updates = None, seed: Seed = None, tick_size: TickSize = None, columns: Columns = None,
    instruments: Instruments = None,
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write.")] = Path("features.parquet"),
    spec: Annotated[Optional[Path], typer.Option("--spec", help="TOML file of FeatureSpec fields (windows...).")] = None,
) -> None:
    """Compute the feature table (one row per consistent book state) and write it to Parquet."""
    from streamsig.book.events import Reason
    from streamsig.features.table import write_parquet

    feeds = open_data(source, data, levels, symbols, updates, seed, tick_size, columns, instruments)
    fspec = feature_spec(levels or feeds[0].levels, spec)
    t0 = time.perf_counter()
    with progress() as prog:
        task = prog.add_task("features", total=None, rate="")
        n_ev = [0]

        def tick(n: int) -> None:
            n_ev[0] += n
            prog.update(task, advance=n, rate=f"{n_ev[0] / (time.perf_counter() - t0):,.0f} events/s")

        rows, rejects = write_parquet(feeds, fspec, out, tick)
    flush_notes()
    skipped = (Reason.DUPLICATE, Reason.BENIGN_DELETE)
    bad = {Reason(i).name: int(c) for i, c in enumerate(rejects[:len(Reason)]) if i and c and i not in skipped}
    benign = int(rejects[Reason.BENIGN_DELETE])
    console.print(f"wrote {rows:,} rows x {fspec.n_features} features from {n_ev[0]:,} events "
                  f"({', '.join(f.symbol for f in feeds)}) to {out}" + (f"; rejected: {bad}" if bad else "")
                  + (f"; benign deletes (levels not held): {benign:,}" if benign else ""))


from streamsig.cli import backtest as _backtest, demo as _demo, live as _live  # noqa: E402
from streamsig.cli import models as _models, serve as _serve  # noqa: E402

_demo.register(app)
_live.register(app)
_models.register(app)
_backtest.register(app)
_serve.register(app)


def main() -> None:
    """Entry point: one-line errors for bad input (files, options, models), no tracebacks."""
    try:
        app()
    except SystemExit as done:
        if done.code in (0, None):
            flush_notes()
        raise
    except (DataError, ValueError, OSError) as exc:
        console.print(f"[red]error:[/] {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                      highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
