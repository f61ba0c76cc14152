"""CLI commands of the live service: ``broker``, ``produce``, ``worker``, ``trade``."""
from __future__ import annotations

import asyncio
import signal
import time
from typing import Annotated, Any, Optional

import typer

from streamsig.live.config import stream_config
from streamsig.models.registry import default_model
from streamsig.trading.strategies import load_strategy, online_factory
from streamsig.cli.options import (
    ENTER, EXIT, LATENCY_EVENTS, MARGIN_BPS, MAX_DRAWDOWN, MAX_POSITION, MIN_HOLD, POLICY, AllowSymbols,
    CheckpointS, Columns, console, Data, Enter, Exit, FeeBps, Instruments, Kafka, LatencyEvents, LatencyNs,
    Levels, MakerFeeBps, MarginBps, market_fee_bps, MaxDrawdown, MaxPosition, MaxSymbols, MetricsPort, MinHold,
    Model, open_data, parse_speed, Partitions, Passive, Policy, Prefix, print_config, PrintConfig, progress,
    Seed, SeqWindow, SlippageBps, Source, StateDir, Symbols, TickSize, trading_configs, Unit, Updates,
)


def register(app: typer.Typer) -> None:
    """Add the live-service commands to ``app``."""

    @app.command()
    def broker(port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0: pick a free one).")] = 9092,
               partitions: Partitions = 4, prefix: Prefix = "", show: PrintConfig = False) -> None:
        """Run the embedded Tansu broker (memory storage, loopback) until Ctrl-C; creates the topics."""
        from streamsig.live.broker import EmbeddedBroker
        from streamsig.wire.topics import Topics, ensure_topics

        if show:
            print_config("broker", port=port, stream=stream_config("127.0.0.1:%d" % port, prefix, partitions))
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
        updates: Updates = None, seed: Seed = None, tick_size: TickSize = None, columns: Columns = None,
        instruments: Instruments = None, kafka: Kafka = None, prefix: Prefix = "",
        partitions: Partitions = 4,
        speed: Annotated[str, typer.Option("--speed", help="Replay speed: 1 (real time), 10, 100... or max.")] = "max",
        frame_size: Annotated[int, typer.Option("--frame-size", min=1, help="Max events per Kafka message.")] = 500,
        frame_delay_ms: Annotated[float, typer.Option("--frame-delay-ms", help="Max time an event waits for its frame.")] = 5.0,
        snapshot_every: Annotated[int, typer.Option("--snapshot-every", help="Events between full book snapshots (0: none).")] = 10_000,
        serve_requests: Annotated[bool, typer.Option("--serve-requests/--no-serve-requests", help="Answer workers' snapshot requests (a symbol that lost its state) with a snapshot at its next update.")] = True,
        show: PrintConfig = False,
    ) -> None:
        """Replay book events onto the book-events topic, framed and keyed by symbol."""
        from streamsig.heap import settled
        from streamsig.live.broker import resolve_kafka
        from streamsig.live.checkpoint import state_topics
        from streamsig.live.producer import produce as run_produce
        from streamsig.wire.topics import Topics, ensure_topics

        rate = parse_speed(speed)
        if show:
            print_config("produce", kafka=kafka, stream=stream_config(kafka or "embedded", prefix, partitions),
                         data={"source": source, "data": str(data) if data else None, "levels": levels,
                               "symbols": symbols, "updates": updates, "seed": seed, "tick_size": tick_size,
                               "columns": str(columns) if columns else None,
                               "instruments": str(instruments) if instruments else None})
        feeds = open_data(source, data, levels, symbols, updates, seed, tick_size, columns, instruments)
        bootstrap, brk = resolve_kafka(kafka)
        try:
            topics = Topics(prefix)
            asyncio.run(ensure_topics(bootstrap, topics.all() + state_topics(topics), partitions))
            t0 = time.perf_counter()
            with progress() as prog:
                task = prog.add_task("produce", total=None, rate="")
                stats = asyncio.run(settled(run_produce(
                    feeds, bootstrap, topics.book_events, rate, frame_size, frame_delay_ms, snapshot_every,
                    lambda n: prog.update(task, advance=n, rate=""),
                    requests_topic=state_topics(topics)[2] if serve_requests else None)))
            dt = time.perf_counter() - t0
            console.print(f"produced {stats.events:,} events in {stats.frames:,} frames "
                          f"({stats.snapshots} snapshots, {stats.requested} on request) to {topics.book_events} on {bootstrap} "
                          f"in {dt:.1f} s ({stats.events / dt:,.0f} events/s)")
        finally:
            if brk is not None:
                brk.stop()

    @app.command()
    def worker(
        kafka: Kafka = None, prefix: Prefix = "", partitions: Partitions = 4, levels: Levels = None,
        model: Model = None,
        strategy: Annotated[str, typer.Option("--strategy", help="Without a model: a rule, ofi or sma.")] = "ofi",
        enter: Enter = ENTER, exit_: Exit = EXIT, max_position: MaxPosition = MAX_POSITION, unit: Unit = None,
        min_hold: MinHold = MIN_HOLD, policy_kind: Policy = POLICY, margin_bps: MarginBps = MARGIN_BPS,
        fee_bps: FeeBps = None, slippage_bps: SlippageBps = 0.0,
        state_dir: StateDir = None, checkpoint_s: CheckpointS = 1.0,
        challenger: Annotated[bool, typer.Option("--challenger", help="Also run an online (river) model per symbol, learning each row once its label matures; its signals go to <signals>-challenger.")] = False,
        metrics_port: MetricsPort = 9101, show: PrintConfig = False,
        max_symbols: MaxSymbols = 512, allow_symbols: AllowSymbols = "", seq_window: SeqWindow = 1_000_000,
    ) -> None:
        """Run the Faust worker: book frames -> features -> model -> signals (+ dead letters).

        Without --model it runs models/default; --strategy applies when there is none. The
        policy options, and the fee and slippage the edge policy expects, mean what they mean in
        ``backtest`` (give ``trade`` the same fee and slippage)."""
        from streamsig.features import FeatureSpec
        from streamsig.live.checkpoint import default_state_dir
        from streamsig.live.worker import build_worker

        policy, _ = trading_configs(enter, exit_, max_position, unit, min_hold, fee_bps=fee_bps,
                                    slippage_bps=slippage_bps, kind=policy_kind, margin_bps=margin_bps)
        model = model or default_model()
        if show:
            print_config("worker", kafka=kafka, stream=stream_config(kafka or "embedded", prefix, partitions,
                                                             max_symbols=max_symbols, allow_symbols=allow_symbols,
                                                             seq_window=seq_window),
                         policy=policy, model=model, strategy=strategy, metrics_port=metrics_port,
                         state_dir=state_dir or default_state_dir("worker"), checkpoint_s=checkpoint_s)
        strat, model_id, spec = load_strategy(model, strategy, policy)
        spec = spec or FeatureSpec(levels=levels or 10)
        make_ch = online_factory(model, spec) if challenger else None
        run_app(kafka, prefix, partitions, metrics_port, f"worker: model {model_id}",
                lambda cfg: build_worker(cfg, spec, strat, model_id, state_dir or default_state_dir("worker"),
                                         checkpoint_s=checkpoint_s, challenger=make_ch),
                max_symbols=max_symbols, allow_symbols=allow_symbols, seq_window=seq_window)

    @app.command()
    def trade(
        kafka: Kafka = None, prefix: Prefix = "", partitions: Partitions = 4, levels: Levels = None,
        fee_bps: FeeBps = None, instruments: Instruments = None,
        maker_fee_bps: MakerFeeBps = 0.0, slippage_bps: SlippageBps = 0.0,
        latency_ns: LatencyNs = 0, latency_events: LatencyEvents = LATENCY_EVENTS,
        max_position: MaxPosition = MAX_POSITION, max_drawdown: MaxDrawdown = MAX_DRAWDOWN,
        passive: Passive = False,
        capital: Annotated[Optional[float], typer.Option(
            "--capital", help="Capital per symbol (default: the notional of --max-position at its first mid).")] = None,
        state_dir: StateDir = None, checkpoint_s: CheckpointS = 1.0,
        metrics_port: MetricsPort = 9102, show: PrintConfig = False,
        max_symbols: MaxSymbols = 512, allow_symbols: AllowSymbols = "", seq_window: SeqWindow = 1_000_000,
    ) -> None:
        """Run the paper trader: signals + book -> fills and P&L (costs, latency, risk limits).

        The execution options mean what they mean in ``backtest``; --levels should be the worker's
        (it sizes the book the trader keeps). The trader reads no data file, so without --fee-bps
        each symbol pays the taker_fee_bps an --instruments table gives it, else 1 bp; the table's
        contract (e.g. inverse) also values that symbol's positions."""
        from streamsig.book.instrument import load_table, resolve
        from streamsig.features import FeatureSpec
        from streamsig.live.checkpoint import default_state_dir
        from streamsig.live.trader import build_trader

        policy, ex = trading_configs(max_position=max_position, fee_bps=fee_bps, maker_fee_bps=maker_fee_bps,
                                     slippage_bps=slippage_bps, latency_ns=latency_ns,
                                     latency_events=latency_events, max_drawdown=max_drawdown, passive=passive)
        cap = FeatureSpec(levels=levels or 10).book_capacity
        if show:
            print_config("trade", kafka=kafka, stream=stream_config(kafka or "embedded", prefix, partitions,
                                                             max_symbols=max_symbols, allow_symbols=allow_symbols,
                                                             seq_window=seq_window),
                         policy=policy, exec=ex, capital=capital, book_capacity=cap, metrics_port=metrics_port,
                         instruments=str(instruments) if instruments else None,
                         state_dir=state_dir or default_state_dir("trader"), checkpoint_s=checkpoint_s)
        table = load_table(instruments) if instruments is not None else {}

        def instrument_for(symbol: str, tick: float):  # noqa: ANN202 - Instrument | None
            return resolve(symbol, tick_size=tick, table=table) if symbol in table else None

        run_app(kafka, prefix, partitions, metrics_port, "trader",
                lambda cfg: build_trader(cfg, ex, policy, capital, book_capacity=cap, instrument_for=instrument_for,
                                         fee_for=lambda inst: market_fee_bps(fee_bps, inst),
                                         state_dir=str(state_dir or default_state_dir("trader")),
                                         checkpoint_s=checkpoint_s),
                max_symbols=max_symbols, allow_symbols=allow_symbols, seq_window=seq_window)


def run_app(kafka: str | None, prefix: str, partitions: int, metrics_port: int, what: str,
            build: Any, **settings: Any) -> None:
    """Resolve the broker, create topics, serve metrics and run ``build(cfg)``'s Faust app until stopped."""
    from streamsig.heap import settle, settle_later
    from streamsig.telemetry import serve_metrics
    from streamsig.live.broker import resolve_kafka
    from streamsig.live.config import run_worker
    from streamsig.live.checkpoint import state_topics
    from streamsig.wire.topics import ensure_topics

    bootstrap, brk = resolve_kafka(kafka)
    try:
        cfg = stream_config(bootstrap, prefix, partitions, **settings)
        topics = cfg.topics.all() + (cfg.topics.signals + "-challenger",) + state_topics(cfg.topics)
        asyncio.run(ensure_topics(bootstrap, topics, cfg.partitions))
        serve_metrics(metrics_port)
        console.print(f"{what} on {bootstrap}, metrics on :{metrics_port}")
        app = build(cfg)
        app.task(settle_later)  # the heap again once the first batches warmed up
        settle()
        run_worker(app)
    finally:
        if brk is not None:
            brk.stop()
