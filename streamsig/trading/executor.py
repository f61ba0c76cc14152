"""Paper execution of target-position orders against a replayed book.

:meth:`Executor.submit` takes a target position answering the signal ``seq``;
:meth:`Executor.on_book` and :meth:`Executor.on_trade` fill it. Assumptions:

* **Latency.** An order submitted at ``ts`` is active once the book time reaches
  ``ts + signal_latency_ns + order_latency_ns`` *and* ``signal_latency_events +
  order_latency_events`` further book updates have arrived (both must hold). It
  is processed in the first :meth:`on_book` call where it is active, against the
  book of that call: the executor sees a book only there, so 0 and 1 update of
  latency are the same.
* **Target orders.** The quantity is ``target - position`` at activation, so an
  order never overshoots. A newer target replaces the working one when the newer
  one activates (cancel-replace with the new order's latency). Targets are
  clipped to ``max_position``; each child order to ``max_order_size``. While the
  position differs from the working target, one child is sent per book update.
* **Market orders** walk the opposite side from the touch and fill at the VWAP of
  the levels taken. If depth is short the child fills partially and the rest is
  sent at the next update. Our own fills do not deplete the replayed book (no
  market impact), which flatters repeated sweeps of thin books. The fill price is
  then moved against us by ``cross_ticks`` ticks and by ``slippage_bps``; the
  taker fee (``fee_bps``) is charged on the adjusted notional.
* **Passive orders** rest at our touch (bid for a buy) behind the visible size at
  that price. Trades on our side at our price (a seller hitting a bid we rest
  on) use up the queue ahead first, then fill us. Cancels advance us only as far
  as the visible size forces: queue ahead is ``min(queue ahead, visible size)``,
  i.e. cancels are assumed to come from behind us first (pessimistic). A trade
  through our price, or the opposite touch reaching it, fills the rest. Passive
  fills are at our limit price and pay ``maker_fee_bps`` (negative: rebate).
* **Duplicates.** One executor serves one symbol; signal sequences rise, so a
  signal whose ``seq`` is not above the last one acted on is ignored.
* **Halt.** :meth:`halt` (the kill switch) flattens and from then on every
  target is 0.
* **Contracts.** Quantities are units of the instrument (contracts for
  futures); fees are bps of :meth:`Instrument.notional
  <streamsig.book.instrument.Instrument.notional>`, which for an inverse
  contract is ``qty * multiplier / price`` in the coin. Without an instrument
  a unit is worth its price in the quote.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from streamsig.book.instrument import Instrument
from streamsig.config import Config

#: the commands' defaults (backtest, trade, demo), each defined here once
DEFAULT_FEE_BPS = 1.0  #: taker fee, bps of notional
DEFAULT_LATENCY_EVENTS = 1  #: signal -> order latency in book updates (an order never trades its own row)
DEFAULT_MAX_DRAWDOWN = 0.2  #: kill switch, fraction of the symbol's capital


class BookView(Protocol):
    """The book as the executor reads it: levels best first, prices in ticks."""

    bid_px: np.ndarray
    bid_sz: np.ndarray
    ask_px: np.ndarray
    ask_sz: np.ndarray
    n_bid: int
    n_ask: int


@dataclass(frozen=True)
class ExecConfig(Config):
    """Costs, latency and limits of the paper executor (fees in basis points).

    The dataclass defaults are a frictionless executor (for research and
    tests); the commands build theirs from the ``DEFAULT_*`` constants above.
    The commands' ``--latency-ns/--latency-events`` set the signal -> order
    latency; the two latencies only ever add up. ``max_drawdown`` (a fraction
    of capital, None: off) and ``passive`` (rest at our touch) are applied by
    the account (:class:`~streamsig.trading.account.Account`).
    """

    tick_size: float = 1.0
    fee_bps: float = 0.0  #: taker fee
    maker_fee_bps: float = 0.0  #: maker fee, negative for a rebate
    cross_ticks: int = 0  #: extra ticks paid per unit on market fills
    slippage_bps: float = 0.0  #: adverse price move on market fills
    signal_latency_ns: int = 0  #: signal -> order
    order_latency_ns: int = 0  #: order -> exchange
    signal_latency_events: int = 0
    order_latency_events: int = 0
    max_position: float = math.inf
    max_order_size: float = math.inf
    max_drawdown: float | None = None  #: kill switch: flatten and stop at this drawdown
    passive: bool = False  #: orders rest at our touch (queue model) instead of crossing

    def __post_init__(self) -> None:
        if self.max_drawdown is not None and not 0.0 < self.max_drawdown <= 1.0:
            raise ValueError(f"max_drawdown: must be in (0, 1] or None, got {self.max_drawdown}")


class Fill(NamedTuple):
    """One execution. ``side`` is +1 buy / -1 sell, ``qty`` > 0, ``price`` in
    price units, ``fee`` in quote currency, ``mid`` the book mid at the fill
    (NaN if a side was empty), ``seq`` the signal answered (-1: :meth:`Executor.halt`).
    """

    symbol: str
    ts_ns: int
    seq: int
    side: int
    qty: float
    price: float
    fee: float
    maker: bool
    mid: float

    @property
    def signed_qty(self) -> float:
        return self.side * self.qty


_NONE: tuple[Fill, ...] = ()
_EPS = 1e-9  # relative tolerance for "position reached the target"


class Executor:
    """Fills target-position orders for one symbol (see module docstring).

    >>> from types import SimpleNamespace as NS
    >>> book = NS(bid_px=np.array([99]), bid_sz=np.array([5.0]), n_bid=1,
    ...           ask_px=np.array([101, 102]), ask_sz=np.array([1.0, 3.0]), n_ask=2)
    >>> ex = Executor(ExecConfig(tick_size=0.5), symbol="X")
    >>> ex.submit(ts_ns=0, seq=1, target=2.0)
    True
    >>> [(f.side, f.qty, f.price) for f in ex.on_book(1, book)]   # (50.5 + 51) / 2
    [(1, 2.0, 50.75)]
    """

    def __init__(self, config: ExecConfig = ExecConfig(), symbol: str = "",
                 instrument: Instrument | None = None) -> None:
        self.cfg, self.symbol, self.instrument = config, symbol, instrument
        self.position = 0.0
        self.last_seq = -1
        self.halted = False
        self._updates = 0
        self._lat_ns = config.signal_latency_ns + config.order_latency_ns
        self._lat_ev = max(1, config.signal_latency_events + config.order_latency_events)
        self._inflight: deque[tuple[int, int, int, float, bool]] = deque()  # due_ts, due_upd, seq, tgt, passive
        self._work = False  # a working target exists
        self._w_seq, self._w_target, self._w_passive = -1, 0.0, False
        self._c_qty = 0.0  # resting passive child: remaining qty (> 0), 0 if none
        self._c_side, self._c_px, self._c_ahead, self._c_mid = 0, 0, 0.0, math.nan

    # -- orders -------------------------------------------------------------
    def submit(self, ts_ns: int, seq: int, target: float, passive: bool = False) -> bool:
        """Queue a target position for signal ``seq``; False if ``seq`` was already acted on."""
        if seq <= self.last_seq:
            return False
        self.last_seq = seq
        self._send(ts_ns, seq, target, passive)
        return True

    def halt(self, ts_ns: int) -> None:
        """Kill switch: flatten with a market order and refuse new risk from now on.

        Orders not yet active are dropped; the flattening order has the usual
        latency and replaces the working order when it activates.
        """
        self.halted = True
        self._inflight.clear()
        self._send(ts_ns, -1, 0.0, False)

    def _send(self, ts_ns: int, seq: int, target: float, passive: bool) -> None:
        m = self.cfg.max_position
        tgt = 0.0 if self.halted else min(max(float(target), -m), m)
        self._inflight.append((ts_ns + self._lat_ns, self._updates + self._lat_ev, seq, tgt,
                               passive and not self.halted))

    @property
    def working(self) -> bool:
        """True while an order is in flight or the position differs from the working target."""
        return self._work or bool(self._inflight)

    # -- market data --------------------------------------------------------
    def on_book(self, ts_ns: int, book: BookView) -> tuple[Fill, ...]:
        """Process active orders against ``book`` (call after every book update)."""
        self._updates += 1
        q = self._inflight
        while q and q[0][0] <= ts_ns and q[0][1] <= self._updates:
            _, _, self._w_seq, self._w_target, self._w_passive = q.popleft()
            self._work, self._c_qty = True, 0.0  # replaces (cancels) the working order
        if not self._work:
            return _NONE
        fill = self._passive(ts_ns, book) if self._w_passive else self._market(ts_ns, book)
        if self.position == self._w_target and self._c_qty == 0.0:
            self._work = False
        return _NONE if fill is None else (fill,)

    def on_trade(self, ts_ns: int, price: int, size: float, side: int) -> tuple[Fill, ...]:
        """Advance a resting passive order with a trade (``side``: aggressor, +1 buy / -1 sell)."""
        c = self._c_side
        if self._c_qty == 0.0 or side == c:
            return _NONE
        if (price < self._c_px) if c > 0 else (price > self._c_px):
            qty = self._c_qty  # traded through our price: our level is gone
        elif price == self._c_px:
            left = size - self._c_ahead
            self._c_ahead = max(0.0, -left)
            qty = min(self._c_qty, left)
        else:
            return _NONE
        if qty <= 0.0:
            return _NONE
        return (self._maker_fill(ts_ns, qty),)

    # -- internals ----------------------------------------------------------
    def _add(self, signed_qty: float) -> None:
        """Book a fill into the position; snap to the target within rounding."""
        self.position += signed_qty
        if abs(self.position - self._w_target) <= _EPS * max(1.0, abs(self._w_target)):
            self.position = self._w_target
        if self.position == self._w_target and self._c_qty == 0.0:
            self._work = False

    def _market(self, ts_ns: int, book: BookView) -> Fill | None:
        delta = self._w_target - self.position
        if delta == 0.0:
            return None
        side = 1 if delta > 0 else -1
        if side > 0:
            px, sz, n = book.ask_px, book.ask_sz, book.n_ask
        else:
            px, sz, n = book.bid_px, book.bid_sz, book.n_bid
        want = min(abs(delta), self.cfg.max_order_size)
        got, notional = 0.0, 0.0
        for i in range(n):
            take = min(want - got, float(sz[i]))
            got += take
            notional += take * int(px[i])
            if got >= want:
                break
        if got <= 0.0:
            return None  # empty side: try again at the next update
        cfg = self.cfg
        price = (notional / got + side * cfg.cross_ticks) * cfg.tick_size
        price *= 1.0 + side * cfg.slippage_bps * 1e-4
        self._add(side * got)
        return Fill(self.symbol, ts_ns, self._w_seq, side, got, price,
                    self._notional(got, price) * cfg.fee_bps * 1e-4, False, _mid(book, cfg.tick_size))

    def _passive(self, ts_ns: int, book: BookView) -> Fill | None:
        if self._c_qty > 0.0:  # a child rests: check for a cross, then update the queue
            side, p = self._c_side, self._c_px
            self._c_mid = _mid(book, self.cfg.tick_size)
            if side > 0 and book.n_ask and int(book.ask_px[0]) <= p:
                return self._maker_fill(ts_ns, self._c_qty)
            if side < 0 and book.n_bid and int(book.bid_px[0]) >= p:
                return self._maker_fill(ts_ns, self._c_qty)
            vis = _visible(book, side, p)
            if vis >= 0.0:
                self._c_ahead = min(self._c_ahead, vis)
            return None
        delta = self._w_target - self.position
        if delta == 0.0:
            return None
        side = 1 if delta > 0 else -1
        if (book.n_bid if side > 0 else book.n_ask) == 0:
            return None  # nothing to join; try at the next update
        self._c_side = side
        self._c_px = int(book.bid_px[0] if side > 0 else book.ask_px[0])
        self._c_ahead = float(book.bid_sz[0] if side > 0 else book.ask_sz[0])
        self._c_qty = min(abs(delta), self.cfg.max_order_size)
        self._c_mid = _mid(book, self.cfg.tick_size)
        return None

    def _maker_fill(self, ts_ns: int, qty: float) -> Fill:
        side, price = self._c_side, self._c_px * self.cfg.tick_size
        self._c_qty -= qty
        if self._c_qty <= _EPS:
            self._c_qty = 0.0
        self._add(side * qty)
        return Fill(self.symbol, ts_ns, self._w_seq, side, qty, price,
                    self._notional(qty, price) * self.cfg.maker_fee_bps * 1e-4, True, self._c_mid)

    def _notional(self, qty: float, price: float) -> float:
        """Notional fees are charged on: the instrument's, or ``qty * price``."""
        return qty * price if self.instrument is None else self.instrument.notional(qty, price)

    # -- checkpoints --------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """State as a JSON-safe dict (the config is not included)."""
        return {"symbol": self.symbol, "position": self.position, "last_seq": self.last_seq,
                "halted": self.halted, "updates": self._updates,
                "inflight": [list(o) for o in self._inflight],
                "work": [self._work, self._w_seq, self._w_target, self._w_passive],
                "child": [self._c_qty, self._c_side, self._c_px, self._c_ahead,
                          None if math.isnan(self._c_mid) else self._c_mid]}

    @classmethod
    def restore(cls, config: ExecConfig, state: dict[str, Any], instrument: Instrument | None = None) -> "Executor":
        """An executor continuing from :meth:`snapshot`."""
        ex = cls(config, state["symbol"], instrument)
        ex.position, ex.last_seq = float(state["position"]), int(state["last_seq"])
        ex.halted, ex._updates = bool(state["halted"]), int(state["updates"])
        ex._inflight.extend((int(a), int(b), int(c), float(d), bool(e)) for a, b, c, d, e in state["inflight"])
        w = state["work"]
        ex._work, ex._w_seq, ex._w_target, ex._w_passive = bool(w[0]), int(w[1]), float(w[2]), bool(w[3])
        c = state["child"]
        ex._c_qty, ex._c_side, ex._c_px, ex._c_ahead = float(c[0]), int(c[1]), int(c[2]), float(c[3])
        ex._c_mid = math.nan if c[4] is None else float(c[4])
        return ex


def _mid(book: BookView, tick_size: float) -> float:
    if book.n_bid == 0 or book.n_ask == 0:
        return math.nan
    return 0.5 * (int(book.bid_px[0]) + int(book.ask_px[0])) * tick_size


def _visible(book: BookView, side: int, price: int) -> float:
    """Visible size at ``price`` on our side; 0 if inside the shown range but absent, -1 if unknown."""
    px, sz, n = (book.bid_px, book.bid_sz, book.n_bid) if side > 0 else (book.ask_px, book.ask_sz, book.n_ask)
    for i in range(n):
        p = int(px[i])
        if p == price:
            return float(sz[i])
        if (p < price) if side > 0 else (p > price):
            return 0.0  # passed our price: the level is empty
    return -1.0


def fill_to_dict(fill: Fill) -> dict[str, Any]:
    """A fill as a JSON-safe dict (for the ``fills`` topic)."""
    d = fill._asdict()
    if math.isnan(d["mid"]):
        d["mid"] = None
    return d
