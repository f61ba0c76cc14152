"""Replay backtest: events -> features -> scorer -> policy -> executor -> portfolio, at full speed.

For each feed (one symbol), chunk by chunk:

1. ``FeatureState.update(chunk)`` gives the chunk's feature rows (one per
   consistent book) in one kernel call;
2. every strategy maps those rows to targets in one call (the model strategy
   scores them in one ``score_batch`` call, then runs ``SignalPolicy``);
3. row by row, every strategy's :class:`~streamsig.trading.account.Account` runs the
   paper trader's step against the book at that row (from a
   :class:`~streamsig.trading.cursor.BookCursor`).

The primary strategy (a model, or any :class:`Strategy`) and the baselines run
in the same pass over the same events with the same costs. Symbols are
independent: each has its own executor and portfolio (risk limits apply per
symbol, as on a partitioned live deployment); the account's curve is their sum.

>>> from streamsig.book.sources import open_feeds
>>> from streamsig.features import FeatureSpec
>>> feeds = open_feeds("synthetic", symbols=["S"], n_updates=2000, seed=1)
>>> res = run_backtest(feeds, FeatureSpec(levels=10))
>>> res.strategies, res.summary("flat")["pnl"]
(['flat', 'buy_and_hold', 'sma', 'ofi'], 0.0)
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from streamsig.trading.rules import default_baselines
from streamsig.trading.cursor import BookCursor
from streamsig.trading.account import Account, step_rows
from streamsig.backtest.result import SIGNAL_DTYPE, BacktestResult, account_record
from streamsig.trading.strategies import Strategy, model_strategy
from streamsig.book import events as E
from streamsig.book.instrument import Instrument
from streamsig.book.sources import Feed
from streamsig.engine import signal_records
from streamsig.features import FeatureSpec, FeatureState
from streamsig.trading import ExecConfig, PolicyConfig


def feed_keys(feeds: Sequence[Feed]) -> list[str]:
    """A unique name per feed: its symbol, or ``symbol:label`` when two feeds share a symbol."""
    syms = [f.symbol for f in feeds]
    return [s if syms.count(s) == 1 else f"{s}:{f.label}" for s, f in zip(syms, feeds)]


def run_backtest(feeds: Sequence[Feed], spec: FeatureSpec, model_dir: str | Path | None = None,
                 strategy: Strategy | None = None, exec_cfg: ExecConfig = ExecConfig(),
                 policy_cfg: PolicyConfig = PolicyConfig(), capital: float | None = None, *,
                 baselines: Sequence[Strategy] | None = None, max_drawdown: float | None = None,
                 start_ns: int | None = None, bar_ns: int = 1_000_000_000, passive: bool | None = None,
                 on_progress: Callable[[int], None] | None = None,
                 fee_for: Callable[[Instrument | None], float] | None = None) -> BacktestResult:
    """Backtest a model (``model_dir``) or ``strategy``, plus baselines, over ``feeds``.

    ``exec_cfg`` gives costs, latency, limits, the kill switch and passive
    orders (its ``tick_size`` is replaced by each feed's; ``max_drawdown`` and
    ``passive`` here, when given, replace its fields); ``policy_cfg`` the
    :class:`PolicyConfig` of a model (its ``max_position`` is also the
    baselines' size). ``capital`` is the account, split evenly over feeds; by
    default each symbol gets the notional of that size at its first mid.
    Trading starts at ``start_ns``. Metrics are taken on the equity resampled
    to ``bar_ns`` bars. ``on_progress`` is called with the number of events of
    every chunk processed. ``fee_for``, when given, is each feed's taker fee for its
    instrument (the commands' per-market fee), replacing ``exec_cfg.fee_bps``.
    """
    if max_drawdown is not None:
        exec_cfg = replace(exec_cfg, max_drawdown=max_drawdown)
    if passive is not None:
        exec_cfg = replace(exec_cfg, passive=passive)
    size = float(policy_cfg.max_position)
    model_info: dict[str, Any] | None = None
    if model_dir is not None:
        if strategy is not None:
            raise ValueError("pass model_dir or strategy, not both")
        from streamsig.models.scorer import load_scorer

        strategy = model_strategy(load_scorer(model_dir), policy_cfg)
        model_info = model_summary(model_dir)
    strategies: list[Strategy] = ([strategy] if strategy is not None else [])
    strategies += list(default_baselines(size) if baselines is None else baselines)
    names = [s.name for s in strategies]
    if len(set(names)) != len(names):
        raise ValueError(f"strategy names must be unique, got {names}")
    keys = feed_keys(feeds)
    per_cap = None if capital is None else float(capital) / max(1, len(feeds))
    res = BacktestResult(strategies=names, primary=strategy.name if strategy is not None else None,
                         model=model_info)
    for key, feed in zip(keys, feeds):
        cfg = replace(exec_cfg, tick_size=feed.tick_size)
        if fee_for is not None:
            cfg = replace(cfg, fee_bps=fee_for(feed.instrument))
        lanes = [Account(n, key, cfg, per_cap, size, start_ns, instrument=feed.instrument) for n in names]
        sig, n_ev, rejects = _replay(feed, spec, strategies, lanes, on_progress)
        res.signals[key] = sig
        res.feeds[key] = {"symbol": feed.symbol, "label": feed.label, "tick_size": feed.tick_size,
                          "instrument": feed.instrument.to_dict() if feed.instrument is not None else None,
                          "fee_bps": cfg.fee_bps, "events": n_ev, "rows": len(sig),
                          "rejects": {E.Reason(i).name: int(c) for i, c in enumerate(rejects)
                                      if i and c and i != E.Reason.BENIGN_DELETE},
                          "benign_deletes": int(rejects[E.Reason.BENIGN_DELETE])}
        for lane in lanes:
            res.lanes[(lane.strategy, key)] = account_record(lane)
    warnings = [w for w in [_training_overlap(model_dir, res)] if w]
    ex = exec_dict(exec_cfg)
    fees = {f["fee_bps"] for f in res.feeds.values()}
    if len(fees) == 1:  # one market fee for every feed (else each feed's entry says its own)
        ex["fee_bps"] = fees.pop()
    res.config = {"spec": spec.to_dict(), "exec": ex, "policy": policy_cfg.to_dict(),
                  "warnings": warnings, "capital": capital, "max_drawdown": exec_cfg.max_drawdown,
                  "start_ns": start_ns, "bar_ns": int(bar_ns), "size": size, "passive": exec_cfg.passive}
    return res


def _replay(feed: Feed, spec: FeatureSpec, strategies: Sequence[Strategy], lanes: list[Account],
            on_progress: Callable[[int], None] | None) -> tuple[np.ndarray, int, np.ndarray]:
    state = FeatureState(spec, feed.tick_size)
    cursor = BookCursor(spec.book_capacity, feed.tick_size)
    traders = [s.start(feed.symbol, spec) for s in strategies]
    imid = spec.index("mid")
    sigs: list[np.ndarray] = []
    n_ev = 0
    rejects = np.zeros(len(E.Reason), np.int64)
    for ev in feed.chunks():
        rows, idx, reasons = state.update(ev)
        rejects += np.bincount(reasons, minlength=len(E.Reason))[:len(E.Reason)]
        ts, seq = ev["exch_ts"][idx], ev["seq"][idx]
        steps = [t.step(rows, ts) for t in traders]
        if traders:
            sigs.append(signal_records(seq, ts, *steps[0], rows, spec, feed.tick_size))
        step_rows(lanes, [s[1].tolist() for s in steps], ev, idx.tolist(), ts.tolist(), seq.tolist(),
                  rows[:, imid].tolist(), cursor)
        n_ev += len(ev)
        if on_progress is not None:
            on_progress(len(ev))
    sig = np.concatenate(sigs) if sigs else np.zeros(0, SIGNAL_DTYPE)
    return sig, n_ev, rejects


def exec_dict(cfg: ExecConfig) -> dict[str, Any]:
    """Execution settings (JSON-safe: infinite limits become None; the tick size is per feed)."""
    d = cfg.to_dict()
    d.pop("tick_size")
    return d


def _training_overlap(model_dir: str | Path | None, res: BacktestResult) -> str | None:
    """The in-sample warning of :func:`streamsig.models.card.training_overlap` for this run's rows."""
    if model_dir is None:
        return None
    from streamsig.models.card import read_card, training_overlap

    ranges = {res.feeds[k]["symbol"]: (int(s["ts_ns"][0]), int(s["ts_ns"][-1])) for k, s in res.signals.items()
              if len(s)}
    return training_overlap(read_card(model_dir), ranges)


def model_summary(model_dir: str | Path) -> dict[str, Any]:
    """What identifies a model in a report: id, type, features, label, importance, ONNX hash (no paths)."""
    from streamsig.models.card import read_card

    card = read_card(model_dir)
    onnx = card.get("onnx", {})
    return {"id": card.get("model_id"), "type": card.get("model_type"), "features": card.get("features"),
            "label": card.get("label"), "importance": card.get("feature_importance"),
            "onnx_sha256": onnx.get("sha256") if isinstance(onnx, dict) else None}
