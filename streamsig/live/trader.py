"""The live paper trader: book frames + signal frames in, fills and P&L out.

Per symbol, :class:`LiveTrader` keeps its own copy of the book (the same
kernel on the same ``book-events`` frames) and the worker's targets by
sequence. A book row is traded only once the signal stream has answered its
sequence (a signal frame's ``last_seq``), then it runs exactly the backtest's
per-row step (:class:`~streamsig.trading.account.Account`: executor against the book
at that row, portfolio marked at mid, kill switch). So a file replayed live
trades like the backtest of the same file. Redelivered book events and
signals (sequence already seen) are ignored: no signal trades twice.

Passive (queue) orders are not used live.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from streamsig.trading.cursor import BookCursor
from streamsig.trading.account import Account
from streamsig.book import events as E
from streamsig.features import FeatureSpec, FeatureState
from streamsig import telemetry as M
from streamsig.live.guard import SequenceGuard, SymbolGate, Verdict, check_values
from streamsig.wire.signals import SignalFrame, to_json
from streamsig.trading import ExecConfig, Fill
from streamsig.trading.executor import fill_to_dict
from streamsig.trading.performance import LiveStats


class LiveTrader:
    """One symbol's paper trading, joined on sequence numbers (see module doc)."""

    def __init__(self, symbol: str, spec: FeatureSpec, tick_size: float, exec_cfg: ExecConfig,
                 size: float = 1.0, capital: float | None = None, max_drawdown: float | None = None,
                 strategy: str = "model") -> None:
        self.symbol, self.spec = symbol, spec
        self.state = FeatureState(spec, tick_size)
        self.cursor = BookCursor(spec, tick_size)
        self.lane = Account(strategy, symbol, replace(exec_cfg, tick_size=tick_size), capital, size,
                         max_drawdown, None, False, record=False)
        self.imid = spec.index("mid")
        self._events: list[np.ndarray] = []
        self._book_seq = -1  # last book sequence buffered
        self._sig_seq = np.zeros(0, np.int64)
        self._sig_tgt = np.zeros(0, np.float64)
        self._answered = -1  # the worker has processed the book up to here
        self._target = 0.0
        self.stats = LiveStats()
        self.n_fills = 0

    def on_book(self, events: np.ndarray) -> int:
        """Buffer a book frame; returns how many events were new (not redelivered)."""
        fresh = events["seq"] > self._book_seq
        k = int(np.argmax(fresh)) if fresh.any() else len(events)
        if k < len(events):
            self._events.append(np.array(events[k:]))
            self._book_seq = int(events["seq"][-1])
        return len(events) - k

    def new_session(self) -> None:
        """Forget book and signal sequences: a restarted producer numbers its events afresh.

        Book and features start afresh (from the new session's snapshot); the account
        (position, P&L) carries on.
        """
        tick = self.state.tick_size
        self.state = FeatureState(self.spec, tick)
        self.cursor = BookCursor(self.spec, tick)
        ex = self.lane.ex
        ex.last_seq = -1  # signal sequences start again too
        ex._inflight.clear()  # orders timed on the old session's clock would never come due
        self._events = []
        self._book_seq = -1
        self._sig_seq = np.zeros(0, np.int64)
        self._sig_tgt = np.zeros(0, np.float64)
        self._answered = -1

    def on_signals(self, frame: SignalFrame) -> None:
        """Buffer a signal frame's targets (records already seen are ignored)."""
        rec = frame.records
        last = self._sig_seq[-1] if len(self._sig_seq) else -1
        rec = rec[rec["seq"] > last]
        if len(rec):
            self._sig_seq = np.concatenate([self._sig_seq, rec["seq"]])
            self._sig_tgt = np.concatenate([self._sig_tgt, rec["target"]])
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
        rows, idx, _ = self.state.update(part)
        seqs = part["seq"][idx]
        pos = np.searchsorted(self._sig_seq, seqs)
        hit = (pos < len(self._sig_seq)) & (self._sig_seq[np.minimum(pos, len(self._sig_seq) - 1)] == seqs)
        tix = np.flatnonzero(part["flags"] & E.TRADE)
        bounds = np.searchsorted(tix, idx, side="right")
        n_before = len(self.lane.fills)
        self.cursor.begin(part)
        lo = 0
        for i in range(len(rows)):
            if hit[i]:
                self._target = float(self._sig_tgt[pos[i]])
            hi = int(bounds[i])
            self.lane.on_row(int(part["exch_ts"][idx[i]]), int(seqs[i]), float(rows[i, self.imid]),
                             self._target, self.cursor, int(idx[i]), part, tix[lo:hi])
            lo = hi
        self.cursor.finish()
        drop = np.searchsorted(self._sig_seq, seqs[-1], side="right") if len(seqs) else 0
        self._sig_seq, self._sig_tgt = self._sig_seq[drop:], self._sig_tgt[drop:]
        pf = self.lane.pf
        if pf is not None:
            self.stats.update(pf.equity)
        new = self.lane.fills[n_before:]
        self.lane.fills.clear()  # published by the caller; a long-running trader keeps no history
        self.n_fills += len(new)
        return list(new)

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
                "fills": self.n_fills, "killed": pf.killed}


def build_trader(cfg, spec: FeatureSpec, exec_cfg: ExecConfig, size: float = 1.0,  # noqa: ANN001, ANN201
                 capital: float | None = None, max_drawdown: float | None = None, model: str = "model"):
    """The paper trader's Faust app: agents on ``book-events`` and ``signals``."""
    from streamsig.live.config import make_app, raw_topic
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

    def trader(symbol: str, tick: float) -> LiveTrader:
        tr = traders.get(symbol)
        if tr is None:
            tr = traders[symbol] = LiveTrader(symbol, spec, tick, exec_cfg, size, capital, max_drawdown, model)
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
            if gate.check(fr.symbol, traders) or check_values(fr, known.state.tick_size if known else None):
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
            try:
                sf = decode_signals(value)
            except FrameError:
                continue
            tr = traders.get(sf.symbol)
            g = guards.get(sf.symbol)
            if tr is None or g is None or sf.epoch > (g.epoch or 0):  # the book side is not there yet
                hold(sf)
                continue
            take_signals(tr, sf)
            await publish(tr, tr.drain())

    from streamsig.wire.health import BrokerWatch, quiet_client_logs

    watch = BrokerWatch(cfg.bootstrap, cfg.topics.all(), cfg.partitions, "trader", cfg.topic_prefix)
    app.streamsig_watch = watch

    @app.task
    async def watch_broker() -> None:  # type: ignore[no-untyped-def]
        quiet_client_logs()
        await watch.run()

    quiet_client_logs()
    return app
