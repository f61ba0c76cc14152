"""The Faust worker: book frames in, signal frames out, bad input to the dead-letter topic.

Per symbol it keeps a :class:`~streamsig.engine.SignalEngine` (book, feature
kernel, model scorer, policy). Frames waiting together are processed
together. Nothing here computes a feature or a probability.

Delivery (see DESIGN.md, "Delivery semantics"):

* Output is acknowledged: signals and dead letters are awaited until the
  broker has them (:func:`~streamsig.live.output.acked`); a failed send
  is retried, then dead-lettered. The wait overlaps the next batches (at
  most :data:`MAX_INFLIGHT` batches await their acks), and a checkpoint waits
  for all of it before it saves the state that produced them.
* Every ``checkpoint_s`` seconds each symbol whose state changed is
  checkpointed (:mod:`streamsig.live.checkpoint`: to the ``checkpoints``
  topic, keyed by symbol and co-partitioned with ``book-events``, and to the
  optional local folder, a cache), and only then are consumer offsets
  committed (Faust's periodic commit is off). The state and the offsets
  are taken together between two batches, and only those offsets are
  committed, so the committed offset never runs ahead of the saved state;
  batches go on while the checkpoint is encoded and written. On partition
  revocation and on shutdown the same save-then-commit runs after the
  streams have drained.
* Whoever owns a partition next (this worker after a restart, or another
  one) restores each symbol from the newest checkpoint (the broker's record,
  or the local file if it is further along), and reads the signals topic's
  partition from the offset that checkpoint recorded to learn what was
  already published: redelivered events (sequence at or below the
  checkpoint) are skipped, recomputed signals up to the published watermark
  are suppressed, so none is published twice.
* A symbol that waits for a snapshot (a damaged checkpoint, a sequence gap)
  asks the producer for one on the ``snapshot-requests`` topic; the wait is
  logged and counted.

Hostile input: symbols beyond the cap or outside the allow-list, absurd
values and sequence jumps beyond the window are dead-lettered (see
:mod:`streamsig.live.guard`); each symbol's sequence guard is checkpointed
with its engine. A new producer session starts the symbol afresh. After the
broker lost its topics the read offsets are forgotten and a ``BROKER_LOSS``
dead letter is sent per symbol.
"""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamsig.book.events import EOB, Reason
from streamsig.book.sequence import fresh_start
from streamsig.engine import SignalEngine
from streamsig.features import FeatureSpec
from streamsig.models.outcomes import MaturedScores
from streamsig import telemetry as M
from streamsig.live.checkpoint import (BrokerStore, Checkpoint, CheckpointError, LocalStore, Versions,
                                       crash_point, decode_checkpoint, frozen, request_snapshot,
                                       save_changed, state_topics)
from streamsig.live import health
from streamsig.live.batches import direct_feed
from streamsig.live.config import StreamConfig, incarnation, make_app, raw_topic, reread_from_start
from streamsig.live.guard import SequenceGuard, SymbolGate, Verdict, check_values
from streamsig.live.output import MAX_INFLIGHT, InFlight, acked, queue_sends
from streamsig.wire.frames import FrameError, dead_letter_record, decode_frame, encode_frame, peek_symbol
from streamsig.wire.health import BrokerWatch, quiet_client_logs
from streamsig.wire.signals import decode_signals, split_signals

log = logging.getLogger(__name__)

SNAPSHOT_REQUEST_EVERY_S = 2.0  #: a waiting symbol repeats its snapshot request at most this often


def choose_checkpoint(local: Checkpoint | None, broker: Checkpoint | None) -> tuple[Checkpoint | None, str]:
    """The checkpoint to resume from: the one further along (higher ``seq``, then version); ties go to the broker."""
    if local is None or broker is None:
        return (broker, "broker") if broker is not None else (local, "local" if local is not None else "none")
    lk = (int(local.state.get("seq", -1)), local.version)
    bk = (int(broker.state.get("seq", -1)), broker.version)
    return (local, "local") if lk > bk else (broker, "broker")


def fresh_events(frames: list, last_closed: int) -> tuple[np.ndarray, int]:
    """One symbol's frames as one event array, each frame's redelivered prefix removed.

    A frame's leading events at or below the last closed update (of the engine,
    or of the frames before it in this batch) were applied already; a frame
    that continues an update split across frames keeps its events. A frame
    that starts above every event kept before it is kept whole without looking
    further (the usual case); the arrays are joined as bytes.
    """
    parts, skipped = [], 0
    hi = last_closed  # the highest sequence kept so far (never below the last closed update)
    for f in frames:
        e = f.events
        if not len(e):
            continue
        if f.first_seq > hi:
            parts.append(e)
            hi = int(e["seq"][-1])
            continue
        closed = _last_closed(parts, last_closed)
        k = fresh_start(e["seq"], closed)
        skipped += k
        if k < len(e):
            parts.append(e[k:])
            hi = max(hi, int(e["seq"][-1]))
    if not parts:
        return frames[0].events[:0], skipped
    if len(parts) == 1:
        return parts[0], skipped
    return np.frombuffer(b"".join([p.data for p in parts]), dtype=parts[0].dtype), skipped


def _last_closed(parts: list[np.ndarray], last_closed: int) -> int:
    """The last closed update after ``parts`` (events in order) were applied on top of ``last_closed``."""
    for e in reversed(parts):
        eob = np.flatnonzero(e["flags"] & EOB)
        if len(eob):
            return max(last_closed, int(e["seq"][eob[-1]]))
    return last_closed


def build_worker(cfg: StreamConfig, spec: FeatureSpec, strategy: Any, model_id: str,
                 state_dir: str | Path | None = None, checkpoint_s: float = 1.0,
                 max_batch: int = 1024, challenger: Any = None):  # noqa: ANN201
    """The worker's Faust app (agents registered); run it with ``run_worker`` or ``running``.

    Frames already waiting are taken together (up to ``max_batch``, never
    waiting for more: :class:`~streamsig.live.batches.DirectFeed`) and
    answered with one signal message per symbol, which amortises the
    per-message cost of publishing as the backlog grows.

    ``state_dir`` is an optional local cache of the checkpoints (the broker's
    ``checkpoints`` topic is the reference). ``challenger`` (a callable
    returning a fresh ``OnlineChallenger``) runs an online model per symbol
    beside the champion; its signals go to ``<signals>-challenger`` with model
    id ``<model_id>+online``.
    """
    app = make_app(cfg, broker_commit_interval=10_000_000.0, broker_commit_every=1 << 40)  # commits follow checkpoints only
    topics = cfg.topics
    ck_topic, _, req_topic = state_topics(topics)
    book = raw_topic(app, topics.book_events)
    feed = direct_feed(app, topics.book_events, limit=4 * max_batch)
    signals = raw_topic(app, topics.signals)
    dead = raw_topic(app, topics.dead_letter)
    ch_topic = raw_topic(app, topics.signals + "-challenger") if challenger else None
    store = BrokerStore(cfg.bootstrap, ck_topic, cfg.partitions, rotate_bytes=cfg.checkpoint_rotate_bytes)
    local = LocalStore(state_dir, "worker") if state_dir else None
    versions = Versions()
    lock = asyncio.Lock()  # held by a batch, and while a checkpoint takes the state
    saving = asyncio.Lock()  # one checkpoint at a time
    engines: dict[str, SignalEngine] = {}
    marks: dict[str, int] = {}  # published watermark per symbol
    part_of: dict[str, int] = {}
    offsets: dict[str, int] = {}  # highest book-events offset whose frames the symbol's state holds
    counts: dict[str, dict[str, int]] = {}  # per-symbol event accounting, checkpointed with the state
    pub_off: dict[int, int] = {}  # highest acknowledged signals offset per partition
    inflight = InFlight(MAX_INFLIGHT)  # batches whose output awaits its ack
    loaded: dict[int, tuple[dict[str, Checkpoint], dict[str, str], dict[str, int]]] = {}
    waiting: dict[str, float] = {}  # symbol -> when it started waiting for a snapshot
    last_request: dict[str, float] = {}
    guards: dict[str, SequenceGuard] = {}
    gate = SymbolGate(cfg.max_symbols, cfg.allowed_symbols)
    given_up: dict[str, tuple[float, int]] = {}  # symbol -> (monotonic time, last seq) when a rebalance took it
    lost_at = 0  # time.time_ns() of the last broker loss: book-events offsets saved before it are void
    started = False
    app.streamsig_engines = engines  # for tests and the status line
    app.streamsig_marks = marks
    app.streamsig_guards = guards

    async def ensure_started() -> None:
        nonlocal started
        if not started:
            await store.start([req_topic], [topics.book_events, topics.signals])
            started = True
    roles = {"champion": model_id, "challenger": model_id + "+online"}
    label = health.champion_label(strategy)
    matured: dict[str, MaturedScores] = {}  # the champion scored on its matured labels, per symbol
    tallies = health.TallyBuffer(roles)
    imid = spec.index("mid")
    for reason in [r.name for r in Reason if r not in (Reason.OK, Reason.RESYNC, Reason.DUPLICATE)] + [
            "BAD_FRAME", "GAP", "INTERNAL_ERROR"]:
        M.DEAD_LETTERS.labels(reason)  # every reason's series exists (at 0) from the start
    health.add_health_timer(app, "worker")

    def new_series(symbol: str) -> None:
        """A new symbol's metric series (at 0) and its matured-score tally."""
        for counter in (M.DUPLICATES, M.GAPS, M.RESYNC_DROPPED):
            counter.labels(symbol)
        if label is not None:
            matured[symbol] = MaturedScores(label)
        active = {"champion": label is not None, "challenger": challenger is not None}
        health.zero_model_series(symbol, {r: m for r, m in roles.items() if active[r]})

    async def open_partition(p: int) -> None:
        """Read the partition's checkpoints (up to a marker) and the signals published since."""
        cks: dict[str, Checkpoint] = {}
        bad: dict[str, str] = {}
        for sym, blob in (await store.load_partition(p)).items():
            try:
                cks[sym] = decode_checkpoint(blob, sym, "worker")
            except CheckpointError as exc:
                bad[sym] = str(exc)
        start = min((int(c.state.get("signals_offset", -1)) + 1 for c in cks.values()), default=0)
        tail: dict[str, int] = {}

        def on(key: bytes | None, value: bytes | None) -> None:
            try:
                f = decode_signals(value or b"")
            except FrameError:
                return
            if len(f.records):
                tail[f.symbol] = max(tail.get(f.symbol, -1), int(f.records["seq"][-1]))

        await store.read_tail(topics.signals, p, start, on)
        loaded[p] = (cks, bad, tail)

    def report_corrupt(sym: str, where: str, why: str) -> None:
        log.error("checkpoint of %s (%s) is damaged: %s; the symbol resyncs from a snapshot", sym, where, why)
        M.CHECKPOINT_CORRUPT.labels(sym).inc()

    async def open_symbol(sym: str, p: int, tick: float) -> None:
        if p not in loaded:
            await open_partition(p)
        cks, bad, tail = loaded[p]
        eng = SignalEngine(sym, spec, tick, strategy, challenger() if challenger else None)
        damaged = False
        lck = None
        if local is not None:
            try:
                lck = local.load(sym)
            except CheckpointError as exc:
                report_corrupt(sym, "local file", str(exc))
                damaged = True
        if sym in bad:
            report_corrupt(sym, "broker", bad[sym])
            damaged = True
        best, source = choose_checkpoint(lck, cks.get(sym))
        if best is not None:
            try:
                eng.restore(best.state["engine"])
                damaged = False
                M.CHECKPOINT_RESTORES.labels(source).inc()
            except (KeyError, ValueError, TypeError) as exc:
                report_corrupt(sym, source, f"{type(exc).__name__}: {exc}")
                eng = SignalEngine(sym, spec, tick, strategy, challenger() if challenger else None)
                best, damaged = None, True
        versions.restored(sym, best, ("signals_offset", "saved_ns"))
        engines[sym], part_of[sym] = eng, p
        guards[sym] = SequenceGuard(cfg.seq_window)
        guards[sym].restore(best.state.get("guard") if best is not None else None, eng.last_seq)
        new_series(sym)
        given_up.pop(sym, None)
        # offsets saved before a broker loss name messages of the lost topic: the new one starts at 0
        fresh = best is not None and int(best.state.get("saved_ns", 0)) >= lost_at
        offsets[sym] = int(best.state.get("offset", -1)) if fresh else -1
        counts[sym] = dict(best.state.get("counts") or {}) if best is not None else {}
        mark = int(best.state.get("published", -1)) if best is not None else -1
        marks[sym] = max(mark, tail.get(sym, -1))
        if damaged:
            await ask_snapshot(sym, eng.last_seq, "damaged checkpoint")

    async def ask_snapshot(sym: str, after: int, why: str) -> None:
        now = time.monotonic()
        if sym not in waiting:
            waiting[sym] = now
            log.warning("%s waits for a snapshot (%s) after seq %d", sym, why, after)
        if now - last_request.get(sym, -1e9) >= SNAPSHOT_REQUEST_EVERY_S:
            last_request[sym] = now
            M.SNAPSHOT_REQUESTS.labels(sym).inc()
            try:
                await request_snapshot(store, req_topic, sym, after, why)
            except Exception as exc:  # noqa: BLE001 - the periodic snapshot still heals it
                log.error("snapshot request for %s failed: %s", sym, exc)

    def decode(value: Any, dead_out: list) -> Any:
        """One message's frame, or None with a dead letter queued."""
        if not isinstance(value, (bytes, bytearray, memoryview)):
            value = b"" if value is None else bytes(str(value), "utf-8")
        try:
            fr = decode_frame(value)
        except FrameError as exc:
            try:
                sym = peek_symbol(value)
            except FrameError:
                sym = "?"
            dead_out.append((sym, "BAD_FRAME", -1, exc.reason, value))
            return None
        if fr.tick_size <= 0:
            dead_out.append((fr.symbol, "BAD_FRAME", fr.first_seq, "frame has no tick size", value))
            return None
        return fr

    async def admit(fr: Any, p: int, off: int, value: bytes, frames: dict[str, list], dead_out: list) -> None:
        """Check one decoded frame (symbol gate, values, sequence guard) and queue it for its symbol."""
        sym = fr.symbol
        verdict = Verdict.ACCEPT
        refused = gate.check(sym, engines) or check_values(fr, engines[sym].tick_size if sym in engines else None)
        if refused is None:
            if sym not in engines:
                await open_symbol(sym, p, fr.tick_size)
            seen = offsets[sym]
            offsets[sym] = max(seen, off)
            if off <= seen:  # its frames are in the restored state already
                c = counts[sym]
                c["redelivered"] = c.get("redelivered", 0) + len(fr.events)
                return
            verdict, reason, why = guards[sym].check(fr)
            if verdict is Verdict.REJECT:
                refused = (reason, why)
        if refused is not None:
            dead_out.append((sym, refused[0].name, fr.first_seq, refused[1], value))
            return
        if verdict is Verdict.NEW_SESSION:
            frames.setdefault(sym, []).append(None)  # the producer restarted: its sequences start again
        frames.setdefault(sym, []).append(fr)

    def apply_all(sym: str, frs: list, out: list, dead_out: list) -> None:
        """Apply a symbol's frames, forgetting its sequence where a new producer session begins."""
        seg: list = []
        end = object()
        for f in [*frs, end]:
            if f is not None and f is not end:
                seg.append(f)
                continue
            if seg:
                try:
                    apply(sym, seg, out, dead_out)
                except Exception as exc:  # noqa: BLE001 - input must never stop the stream
                    log.exception("frames of %s failed", sym)
                    counts[sym]["internal_error"] = (counts[sym].get("internal_error", 0)
                                                     + sum(len(g.events) for g in seg))
                    for g in seg:
                        dead_out.append((sym, "INTERNAL_ERROR", g.first_seq, f"{type(exc).__name__}: {exc}",
                                         encode_frame(sym, np.ascontiguousarray(g.events), g.producer_ts_ns,
                                                      g.tick_size, g.epoch)))
                seg = []
            if f is None:  # a new stream: book, features and strategy start afresh
                engines[sym] = SignalEngine(sym, spec, engines[sym].tick_size, strategy,
                                            challenger() if challenger else None)
                marks[sym] = -1
                log.warning("%s: producer session %s began; its sequences start again", sym, guards[sym].epoch)

    def apply(sym: str, frs: list, out: list, dead_out: list) -> None:
        """Run one symbol's waiting frames through its engine in one call; queue signals and dead letters."""
        eng = engines[sym]
        ev, skipped = fresh_events(frs, eng.last_seq)
        pts = [f.producer_ts_ns for f in frs]
        res = eng.on_events(ev)
        c = counts[sym]
        n_bad = len(res.rejected)
        for k, n in (("events", sum(len(f.events) for f in frs)), ("skipped", skipped + res.duplicates),
                     ("resync_dropped", res.resync_dropped), ("rejected", n_bad),
                     ("applied", len(ev) - res.duplicates - res.resync_dropped - n_bad)):
            c[k] = c.get(k, 0) + int(n)
        M.FRAMES.labels(sym).inc(len(frs))
        M.EVENTS.labels(sym).inc(len(ev) - res.duplicates)
        if res.duplicates + skipped:
            M.DUPLICATES.labels(sym).inc(res.duplicates + skipped)
        if res.benign_deletes:
            M.BENIGN_DELETES.labels(sym).inc(res.benign_deletes)
        if res.resync_dropped:
            M.RESYNC_DROPPED.labels(sym).inc(res.resync_dropped)
        if res.gap:
            M.GAPS.labels(sym).inc()
            dead_out.append((sym, "GAP", int(ev["seq"][0]), "sequence gap: book waits for the next snapshot", None))
        for i, r in zip(res.rejected.tolist(), res.reasons.tolist()):
            dead_out.append((sym, Reason(r).name, int(ev["seq"][i]), "event rejected", ev[i:i + 1].tobytes()))
        sig = res.signals
        mark = marks.get(sym, -1)
        if len(sig) and sig["seq"][-1] <= mark:
            M.SUPPRESSED.labels(sym, "signals").inc(len(sig))
        if len(sig) and sig["seq"][-1] > mark:
            k = fresh_start(sig["seq"], mark)
            if k:
                M.SUPPRESSED.labels(sym, "signals").inc(k)
            sig = sig[k:]
            marks[sym] = int(sig["seq"][-1])
            epoch = frs[-1].epoch
            out.append((sym, False, sig, pts, eng.last_seq, epoch))
            health.observe_scores(model_id, sym, sig)
            if res.challenger is not None:
                ch_sig = res.challenger[fresh_start(res.challenger["seq"], mark):]
                out.append((sym, True, ch_sig, pts, eng.last_seq, epoch))
                health.observe_scores(roles["challenger"], sym, ch_sig)
        scorer = matured.get(sym)
        if scorer is not None and len(res.rows):
            probs = np.stack([res.signals["p_down"], res.signals["p_flat"], res.signals["p_up"]], axis=1)
            tallies.add(sym, {"champion": scorer.update_many(res.rows[:, imid], res.signals["ts_ns"], probs)})
        if eng.challenger is not None:
            tallies.add(sym, eng.challenger.take_tally())

    @app.agent(book)
    async def process(stream):  # type: ignore[no-untyped-def]
        # frames waiting together are processed together: per symbol one engine call and one
        # signal message, so the per-frame cost falls as the backlog grows. They come from the
        # fetch loop as fetched, past Faust's per-message stream (the stream itself stays empty)
        async for messages in feed.batches(app, max_batch):
            received, fetched = time.time_ns(), feed.fetched_ns
            async with lock:
                await handle(messages, received, fetched)

    async def handle(messages: list, received: int, fetched: list[int]) -> None:
        await ensure_started()
        frames: dict[str, list] = {}
        out: list[tuple] = []
        dead_out: list = []
        inc = incarnation(app)
        assigned = app.consumer.assignment()
        for m, at in zip(messages, fetched):
            if m.tp not in assigned:
                continue  # revoked while the batch waited for the lock: its next owner reads it
            fr = decode(m.value, dead_out)
            if fr is not None:
                M.observe_stage("produce_to_fetch", fr.producer_ts_ns, at)
                await admit(fr, m.partition, m.offset, m.value, frames, dead_out)
        if incarnation(app) != inc:  # the topics were lost while a symbol was opened: these offsets are void
            for sym in frames:
                offsets[sym] = -1
        for sym, frs in frames.items():
            for f in frs:
                if f is not None:
                    M.observe_stage("produce_to_worker", f.producer_ts_ns, received)
            apply_all(sym, frs, out, dead_out)
            eng = engines[sym]
            if eng.state.needs_snapshot:
                await ask_snapshot(sym, eng.last_seq, "sequence gap or lost state")
            elif sym in waiting:
                dt = time.monotonic() - waiting.pop(sym)
                M.SNAPSHOT_WAIT.labels(sym).inc(dt)
                log.warning("%s resynced from a snapshot after waiting %.2f s", sym, dt)
        sends, syms = [], []
        for sym, reason, seq, detail, raw in dead_out:
            M.DEAD_LETTERS.labels(reason).inc()
            sends.append((dead, sym.encode(errors="replace"), dead_letter_record(sym, reason, seq, detail, raw)))
            syms.append(sym)
        now = time.time_ns()
        sig_slots = []  # (index of the symbol's last message, symbol, records, producer times)
        for sym, is_ch, sig, pts, last, epoch in out:
            topic, mid = (ch_topic, model_id + "+online") if is_ch else (signals, model_id)
            # split so that no message exceeds the producer's request limit
            msgs = split_signals(sym, mid, sig, min(pts), now, last, epoch, cfg.payload_limit,
                                 worker_received_ns=received)
            for msg in msgs:
                sends.append((topic, sym.encode(), msg))
                syms.append(sym)
            if not is_ch:
                sig_slots.append((len(sends) - 1, sym, sig, pts))
        if not sends:
            return
        await inflight.make_room()
        futs = await queue_sends(sends)
        inflight.add(published(sends, futs, syms, sig_slots, received, now))

    async def published(sends: list, futs: list, syms: list, sig_slots: list, received: int,
                        now: int) -> dict[int, int]:
        """Wait for a batch's output to be acknowledged, then move the published watermarks (returned)."""
        inc = incarnation(app)
        mds = await acked(sends, futs, dead, syms)
        M.observe_stage("publish", now, time.time_ns())
        moved: dict[int, int] = {}
        for i, sym, sig, pts in sig_slots:
            md = mds[i]  # the symbol's last message: the published offset covers all before it
            if md is not None and sym in part_of and incarnation(app) == inc:
                p = part_of[sym]
                moved[p] = max(moved.get(p, -1), int(md.offset))
                pub_off[p] = max(pub_off.get(p, -1), moved[p])
            M.SIGNALS.labels(sym, model_id).inc(len(sig))
            M.observe_stage("worker", received, now)
            for pt in pts:
                M.LATENCY.labels(sym).observe(max(0.0, (now - pt) / 1e9))
        return moved

    def capture() -> list[tuple[str, dict]]:
        """Every symbol's checkpoint content as it is now."""
        return [(sym, {"seq": eng.last_seq, "engine": eng.checkpoint(), "published": marks.get(sym, -1),
                       "offset": offsets.get(sym, -1), "counts": counts.get(sym, {}),
                       "guard": guards[sym].state()}) for sym, eng in engines.items()]

    async def save(contents: list, published_off: dict[int, int]) -> int:
        """Checkpoint the symbols of ``contents`` whose state changed (local cache, then the broker, acknowledged)."""
        parts = {sym: part_of[sym] for sym, _ in contents}
        n = await save_changed("worker", contents, lambda sym: {"signals_offset": published_off.get(parts[sym], -1),
                                                                "saved_ns": time.time_ns()},
                               versions, local, store)
        M.CHECKPOINT_WRITES.labels("worker").inc(n)
        return n

    async def save_all() -> int:
        """With the lock held: checkpoint every changed symbol once all output so far is acknowledged."""
        await inflight.drain()
        return await save(capture(), dict(pub_off)) if started else 0

    async def save_and_commit() -> None:
        """Checkpoint, then commit the offsets the checkpoint covers; batches go on meanwhile.

        Between two batches the state, the batches still awaiting their acks and
        the committable offsets are taken together; the state is saved once those
        acks are in, and only the offsets taken with it are committed."""
        async with saving:
            async with lock:
                if not started:
                    return
                contents = frozen(capture())
                pending, published_off = inflight.pending(), dict(pub_off)
                commit_at, inc = app.consumer.committable(), incarnation(app)
            for fut in pending:
                for p, off in (await fut).items():
                    published_off[p] = max(published_off.get(p, -1), off)
            if incarnation(app) != inc:
                return  # the broker lost its topics meanwhile: these offsets and outputs are void
            await save(contents, published_off)
            crash_point("checkpoint-saved")
            if incarnation(app) == inc:
                await app.consumer.commit_offsets(commit_at)

    @app.timer(checkpoint_s)
    async def checkpoint() -> None:  # type: ignore[no-untyped-def]
        await save_and_commit()

    def forget_all() -> None:
        now = time.monotonic()
        for sym in [s for s, (at, _) in given_up.items() if at < watch.last_ok]:
            del given_up[sym]  # the broker was whole after it went
        for sym, eng in list(engines.items()):
            given_up[sym] = (now, eng.last_seq)  # a broker loss noticed later still concerns it
            versions.forget(sym)
        engines.clear()
        guards.clear()
        marks.clear()
        part_of.clear()
        offsets.clear()
        counts.clear()
        loaded.clear()
        waiting.clear()
        store.forget()

    @app.on_before_shutdown.connect
    async def _on_shutdown(sender: Any, **kw: Any) -> None:
        # streams are drained by now; the final offset commit comes after this
        async with saving, lock:
            await save_all()
        tallies.flush()
        await store.stop()

    @app.on_partitions_revoked.connect
    async def _on_revoked(sender: Any, revoked: Any, **kw: Any) -> None:
        # the next owner (maybe this worker again) restores from the broker; what was fetched and
        # not yet taken is fetched again from the committed offsets
        feed.clear()
        async with saving, lock:
            await save_all()
            if started:
                await app.consumer.commit()
            forget_all()

    async def lost(missing: list[str]) -> None:
        # the broker came back empty: whatever was published and not yet consumed is gone, and the
        # recreated topics number their messages from 0 again. No lock: a batch may be waiting on the
        # broker with it held.
        nonlocal lost_at
        lost_at = time.time_ns()

        await reread_from_start(app)
        for sym in list(engines):
            offsets[sym] = -1
            versions.forget(sym)  # the checkpoints topic is new: write every symbol again
        pub_off.clear()
        loaded.clear()
        # the symbols held when the broker went away: those held now, and those a rebalance took
        # meanwhile (the consumer rejoins the empty broker before the watch sees it)
        held = {sym: eng.last_seq for sym, eng in engines.items()}
        for sym, (at, seq) in given_up.items():
            if at >= watch.last_ok:
                held.setdefault(sym, seq)
        given_up.clear()
        for sym, last_seq in sorted(held.items()):
            M.DEAD_LETTERS.labels("BROKER_LOSS").inc()
            rec = dead_letter_record(sym, "BROKER_LOSS", last_seq,
                                     {"topics_recreated": missing,
                                      "detail": "the broker lost its topics and offsets; events after seq "
                                                "may be missing"}, None)
            for attempt in range(20):  # the producer's metadata may still describe the lost topics
                try:
                    await (await dead.send(key=sym.encode(), value=rec))
                    break
                except Exception as exc:  # noqa: BLE001 - retried, then given up with a log line
                    if attempt == 19:
                        log.error("%s: could not publish the BROKER_LOSS dead letter: %s", sym, exc)
                    await asyncio.sleep(min(2.0, 0.1 * 2 ** attempt))

    watch = BrokerWatch(cfg.bootstrap, cfg.topics.all() + ((topics.signals + "-challenger",) if ch_topic else ())
                        + state_topics(topics), cfg.partitions, "worker", cfg.topic_prefix, on_loss=lost)
    app.streamsig_watch = watch

    @app.task
    async def watch_broker() -> None:  # type: ignore[no-untyped-def]
        quiet_client_logs()
        await watch.run()

    quiet_client_logs()
    app.streamsig_save = save_and_commit
    return app
