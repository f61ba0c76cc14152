"""The ``streamsig backtest`` command (added to the CLI with :func:`register`)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from streamsig.cli.options import (
    ENTER, EXIT, LATENCY_EVENTS, MARGIN_BPS, MAX_DRAWDOWN, MAX_POSITION, MIN_HOLD, POLICY, Columns,
    console, Data, Enter, Exit, feature_spec, FeeBps, Instruments, LatencyEvents, LatencyNs, Levels,
    MakerFeeBps, MarginBps, market_fee_bps, MaxDrawdown, MaxPosition, MinHold, Model, open_data, Passive,
    Policy, print_config, PrintConfig, progress, Seed, SlippageBps, Source, Symbols, TickSize,
    trading_configs, Unit, Updates,
)
from streamsig.errors import DataError

if TYPE_CHECKING:
    from streamsig.backtest.result import BacktestResult

_WalkForward = Annotated[bool, typer.Option(
    "--walk-forward", help="Cut the feature rows in time into --folds blocks; train a model on block k "
    "(streamsig.models.train_model defaults) and trade it on block k+1; report the stitched out-of-sample run.")]
_Folds = Annotated[int, typer.Option("--folds", min=2, help="Walk-forward: number of time blocks.")]
_Horizon = Annotated[int, typer.Option("--horizon", min=1, help="Walk-forward: label horizon in feature rows.")]
_ModelType = Annotated[str, typer.Option("--model-type", help="Walk-forward: logreg | rf | lightgbm | lstm | transformer.")]
_TrainFolds = Annotated[Optional[int], typer.Option(
    "--train-folds", min=1, help="Walk-forward: folds of train_model's own evaluation inside each block "
    "(default: its default; fewer for short samples).")]
_Capital = Annotated[Optional[float], typer.Option(
    "--capital", help="Account size, split over symbols (default: the notional of --max-position at each "
    "symbol's first mid).")]
_Bar = Annotated[float, typer.Option("--bar-seconds", help="Equity sampling for Sharpe, drawdown, VaR.")]
_Out = Annotated[Path, typer.Option("--out", help="Reports folder; the run goes to <out>/<run-id>/.")]
_RunId = Annotated[Optional[str], typer.Option("--run-id", help="Folder name (default: a hash of the inputs).")]
_Spec = Annotated[Optional[Path], typer.Option(
    "--spec", help="TOML file of FeatureSpec fields (windows...); default: the model card's spec if it has "
    "one, else the defaults for --levels.")]


def backtest(
    source: Source = "synthetic", data: Data = None, levels: Levels = None, symbols: Symbols = None,
    updates: Updates = None, seed: Seed = None, tick_size: TickSize = None, columns: Columns = None,
    instruments: Instruments = None, model: Model = None, walk_forward: _WalkForward = False,
    folds: _Folds = 4, horizon: _Horizon = 10, model_type: _ModelType = "lightgbm",
    train_folds: _TrainFolds = None, fee_bps: FeeBps = None,
    maker_fee_bps: MakerFeeBps = 0.0, slippage_bps: SlippageBps = 0.0, latency_ns: LatencyNs = 0,
    latency_events: LatencyEvents = LATENCY_EVENTS, max_position: MaxPosition = MAX_POSITION,
    max_drawdown: MaxDrawdown = MAX_DRAWDOWN, passive: Passive = False, enter: Enter = ENTER,
    exit: Exit = EXIT, unit: Unit = None, min_hold: MinHold = MIN_HOLD,  # noqa: A002
    policy: Policy = POLICY, margin_bps: MarginBps = MARGIN_BPS,
    capital: _Capital = None, bar_seconds: _Bar = 1.0, out: _Out = Path("reports"),
    run_id: _RunId = None, spec: _Spec = None, show: PrintConfig = False,
) -> None:
    """Replay events through features, model, policy and the paper executor at full speed, beside the
    flat, buy-and-hold, SMA and OFI baselines on the same events and costs; write summary.json,
    trades/fills/equity/signals Parquet and report.html to <out>/<run-id>/. Without --model (and
    without --walk-forward) only the baselines run."""
    from streamsig.backtest.outputs import write_outputs
    from streamsig.backtest.runner import run_backtest

    policy, exec_cfg = trading_configs(enter, exit, max_position, unit, min_hold, fee_bps, maker_fee_bps,
                                       slippage_bps, latency_ns, latency_events, max_drawdown, passive, policy,
                                       margin_bps)
    if show:
        print_config("backtest", policy=policy, exec=exec_cfg, model=model, capital=capital,
                     data={"source": source, "data": str(data) if data else None, "levels": levels,
                           "symbols": symbols, "updates": updates, "seed": seed, "tick_size": tick_size,
                           "columns": str(columns) if columns else None,
                           "instruments": str(instruments) if instruments else None})
    if model is not None and walk_forward:
        raise DataError(model, None, "--model and --walk-forward exclude each other")
    if model is not None and not (model / "card.json").exists():
        raise DataError(model, None, "not a model folder (no card.json)")
    feeds = open_data(source, data, levels, symbols, updates, seed, tick_size, columns, instruments)
    fspec = (_card_spec(model) if model is not None and spec is None else None) or \
        feature_spec(levels or feeds[0].levels, spec)
    kw = dict(exec_cfg=exec_cfg, policy_cfg=policy, capital=capital, bar_ns=int(bar_seconds * 1e9),
              fee_for=lambda inst: market_fee_bps(fee_bps, inst))
    t0 = time.perf_counter()
    with progress() as prog:
        task = prog.add_task("backtest", total=sum(f.size_hint or 0 for f in feeds) or None, rate="")
        n = [0]

        def tick(k: int) -> None:
            n[0] += k
            prog.update(task, advance=k, rate=f"{n[0] / (time.perf_counter() - t0):,.0f} events/s")

        try:
            if walk_forward:
                from streamsig.backtest.walkforward import walk_forward_backtest

                res = walk_forward_backtest(
                    feeds, fspec, folds=folds, label={"horizon": horizon}, model_type=model_type,
                    train_folds=train_folds, seed=seed or 0, models_dir=out / "models", on_progress=tick,
                    on_stage=lambda s, d, t: prog.update(task, description=f"{s} {d}/{t}"), **kw)
            else:
                res = run_backtest(feeds, fspec, model_dir=model, on_progress=tick, **kw)
        except ValueError as e:
            raise DataError(model or source, None, str(e)) from None
    folder = write_outputs(res, out, run_id)
    for w in res.config.get("warnings") or []:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    _print_table(res)
    console.print(f"{n[0]:,} events in {time.perf_counter() - t0:.1f} s; wrote {folder}/ "
                  "(summary.json, trades/fills/equity/signals .parquet, report.html)")


def _card_spec(model: Path):  # noqa: ANN202 - FeatureSpec | None
    """The feature spec a model card records (``feature_spec``), if it records one."""
    from streamsig.models.card import card_feature_spec, read_card

    return card_feature_spec(read_card(model))


def _print_table(res: BacktestResult) -> None:
    from rich.table import Table

    t = Table(title="after costs")
    for c in ("strategy", "P&L", "return", "Sharpe", "max DD", "round trips", "costs"):
        t.add_column(c, justify="left" if c == "strategy" else "right")
    for s, m in res.summaries().items():
        cells = [("pnl", "{:,.2f}"), ("total_return", "{:.4%}"), ("sharpe", "{:.2f}"), ("max_drawdown", "{:.3%}"),
                 ("n_trades", "{:,.0f}"), ("costs", "{:,.2f}")]
        t.add_row(s, *("–" if m.get(k) is None else f.format(m[k]) for k, f in cells))
    console.print(t)


def register(app: typer.Typer) -> None:
    """Add the ``backtest`` command to ``app``."""
    app.command("backtest")(backtest)
