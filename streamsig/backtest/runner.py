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
from streamsig.trading.account import Account
from streamsig.backtest.result import SIGNAL_DTYPE, BacktestResult, account_record
from streamsig.trading.strategies import ModelStrategy, Strategy
from streamsig.book import events as E
from streamsig.book.sources import Feed
from streamsig.features import FeatureSpec, FeatureState
from streamsig.trading import ExecConfig


def feed_keys(feeds: Sequence[Feed]) -> list[str]:
    """A unique name per feed: its symbol, or ``symbol:label`` when two feeds share a symbol."""
    syms = [f.symbol for f in feeds]
    return [s if syms.count(s) == 1 else f"{s}:{f.label}" for s, f in zip(syms, feeds)]


def run_backtest(feeds: Sequence[Feed], spec: FeatureSpec, model_dir: str | Path | None = None,
                 strategy: Strategy | None = None, exec_cfg: ExecConfig = ExecConfig(),
                 policy_cfg: dict[str, Any] | None = None, capital: float | None = None, *,
                 baselines: Sequence[Strategy] | None = None, max_drawdown: float | None = None,
                 start_ns: int | None = None, bar_ns: int = 1_000_000_000, passive: bool = False,
                 on_progress: Callable[[int], None] | None = None) -> BacktestResult:
    """Backtest a model (``model_dir``) or ``strategy``, plus baselines, over ``feeds``.

    ``exec_cfg`` gives costs, latency and limits (its ``tick_size`` is replaced
    by each feed's); ``policy_cfg`` the :class:`SignalPolicy` arguments (its
    ``max_position``, default 1, is also the baselines' size). ``capital`` is
    the account, split evenly over feeds; by default each symbol gets the
    notional of that size at its first mid. ``max_drawdown`` arms the kill
    switch (a fraction, per symbol). Trading starts at ``start_ns``. Orders are
    market orders, or rest at our touch when ``passive``. Metrics
    are taken on the equity resampled to ``bar_ns`` bars. ``on_progress`` is
    called with the number of events of every chunk processed.
    """
    policy_cfg = dict(policy_cfg or {})
    size = float(policy_cfg.get("max_position", 1.0))
    model_info: dict[str, Any] | None = None
    if model_dir is not None:
        if strategy is not None:
            raise ValueError("pass model_dir or strategy, not both")
        from streamsig.models.scorer import Scorer

        scorer = Scorer(model_dir)
        strategy = ModelStrategy(scorer, policy_cfg)
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
        lanes = [Account(n, key, cfg, per_cap, size, max_drawdown, start_ns, passive, instrument=feed.instrument)
                 for n in names]
        sig, n_ev, rejects = _replay(feed, spec, strategies, lanes, on_progress)
        res.signals[key] = sig
        res.feeds[key] = {"symbol": feed.symbol, "label": feed.label, "tick_size": feed.tick_size,
                          "instrument": feed.instrument.to_dict() if feed.instrument is not None else None,
                          "events": n_ev, "rows": len(sig),
                          "rejects": {E.Reason(i).name: int(c) for i, c in enumerate(rejects)
                                      if i and c and i != E.Reason.BENIGN_DELETE},
                          "benign_deletes": int(rejects[E.Reason.BENIGN_DELETE])}
        for lane in lanes:
            res.lanes[(lane.strategy, key)] = account_record(lane)
    warnings = [w for w in [_training_overlap(model_dir, res)] if w]
    res.config = {"spec": spec.to_dict(), "exec": exec_dict(exec_cfg), "policy": policy_cfg, "warnings": warnings,
                  "capital": capital, "max_drawdown": max_drawdown, "start_ns": start_ns,
                  "bar_ns": int(bar_ns), "size": size, "passive": passive}
    return res


def _replay(feed: Feed, spec: FeatureSpec, strategies: Sequence[Strategy], lanes: list[Account],
            on_progress: Callable[[int], None] | None) -> tuple[np.ndarray, int, np.ndarray]:
    state = FeatureState(spec, feed.tick_size)
    cursor = BookCursor(spec, feed.tick_size)
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
        sigs.append(_signals(seq, ts, *steps[0]) if traders else np.zeros(0, SIGNAL_DTYPE))
        targets = [s[1].tolist() for s in steps]
        mids = rows[:, imid].tolist()
        tix = np.flatnonzero(ev["flags"] & E.TRADE)
        bounds = np.searchsorted(tix, idx, side="right").tolist()
        ts_l, seq_l, idx_l = ts.tolist(), seq.tolist(), idx.tolist()
        cursor.begin(ev)
        lo = 0
        for i in range(len(rows)):
            hi = bounds[i]
            trades = tix[lo:hi]
            for lane, tg in zip(lanes, targets):
                lane.on_row(ts_l[i], seq_l[i], mids[i], tg[i], cursor, idx_l[i], ev, trades)
            lo = hi
        cursor.finish()
        n_ev += len(ev)
        if on_progress is not None:
            on_progress(len(ev))
    sig = np.concatenate(sigs) if sigs else np.zeros(0, SIGNAL_DTYPE)
    return sig, n_ev, rejects


def _signals(seq: np.ndarray, ts: np.ndarray, probs: np.ndarray | None, targets: np.ndarray) -> np.ndarray:
    out = np.zeros(len(seq), SIGNAL_DTYPE)
    out["seq"], out["ts_ns"], out["target"] = seq, ts, targets
    p = np.full((len(seq), 3), np.nan) if probs is None else probs
    out["p_down"], out["p_flat"], out["p_up"] = p[:, 0], p[:, 1], p[:, 2]
    return out


def exec_dict(cfg: ExecConfig) -> dict[str, Any]:
    """Execution settings (JSON-safe: infinite limits become None; the tick size is per feed)."""
    d = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__ if k != "tick_size"}
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in d.items()}


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
