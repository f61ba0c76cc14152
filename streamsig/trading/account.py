"""One strategy trading one symbol: the paper trader's step, once per feature row.

At each row (a consistent book), in this order, exactly as the live paper
trader does (see :mod:`streamsig.trading`):

1. the trades printed since the last row (in this chunk or, for the first row
   of a chunk, after the last row of the chunks before) go to
   ``Executor.on_trade`` (they can fill a resting passive order);
2. ``Executor.on_book`` with the book at this row; its fills go to the
   portfolio;
3. the portfolio is marked at the row's mid; a tripped kill switch halts the
   executor;
4. the strategy's target, after the portfolio's risk limits, is submitted when
   it differs from the last one submitted (a new order answers this row's
   sequence and becomes active after the configured latency; market orders,
   or passive ones resting at our touch when ``passive``).

Nothing happens before the first row at or after ``start_ns`` with a two-sided
book; the portfolio starts there (with ``capital``, or by default the notional
of ``capital_units`` at that mid). The kill switch (``max_drawdown``) and
passive orders come from the :class:`ExecConfig`.

:func:`step_rows` is the one per-row loop: the backtest calls it per chunk of
events with its feature rows, the live trader per drained part of its book
frames with the signal records that answer it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from streamsig.trading.cursor import BookCursor
from streamsig.book import events as E
from streamsig.book.instrument import Instrument
from streamsig.trading import ExecConfig, Executor, Fill, Portfolio


class Account:
    """Executor + portfolio of one (strategy, symbol), and the per-row record of what it held."""

    def __init__(self, strategy: str, symbol: str, exec_cfg: ExecConfig, capital: float | None,
                 capital_units: float, start_ns: int | None = None, record: bool = True,
                 instrument: Instrument | None = None) -> None:
        """``record=False`` (the long-running live trader) keeps no per-row history or equity curve;
        ``instrument`` values positions and fees (inverse contracts in the coin)."""
        self.strategy, self.symbol = strategy, symbol
        self.record = record
        self.instrument = instrument
        self.ex = Executor(exec_cfg, symbol, instrument)
        self.pf: Portfolio | None = None
        self._capital, self._units, self._max_dd = capital, capital_units, exec_cfg.max_drawdown
        self.start_ns = -(1 << 62) if start_ns is None else int(start_ns)
        self.passive = exec_cfg.passive
        self.fills: list[Fill] = []
        self.seq: list[int] = []
        self.mid: list[float] = []
        self.position: list[float] = []
        self._sent = 0.0

    def on_row(self, ts: int, seq: int, mid: float, target: float, cursor: BookCursor,
               ev_index: int, events: np.ndarray, trades: np.ndarray, carry: np.ndarray | None = None) -> None:
        """Advance by one feature row (``trades``: chunk indices of the TRADE events since the last row;
        ``carry``: TRADE events from before the chunk, for its first row)."""
        if ts < self.start_ns:
            return
        pf = self.pf
        if pf is None:
            if not math.isfinite(mid):
                return
            inst = self.instrument
            cap = self._capital if self._capital is not None else \
                abs(self._units * mid) if inst is None else inst.notional(abs(self._units), mid)
            pf = self.pf = Portfolio(cap, self._max_dd, keep_curve=self.record,
                                     instruments=None if inst is None else {self.symbol: inst})
        ex = self.ex
        if ex.working:
            if carry is not None:
                for e in carry:
                    self._book(ex.on_trade(int(e["exch_ts"]), int(e["price"]), float(e["size"]),
                                           1 if e["flags"] & E.BUY else -1))
            for j in trades:
                side = 1 if events["flags"][j] & E.BUY else -1
                self._book(ex.on_trade(int(events["exch_ts"][j]), int(events["price"][j]),
                                       float(events["size"][j]), side))
            self._book(ex.on_book(ts, cursor.at(ev_index)))
        else:
            ex.on_book(ts, cursor.state)  # idle: counts the update, reads no book
        pf.mark(ts, mid, self.symbol)
        if pf.killed and not ex.halted:
            ex.halt(ts)  # sends target 0 itself
            self._sent = 0.0
        tgt = pf.allow(target)
        if tgt != self._sent and ex.submit(ts, seq, tgt, self.passive):
            self._sent = tgt
        if self.record:
            self.seq.append(seq)
            self.mid.append(mid)
            self.position.append(ex.position)

    def _book(self, fills: tuple[Fill, ...]) -> None:
        for f in fills:
            self.pf.on_fill(f)  # type: ignore[union-attr]
            self.fills.append(f)


def step_rows(accounts: Sequence[Account], targets: Sequence[Sequence[float]], events: np.ndarray,
              idx: Sequence[int], ts: Sequence[int], seq: Sequence[int], mid: Sequence[float],
              cursor: BookCursor) -> None:
    """Step every account over the rows of one chunk of ``events``.

    Row ``i`` closes at event ``idx[i]`` with time ``ts[i]``, sequence
    ``seq[i]`` and mid ``mid[i]``; ``targets[k][i]`` is account ``k``'s target
    there. The cursor is advanced over the whole chunk.
    """
    tix = np.flatnonzero(events["flags"] & E.TRADE)
    bounds = np.searchsorted(tix, np.asarray(idx, np.int64), side="right").tolist()
    cursor.begin(events)
    lo = 0
    for i in range(len(bounds)):
        hi = bounds[i]
        trades = tix[lo:hi]
        carry = None
        if i == 0 and cursor.carry is not None:
            carry, cursor.carry = cursor.carry, None
        for acc, tg in zip(accounts, targets):
            acc.on_row(ts[i], seq[i], mid[i], tg[i], cursor, idx[i], events, trades, carry)
        lo = hi
    cursor.finish(events[tix[lo:]] if lo < len(tix) else None)
