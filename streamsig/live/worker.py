"""The Faust worker: book frames in, signal frames out, bad input to the dead-letter topic.

Per symbol it keeps a :class:`~streamsig.engine.SignalEngine` (book, feature
kernel, model scorer, policy). One agent instance per partition keeps each
symbol's frames in order. Nothing here computes a feature or a probability.

Checkpoints: every ``checkpoint_s`` seconds each engine's state is written to
``state_dir`` and only then are consumer offsets committed (Faust's own
periodic commit is off), so the committed offset never runs ahead of the saved
state; on shutdown and on partition revocation the state is saved after the
streams have drained and before the final commit. After
a restart, redelivered events (sequence at or below the checkpoint) are
skipped; a symbol whose signals were published after the last checkpoint
suppresses them again up to its published watermark, so no signal is
published twice.
"""
from __future__ import annotations

import asyncio
import logging
import os
import pickle  # noqa: S403 - only our own checkpoint dicts (bytes + plain numbers), never models
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
from streamsig.live import health
from streamsig.live.batches import ready_batches
from streamsig.live.config import StreamConfig, forget_read_offsets, make_app, raw_topic
from streamsig.live.guard import SequenceGuard, SymbolGate, Verdict, check_values
from streamsig.wire.frames import FrameError, dead_letter_record, decode_frame, encode_frame, peek_symbol
from streamsig.wire.health import BrokerWatch, quiet_client_logs
from streamsig.wire.signals import split_signals

log = logging.getLogger(__name__)


class Checkpoints:
    """Per-symbol engine checkpoints and published-signal watermarks in a folder."""

    def __init__(self, folder: str | Path | None) -> None:
        self.folder = Path(folder) if folder else None
        if self.folder:
            self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, symbol: str, kind: str) -> Path:
        assert self.folder is not None
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in symbol)
        return self.folder / f"{safe}.{kind}"

    def load(self, symbol: str) -> tuple[dict[str, Any] | None, int]:
        """(checkpoint or None, published watermark or -1)."""
        if not self.folder:
            return None, -1
        ck = None
        p = self._path(symbol, "ckpt")
        if p.exists():
            ck = pickle.loads(p.read_bytes())  # noqa: S301 - written by save() below
        w = self._path(symbol, "published")
        mark = int(w.read_text()) if w.exists() else -1
        return ck, mark

    def save(self, symbol: str, ck: dict[str, Any]) -> None:
        if not self.folder:
            return
        p = self._path(symbol, "ckpt")
        tmp = p.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(ck, protocol=5))
        os.replace(tmp, p)

    def published(self, symbol: str, seq: int) -> None:
        if self.folder:
            self._path(symbol, "published").write_text(str(seq))


def fresh_events(frames: list, last_closed: int) -> tuple[np.ndarray, int]:
    """One symbol's frames as one event array, each frame's redelivered prefix removed.

    A frame's leading events at or below the last closed update (of the engine,
    or of the frames before it in this batch) were applied already; a frame
    that continues an update split across frames keeps its events.
    """
    parts, skipped = [], 0
    for f in frames:
        e = f.events
        k = fresh_start(e["seq"], last_closed)
        skipped += k
        if k < len(e):
            parts.append(e[k:])
            eob = np.flatnonzero(e["flags"][k:] & EOB)
            if len(eob):
                last_closed = max(last_closed, int(e["seq"][k + eob[-1]]))
    if not parts:
        return frames[0].events[:0], skipped
    return (parts[0] if len(parts) == 1 else np.concatenate(parts)), skipped


def build_worker(cfg: StreamConfig, spec: FeatureSpec, strategy: Any, model_id: str,
                 state_dir: str | Path | None = None, checkpoint_s: float = 1.0,
                 max_batch: int = 1024, challenger: Any = None):  # noqa: ANN201
    """The worker's Faust app (agents registered); run it with ``run_worker`` or ``running``.

    Frames already waiting are taken together (up to ``max_batch``, never
    waiting for more: :func:`~streamsig.live.batches.ready_batches`) and
    answered with one signal message per symbol, which amortises the
    per-message cost of publishing as the backlog grows.

    ``challenger`` (a callable returning a fresh ``OnlineChallenger``) runs an
    online model per symbol beside the champion; its signals go to
    ``<signals>-challenger`` with model id ``<model_id>+online``.
    """
    app = make_app(cfg, broker_commit_interval=10_000_000.0)
    topics = cfg.topics
    book = raw_topic(app, topics.book_events)
    signals = raw_topic(app, topics.signals)
    dead = raw_topic(app, topics.dead_letter)
    ch_topic = raw_topic(app, topics.signals + "-challenger") if challenger else None
    engines: dict[str, SignalEngine] = {}
    marks: dict[str, int] = {}
    guards: dict[str, SequenceGuard] = {}
    gate = SymbolGate(cfg.max_symbols, cfg.allowed_symbols)
    ckpts = Checkpoints(state_dir)
    app.streamsig_engines = engines  # for tests and the status line
    app.streamsig_guards = guards
    roles = {"champion": model_id, "challenger": model_id + "+online"}
    label = health.champion_label(strategy)
    matured: dict[str, MaturedScores] = {}  # the champion scored on its matured labels, per symbol
    tallies = health.TallyBuffer(roles)
    imid = spec.index("mid")
    for reason in [r.name for r in Reason if r not in (Reason.OK, Reason.RESYNC, Reason.DUPLICATE)] + [
            "BAD_FRAME", "GAP", "INTERNAL_ERROR"]:
        M.DEAD_LETTERS.labels(reason)  # every reason's series exists (at 0) from the start
    health.add_health_timer(app, "worker")

    def engine(symbol: str, tick: float) -> SignalEngine:
        eng = engines.get(symbol)
        if eng is None:
            eng = engines[symbol] = SignalEngine(symbol, spec, tick, strategy,
                                                 challenger() if challenger else None)
            ck, mark = ckpts.load(symbol)
            guards[symbol] = SequenceGuard(cfg.seq_window)
            if ck is not None:
                eng.restore(ck)
            guards[symbol].restore(ck.get("guard") if ck else None, eng.last_seq)
            marks[symbol] = mark
            for counter in (M.DUPLICATES, M.GAPS, M.RESYNC_DROPPED):
                counter.labels(symbol)
            if label is not None:
                matured[symbol] = MaturedScores(label)
            active = {"champion": label is not None, "challenger": challenger is not None}
            health.zero_model_series(symbol, {r: m for r, m in roles.items() if active[r]})
        return eng

    def checkpoint_of(sym: str) -> dict[str, Any]:
        return {**engines[sym].checkpoint(), "guard": guards[sym].state()}

    def decode(value: bytes, frames: dict[str, list], dead_out: list) -> None:
        """Decode one message into its symbol's list of frames, or queue a dead letter."""
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
            return
        if fr.tick_size <= 0:
            dead_out.append((fr.symbol, "BAD_FRAME", fr.first_seq, "frame has no tick size", value))
            return
        sym = fr.symbol
        verdict = Verdict.ACCEPT
        refused = gate.check(sym, engines) or check_values(fr, engines[sym].tick_size if sym in engines else None)
        if refused is None:
            engine(sym, fr.tick_size)
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
        eng = engine(sym, frs[0].tick_size)
        ev, skipped = fresh_events(frs, eng.last_seq)
        pts = [f.producer_ts_ns for f in frs]
        res = eng.on_events(ev)
        M.FRAMES.labels(sym).inc(len(frs))
        M.EVENTS.labels(sym).inc(len(ev) - res.duplicates)
        if res.duplicates + skipped:
            M.DUPLICATES.labels(sym).inc(res.duplicates + skipped)
        if res.resync_dropped:
            M.RESYNC_DROPPED.labels(sym).inc(res.resync_dropped)
        if res.gap:
            M.GAPS.labels(sym).inc()
            dead_out.append((sym, "GAP", int(ev["seq"][0]), "sequence gap: book waits for the next snapshot", None))
        for i, r in zip(res.rejected.tolist(), res.reasons.tolist()):
            dead_out.append((sym, Reason(r).name, int(ev["seq"][i]), "event rejected", ev[i:i + 1].tobytes()))
        sig = res.signals
        mark = marks.get(sym, -1)
        if len(sig) and sig["seq"][-1] > mark:
            sig = sig[fresh_start(sig["seq"], mark):]
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
        # signal message, so the per-frame cost falls as the backlog grows
        async for values in ready_batches(stream, max_batch):
            received = time.time_ns()
            frames: dict[str, list] = {}
            out: list[tuple] = []
            dead_out: list = []
            for value in values:
                decode(value, frames, dead_out)
            for sym, frs in frames.items():
                for f in frs:
                    if f is not None:
                        M.observe_stage("produce_to_worker", f.producer_ts_ns, received)
                apply_all(sym, frs, out, dead_out)
            for sym, reason, seq, detail, raw in dead_out:
                M.DEAD_LETTERS.labels(reason).inc()
                await dead.send(key=sym.encode(errors="replace"), value=dead_letter_record(sym, reason, seq, detail, raw))
            for sym, is_ch, sig, pts, last, epoch in out:
                now = time.time_ns()
                topic, mid = (ch_topic, model_id + "+online") if is_ch else (signals, model_id)
                # split so that no message exceeds the producer's request limit
                for msg in split_signals(sym, mid, sig, min(pts), now, last, epoch, cfg.payload_limit,
                                         worker_received_ns=received):
                    await topic.send(key=sym.encode(), value=msg)
                if is_ch:
                    continue
                ckpts.published(sym, marks[sym])
                M.SIGNALS.labels(sym, model_id).inc(len(sig))
                M.observe_stage("worker", received, now)
                for p in pts:
                    M.LATENCY.labels(sym).observe(max(0.0, (now - p) / 1e9))

    async def save_and_commit() -> None:
        for sym in list(engines):
            ckpts.save(sym, checkpoint_of(sym))
        await app.consumer.commit()

    @app.timer(checkpoint_s)
    async def checkpoint() -> None:  # type: ignore[no-untyped-def]
        await save_and_commit()

    def save_all() -> None:
        for sym in list(engines):
            ckpts.save(sym, checkpoint_of(sym))

    @app.on_before_shutdown.connect
    async def _on_shutdown(sender: Any, **kw: Any) -> None:
        save_all()  # streams are drained by now; the final offset commit comes after this
        tallies.flush()

    @app.on_partitions_revoked.connect
    async def _on_revoked(sender: Any, revoked: Any, **kw: Any) -> None:
        save_all()  # a symbol that moves to another worker on this host resumes from here

    async def lost(missing: list[str]) -> None:
        # the broker came back empty: whatever was published and not yet consumed is gone
        forget_read_offsets(app)
        for sym, eng in list(engines.items()):
            M.DEAD_LETTERS.labels("BROKER_LOSS").inc()
            rec = dead_letter_record(sym, "BROKER_LOSS", eng.last_seq,
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

    watch = BrokerWatch(cfg.bootstrap, cfg.topics.all() + ((topics.signals + "-challenger",) if ch_topic else ()),
                        cfg.partitions, "worker", cfg.topic_prefix, on_loss=lost)
    app.streamsig_watch = watch

    @app.task
    async def watch_broker() -> None:  # type: ignore[no-untyped-def]
        quiet_client_logs()
        await watch.run()

    quiet_client_logs()
    app.streamsig_save = save_and_commit
    return app
