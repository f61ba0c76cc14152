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

import json
import math
from dataclasses import replace
from typing import Any

import numpy as np

from streamsig.trading.cursor import BookCursor
from streamsig.trading.account import Account
from streamsig.book import events as E
from streamsig.features import FeatureSpec, FeatureState
from streamsig import telemetry as M
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
        self.traded_seq = -1  # the last book row traded

    def on_book(self, events: np.ndarray) -> int:
        """Buffer a book frame; returns how many events were new (not redelivered)."""
        fresh = events["seq"] > self._book_seq
        k = int(np.argmax(fresh)) if fresh.any() else len(events)
        if k < len(events):
            self._events.append(np.array(events[k:]))
            self._book_seq = int(events["seq"][-1])
        return len(events) - k

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
        if len(seqs):
            self.traded_seq = int(seqs[-1])
        drop = np.searchsorted(self._sig_seq, seqs[-1], side="right") if len(seqs) else 0
        self._sig_seq, self._sig_tgt = self._sig_seq[drop:], self._sig_tgt[drop:]
        pf = self.lane.pf
        if pf is not None:
            self.stats.update(pf.equity)
        new = self.lane.fills[n_before:]
        self.lane.fills.clear()  # published by the caller; a long-running trader keeps no history
        self.n_fills += len(new)
        return list(new)

    # ---- checkpoints -------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to resume exactly: book copies, buffered rows and targets, executor, portfolio."""
        ev = (np.concatenate(self._events) if len(self._events) > 1 else self._events[0]) if self._events \
            else E.empty(0)
        lane = self.lane
        return {"seq": self._book_seq, "symbol": self.symbol, "tick_size": self.state.tick_size,
                "state": self.state.to_bytes(), "cursor": self.cursor.state.to_bytes(), "events": ev,
                "book_seq": self._book_seq, "sig_seq": self._sig_seq, "sig_tgt": self._sig_tgt,
                "answered": self._answered, "target": self._target, "stats": dict(vars(self.stats)),
                "n_fills": self.n_fills, "traded_seq": self.traded_seq,
                "executor": lane.ex.snapshot(), "portfolio": lane.pf.snapshot() if lane.pf is not None else None,
                "sent": lane._sent, "start_ns": lane.start_ns}

    def restore(self, ck: dict[str, Any]) -> None:
        """Resume from :meth:`checkpoint` output (same spec and execution config)."""
        from streamsig.trading import Executor, Portfolio

        self.state.load_bytes(ck["state"])
        self.cursor.state.load_bytes(ck["cursor"])
        ev = np.asarray(ck["events"])
        self._events = [np.array(ev, dtype=E.empty(0).dtype)] if len(ev) else []
        self._book_seq, self._answered = int(ck["book_seq"]), int(ck["answered"])
        self._sig_seq = np.asarray(ck["sig_seq"], np.int64)
        self._sig_tgt = np.asarray(ck["sig_tgt"], np.float64)
        self._target, self.n_fills = float(ck["target"]), int(ck["n_fills"])
        self.traded_seq = int(ck["traded_seq"])
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
                "fills": self.n_fills, "killed": pf.killed}


def build_trader(cfg, spec: FeatureSpec, exec_cfg: ExecConfig, size: float = 1.0,  # noqa: ANN001, ANN201
                 capital: float | None = None, max_drawdown: float | None = None, model: str = "model",
                 state_dir: str | None = None, checkpoint_s: float = 1.0, max_batch: int = 1024,
                 batch_wait_s: float = 0.0005):
    """The paper trader's Faust app: agents on ``book-events`` and ``signals``.

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
                                           crash_point, decode_checkpoint, encode_checkpoint,
                                           request_snapshot, state_topics)
    from streamsig.live.config import make_app, raw_topic
    from streamsig.live.output import send_acked
    from streamsig.live.worker import choose_checkpoint
    from streamsig.wire.frames import FrameError, decode_frame
    from streamsig.wire.signals import decode_signals

    log = logging.getLogger(__name__)
    app = make_app(cfg.replace(app_id=cfg.app_id + "-trader"), broker_commit_interval=10_000_000.0,
                   broker_commit_every=1 << 40)  # commits follow checkpoints only
    t = cfg.topics
    _, ck_topic, req_topic = state_topics(t)
    book, signals = raw_topic(app, t.book_events), raw_topic(app, t.signals)
    fills_t, pnl_t, dead = raw_topic(app, t.fills), raw_topic(app, t.pnl), raw_topic(app, t.dead_letter)
    store = BrokerStore(cfg.bootstrap, ck_topic, cfg.partitions)
    local = LocalStore(state_dir, "trader") if state_dir else None
    versions = Versions()
    lock = asyncio.Lock()
    traders: dict[str, LiveTrader] = {}
    early: dict[str, list] = {}  # signal frames that arrived before the symbol's first book frame
    part_of: dict[str, int] = {}
    fill_mark: dict[str, int] = {}  # highest fill_seq on the fills topic
    pnl_mark: dict[str, int] = {}  # highest P&L seq on the pnl topic
    out_off: dict[tuple[str, int], int] = {}  # highest acknowledged offset per (topic, partition)
    loaded: dict[int, tuple[dict[str, Checkpoint], dict[str, str]]] = {}
    started = False
    app.streamsig_traders = traders

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
        tr = LiveTrader(symbol, spec, tick, exec_cfg, size, capital, max_drawdown, model)
        if best is not None:
            try:
                tr.restore(best.state)
                damaged = False
                M.CHECKPOINT_RESTORES.labels(source).inc()
            except (KeyError, ValueError, TypeError) as exc:
                bad[symbol], damaged, best = f"{type(exc).__name__}: {exc}", True, None
                tr = LiveTrader(symbol, spec, tick, exec_cfg, size, capital, max_drawdown, model)
        if damaged:
            log.error("trader checkpoint of %s is damaged (%s); it resyncs from a snapshot", symbol, bad[symbol])
            M.CHECKPOINT_CORRUPT.labels(symbol).inc()
            M.SNAPSHOT_REQUESTS.labels(symbol).inc()
            await request_snapshot(store, req_topic, symbol, -1, "damaged trader checkpoint")
        versions.restored(symbol, best, ("fills_offset", "pnl_offset"))
        traders[symbol], part_of[symbol] = tr, p
        if best is not None:  # what was published up to the checkpoint; the tails read add what came after
            fill_mark[symbol] = max(fill_mark.get(symbol, -1), int(best.state.get("fill_mark", -1)))
            pnl_mark[symbol] = max(pnl_mark.get(symbol, -1), int(best.state.get("pnl_mark", -1)))
        for sf in early.pop(symbol, []):
            tr.on_signals(sf)
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
        """Publish the fills and P&L of a batch of frames, each symbol's P&L once, and wait for the acks."""
        sends: list = []
        kinds: list = []
        for sym, fills in batch.items():
            records(traders[sym], fills, sends, kinds)
        if not sends:
            return
        mds = await send_acked(sends, dead, [k[0] for k in kinds])
        for (sym, kind, obj), md in zip(kinds, mds):
            topic = t.fills if kind == "fill" else t.pnl
            p = part_of[sym]
            if md is not None:
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
        async for events in stream.take_events(max_batch, within=batch_wait_s):
            async with lock:
                batch: dict[str, list[Fill]] = {}
                for event in events:
                    try:
                        fr = decode_frame(event.value)
                    except FrameError:
                        continue  # the worker dead-letters bad frames
                    if fr.tick_size <= 0:
                        continue
                    tr = await trader(fr.symbol, event.message.partition, fr.tick_size)
                    tr.on_book(fr.events)
                    batch.setdefault(fr.symbol, []).extend(tr.drain())
                await publish(batch)

    @app.agent(signals)
    async def on_signals(stream):  # type: ignore[no-untyped-def]
        async for events in stream.take_events(max_batch, within=batch_wait_s):
            async with lock:
                batch: dict[str, list[Fill]] = {}
                for event in events:
                    try:
                        sf = decode_signals(event.value)
                    except FrameError:
                        continue
                    tr = await trader(sf.symbol, event.message.partition, None)
                    if tr is None:  # the book side has not seen this symbol yet: keep the targets
                        early.setdefault(sf.symbol, []).append(sf)
                        continue
                    tr.on_signals(sf)
                    batch.setdefault(sf.symbol, []).extend(tr.drain())
                await publish(batch)

    async def save_all() -> bool:
        """Checkpoint changed symbols; False if some state (early targets) cannot be covered yet."""
        if not started:
            return False
        jobs, done = [], []
        for sym, tr in list(traders.items()):
            content = dict(tr.checkpoint(), fill_mark=fill_mark.get(sym, -1), pnl_mark=pnl_mark.get(sym, -1))
            nv = versions.next(sym, content)
            if nv is None:
                continue
            version, digest = nv
            p = part_of[sym]
            state = dict(content, fills_offset=out_off.get((t.fills, p), -1),
                         pnl_offset=out_off.get((t.pnl, p), -1))
            blob = encode_checkpoint("trader", sym, version, state)
            if local is not None:
                local.save(sym, blob)
            jobs.append(store.publish(sym, version, blob))
            done.append((sym, version, digest))
        await asyncio.gather(*jobs)
        for sym, version, digest in done:
            versions.written(sym, version, digest)
        M.CHECKPOINT_WRITES.labels("trader").inc(len(done))
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
        async with lock:
            if await save_all():
                await app.consumer.commit()
            for sym in list(traders):
                versions.forget(sym)
            traders.clear()
            part_of.clear()
            loaded.clear()
            early.clear()
            fill_mark.clear()
            pnl_mark.clear()

    return app
