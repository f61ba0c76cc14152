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
    updates: Annotated[Optional[int], typer.Option("--updates", min=1, help="Synthetic only: updates per symbol.")] = None,
    seed: Seed = None,
    kafka: Annotated[Optional[str], typer.Option("--kafka", envvar="STREAMSIG_KAFKA",
                                                 help="External Kafka HOST:PORT (default: embedded broker).")] = None,
    speed: Annotated[str, typer.Option("--speed", help="Replay speed: 1 (real time), 10... or max.")] = "1",
    duration: Annotated[Optional[float], typer.Option("--duration", help="Stop after this many seconds (default: 60; 0 = until the data ends).")] = 60.0,
    model: Annotated[Optional[Path], typer.Option("--model", help="Model folder; default: models/default, else the OFI rule.")] = None,
    ws_port: Annotated[int, typer.Option("--ws-port", help="Websocket signal server port.")] = 8765,
    metrics_port: Annotated[int, typer.Option("--metrics-port", help="Prometheus /metrics port.")] = 9100,
    token: Annotated[Optional[str], typer.Option("--token", envvar="STREAMSIG_TOKEN", help="Websocket token (default: random, printed).")] = None,
    policy: Annotated[str, typer.Option("--policy", help="threshold (default here: the synthetic scenario's moves never pay the demo trader's 1 bps fee, so edge would sit flat) or edge.")] = "threshold",
) -> None:
    """Run the whole live pipeline on one machine: broker, producer, worker, paper trader,
    websocket signals and Prometheus metrics, with a live status line. Ctrl-C stops it cleanly."""
    import asyncio

    from streamsig.stream.broker import resolve_kafka
    from streamsig.stream.commands import default_model, load_strategy, parse_speed, policy_config
    from streamsig.stream.demo import run_demo

    feeds = open_data(source, data, levels, symbols, updates, seed)
    pol = policy_config(policy, enter=0.2, max_position=1.0, fee_bps=1.0)
    strat, model_id, spec = load_strategy(model or default_model(), "ofi", pol)
    spec = spec or feature_spec(levels or feeds[0].levels)
    rate = parse_speed(speed)
    out = Console()

    def say(msg: str, status: bool = False) -> None:
        if status and out.is_terminal:
            out.print(msg, end="\r", soft_wrap=True, highlight=False)
        else:
            out.print(msg, soft_wrap=True, highlight=False)

    bootstrap, broker = resolve_kafka(kafka)
    try:
        res = asyncio.run(run_demo(feeds, bootstrap, strat, model_id, spec, rate, duration or None, ws_port,
                                   metrics_port, token, Path(".streamsig") / "demo-state", say))
    finally:
        if broker is not None:
            broker.stop()
    out.print(f"replayed {res['events']:,} events in {res['frames']:,} frames; stopped cleanly")


from streamsig.stream import commands as _stream_commands  # noqa: E402

_stream_commands.register(app)
from streamsig.models import commands as _model_commands  # noqa: E402

_model_commands.register(app)
from streamsig.backtest import commands as _backtest_commands  # noqa: E402

_backtest_commands.register(app)
from streamsig.serve import commands as _serve_commands  # noqa: E402

_serve_commands.register(app)


def main() -> None:
    """Entry point: one-line errors for bad input (files, options, models), no tracebacks."""
    try:
        app()
    except (DataError, ValueError, OSError) as exc:
        console.print(f"[red]error:[/] {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                      highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
