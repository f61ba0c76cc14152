"""The ``streamsig`` command. Every subcommand shares one set of data options."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from streamsig.errors import DataError

from streamsig.cliopts import (Data, Levels, Seed, Source, Symbols, Updates, console, feature_spec,
                               open_data, progress)

app = typer.Typer(help="Real-time limit-order-book signals: replay, features, models, paper trading.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.command()
def features(
    source: Source = "synthetic", data: Data = None, levels: Levels = None, symbols: Symbols = None,
    updates: Updates = None, seed: Seed = None,
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write.")] = Path("features.parquet"),
    spec: Annotated[Optional[Path], typer.Option("--spec", help="TOML file of FeatureSpec fields (windows...).")] = None,
) -> None:
    """Compute the feature table (one row per consistent book state) and write it to Parquet."""
    from streamsig.book.events import Reason
    from streamsig.features.table import write_parquet

    feeds = open_data(source, data, levels, symbols, updates, seed)
    fspec = feature_spec(levels or feeds[0].levels, spec)
    t0 = time.perf_counter()
    with progress() as prog:
        task = prog.add_task("features", total=None, rate="")
        n_ev = [0]

        def tick(n: int) -> None:
            n_ev[0] += n
            prog.update(task, advance=n, rate=f"{n_ev[0] / (time.perf_counter() - t0):,.0f} events/s")

        rows, rejects = write_parquet(feeds, fspec, out, tick)
    bad = {Reason(i).name: int(c) for i, c in enumerate(rejects[:len(Reason)]) if i and c}
    console.print(f"wrote {rows:,} rows x {fspec.n_features} features from {n_ev[0]:,} events "
                  f"({', '.join(f.symbol for f in feeds)}) to {out}" + (f"; rejected: {bad}" if bad else ""))


@app.command()
def demo(
    source: Source = "synthetic", data: Data = None, levels: Levels = None, symbols: Symbols = None,
    updates: Annotated[Optional[int], typer.Option("--updates", min=1, help="Synthetic only: updates per symbol.")] = 50_000,
    seed: Seed = None,
) -> None:
    """Generate (or read) a book, compute features, and print a short summary."""
    import numpy as np

    from streamsig.features.table import feature_frame

    feeds = open_data(source, data, levels, symbols, updates, seed)
    fspec = feature_spec(levels or feeds[0].levels)
    t0 = time.perf_counter()
    with progress() as prog:
        task = prog.add_task("features", total=None, rate="")
        df = feature_frame(feeds, fspec, lambda n: prog.update(task, advance=n, rate=""))
    dt = time.perf_counter() - t0
    out = Console()
    out.print(f"[bold]{len(df):,}[/] book states from {len(feeds)} feed(s) in {dt:.2f} s")
    for sym, g in df.groupby("symbol"):
        ofi = g["ofi_1_sum_50"].to_numpy() if "ofi_1_sum_50" in g else g["ofi_1"].to_numpy()
        fut = np.log(g["mid"]).diff(50).shift(-50).to_numpy()
        ok = np.isfinite(ofi) & np.isfinite(fut)
        corr = float(np.corrcoef(ofi[ok], fut[ok])[0, 1]) if ok.sum() > 10 else float("nan")
        out.print(f"  {sym}: mid {g['mid'].iloc[0]:.4f} -> {g['mid'].iloc[-1]:.4f}, "
                  f"mean spread {g['spread_ticks'].mean():.2f} ticks, "
                  f"corr(ofi_1 sum over 50, next 50-state return) = {corr:+.3f}")


def main() -> None:
    """Entry point: one-line errors for bad input, no tracebacks."""
    try:
        app()
    except DataError as exc:
        console.print(f"[red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
