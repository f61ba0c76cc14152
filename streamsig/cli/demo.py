"""The ``streamsig demo`` command: the whole live pipeline on one machine."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from streamsig.cli.options import (
    ENTER, EXIT, LATENCY_EVENTS, MARGIN_BPS, MAX_DRAWDOWN, MAX_POSITION, MIN_HOLD, POLICY, Columns,
    Data, Enter, Exit, feature_spec, FeeBps, Instruments, Kafka, LatencyEvents, LatencyNs, Levels,
    MakerFeeBps, MarginBps, market_fee_bps, MaxDrawdown, MaxPosition, MetricsPort, MinHold, Model, open_data,
    PagePort, parse_speed, Partitions, Passive, Policy, Prefix, print_config, PrintConfig, Seed, SlippageBps,
    Source, Symbols, TickSize, trading_configs, Unit, Updates,
)


def demo(
    source: Source = "synthetic", data: Data = None, levels: Levels = None, symbols: Symbols = None,
    updates: Updates = None, seed: Seed = None, tick_size: TickSize = None, columns: Columns = None,
    instruments: Instruments = None, kafka: Kafka = None, prefix: Prefix = "demo",
    partitions: Partitions = 4,
    speed: Annotated[str, typer.Option("--speed", help="Replay speed: 1 (real time), 10... or max.")] = "1",
    duration: Annotated[Optional[float], typer.Option("--duration", help="Stop after this many seconds of streaming, counted once every part is up (default: 60; 0 = until the data ends).")] = 60.0,
    model: Model = None,
    ws_port: Annotated[int, typer.Option("--ws-port", help="Websocket signal server port.")] = 8765,
    metrics_port: MetricsPort = 9100,
    token: Annotated[Optional[str], typer.Option("--token", envvar="STREAMSIG_TOKEN", help="Websocket token (default: random, printed).")] = None,
    page_port: PagePort = 8766,
    challenger: Annotated[bool, typer.Option("--challenger", help="Also run the online (river) challenger beside the model (it learns row by row: at speed 2 and above the worker falls behind).")] = False,
    enter: Enter = ENTER, exit: Exit = EXIT, max_position: MaxPosition = MAX_POSITION, unit: Unit = None,  # noqa: A002
    min_hold: MinHold = MIN_HOLD, fee_bps: FeeBps = None, maker_fee_bps: MakerFeeBps = 0.0,
    slippage_bps: SlippageBps = 0.0, latency_ns: LatencyNs = 0, latency_events: LatencyEvents = LATENCY_EVENTS,
    max_drawdown: MaxDrawdown = MAX_DRAWDOWN, passive: Passive = False, policy_kind: Policy = POLICY,
    margin_bps: MarginBps = MARGIN_BPS, show: PrintConfig = False,
) -> None:
    """Run the whole live pipeline on one machine: broker, producer, worker, paper trader,
    websocket signals and Prometheus metrics, with a live status line. Ctrl-C stops it cleanly.
    Without --model it runs models/default, else the OFI rule. The policy is the threshold policy,
    as in backtest and worker; --policy edge trades only when the expected move pays the costs
    (on the synthetic source it stays flat at the 1 bp fee)."""
    import asyncio

    from streamsig.heap import settled
    from streamsig.live.broker import resolve_kafka
    from streamsig.live.config import stream_config
    from streamsig.models.registry import default_model
    from streamsig.trading.strategies import load_strategy, online_factory
    from streamsig.live.demo import run_demo

    policy, ex = trading_configs(enter, exit, max_position, unit, min_hold, fee_bps, maker_fee_bps, slippage_bps,
                                 latency_ns, latency_events, max_drawdown, passive, policy_kind, margin_bps)
    model = model or default_model()
    if show:
        print_config("demo", kafka=kafka, stream=stream_config(kafka or "embedded", prefix, partitions),
                     policy=policy, exec=ex, model=model, metrics_port=metrics_port, ws_port=ws_port,
                     page_port=page_port, challenger=challenger)
    feeds = open_data(source, data, levels, symbols, updates, seed, tick_size, columns, instruments)
    strat, model_id, spec = load_strategy(model, "ofi", policy)
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
        res = asyncio.run(settled(run_demo(
            feeds, bootstrap, strat, model_id, spec, rate, duration or None, ws_port, metrics_port, token,
            Path(".streamsig") / "demo-state", say, ex, policy, prefix, partitions, page_port=page_port,
            challenger=online_factory(model, spec) if challenger else None,
            fee_for=lambda inst: market_fee_bps(fee_bps, inst))))
    finally:
        if broker is not None:
            broker.stop()
    out.print(f"replayed {res['events']:,} events in {res['frames']:,} frames; stopped cleanly")


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to ``app``."""
    app.command("demo")(demo)
