"""Cross-check against hftbacktest: the same L2 events, the same fixed orders, fills and P&L compared.

hftbacktest (https://github.com/nkaz001/hftbacktest) is used only as an
external library, here and in ``bench/backtest.py``.

* :func:`to_hbt_events` converts our events to hftbacktest's ``event_dtype``:
  ``DEPTH`` -> ``DEPTH_EVENT`` (absolute size at a price; 0 deletes), ``TRADE`` ->
  ``TRADE_EVENT`` (side = aggressor), ``CLEAR`` -> ``DEPTH_CLEAR_EVENT`` (both
  sides); ``HALT`` markers are dropped. Every event is both an exchange and a
  local event with ``local_ts = exch_ts``: no feed latency, so the comparison
  isolates execution.
* :func:`unique_batch_times` moves batches that share an exchange timestamp
  apart by a few ns (and lifts the rare one stamped before its predecessor), so
  "the book after batch i" is a point in time for both engines (hftbacktest
  has no notion of our atomic batches). Both engines replay that same stream.
* :class:`Cycle` is the fixed strategy: its target runs through ``+size, 0,
  -size, 0, ...``, changing every ``every`` feature rows.
* :func:`crosscheck` runs it through :func:`~streamsig.backtest.runner.run_backtest`
  (market orders, no latency) and replays the same orders in hftbacktest: an
  order decided at row i fills in streamsig against the book of row i+1 (the
  next update), so hftbacktest gets it with 1 ns entry latency at the time of
  row i+1, after that batch and before the next. Fills, fees, position and
  final P&L are returned side by side.

Known difference (see docs/backtest.md): hftbacktest fills a market order at the
best price for its whole size (``no_partial_fill_exchange``), streamsig walks
the levels; sizes within the touch agree exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from streamsig.book import events as E
from streamsig.book.sources import Feed
from streamsig.features import FeatureSpec
from streamsig.trading import ExecConfig


class Cycle:
    """Target ``+size, 0, -size, 0, ...``, the step changing every ``every`` rows (from the first row)."""

    name = "cycle"

    def __init__(self, every: int = 100, size: float = 1.0) -> None:
        if every < 2:
            raise ValueError(f"every must be >= 2, got {every}")
        self.every, self.size = int(every), float(size)

    def start(self, symbol: str, spec: FeatureSpec) -> "_CycleTrader":
        return _CycleTrader(self.every, self.size)


class _CycleTrader:
    def __init__(self, every: int, size: float) -> None:
        self.every, self.n = every, 0
        self.levels = np.array([size, 0.0, -size, 0.0])

    def step(self, rows: np.ndarray, ts_ns: np.ndarray) -> tuple[None, np.ndarray]:
        i = self.n + np.arange(len(rows))
        self.n += len(rows)
        return None, self.levels[(i // self.every) % 4]


def unique_batch_times(events: np.ndarray, step_ns: int = 2) -> np.ndarray:
    """A copy where the k-th batch (EOB-closed) sharing an exchange timestamp is moved ``k * step_ns`` later.

    A batch stamped earlier than the one before it takes that one's time first
    (exchange stamps can step back). Raises ValueError if the shift would reach
    the next distinct timestamp.

    >>> ev = E.empty(3); ev["flags"] = E.EOB; ev["exch_ts"] = [10, 10, 9]
    >>> unique_batch_times(ev)["exch_ts"].tolist()
    [10, 12, 14]
    """
    ev = events.copy()
    eob = (ev["flags"] & E.EOB) != 0
    batch = np.concatenate([[0], np.cumsum(eob)[:-1]])  # batch number of every event
    first = np.concatenate([[True], batch[1:] != batch[:-1]])
    bts = np.maximum.accumulate(ev["exch_ts"][first])  # a batch stamped earlier than the one before waits
    same = np.concatenate([[False], bts[1:] == bts[:-1]])
    run_start = np.maximum.accumulate(np.where(~same, np.arange(len(bts)), 0))
    new = bts + (np.arange(len(bts)) - run_start) * step_ns
    if np.any(np.diff(new) <= step_ns - 1):
        raise ValueError("too many batches share a timestamp to separate them")
    ev["exch_ts"] = new[batch]
    ev["local_ts"] = ev["exch_ts"]
    return ev


def to_hbt_events(events: np.ndarray, tick_size: float) -> np.ndarray:
    """Our events as hftbacktest events (see module doc)."""
    import hftbacktest as H

    f = events["flags"]
    keep = (f & (E.DEPTH | E.TRADE | E.CLEAR)) != 0
    ev, f = events[keep], f[keep]
    out = np.zeros(len(ev), H.event_dtype)
    kind = np.where(f & E.CLEAR, H.DEPTH_CLEAR_EVENT, np.where(f & E.TRADE, H.TRADE_EVENT, H.DEPTH_EVENT))
    side = np.where(f & E.CLEAR, 0, np.where(f & E.BUY, H.BUY_EVENT, H.SELL_EVENT))
    out["ev"] = (kind | side | H.EXCH_EVENT | H.LOCAL_EVENT).astype(np.uint64)
    out["exch_ts"] = ev["exch_ts"]
    out["local_ts"] = ev["exch_ts"]
    out["px"] = ev["price"] * tick_size
    out["qty"] = np.where(f & E.CLEAR, 0.0, ev["size"])
    return out


def _driver():  # compiled on first use (numba), so importing this module stays cheap
    from hftbacktest.order import GTC, MARKET
    from numba import njit

    @njit  # not cacheable: hftbacktest's objects hold ctypes pointers
    def drive(hbt, times, qty, out, end_ts):
        hbt.elapse(0)  # the clock starts at the first event
        for k in range(len(times)):
            hbt.elapse(times[k] - hbt.current_timestamp)
            if qty[k] > 0:
                hbt.submit_buy_order(0, k + 1, hbt.depth(0).best_ask, qty[k], GTC, MARKET, False)
            else:
                hbt.submit_sell_order(0, k + 1, hbt.depth(0).best_bid, -qty[k], GTC, MARKET, False)
        hbt.elapse(end_ts - hbt.current_timestamp)
        orders = hbt.orders(0)
        for k in range(len(times)):
            o = orders.get(k + 1)
            out[k, 0] = o.exec_price
            out[k, 1] = o.exec_qty
        sv = hbt.state_values(0)
        d = hbt.depth(0)
        return sv.position, sv.balance, sv.fee, sv.num_trades, (d.best_bid + d.best_ask) / 2.0

    return drive


_DRIVE: list[Any] = []


def run_hbt(hbt_events: np.ndarray, times: np.ndarray, qty: np.ndarray, tick_size: float,
            lot_size: float, fee_bps: float) -> dict[str, Any]:
    """Send market orders of signed ``qty`` at local ``times`` (1 ns to the exchange) in hftbacktest."""
    from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest

    if not _DRIVE:
        _DRIVE.append(_driver())
    asset = (BacktestAsset().data([hbt_events]).linear_asset(1.0).constant_order_latency(1, 1)
             .risk_adverse_queue_model().no_partial_fill_exchange().tick_size(tick_size).lot_size(lot_size)
             .trading_value_fee_model(0.0, fee_bps * 1e-4))
    hbt = HashMapMarketDepthBacktest([asset])
    out = np.zeros((len(times), 2))
    end = int(hbt_events["exch_ts"][-1]) + 1
    pos, bal, fee, n, mid = _DRIVE[0](hbt, times.astype(np.int64), qty.astype(np.float64), out, end)
    hbt.close()
    return {"price": out[:, 0], "qty": out[:, 1], "position": pos, "balance": bal, "fee": fee,
            "trades": int(n), "mid": mid, "pnl": bal + pos * mid - fee}


@dataclass
class Crosscheck:
    """Both engines' fills and totals for one run."""

    ts_ns: np.ndarray  #: the row each order meets the book at (hftbacktest: arrival - 1 ns)
    side: np.ndarray
    qty: np.ndarray
    price_streamsig: np.ndarray
    price_hbt: np.ndarray
    qty_hbt: np.ndarray
    streamsig: dict[str, float]
    hbt: dict[str, float]


def crosscheck(events: np.ndarray, tick_size: float, spec: FeatureSpec, every: int = 100, size: float = 1.0,
               fee_bps: float = 0.0, lot_size: float = 1e-8, symbol: str = "X") -> Crosscheck:
    """Run :class:`Cycle` in both engines on ``events`` (see module doc) and collect the results."""
    from streamsig.backtest.runner import run_backtest

    ev = unique_batch_times(events)
    feed = Feed(symbol, tick_size, spec.levels, "crosscheck", lambda: iter([ev]), len(ev))
    res = run_backtest([feed], spec, strategy=Cycle(every, size), baselines=[],
                       exec_cfg=ExecConfig(fee_bps=fee_bps))
    rec, sig = res.lanes[("cycle", symbol)], res.signals[symbol]
    tgt = sig["target"]
    change = np.flatnonzero(np.diff(tgt, prepend=0.0) != 0.0)
    change = change[change + 1 < len(tgt)]  # an order needs a next row to fill at
    times = sig["ts_ns"][change + 1]  # decided at row i, it meets the book of row i+1
    signed = np.diff(tgt, prepend=0.0)[change]
    h = run_hbt(to_hbt_events(ev, tick_size), times, signed, tick_size, lot_size, fee_bps)
    fills = rec.fills
    ours = {"position": float(rec.position[-1]), "fee": float(rec.fees),
            "pnl": float(rec.equity[-1] - rec.capital), "trades": float(len(fills)),
            "mid": float(rec.mid[-1])}
    if len(fills) != len(times) or np.any(fills["ts_ns"] != times):
        raise AssertionError(f"streamsig filled {len(fills)} orders, not the {len(times)} decided, at other times")
    return Crosscheck(times, fills["side"], fills["qty"], fills["price"], h["price"], h["qty"], ours,
                      {k: float(h[k]) for k in ("position", "fee", "pnl", "trades", "mid")})
