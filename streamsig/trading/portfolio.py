"""Portfolio: positions, cash and P&L from fills, equity marked to mid, a kill switch.

Accounting is average-cost in quote currency. A fill changes cash by
``-(signed qty * price) - fee``. Realised P&L (gross of fees) is booked when a
position is reduced, ``closed qty * (price - avg entry) * sign(position)``;
unrealised is ``position * (mid - avg entry)``. Hence, always,
``equity = cash + sum(position * mid) = capital + realised + unrealised - fees``.

A round trip runs from flat to flat (a reversal closes one and opens the next);
its P&L is net of the fees of its fills (a reversing fill's fee is split by
quantity). ``spread_cost`` sums ``side * (price - mid) * qty`` over fills: what
crossing, slippage and latency cost against the mid at the fill.

Contracts (an :class:`~streamsig.book.instrument.Instrument` per symbol, or
none: one unit of the quote per price unit). All of the above is done in
*value* units ``v(price)``: ``multiplier * price`` for linear contracts and
``-multiplier / price`` for inverse ones (Binance COIN-M: a contract is worth
``multiplier`` USD and P&L settles in the coin), so that ``q * (v(exit) -
v(entry))`` is the P&L of ``q`` contracts. For a long inverse position that is
Binance's published COIN-M formula ``qty * multiplier * (1/entry - 1/exit)``,
in the coin; ``avg`` is then the value of the harmonic-mean entry price, and
cash, fees, notional and equity are in the settlement coin.

Kill switch: when a mark leaves equity more than ``max_drawdown`` (a fraction)
below its running peak, :attr:`Portfolio.killed` latches and :meth:`allow`
returns 0 for every target. The driver then calls ``Executor.halt``.

>>> from streamsig.trading.executor import Fill
>>> pf = Portfolio(capital=1000.0)
>>> pf.on_fill(Fill("X", 1, 1, +1, 2.0, 100.0, 0.5, False, 99.9))
>>> pf.mark(2, 101.0, "X")
1001.5
>>> pf.on_fill(Fill("X", 3, 2, -1, 2.0, 103.0, 0.5, False, 103.1))
>>> pf.realised("X"), pf.fees, pf.round_trips()["pnl"].tolist()
(6.0, 1.0, [5.0])
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from streamsig.book.instrument import Instrument
from streamsig.trading import performance
from streamsig.trading.executor import Fill

ROUND_TRIP_DTYPE = np.dtype([("open_ts", "<i8"), ("close_ts", "<i8"), ("side", "<i1"), ("pnl", "<f8")])
_EPS = 1e-9


@dataclass(slots=True)
class Position:
    """One symbol's book-keeping (settlement currency; ``mid`` is the last mark, a price;
    ``avg`` the average entry in value units, see the module doc)."""

    qty: float = 0.0
    avg: float = 0.0
    realised: float = 0.0
    fees: float = 0.0
    spread_cost: float = 0.0
    notional: float = 0.0
    fills: int = 0
    mid: float = math.nan
    trip_open: int = 0
    trip_pnl: float = 0.0
    multiplier: float = 1.0
    inverse: bool = False

    def value(self, price: float) -> float:
        """Value of one long unit at ``price`` (``m * price``, or ``-m / price`` for inverse)."""
        return -self.multiplier / price if self.inverse else self.multiplier * price

    @property
    def unrealised(self) -> float:
        return self.qty * (self.value(self.mid) - self.avg) if self.qty and math.isfinite(self.mid) else 0.0


class Portfolio:
    """Positions and P&L over symbols sharing one quote currency.

    ``capital`` (> 0) is the starting equity; ``max_drawdown`` (fraction, or
    None) arms the kill switch; ``keep_curve=False`` keeps no equity series;
    ``instruments`` maps symbols to their contracts (default: linear, x1).
    """

    def __init__(self, capital: float = 1.0, max_drawdown: float | None = None,
                 keep_curve: bool = True, instruments: dict[str, Instrument] | None = None) -> None:
        if not capital > 0:
            raise ValueError(f"capital must be > 0, got {capital}")
        self.capital, self.max_drawdown, self.keep_curve = float(capital), max_drawdown, keep_curve
        self.instruments = dict(instruments or {})
        self.cash = self.capital
        self.positions: dict[str, Position] = {}
        self.peak = self.equity = self.capital
        self.killed, self.kill_ts = False, -1
        self._n = 0
        self._ts = np.empty(1024, dtype=np.int64)
        self._eq = np.empty(1024, dtype=np.float64)
        self._trips: list[tuple[int, int, int, float]] = []

    # -- events -------------------------------------------------------------
    def on_fill(self, fill: Fill) -> None:
        """Book one fill (``qty`` must be > 0)."""
        if not fill.qty > 0:
            raise ValueError(f"fill qty must be > 0, got {fill.qty}")
        p = self._pos(fill.symbol)
        q, px, fee = fill.side * fill.qty, p.value(fill.price), fill.fee
        self.cash -= q * px + fee
        p.fees += fee
        p.notional += fill.qty * abs(px) if not p.inverse else fill.qty * p.multiplier / fill.price
        p.fills += 1
        if math.isfinite(fill.mid):
            p.spread_cost += fill.side * (px - p.value(fill.mid)) * fill.qty
        if p.qty == 0.0 or (p.qty > 0) == (q > 0):  # open or add
            if p.qty == 0.0:
                p.trip_open, p.trip_pnl = fill.ts_ns, 0.0
            p.avg = (p.avg * abs(p.qty) + px * fill.qty) / (abs(p.qty) + fill.qty)
            p.qty += q
            p.trip_pnl -= fee
            return
        closed = min(fill.qty, abs(p.qty))
        gain = closed * (px - p.avg) * (1.0 if p.qty > 0 else -1.0)
        fee_close = fee * closed / fill.qty
        p.realised += gain
        p.trip_pnl += gain - fee_close
        side = 1 if p.qty > 0 else -1
        p.qty += q
        if abs(p.qty) <= _EPS * max(1.0, fill.qty):
            p.qty = 0.0
        if p.qty == 0.0 or (p.qty > 0) != (side > 0):
            self._trips.append((p.trip_open, fill.ts_ns, side, p.trip_pnl))
            if p.qty == 0.0:
                p.avg = 0.0
            else:  # reversed: the rest opens a new trip at this price
                p.avg, p.trip_open, p.trip_pnl = px, fill.ts_ns, -(fee - fee_close)

    def mark(self, ts_ns: int, mid: float, symbol: str = "") -> float:
        """Mark ``symbol`` to ``mid``, record and return equity; may trip the kill switch."""
        self._pos(symbol).mid = mid
        eq = self.cash
        for q in self.positions.values():
            if q.qty:
                eq += q.qty * (q.value(q.mid) if math.isfinite(q.mid) else q.avg)
        self.equity = eq
        if eq > self.peak:
            self.peak = eq
        if (self.max_drawdown is not None and not self.killed
                and 1.0 - eq / self.peak > self.max_drawdown):
            self.killed, self.kill_ts = True, ts_ns
        if self.keep_curve:
            self._append(ts_ns, eq)
        return eq

    def _pos(self, symbol: str) -> Position:
        p = self.positions.get(symbol)
        if p is None:
            inst = self.instruments.get(symbol)
            p = self.positions[symbol] = Position() if inst is None else \
                Position(multiplier=inst.multiplier, inverse=inst.inverse)
        return p

    def allow(self, target: float) -> float:
        """The target the risk limits allow: 0 once the kill switch has tripped."""
        return 0.0 if self.killed else target

    def _append(self, ts_ns: int, eq: float) -> None:
        if self._n == self._ts.size:
            self._ts = np.concatenate([self._ts, np.empty_like(self._ts)])
            self._eq = np.concatenate([self._eq, np.empty_like(self._eq)])
        self._ts[self._n], self._eq[self._n] = ts_ns, eq
        self._n += 1

    # -- read-outs ----------------------------------------------------------
    def position(self, symbol: str = "") -> float:
        p = self.positions.get(symbol)
        return p.qty if p else 0.0

    def realised(self, symbol: str | None = None) -> float:
        """Realised P&L, gross of fees (all symbols if ``symbol`` is None)."""
        return self._sum("realised", symbol)

    def unrealised(self, symbol: str | None = None) -> float:
        return sum(p.unrealised for s, p in self.positions.items() if symbol in (None, s))

    def _sum(self, field: str, symbol: str | None) -> float:
        return sum(getattr(p, field) for s, p in self.positions.items() if symbol in (None, s))

    @property
    def fees(self) -> float:
        return self._sum("fees", None)

    @property
    def drawdown(self) -> float:
        """Current drawdown from the peak, as a fraction."""
        return 1.0 - self.equity / self.peak

    def equity_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ts_ns, equity)`` at every mark (copies)."""
        return self._ts[:self._n].copy(), self._eq[:self._n].copy()

    def round_trips(self) -> np.ndarray:
        """Closed round trips as a ``ROUND_TRIP_DTYPE`` array."""
        return np.array(self._trips, dtype=ROUND_TRIP_DTYPE)

    def report(self, periods_per_year: float | None = None, period_ns: int | None = None) -> dict[str, float | None]:
        """:func:`performance.summary` of this portfolio; ``period_ns`` resamples the curve first.

        The curve starts at the first mark; a driver that marks on every book
        update marks before any fill, so that first sample is the capital.
        """
        ts, eq = self.equity_curve()
        if ts.size == 0:
            ts, eq = np.zeros(1, dtype=np.int64), np.array([self.capital])
        if period_ns:
            ts, eq = performance.resample_last(ts, eq, period_ns)
        rt = self.round_trips()
        return performance.summary(eq, ts, capital=self.capital, periods_per_year=periods_per_year,
                               trade_pnl=rt["pnl"], holding_ns=rt["close_ts"] - rt["open_ts"],
                               fees=self.fees, spread_cost=self._sum("spread_cost", None),
                               notional=self._sum("notional", None))

    # -- checkpoints --------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """State as a JSON-safe dict (NaN marks become None)."""
        pos = {s: {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(p).items()}
               for s, p in self.positions.items()}
        return {"capital": self.capital, "max_drawdown": self.max_drawdown, "keep_curve": self.keep_curve,
                "instruments": {s: i.to_dict() for s, i in self.instruments.items()},
                "cash": self.cash, "peak": self.peak, "equity": self.equity, "killed": self.killed,
                "kill_ts": self.kill_ts, "positions": pos, "trips": [list(t) for t in self._trips],
                "curve_ts": self._ts[:self._n].tolist(), "curve_eq": self._eq[:self._n].tolist()}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> "Portfolio":
        """A portfolio continuing from :meth:`snapshot`."""
        insts = {s: Instrument(**d) for s, d in state.get("instruments", {}).items()}
        pf = cls(state["capital"], state["max_drawdown"], state["keep_curve"], insts)
        pf.cash, pf.peak, pf.equity = state["cash"], state["peak"], state["equity"]
        pf.killed, pf.kill_ts = state["killed"], state["kill_ts"]
        for s, d in state["positions"].items():
            pf.positions[s] = Position(**{k: (math.nan if v is None else v) for k, v in d.items()})
        pf._trips = [(int(a), int(b), int(c), float(d)) for a, b, c, d in state["trips"]]
        for t, e in zip(state["curve_ts"], state["curve_eq"]):
            pf._append(int(t), float(e))
        return pf
