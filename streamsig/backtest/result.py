"""What a backtest returns: per (strategy, symbol) records, the signals, and the metrics.

Curves are per symbol (one sample per feature row after trading starts); a
strategy's account curve adds the symbols' P&L in time order:
``equity(t) = sum(capital_s) + sum_s (E_s(t) - capital_s)``. Metrics are
:func:`streamsig.trading.performance.summary` of that curve resampled to bars
(:func:`~streamsig.trading.performance.resample_last`), with the round trips, fees,
spread cost and notional of all its symbols.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from streamsig.book.records import FILL_DTYPE, SIGNAL_DTYPE, TRIP_DTYPE  # noqa: F401 - re-exported
from streamsig.trading.account import Account
from streamsig.trading import performance



@dataclass
class AccountRecord:
    """One strategy on one symbol: per-row position and equity, fills, round trips, totals."""

    ts_ns: np.ndarray
    seq: np.ndarray
    mid: np.ndarray
    position: np.ndarray
    equity: np.ndarray
    fills: np.ndarray  #: FILL_DTYPE
    trips: np.ndarray  #: TRIP_DTYPE
    capital: float
    fees: float
    spread_cost: float
    notional: float
    killed: bool


def account_record(lane: Account) -> AccountRecord:
    """Freeze a finished lane."""
    fills = np.array([(f.ts_ns, f.seq, f.side, f.qty, f.price, f.fee, f.maker, f.mid) for f in lane.fills],
                     dtype=FILL_DTYPE)
    pf = lane.pf
    if pf is None:
        z = np.zeros(0)
        return AccountRecord(z.astype(np.int64), z.astype(np.int64), z, z, z, fills, np.zeros(0, TRIP_DTYPE),
                          0.0, 0.0, 0.0, 0.0, False)
    ts, eq = pf.equity_curve()
    p = pf.positions.get(lane.symbol)
    return AccountRecord(ts, np.array(lane.seq, np.int64), np.array(lane.mid), np.array(lane.position), eq,
                      fills, pf.round_trips().astype(TRIP_DTYPE), pf.capital, pf.fees,
                      p.spread_cost if p else 0.0, p.notional if p else 0.0, pf.killed)


def combine(records: list[AccountRecord]) -> tuple[np.ndarray, np.ndarray, float]:
    """The account curve of several symbols: ``(ts_ns, equity, capital)``, samples in time order
    (ties keep the symbols' order)."""
    cap = float(sum(r.capital for r in records))
    ts = np.concatenate([r.ts_ns for r in records]) if records else np.zeros(0, np.int64)
    d = np.concatenate([np.diff(r.equity, prepend=r.capital) for r in records]) if records else np.zeros(0)
    order = np.argsort(ts, kind="stable")
    return ts[order], cap + np.cumsum(d[order]), cap


def curve_summary(ts: np.ndarray, eq: np.ndarray, capital: float, bar_ns: int, trips: np.ndarray,
                  fees: float, spread_cost: float, notional: float) -> dict[str, float | None]:
    """:func:`performance.summary` of a curve resampled to ``bar_ns`` bars, with its trading totals."""
    if len(ts) == 0:
        ts, eq = np.zeros(1, np.int64), np.array([capital if capital > 0 else 1.0])
    ts_r, eq_r = performance.resample_last(ts, eq, bar_ns)
    return performance.summary(eq_r, ts_r, capital=capital if capital > 0 else None, trade_pnl=trips["pnl"],
                           holding_ns=trips["close_ts"] - trips["open_ts"], fees=fees,
                           spread_cost=spread_cost, notional=notional)


@dataclass
class BacktestResult:
    """Everything one backtest produced. ``lanes`` is keyed by ``(strategy, symbol)``."""

    strategies: list[str]
    primary: str | None = None
    model: dict[str, Any] | None = None
    lanes: dict[tuple[str, str], AccountRecord] = field(default_factory=dict)
    signals: dict[str, np.ndarray] = field(default_factory=dict)  #: per symbol, SIGNAL_DTYPE
    feeds: dict[str, dict[str, Any]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def symbols(self) -> list[str]:
        return list(self.feeds)

    def records(self, strategy: str) -> list[AccountRecord]:
        return [self.lanes[(strategy, s)] for s in self.symbols]

    def curve(self, strategy: str) -> tuple[np.ndarray, np.ndarray, float]:
        """``(ts_ns, equity, capital)`` of the strategy's account (see :func:`combine`)."""
        return combine(self.records(strategy))

    def trips(self, strategy: str) -> np.ndarray:
        """All round trips of a strategy, ordered by close time (ties in symbol order)."""
        t = np.concatenate([r.trips for r in self.records(strategy)]) if self.symbols else np.zeros(0, TRIP_DTYPE)
        return t[np.argsort(t["close_ts"], kind="stable")]

    def summary(self, strategy: str) -> dict[str, float | None]:
        """Metrics of one strategy (its whole account)."""
        recs = self.records(strategy)
        ts, eq, cap = self.curve(strategy)
        return curve_summary(ts, eq, cap, self.config.get("bar_ns", 1_000_000_000), self.trips(strategy),
                             sum(r.fees for r in recs), sum(r.spread_cost for r in recs),
                             sum(r.notional for r in recs))

    def summaries(self) -> dict[str, dict[str, float | None]]:
        return {s: self.summary(s) for s in self.strategies}

    # ---- tables (pandas at the edge) --------------------------------------------------
    def signals_frame(self) -> pd.DataFrame:
        """``symbol, seq, ts_ns, p_down, p_flat, p_up, target``: one row per feature row."""
        parts = [pd.DataFrame(a).assign(symbol=s) for s, a in self.signals.items()]
        df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(np.zeros(0, SIGNAL_DTYPE)).assign(symbol="")
        return df[["symbol", *SIGNAL_DTYPE.names]]

    def fills_frame(self) -> pd.DataFrame:
        """Every execution: ``strategy, symbol`` and the fill fields."""
        parts = [pd.DataFrame(r.fills).assign(strategy=k[0], symbol=k[1]) for k, r in self.lanes.items()]
        df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(np.zeros(0, FILL_DTYPE))
        return df[["strategy", "symbol", *FILL_DTYPE.names]] if parts else df

    def trades_frame(self) -> pd.DataFrame:
        """Closed round trips (flat to flat, net of fees): ``strategy, symbol, open_ts, close_ts, side, pnl``."""
        parts = [pd.DataFrame(r.trips).assign(strategy=k[0], symbol=k[1]) for k, r in self.lanes.items()]
        df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(np.zeros(0, TRIP_DTYPE))
        return df[["strategy", "symbol", *TRIP_DTYPE.names]] if parts else df

    def equity_frame(self) -> pd.DataFrame:
        """Per strategy, one row per symbol row in account time order: ``strategy, symbol, ts_ns, seq,
        mid, position, symbol_equity`` and ``equity`` (the account after that row)."""
        parts = []
        for strat in self.strategies:
            recs = self.records(strat)
            ts, eq, _ = combine(recs)
            sym = np.concatenate([np.full(len(r.ts_ns), s, dtype=object) for s, r in zip(self.symbols, recs)])
            cols = {k: np.concatenate([getattr(r, k) for r in recs]) for k in ("seq", "mid", "position", "equity")}
            order = np.argsort(np.concatenate([r.ts_ns for r in recs]), kind="stable")
            parts.append(pd.DataFrame({"strategy": strat, "symbol": sym[order], "ts_ns": ts,
                                       "seq": cols["seq"][order], "mid": cols["mid"][order],
                                       "position": cols["position"][order],
                                       "symbol_equity": cols["equity"][order], "equity": eq}))
        return pd.concat(parts, ignore_index=True)
