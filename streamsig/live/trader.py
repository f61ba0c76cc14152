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

import json
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

    # ---- checkpoints -------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to resume exactly: the cursor's book, buffered events and signal
        records, the account (executor + portfolio), the marks and counters (arrays + scalars)."""
        ev = (np.concatenate(self._events) if len(self._events) > 1 else self._events[0]) if self._events \
            else E.empty(0)
        c, lane = self.cursor, self.lane
        mark = None if self._mark is None else [self._mark[0], self._mark[1],
                                                 None if math.isnan(self._mark[2]) else self._mark[2],
                                                 None if math.isnan(self._mark[3]) else self._mark[3]]
        return {"seq": self.traded_seq, "symbol": self.symbol, "tick_size": c.tick_size,
                "cursor": {"capacity": c.capacity, "bid_px": c.bid_px, "bid_sz": c.bid_sz, "ask_px": c.ask_px,
                           "ask_sz": c.ask_sz, "st": c._st, "carry": c.carry},
                "events": ev, "closed": self._closed, "sig": self._sig, "sig_seq": self._sig_seq,
                "answered": self._answered, "mark": mark, "stats": dict(vars(self.stats)),
                "n_fills": self.n_fills, "traded_seq": self.traded_seq, "desyncs": self.desyncs,
                "executor": lane.ex.snapshot(), "portfolio": lane.pf.snapshot() if lane.pf is not None else None,
                "sent": lane._sent, "start_ns": lane.start_ns}

    def restore(self, ck: dict[str, Any]) -> None:
        """Resume from :meth:`checkpoint` output (same execution config and book capacity)."""
        from streamsig.trading import Executor, Portfolio

        c, cc = self.cursor, ck["cursor"]
        if int(cc["capacity"]) != c.capacity:
            raise ValueError(f"checkpoint book capacity {cc['capacity']} != {c.capacity}")
        c.tick_size = float(ck["tick_size"])
        for name in ("bid_px", "bid_sz", "ask_px", "ask_sz"):
            getattr(c, name)[:] = np.asarray(cc[name], getattr(c, name).dtype)
        c._st[:] = np.asarray(cc["st"], np.int64)
        c.carry = None if cc["carry"] is None else np.array(cc["carry"], dtype=E.empty(0).dtype)
        ev = np.asarray(ck["events"])
        self._events = [np.array(ev, dtype=E.empty(0).dtype)] if len(ev) else []
        self._closed, self._answered = int(ck["closed"]), int(ck["answered"])
        self._sig = np.array(ck["sig"], dtype=SIGNAL_DTYPE)
        self._sig_seq = int(ck["sig_seq"])
        m = ck["mark"]
        self._mark = None if m is None else (int(m[0]), int(m[1]), math.nan if m[2] is None else float(m[2]),
                                             math.nan if m[3] is None else float(m[3]))
        self.n_fills, self.traded_seq, self.desyncs = int(ck["n_fills"]), int(ck["traded_seq"]), int(ck["desyncs"])
        vars(self.stats).update(ck["stats"])
        lane = self.lane
        lane.ex = Executor.restore(lane.ex.cfg, ck["executor"])
        lane.pf = Portfolio.restore(ck["portfolio"]) if ck["portfolio"] is not None else None
        lane._sent, lane.start_ns = float(ck["sent"]), int(ck["start_ns"])

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
                 fee_for: Callable[[Instrument | None], float] | None = None,
                 state_dir: str | None = None, checkpoint_s: float = 1.0, max_batch: int = 1024):
    """The paper trader's Faust app: agents on ``book-events`` and ``signals``.

    ``policy.max_position`` sizes each symbol's default capital (as in the backtest).
    ``instrument_for(symbol, tick)`` gives a symbol's instrument (None: a plain linear
    unit) and ``fee_for(instrument)`` its taker fee, replacing ``exec_cfg.fee_bps``.

    Crash-safe like the worker: every ``checkpoint_s`` seconds each symbol
    whose state changed is checkpointed (``trader-checkpoints`` topic, keyed by
    symbol and co-partitioned with ``book-events``; ``state_dir`` is an
    optional local cache) and only then are offsets committed. Fills carry
    ``fill_seq`` (1, 2, ... per symbol) and P&L records ``seq`` (the book row
    they mark), so a consumer can deduplicate; after a restart the fills and
    P&L already on their topics (read back from the offsets the checkpoint
    recorded) are not published again. All output is acknowledged before a
    checkpoint can cover it.
    """
    import asyncio
    import logging
    from streamsig.live.checkpoint import (BrokerStore, Checkpoint, CheckpointError, LocalStore, Versions,
                                           crash_point, decode_checkpoint, save_changed,
                                           request_snapshot, state_topics)
    from streamsig.live.batches import direct_feed
    from streamsig.live.config import incarnation, make_app, raw_topic, reread_from_start
    from streamsig.live.health import add_health_timer
    from streamsig.live.output import InFlight, acked, queue_sends
    from streamsig.live.worker import choose_checkpoint
    from streamsig.wire.frames import FrameError, decode_frame
    from streamsig.wire.health import BrokerWatch, quiet_client_logs
    from streamsig.wire.signals import decode_signals

    log = logging.getLogger(__name__)
    app = make_app(cfg.replace(app_id=cfg.app_id + "-trader"), broker_commit_interval=10_000_000.0,
                   broker_commit_every=1 << 40)  # commits follow checkpoints only
    t = cfg.topics
    _, ck_topic, req_topic = state_topics(t)
    book, signals = raw_topic(app, t.book_events), raw_topic(app, t.signals)
    # both come from the fetch loop as fetched, past Faust's per-message stream (docs/latency.md)
    feeds = {name: direct_feed(app, name, limit=4 * max_batch) for name in (t.book_events, t.signals)}
    fills_t, pnl_t, dead = raw_topic(app, t.fills), raw_topic(app, t.pnl), raw_topic(app, t.dead_letter)
    store = BrokerStore(cfg.bootstrap, ck_topic, cfg.partitions, rotate_bytes=cfg.checkpoint_rotate_bytes)
    local = LocalStore(state_dir, "trader") if state_dir else None
    versions = Versions()
    lock = asyncio.Lock()
    traders: dict[str, LiveTrader] = {}
    early: dict[str, list] = {}  # signal frames that arrived before the symbol's first book frame
    guards: dict[str, SequenceGuard] = {}
    gate = SymbolGate(cfg.max_symbols, cfg.allowed_symbols)
    part_of: dict[str, int] = {}
    fill_mark: dict[str, int] = {}  # highest fill_seq on the fills topic
    pnl_mark: dict[str, int] = {}  # highest P&L seq on the pnl topic
    out_off: dict[tuple[str, int], int] = {}  # highest acknowledged offset per (topic, partition)
    inflight = InFlight()  # batches whose output awaits its ack
    loaded: dict[int, tuple[dict[str, Checkpoint], dict[str, str]]] = {}
    started = False
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

    async def ensure_started() -> None:
        nonlocal started
        if not started:
            await store.start([req_topic], [t.book_events, t.signals, t.fills, t.pnl])
            started = True

    async def open_partition(p: int) -> None:
        cks: dict[str, Checkpoint] = {}
        bad: dict[str, str] = {}
        for sym, blob in (await store.load_partition(p)).items():
            try:
                cks[sym] = decode_checkpoint(blob, sym, "trader")
            except CheckpointError as exc:
                bad[sym] = str(exc)
        for topic, field, marks, key in ((t.fills, "fills_offset", fill_mark, "fill_seq"),
                                         (t.pnl, "pnl_offset", pnl_mark, "seq")):
            start = min((int(c.state.get(field, -1)) + 1 for c in cks.values()), default=0)

            def on(k: bytes | None, v: bytes | None, marks: dict = marks, key: str = key) -> None:
                try:
                    d = json.loads(v or b"")
                    sym, n = d["symbol"], int(d[key])
                except (ValueError, KeyError, TypeError):
                    return
                marks[sym] = max(marks.get(sym, -1), n)

            await store.read_tail(topic, p, start, on)
        loaded[p] = (cks, bad)

    async def trader(symbol: str, p: int, tick: float | None) -> LiveTrader | None:
        tr = traders.get(symbol)
        if tr is not None:
            return tr
        await ensure_started()
        if p not in loaded:
            await open_partition(p)
        cks, bad = loaded[p]
        damaged = symbol in bad
        lck = None
        if local is not None:
            try:
                lck = local.load(symbol)
            except CheckpointError as exc:
                bad[symbol], damaged = str(exc), True
        best, source = choose_checkpoint(lck, cks.get(symbol))
        if best is not None:
            tick = float(best.state["tick_size"])
        if tick is None:
            return None
        inst = None if instrument_for is None else instrument_for(symbol, tick)
        ex = exec_cfg if fee_for is None else replace(exec_cfg, fee_bps=fee_for(inst))
        tr = LiveTrader(symbol, tick, ex, policy.max_position, capital, model, book_capacity, inst)
        if best is not None:
            try:
                tr.restore(best.state)
                damaged = False
                M.CHECKPOINT_RESTORES.labels(source).inc()
            except (KeyError, ValueError, TypeError) as exc:
                bad[symbol], damaged, best = f"{type(exc).__name__}: {exc}", True, None
                tr = LiveTrader(symbol, tick, ex, policy.max_position, capital, model, book_capacity, inst)
        if damaged:
            log.error("trader checkpoint of %s is damaged (%s); it resyncs from a snapshot", symbol, bad[symbol])
            M.CHECKPOINT_CORRUPT.labels(symbol).inc()
            M.SNAPSHOT_REQUESTS.labels(symbol).inc()
            await request_snapshot(store, req_topic, symbol, -1, "damaged trader checkpoint")
        versions.restored(symbol, best, ("fills_offset", "pnl_offset"))
        traders[symbol], part_of[symbol] = tr, p
        guards[symbol] = SequenceGuard(cfg.seq_window)
        guards[symbol].restore(best.state.get("guard") if best is not None else None,
                               int(best.state.get("closed", -1)) if best is not None else -1)
        if best is not None:  # what was published up to the checkpoint; the tails read add what came after
            fill_mark[symbol] = max(fill_mark.get(symbol, -1), int(best.state.get("fill_mark", -1)))
            pnl_mark[symbol] = max(pnl_mark.get(symbol, -1), int(best.state.get("pnl_mark", -1)))
            release(tr)  # held signal frames the restored book has caught up with
        return tr

    def records(tr: LiveTrader, fills: list[Fill], sends: list, kinds: list) -> None:
        """Queue a symbol's new fills (numbered) and its P&L record, skipping what is already published."""
        sym, key = tr.symbol, tr.symbol.encode()
        first = tr.n_fills - len(fills) + 1
        mark = fill_mark.get(sym, -1)
        for i, f in enumerate(fills):
            n = first + i
            if n <= mark:
                M.SUPPRESSED.labels(sym, "fills").inc()
                continue
            d = fill_to_dict(f)
            d["type"], d["fill_seq"] = "fill", n
            sends.append((fills_t, key, to_json(d).encode()))
            kinds.append((sym, "fill", f))
            fill_mark[sym] = n
        rec = tr.pnl()
        if rec.get("equity") is not None:
            rec["seq"] = tr.traded_seq
            if tr.traded_seq > pnl_mark.get(sym, -1):
                sends.append((pnl_t, key, to_json(rec).encode()))
                kinds.append((sym, "pnl", rec))
                pnl_mark[sym] = tr.traded_seq

    async def publish(batch: dict[str, list[Fill]]) -> None:
        """Queue the fills and P&L of a batch of frames, each symbol's P&L once; their acks are awaited
        while the next batches are traded (:class:`~streamsig.live.output.InFlight`, as in the worker),
        and before any checkpoint."""
        sends: list = []
        kinds: list = []
        for sym, fills in batch.items():
            records(traders[sym], fills, sends, kinds)
        if not sends:
            return
        await inflight.make_room()
        futs = await queue_sends(sends)
        inflight.add(published(sends, futs, kinds))

    async def published(sends: list, futs: list, kinds: list) -> None:
        """Wait for a batch's output to be acknowledged, then move the acknowledged offsets and the metrics."""
        inc = incarnation(app)
        mds = await acked(sends, futs, dead, [k[0] for k in kinds])
        for (sym, kind, obj), md in zip(kinds, mds):
            topic = t.fills if kind == "fill" else t.pnl
            p = part_of.get(sym)
            if md is not None and p is not None and incarnation(app) == inc:  # not a lost broker's offset
                out_off[(topic, p)] = max(out_off.get((topic, p), -1), int(md.offset))
            if kind == "fill":
                M.FILLS.labels(sym, model).inc()
                M.FEES.labels(sym, model).inc(max(0.0, float(obj.fee)))
            else:
                M.PNL.labels(sym, model).set(obj["pnl"] or 0.0)
                M.POSITION.labels(sym, model).set(obj["position"])
                M.DRAWDOWN.labels(sym, model).set(obj["drawdown"] or 0.0)
                if obj["sharpe"] is not None:
                    M.SHARPE.labels(sym, model).set(obj["sharpe"])

    @app.agent(book)
    async def on_book(stream):  # type: ignore[no-untyped-def]
        # frames waiting together are traded one by one, their output published together
        async for messages in feeds[t.book_events].batches(app, max_batch):
            async with lock:
                batch: dict[str, list[Fill]] = {}
                assigned = app.consumer.assignment()
                for m in messages:
                    if m.tp not in assigned:
                        continue  # revoked while the batch waited for the lock: its next owner reads it
                    try:
                        fr = decode_frame(m.value)
                    except FrameError:
                        continue  # the worker dead-letters bad frames
                    if fr.tick_size <= 0:
                        continue
                    known = traders.get(fr.symbol)
                    if gate.check(fr.symbol, traders) or check_values(fr, known.cursor.tick_size if known else None):
                        continue  # the worker dead-letters it
                    tr = await trader(fr.symbol, m.partition, fr.tick_size)
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
                    batch.setdefault(fr.symbol, []).extend(tr.drain())
                await publish(batch)

    @app.agent(signals)
    async def on_signals(stream):  # type: ignore[no-untyped-def]
        async for messages in feeds[t.signals].batches(app, max_batch):
            received = time.time_ns()
            async with lock:
                batch: dict[str, list[Fill]] = {}
                assigned = app.consumer.assignment()
                for m in messages:
                    if m.tp not in assigned:
                        continue
                    try:
                        sf = decode_signals(m.value)
                    except FrameError:
                        continue
                    M.observe_stage("worker_to_trader", sf.worker_ts_ns, received)
                    tr = await trader(sf.symbol, m.partition, None)
                    g = guards.get(sf.symbol)
                    if tr is None or g is None or sf.epoch > (g.epoch or 0):  # the book side is not there yet
                        hold(sf)
                        continue
                    take_signals(tr, sf)
                    batch.setdefault(sf.symbol, []).extend(tr.drain())
                await publish(batch)
                M.observe_stage("trader", received, time.time_ns())

    async def save_all() -> bool:
        """With the lock held: checkpoint changed symbols once all output so far is acknowledged;
        False if some state (early targets) cannot be covered yet."""
        await inflight.drain()
        if not started:
            return False
        contents = ((sym, dict(tr.checkpoint(), fill_mark=fill_mark.get(sym, -1), pnl_mark=pnl_mark.get(sym, -1),
                               guard=guards[sym].state())) for sym, tr in list(traders.items()))

        def offsets(sym: str) -> dict[str, int]:
            p = part_of[sym]
            return {"fills_offset": out_off.get((t.fills, p), -1), "pnl_offset": out_off.get((t.pnl, p), -1)}

        M.CHECKPOINT_WRITES.labels("trader").inc(await save_changed("trader", contents, offsets, versions, local,
                                                                    store))
        return not early

    @app.timer(checkpoint_s)
    async def checkpoint() -> None:  # type: ignore[no-untyped-def]
        async with lock:
            if await save_all():
                crash_point("checkpoint-saved")
                await app.consumer.commit()

    @app.on_before_shutdown.connect
    async def _on_shutdown(sender: Any, **kw: Any) -> None:
        async with lock:
            await save_all()
        await store.stop()

    @app.on_partitions_revoked.connect
    async def _on_revoked(sender: Any, revoked: Any, **kw: Any) -> None:
        for feed in feeds.values():
            feed.clear()  # fetched, not yet taken: fetched again from the committed offsets
        async with lock:
            if await save_all():
                await app.consumer.commit()
            for sym in list(traders):
                versions.forget(sym)
            traders.clear()
            guards.clear()
            restart.clear()
            parked.clear()
            part_of.clear()
            loaded.clear()
            store.forget()
            early.clear()
            fill_mark.clear()
            pnl_mark.clear()

    async def lost(missing: list[str]) -> None:
        # the recreated topics number their messages from 0 again (no lock: a batch may be waiting
        # on the broker with it held)
        await reread_from_start(app)
        out_off.clear()
        loaded.clear()
        for sym in list(traders):
            versions.forget(sym)  # the checkpoints topic is new: write every symbol again

    watch = BrokerWatch(cfg.bootstrap, cfg.topics.all() + state_topics(t), cfg.partitions, "trader",
                        cfg.topic_prefix, on_loss=lost)
    app.streamsig_watch = watch

    @app.task
    async def watch_broker() -> None:  # type: ignore[no-untyped-def]
        quiet_client_logs()
        await watch.run()

    quiet_client_logs()
    return app
