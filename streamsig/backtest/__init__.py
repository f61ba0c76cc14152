"""Replay backtests: the live objects driven from a file at full speed.

Read in this order:

- :mod:`.runner` — :func:`run_backtest`: per feed, chunk by chunk, feature rows
  -> strategy targets -> one :class:`~streamsig.trading.account.Account` per
  strategy (the shared trading domain, :mod:`streamsig.trading`: its
  strategies, rule baselines, book cursor, executor and portfolio);
- :mod:`.result` — curves, fills, round trips, metrics; :mod:`.outputs` — the
  run folder (``summary.json``, Parquet); :mod:`.report`, :mod:`.charts`,
  :mod:`.assumptions` — ``report.html``;
- :mod:`.walkforward` — train on block k, trade block k+1;
- :mod:`.hbt` — the cross-check against hftbacktest.

The command is :mod:`streamsig.cli.backtest`.
"""
from streamsig.trading.rules import BuyAndHold, Flat, OfiRule, Sma, default_baselines
from streamsig.backtest.outputs import summary_json, write_outputs
from streamsig.backtest.result import SIGNAL_DTYPE, BacktestResult
from streamsig.backtest.runner import run_backtest
from streamsig.trading.strategies import ModelStrategy, ScheduledModelStrategy, Strategy
from streamsig.backtest.walkforward import walk_forward_backtest

__all__ = ["SIGNAL_DTYPE", "BacktestResult", "BuyAndHold", "Flat", "ModelStrategy", "OfiRule",
           "ScheduledModelStrategy", "Sma", "Strategy", "default_baselines", "run_backtest", "summary_json",
           "walk_forward_backtest", "write_outputs"]
