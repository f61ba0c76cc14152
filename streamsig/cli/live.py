"""CLI commands of the live service: ``broker``, ``produce``, ``worker``, ``trade``."""
from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from streamsig.live.config import stream_config
from streamsig.models.registry import default_model
from streamsig.trading.strategies import load_strategy, online_factory
from streamsig.cli.options import parse_speed
from streamsig.cli.options import Data, Levels, Seed, Source, Symbols, Updates, console, open_data, progress

Kafka = Annotated[Optional[str], typer.Option(
    "--kafka", envvar="STREAMSIG_KAFKA",
    help="Kafka bootstrap HOST:PORT (Apache Kafka, Redpanda...). Without it the embedded Tansu broker "
         "is started on loopback (memory only).")]
Prefix = Annotated[str, typer.Option("--topic-prefix", help="Prefix for every topic name (one per deployment).")]
Partitions = Annotated[int, typer.Option("--partitions", min=1, help="Partitions per topic when creating them.")]
MetricsPort = Annotated[int, typer.Option("--metrics-port", help="Port for Prometheus /metrics (0: off).")]
MaxSymbols = Annotated[int, typer.Option("--max-symbols", min=1, envvar="STREAMSIG_MAX_SYMBOLS",
                                         help="Most symbols this process holds; frames of others are "
                                              "dead-lettered as UNKNOWN_SYMBOL.")]
AllowSymbols = Annotated[str, typer.Option("--allow-symbols", envvar="STREAMSIG_ALLOW_SYMBOLS",
                                           help="Comma-separated symbols to accept (empty: any).")]
SeqWindow = Annotated[int, typer.Option("--seq-window", min=1, envvar="STREAMSIG_SEQ_WINDOW",
                                        help="Largest forward sequence jump a frame may make "
                                             "(beyond it: SEQUENCE_JUMP dead letter).")]


def register(app: typer.Typer) -> None:
    """Add the live-service commands to ``app``."""

    @app.command()
    def broker(port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0: pick a free one).")] = 9092,
               partitions: Partitions = 4, prefix: Prefix = "") -> None:
        """Run the embedded Tansu broker (memory storage, loopback) until Ctrl-C; creates the topics."""
        from streamsig.live.broker import EmbeddedBroker
        from streamsig.wire.topics import Topics, ensure_topics

        with EmbeddedBroker(port or None) as b:
            asyncio.run(ensure_topics(b.bootstrap, Topics(prefix).all(), partitions))
            console.print(f"broker ready on {b.bootstrap} (memory storage; Ctrl-C stops it)")
            typer.echo(b.bootstrap)
            try:
                signal.sigwait({signal.SIGINT, signal.SIGTERM})
            except KeyboardInterrupt:
                pass

    @app.command()
    def produce(
        source: Source = "synthetic", data: Data = None, levels: Levels = None, symbols: Symbols = None,
        updates: Updates = None, seed: Seed = None, kafka: Kafka = None, prefix: Prefix = "",
        partitions: Partitions = 4,
        speed: Annotated[str, typer.Option("--speed", help="Replay speed: 1 (real time), 10, 100... or max.")] = "max",
        frame_size: Annotated[int, typer.Option("--frame-size", min=1, help="Max events per Kafka message.")] = 500,
        frame_delay_ms: Annotated[float, typer.Option("--frame-delay-ms", help="Max time an event waits for its frame.")] = 5.0,
        snapshot_every: Annotated[int, typer.Option("--snapshot-every", help="Events between full book snapshots (0: none).")] = 10_000,
    ) -> None:
        """Replay book events onto the book-events topic, framed and keyed by symbol."""
        from streamsig.live.broker import resolve_kafka
        from streamsig.live.producer import produce as run_produce
        from streamsig.wire.topics import Topics, ensure_topics

        rate = parse_speed(speed)
        feeds = open_data(source, data, levels, symbols, updates, seed)
        bootstrap, brk = resolve_kafka(kafka)
        try:
            topics = Topics(prefix)
            asyncio.run(ensure_topics(bootstrap, topics.all(), partitions))
            t0 = time.perf_counter()
            with progress() as prog:
                task = prog.add_task("produce", total=None, rate="")
                stats = asyncio.run(run_produce(feeds, bootstrap, topics.book_events, rate, frame_size,
                                                frame_delay_ms, snapshot_every,
                                                lambda n: prog.update(task, advance=n, rate="")))
            dt = time.perf_counter() - t0
            console.print(f"produced {stats.events:,} events in {stats.frames:,} frames "
                          f"({stats.snapshots} snapshots) to {topics.book_events} on {bootstrap} "
                          f"in {dt:.1f} s ({stats.events / dt:,.0f} events/s)")
        finally:
            if brk is not None:
                brk.stop()

    @app.command()
    def worker(
        kafka: Kafka = None, prefix: Prefix = "", partitions: Partitions = 4, levels: Levels = None,
        model: Annotated[Optional[Path], typer.Option("--model", help="Model folder (model.onnx + card.json); default: models/default.")] = None,
        strategy: Annotated[str, typer.Option("--strategy", help="Without a model: a rule, ofi or sma.")] = "ofi",
        enter: Annotated[float, typer.Option("--enter", help="Policy: enter when p_up - p_down crosses this.")] = 0.2,
        exit_: Annotated[float, typer.Option("--exit", help="Policy: exit back to flat below this (hysteresis).")] = 0.0,
        max_position: Annotated[float, typer.Option("--max-position", help="Policy: largest position in units.")] = 1.0,
        state_dir: Annotated[Path, typer.Option("--state-dir", help="Where per-symbol checkpoints are kept.")] = Path(".streamsig/worker"),
        challenger: Annotated[bool, typer.Option("--challenger", help="Also run an online (river) model per symbol, learning each row once its label matures; its signals go to <signals>-challenger.")] = False,
        metrics_port: MetricsPort = 9101,
        max_symbols: MaxSymbols = 512, allow_symbols: AllowSymbols = "", seq_window: SeqWindow = 1_000_000,
    ) -> None:
        """Run the Faust worker: book frames -> features -> model -> signals (+ dead letters)."""
        from streamsig.features import FeatureSpec
        from streamsig.live.worker import build_worker

        policy = {"enter": enter, "exit": exit_, "max_position": max_position}
        strat, model_id, spec = load_strategy(model or default_model(), strategy, policy)
        spec = spec or FeatureSpec(levels=levels or 10)
        make_ch = online_factory(model or default_model(), spec) if challenger else None
        run_app(kafka, prefix, partitions, metrics_port, f"worker: model {model_id}",
                lambda cfg: build_worker(cfg, spec, strat, model_id, state_dir, challenger=make_ch),
                max_symbols=max_symbols, allow_symbols=allow_symbols, seq_window=seq_window)

    @app.command()
    def trade(
        kafka: Kafka = None, prefix: Prefix = "", partitions: Partitions = 4, levels: Levels = None,
        fee_bps: Annotated[float, typer.Option("--fee-bps", help="Taker fee in basis points.")] = 1.0,
        slippage_bps: Annotated[float, typer.Option("--slippage-bps", help="Extra slippage in basis points.")] = 0.0,
        latency_ns: Annotated[int, typer.Option("--latency-ns", help="Signal -> order latency in ns.")] = 0,
        latency_events: Annotated[int, typer.Option("--latency-events", help="Signal -> order latency in book updates.")] = 0,
        max_position: Annotated[float, typer.Option("--max-position", help="Largest position in units.")] = 1.0,
        max_drawdown: Annotated[Optional[float], typer.Option("--max-drawdown", help="Kill switch: stop at this drawdown (fraction).")] = None,
        metrics_port: MetricsPort = 9102,
        max_symbols: MaxSymbols = 512, allow_symbols: AllowSymbols = "", seq_window: SeqWindow = 1_000_000,
    ) -> None:
        """Run the paper trader: signals + book -> fills and P&L (costs, latency, risk limits)."""
        from streamsig.features import FeatureSpec
        from streamsig.live.trader import build_trader
        from streamsig.trading import ExecConfig

        ex = ExecConfig(fee_bps=fee_bps, slippage_bps=slippage_bps, signal_latency_ns=latency_ns,
                        signal_latency_events=latency_events, max_position=max_position)
        run_app(kafka, prefix, partitions, metrics_port, "trader",
                lambda cfg: build_trader(cfg, FeatureSpec(levels=levels or 10), ex, max_position, None,
                                         max_drawdown),
                max_symbols=max_symbols, allow_symbols=allow_symbols, seq_window=seq_window)


def run_app(kafka: str | None, prefix: str, partitions: int, metrics_port: int, what: str,
            build: Any, **settings: Any) -> None:
    """Resolve the broker, create topics, serve metrics and run ``build(cfg)``'s Faust app until stopped."""
    from streamsig.telemetry import serve_metrics
    from streamsig.live.broker import resolve_kafka
    from streamsig.live.config import run_worker
    from streamsig.wire.topics import ensure_topics

    bootstrap, brk = resolve_kafka(kafka)
    try:
        cfg = stream_config(bootstrap, prefix, partitions, **settings)
        topics = cfg.topics.all() + (cfg.topics.signals + "-challenger",)
        asyncio.run(ensure_topics(bootstrap, topics, cfg.partitions))
        serve_metrics(metrics_port)
        console.print(f"{what} on {bootstrap}, metrics on :{metrics_port}")
        run_worker(build(cfg))
    finally:
        if brk is not None:
            brk.stop()
