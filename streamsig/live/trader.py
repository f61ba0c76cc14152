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
from typing import Any

import numpy as np

from streamsig.book import events as E
from streamsig.book.records import SIGNAL_DTYPE
from streamsig.book.sequence import fresh_start
from streamsig.trading.cursor import BookCursor
from streamsig.trading.account import Account, step_rows
from streamsig import telemetry as M
from streamsig.live.guard import SequenceGuard, SymbolGate, Verdict, check_values
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
                 capital: float | None = None, strategy: str = "model", book_capacity: int = 64) -> None:
        self.symbol = symbol
        self.cursor = BookCursor(book_capacity, tick_size)
        self.lane = Account(strategy, symbol, replace(exec_cfg, tick_size=tick_size), capital, capital_units,
                            None, record=False)
        self._mark: tuple[int, int, float, float] | None = None  # (exch ts, seq, mid, microprice) of the last row
        self._events: list[np.ndarray] = []
        self._closed = -1  # sequence of the last end-of-batch event buffered
        self._sig = np.zeros(0, SIGNAL_DTYPE)  # signal records not traded yet
        self._sig_seq = -1  # last signal sequence buffered
        self._answered = -1  # the worker has processed the book up to here
        self.stats = LiveStats()
        self.n_fills = 0
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

    def new_session(self) -> None:
        """Forget book and signal sequences: a restarted producer numbers its events afresh.

        The book starts afresh (from the new session's snapshot); the account
        (position, P&L) carries on.
        """
        self.cursor = BookCursor(self.cursor.capacity, self.cursor.tick_size)
        ex = self.lane.ex
        ex.last_seq = -1  # signal sequences start again too
        ex._inflight.clear()  # orders timed on the old session's clock would never come due
        self._events = []
        self._closed = -1
        self._sig = np.zeros(0, SIGNAL_DTYPE)
        self._sig_seq = -1
        self._answered = -1

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
                 capital: float | None = None, model: str = "model", book_capacity: int = 64):
    """The paper trader's Faust app: agents on ``book-events`` and ``signals``.

    ``policy.max_position`` sizes each symbol's default capital (as in the backtest).
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
    guards: dict[str, SequenceGuard] = {}
    gate = SymbolGate(cfg.max_symbols, cfg.allowed_symbols)
    app.streamsig_traders = traders
    app.streamsig_guards = guards

    def hold(sf: SignalFrame) -> None:
        """Keep a signal frame the book side is not ready for (bounded: it is input too)."""
        if sf.symbol in early or len(early) < cfg.max_symbols:
            q = early.setdefault(sf.symbol, [])
            if len(q) < 10_000:
                q.append(sf)

    # a producer that restarted its numbering: the old numbering's rows still wait for their signals,
    # so the new session's book frames are parked until a signal of the new session shows that the
    # worker (whose signals arrive in order) is past the old one
    restart: dict[str, int] = {}
    parked: dict[str, list] = {}

    def take_signals(tr: LiveTrader, sf: SignalFrame) -> None:
        sym = tr.symbol
        at = restart.get(sym)
        if at is not None and sf.epoch >= at:
            tr.new_session()
            del restart[sym]
            for ev in parked.pop(sym, []):
                tr.on_book(ev)
        elif at is None and sf.epoch < guards[sym].numbered_since:
            return  # answers a numbering that was restarted since
        tr.on_signals(sf)

    def release(tr: LiveTrader) -> None:
        """Feed held signal frames the book side has caught up with."""
        g = guards[tr.symbol]
        keep = []
        for sf in early.pop(tr.symbol, []):
            if sf.epoch > (g.epoch or 0):
                keep.append(sf)
            else:
                take_signals(tr, sf)
        if keep:
            early[tr.symbol] = keep
    add_health_timer(app, "trader")

    def trader(symbol: str, tick: float) -> LiveTrader:
        tr = traders.get(symbol)
        if tr is None:
            tr = traders[symbol] = LiveTrader(symbol, tick, exec_cfg, policy.max_position, capital, model,
                                              book_capacity)
            guards.setdefault(symbol, SequenceGuard(cfg.seq_window))
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
            known = traders.get(fr.symbol)
            if gate.check(fr.symbol, traders) or check_values(fr, known.cursor.tick_size if known else None):
                continue  # the worker dead-letters it
            tr = trader(fr.symbol, fr.tick_size)
            g = guards[fr.symbol]
            before = g.epoch
            verdict, _, _ = g.check(fr)
            if verdict is Verdict.REJECT:
                continue  # the worker dead-letters it
            if verdict is Verdict.NEW_SESSION:
                restart[fr.symbol] = int(g.epoch or 0)
            if fr.symbol in restart:
                parked.setdefault(fr.symbol, []).append(np.array(fr.events))
            else:
                tr.on_book(fr.events)
            if known is None or g.epoch != before:
                release(tr)
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
            g = guards.get(sf.symbol)
            if tr is None or g is None or sf.epoch > (g.epoch or 0):  # the book side is not there yet
                hold(sf)
                continue
            take_signals(tr, sf)
            await publish(tr, tr.drain())
            M.observe_stage("trader", received, time.time_ns())

    from streamsig.wire.health import BrokerWatch, quiet_client_logs

    from streamsig.live.config import forget_read_offsets

    watch = BrokerWatch(cfg.bootstrap, cfg.topics.all(), cfg.partitions, "trader", cfg.topic_prefix,
                        on_loss=lambda missing: forget_read_offsets(app))
    app.streamsig_watch = watch

    @app.task
    async def watch_broker() -> None:  # type: ignore[no-untyped-def]
        quiet_client_logs()
        await watch.run()

    quiet_client_logs()
    return app
