"""The live paper trader: book frames + signal frames in, fills and P&L out.

Per symbol, :class:`LiveTrader` keeps only the book it executes against (a
:class:`~streamsig.trading.cursor.BookCursor` fed the ``book-events`` frames; no
feature kernel) and the worker's signal records, which carry each row's
sequence, time, target and mid. Book events are traded only once the signal
stream has answered their sequence (a signal frame's ``last_seq``); then the
drained part runs exactly the backtest's per-row loop
(:func:`~streamsig.trading.account.step_rows`: executor against the book at
each row, portfolio marked at the row's mid, kill switch, passive orders if
configured). So a file replayed live trades like the backtest of the same
file. The records also carry the touch at their row; the trader counts the
drained parts whose last row's touch differs from its own book (:attr:`LiveTrader.desyncs`).
Redelivered book events and signals are dropped by sequence
(:func:`~streamsig.book.sequence.fresh_start`): no signal trades twice. The
P&L record says where the last traded row stood: its sequence, exchange time,
mid and the :func:`microprice` of its touch.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from collections.abc import Callable
from typing import Any

import numpy as np

from streamsig.book import events as E
from streamsig.book.instrument import Instrument
from streamsig.book.records import SIGNAL_DTYPE
from streamsig.book.sequence import fresh_start
from streamsig.trading.cursor import BookCursor
from streamsig.trading.account import Account, step_rows
from streamsig import telemetry as M
from streamsig.wire.signals import SignalFrame, to_json
from streamsig.trading import ExecConfig, Fill, PolicyConfig
from streamsig.trading.executor import fill_to_dict
from streamsig.trading.performance import LiveStats

log = logging.getLogger(__name__)


def microprice(rec: np.void) -> float:
    """The size-weighted mid of a signal record's touch (the feature kernel's ``microprice``).

    NaN when the record has no touch sizes (a feature spec without depth 1).

    >>> r = np.zeros(1, SIGNAL_DTYPE)[0]
    >>> r["bid"], r["bid_sz"], r["ask"], r["ask_sz"] = 99.0, 3.0, 101.0, 1.0
    >>> microprice(r)
    100.5
    """
    qb, qa = float(rec["bid_sz"]), float(rec["ask_sz"])
    if not (qb + qa > 0):
        return math.nan
    return (float(rec["ask"]) * qb + float(rec["bid"]) * qa) / (qb + qa)


class LiveTrader:
    """One symbol's paper trading, joined on sequence numbers (see module doc).

    ``capital_units`` sizes the default capital (the notional of that many
    units at the first mid), as the backtest does with the policy's
    ``max_position``; ``book_capacity`` should be the worker's feature spec's.
    """

    def __init__(self, symbol: str, tick_size: float, exec_cfg: ExecConfig, capital_units: float = 1.0,
                 capital: float | None = None, strategy: str = "model", book_capacity: int = 64,
                 instrument: Instrument | None = None) -> None:
        self.symbol = symbol
        self.cursor = BookCursor(book_capacity, tick_size)
        self.lane = Account(strategy, symbol, replace(exec_cfg, tick_size=tick_size), capital, capital_units,
                            None, record=False, instrument=instrument)
        self._mark: tuple[int, int, float, float] | None = None  # (exch ts, seq, mid, microprice) of the last row
        self._events: list[np.ndarray] = []
        self._closed = -1  # sequence of the last end-of-batch event buffered
        self._sig = np.zeros(0, SIGNAL_DTYPE)  # signal records not traded yet
        self._sig_seq = -1  # last signal sequence buffered
        self._answered = -1  # the worker has processed the book up to here
        self.stats = LiveStats()
        self.n_fills = 0
        self.traded_seq = -1  #: the book has been traded up to this sequence
        #: drained parts whose last row's touch in the signal differs from this trader's book
        self.desyncs = 0

    def on_book(self, events: np.ndarray) -> int:
        """Buffer a book frame; returns how many events were new (not redelivered)."""
        # as the worker does: events at or below the last closed update were buffered already;
        # a frame continuing an update split across frames keeps its events
        k = fresh_start(events["seq"], self._closed)
        if k < len(events):
            new = np.array(events[k:])
            self._events.append(new)
            eob = np.flatnonzero(new["flags"] & E.EOB)
            if len(eob):
                self._closed = max(self._closed, int(new["seq"][eob[-1]]))
        return len(events) - k

    def on_signals(self, frame: SignalFrame) -> None:
        """Buffer a signal frame's records (records already seen are dropped)."""
        rec = frame.records
        rec = rec[fresh_start(rec["seq"], self._sig_seq):]
        if len(rec):
            self._sig = np.concatenate([self._sig, rec])
            self._sig_seq = int(rec["seq"][-1])
        self._answered = max(self._answered, frame.last_seq)

    def drain(self) -> list[Fill]:
        """Trade every buffered book row the signals have answered; returns new fills."""
        if not self._events:
            return []
        ev = np.concatenate(self._events) if len(self._events) > 1 else self._events[0]
        eob = np.flatnonzero((ev["flags"] & E.EOB) != 0)
        ok = eob[ev["seq"][eob] <= self._answered]
        if not len(ok):
            self._events = [ev]
            return []
        cut = int(ok[-1]) + 1
        part, rest = ev[:cut], ev[cut:]
        self.traded_seq = max(self.traded_seq, int(part["seq"][cut - 1]))
        self._events = [rest] if len(rest) else []
        n_sig = int(np.searchsorted(self._sig["seq"], part["seq"][cut - 1], side="right"))
        sig, self._sig = self._sig[:n_sig], self._sig[n_sig:]
        # a row closes at the first end-of-batch event of its sequence (later ones with the same
        # sequence are periodic snapshots); a signal without such an event in the part is not traded
        eob = ok
        eseq = part["seq"][eob]
        first = np.ones(len(eseq), bool)
        first[1:] = eseq[1:] > np.maximum.accumulate(eseq)[:-1]
        eob, eseq = eob[first], eseq[first]
        pos = np.minimum(np.searchsorted(eseq, sig["seq"]), max(len(eseq) - 1, 0))
        hit = (eseq[pos] == sig["seq"]) if len(eseq) else np.zeros(len(sig), bool)
        sig, idx = sig[hit], eob[pos[hit]]
        n_before = len(self.lane.fills)
        step_rows([self.lane], [sig["target"].tolist()], part, idx.tolist(), sig["ts_ns"].tolist(),
                  sig["seq"].tolist(), sig["mid"].tolist(), self.cursor)
        if len(sig):
            last = sig[-1]
            self._mark = (int(part["exch_ts"][idx[-1]]), int(last["seq"]), float(last["mid"]), microprice(last))
            if idx[-1] == cut - 1:
                self._check_touch(last)
        pf = self.lane.pf
        if pf is not None:
            self.stats.update(pf.equity)
        new = self.lane.fills[n_before:]
        self.lane.fills.clear()  # published by the caller; a long-running trader keeps no history
        self.n_fills += len(new)
        return list(new)

    def _check_touch(self, rec: np.ndarray) -> None:
        """Compare the book after the part with the touch the worker saw at the same row."""
        c, tk = self.cursor, self.cursor.tick_size
        same = (c.n_bid > 0 and c.n_ask > 0 and c.bid_px[0] * tk == rec["bid"] and c.ask_px[0] * tk == rec["ask"]
                and (np.isnan(rec["bid_sz"]) or c.bid_sz[0] == rec["bid_sz"])
                and (np.isnan(rec["ask_sz"]) or c.ask_sz[0] == rec["ask_sz"]))
        if not same:
            if not self.desyncs:
                log.warning("%s: the trader's book differs from the worker's at seq %d", self.symbol,
                            int(rec["seq"]))
            self.desyncs += 1

    def pnl(self) -> dict[str, Any]:
        """The P&L record published on ``pnl`` (JSON-safe)."""
        pf = self.lane.pf
        if pf is None:
            return {"type": "pnl", "symbol": self.symbol, "equity": None}
        eq, cap = pf.equity, pf.capital

        def num(x: float) -> float | None:
            return None if x is None or not math.isfinite(x) else round(float(x), 8)

        return {"type": "pnl", "symbol": self.symbol, "strategy": self.lane.strategy,
                "equity": num(eq), "pnl": num(eq - cap), "position": self.lane.ex.position,
                "realised": num(pf.realised()), "unrealised": num(pf.unrealised()), "fees": num(pf.fees),
                "drawdown": num(pf.drawdown), "sharpe": num(self.stats.sharpe),
                "sortino": num(self.stats.sortino), "max_drawdown": num(self.stats.max_drawdown),
                "fills": self.n_fills, "killed": pf.killed, **self._mark_fields(num)}

    def _mark_fields(self, num: Any) -> dict[str, Any]:
        """Where the book stood at the last traded row (for the live page's price chart)."""
        if self._mark is None:
            return {}
        ts, seq, mid, micro = self._mark
        return {"exch_ts_ns": ts, "seq": seq, "mid": num(mid), "microprice": num(micro)}


def build_trader(cfg, exec_cfg: ExecConfig, policy: PolicyConfig = PolicyConfig(),  # noqa: ANN001, ANN201
                 capital: float | None = None, model: str = "model", book_capacity: int = 64,
                 instrument_for: Callable[[str, float], Instrument | None] | None = None,
                 fee_for: Callable[[Instrument | None], float] | None = None):
    """The paper trader's Faust app: agents on ``book-events`` and ``signals``.

    ``policy.max_position`` sizes each symbol's default capital (as in the backtest).
    ``instrument_for(symbol, tick)`` gives a symbol's instrument (None: a plain linear
    unit) and ``fee_for(instrument)`` its taker fee, replacing ``exec_cfg.fee_bps``.
    """

    from streamsig.live.config import make_app, raw_topic
    from streamsig.live.health import add_health_timer
    from streamsig.wire.frames import FrameError, decode_frame
    from streamsig.wire.signals import decode_signals

    app = make_app(cfg.replace(app_id=cfg.app_id + "-trader"))
    t = cfg.topics
    book, signals = raw_topic(app, t.book_events), raw_topic(app, t.signals)
    fills_t, pnl_t = raw_topic(app, t.fills), raw_topic(app, t.pnl)
    traders: dict[str, LiveTrader] = {}
    early: dict[str, list] = {}  # signal frames that arrived before the symbol's first book frame
    app.streamsig_traders = traders
    add_health_timer(app, "trader", cfg.bootstrap)

    def trader(symbol: str, tick: float) -> LiveTrader:
        tr = traders.get(symbol)
        if tr is None:
            inst = None if instrument_for is None else instrument_for(symbol, tick)
            ex = exec_cfg if fee_for is None else replace(exec_cfg, fee_bps=fee_for(inst))
            tr = traders[symbol] = LiveTrader(symbol, tick, ex, policy.max_position, capital, model,
                                              book_capacity, inst)
            for sf in early.pop(symbol, []):
                tr.on_signals(sf)
        return tr

    async def publish(tr: LiveTrader, fills: list[Fill]) -> None:
        for f in fills:
            d = fill_to_dict(f)
            d["type"] = "fill"
            await fills_t.send(key=tr.symbol.encode(), value=to_json(d).encode())
            M.FILLS.labels(tr.symbol, model).inc()
            M.FEES.labels(tr.symbol, model).inc(max(0.0, float(f.fee)))
        rec = tr.pnl()
        if rec.get("equity") is not None:
            await pnl_t.send(key=tr.symbol.encode(), value=to_json(rec).encode())
            M.PNL.labels(tr.symbol, model).set(rec["pnl"] or 0.0)
            M.POSITION.labels(tr.symbol, model).set(rec["position"])
            M.DRAWDOWN.labels(tr.symbol, model).set(rec["drawdown"] or 0.0)
            if rec["sharpe"] is not None:
                M.SHARPE.labels(tr.symbol, model).set(rec["sharpe"])

    @app.agent(book)
    async def on_book(stream):  # type: ignore[no-untyped-def]
        async for value in stream:
            try:
                fr = decode_frame(value)
            except FrameError:
                continue  # the worker dead-letters bad frames
            if fr.tick_size <= 0:
                continue
            tr = trader(fr.symbol, fr.tick_size)
            tr.on_book(fr.events)
            fills = tr.drain()
            await publish(tr, fills)

    @app.agent(signals)
    async def on_signals(stream):  # type: ignore[no-untyped-def]
        async for value in stream:
            received = time.time_ns()
            try:
                sf = decode_signals(value)
            except FrameError:
                continue
            M.observe_stage("worker_to_trader", sf.worker_ts_ns, received)
            tr = traders.get(sf.symbol)
            if tr is None:  # the book side has not seen this symbol yet: keep the targets
                early.setdefault(sf.symbol, []).append(sf)
                continue
            tr.on_signals(sf)
            await publish(tr, tr.drain())
            M.observe_stage("trader", received, time.time_ns())

    return app
