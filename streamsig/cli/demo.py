"""The ``streamsig demo`` command: the whole live pipeline on one machine."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from streamsig.cli.options import (Columns, Data, Instruments, Levels, Seed, Source, Symbols, TickSize,
                                   feature_spec, open_data, parse_speed)


def demo(
    source: Source = "synthetic", data: Data = None, levels: Levels = None, symbols: Symbols = None,
    updates: Annotated[Optional[int], typer.Option("--updates", min=1, help="Synthetic only: updates per symbol.")] = None,
    seed: Seed = None, tick_size: TickSize = None, columns: Columns = None,
    instruments: Instruments = None,
    kafka: Annotated[Optional[str], typer.Option("--kafka", envvar="STREAMSIG_KAFKA",
                                                 help="External Kafka HOST:PORT (default: embedded broker).")] = None,
    speed: Annotated[str, typer.Option("--speed", help="Replay speed: 1 (real time), 10... or max.")] = "1",
    duration: Annotated[Optional[float], typer.Option("--duration", help="Stop after this many seconds (default: 60; 0 = until the data ends).")] = 60.0,
    model: Annotated[Optional[Path], typer.Option("--model", help="Model folder; default: models/default, else the OFI rule.")] = None,
    ws_port: Annotated[int, typer.Option("--ws-port", help="Websocket signal server port.")] = 8765,
    metrics_port: Annotated[int, typer.Option("--metrics-port", help="Prometheus /metrics port.")] = 9100,
    token: Annotated[Optional[str], typer.Option("--token", envvar="STREAMSIG_TOKEN", help="Websocket token (default: random, printed).")] = None,
) -> None:
    """Run the whole live pipeline on one machine: broker, producer, worker, paper trader,
    websocket signals and Prometheus metrics, with a live status line. Ctrl-C stops it cleanly."""
    import asyncio

    from streamsig.live.broker import resolve_kafka
    from streamsig.models.registry import default_model
    from streamsig.trading.strategies import load_strategy
    from streamsig.live.demo import run_demo

    feeds = open_data(source, data, levels, symbols, updates, seed, tick_size, columns, instruments)
    strat, model_id, spec = load_strategy(model or default_model(), "ofi", {"enter": 0.2, "max_position": 1.0})
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


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to ``app``."""
    app.command("demo")(demo)
