"""Worker restarts and scale-out on the real embedded broker: nothing lost, nothing twice."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from streamsig.trading.rules import OfiRule
from streamsig.backtest.runner import run_backtest
from streamsig.book.sources import Feed, open_feeds
from streamsig.features import FeatureSpec
from streamsig.live.config import running
from streamsig.wire.frames import encode_frame
from streamsig.live.producer import produce
from streamsig.wire.signals import decode_signals
from streamsig.wire.topics import ensure_topics
from streamsig.live.worker import build_worker
from tests.test_stream_e2e import collect

pytestmark = pytest.mark.slow
SPEC = FeatureSpec(levels=10)
SYMS = ["AAA", "BBB", "CCC", "DDD"]


def feeds() -> list[Feed]:
    return open_feeds("synthetic", symbols=SYMS, n_updates=2000, seed=9)


def halves(fs: list[Feed]) -> tuple[list[Feed], list[Feed]]:
    first, second = [], []
    for f in fs:
        ev = f.read_all()
        cut = int(np.flatnonzero(ev["seq"] == 1000)[0])
        first.append(Feed(f.symbol, f.tick_size, f.levels, f.label, lambda ev=ev[:cut]: iter([ev])))
        second.append(Feed(f.symbol, f.tick_size, f.levels, f.label, lambda ev=ev[cut:]: iter([ev])))
    return first, second


def by_symbol(msgs) -> dict[str, np.ndarray]:
    out: dict[str, list[np.ndarray]] = {}
    for _, v in msgs:
        f = decode_signals(v)
        out.setdefault(f.symbol, []).append(np.array(f.records))
    return {s: np.concatenate(v) for s, v in out.items()}


def done_at(seq: int):
    def done(msgs) -> bool:
        seen: dict[str, int] = {}
        for _, v in msgs:
            f = decode_signals(v)
            seen[f.symbol] = max(seen.get(f.symbol, -1), f.last_seq)
        return len(seen) == len(SYMS) and min(seen.values()) >= seq
    return done


async def test_restart_mid_stream_loses_nothing_and_repeats_nothing(stream_config, tmp_path) -> None:
    cfg = stream_config
    await ensure_topics(cfg.bootstrap, cfg.topics.all(), cfg.partitions)
    first, second = halves(feeds())
    state = tmp_path / "state"
    async with running(build_worker(cfg, SPEC, OfiRule(), "ofi", state), ready_timeout_s=30):
        await produce(first, cfg.bootstrap, cfg.topics.book_events, frame_size=128, snapshot_every=700)
        await collect(cfg.bootstrap, cfg.topics.signals, done_at(999))
    # a new process: same group, same state folder; redelivery and replays must be harmless
    async with running(build_worker(cfg, SPEC, OfiRule(), "ofi", state), ready_timeout_s=30):
        # a producer restart replays the tail of the first half again (at-least-once upstream)
        from aiokafka import AIOKafkaProducer

        p = AIOKafkaProducer(bootstrap_servers=cfg.bootstrap)
        await p.start()
        for f in first:
            ev = f.read_all()
            await p.send_and_wait(cfg.topics.book_events, encode_frame(f.symbol, ev[-300:], 0, f.tick_size),
                                  key=f.symbol.encode())
        await p.stop()
        await produce(second, cfg.bootstrap, cfg.topics.book_events, frame_size=128, snapshot_every=700)
        msgs = await collect(cfg.bootstrap, cfg.topics.signals, done_at(1999))
    live = by_symbol(msgs)
    offline = run_backtest(feeds(), SPEC, strategy=OfiRule(), baselines=[]).signals
    for sym in SYMS:
        assert len(np.unique(live[sym]["seq"])) == len(live[sym]), f"{sym}: a signal was published twice"
        assert live[sym].tobytes() == offline[sym].tobytes(), f"{sym}: live signals differ from offline"


async def test_two_workers_share_partitions(stream_config, tmp_path) -> None:
    cfg = stream_config.replace(partitions=4)
    await ensure_topics(cfg.bootstrap, cfg.topics.all(), cfg.partitions)
    a = build_worker(cfg, SPEC, OfiRule(), "ofi", tmp_path / "a")
    b = build_worker(cfg, SPEC, OfiRule(), "ofi", tmp_path / "b")
    async with running(a, ready_timeout_s=30), running(b, ready_timeout_s=30):
        await asyncio.sleep(4.0)  # let the group settle on both members
        await produce(feeds(), cfg.bootstrap, cfg.topics.book_events, frame_size=256, snapshot_every=0)
        msgs = await collect(cfg.bootstrap, cfg.topics.signals, done_at(1999))
    ea, eb = set(a.streamsig_engines), set(b.streamsig_engines)
    assert ea and eb and not (ea & eb), (ea, eb)  # each symbol on exactly one worker
    assert ea | eb == set(SYMS)
    live = by_symbol(msgs)
    offline = run_backtest(feeds(), SPEC, strategy=OfiRule(), baselines=[]).signals
    for sym in SYMS:
        assert live[sym].tobytes() == offline[sym].tobytes()


def test_engine_runs_an_online_challenger_beside_the_champion() -> None:
    """The challenger scores every row, learns a row only once its label matures, and checkpoints."""
    from streamsig.engine import SignalEngine
    from streamsig.models import OnlineChallenger

    feed = open_feeds("synthetic", symbols=["CH"], n_updates=1200, seed=4)[0]
    ev = feed.read_all()
    feats = ["qimb_1", "ofi_1_sum_50", "ret_10"]
    eng = SignalEngine("CH", SPEC, feed.tick_size, OfiRule(), OnlineChallenger(feats, {"horizon": 50}))
    cut = int(np.flatnonzero(ev["seq"] == 600)[0])
    out = eng.on_events(ev[:cut])
    ch = out.challenger
    assert ch is not None and ch["seq"].tolist() == out.signals["seq"].tolist()
    assert eng.challenger.learned == len(ch) - 50  # every row older than the horizon, no younger one
    assert np.isfinite(ch["p_up"][-100:]).all()
    twin = SignalEngine("CH", SPEC, feed.tick_size, OfiRule(), OnlineChallenger(feats, {"horizon": 50}))
    twin.restore(eng.checkpoint())
    a, b = eng.on_events(ev[cut:]).challenger, twin.on_events(ev[cut:]).challenger
    assert a.tobytes() == b.tobytes()


async def read_all(bootstrap: str, topic: str, idle_s: float = 1.0) -> list[tuple[bytes, bytes]]:
    """Every record of ``topic`` from the beginning (until nothing new for ``idle_s``)."""
    from tests.test_stream_e2e import collect

    return await collect(bootstrap, topic, lambda m: False, timeout=idle_s + 1.0)


async def test_failover_restores_from_the_broker_not_the_local_folder(stream_config, tmp_path) -> None:
    """Worker A stops mid-stream; worker B (its own empty folder) goes on from A's checkpoints: no hole, no repeat."""
    cfg = stream_config
    await ensure_topics(cfg.bootstrap, cfg.topics.all(), cfg.partitions)
    first, second = halves(feeds())
    async with running(build_worker(cfg, SPEC, OfiRule(), "ofi", tmp_path / "a"), ready_timeout_s=30):
        await produce(first, cfg.bootstrap, cfg.topics.book_events, frame_size=128, snapshot_every=0)
        await collect(cfg.bootstrap, cfg.topics.signals, done_at(999))
    async with running(build_worker(cfg, SPEC, OfiRule(), "ofi", tmp_path / "b"), ready_timeout_s=30):
        await produce(second, cfg.bootstrap, cfg.topics.book_events, frame_size=128, snapshot_every=0)
        msgs = await collect(cfg.bootstrap, cfg.topics.signals, done_at(1999))
    live = by_symbol(msgs)
    offline = run_backtest(feeds(), SPEC, strategy=OfiRule(), baselines=[]).signals
    for sym in SYMS:
        assert len(np.unique(live[sym]["seq"])) == len(live[sym]), f"{sym}: a signal was published twice"
        assert live[sym].tobytes() == offline[sym].tobytes(), f"{sym}: signals lost on failover"


async def test_trader_restart_resumes_fills_and_pnl_exactly(stream_config, tmp_path) -> None:
    """A trader stopped mid-stream and started again (no local folder) continues its fills, position and P&L."""
    import json

    from streamsig.live.trader import build_trader
    from streamsig.trading import ExecConfig

    cfg = stream_config
    await ensure_topics(cfg.bootstrap, cfg.topics.all(), cfg.partitions)
    first, second = halves(feeds())
    ex = ExecConfig(fee_bps=1.0)
    async with running(build_worker(cfg, SPEC, OfiRule(), "ofi", None), ready_timeout_s=30):
        async with running(build_trader(cfg, ex, model="ofi", book_capacity=SPEC.book_capacity), ready_timeout_s=30):
            await produce(first, cfg.bootstrap, cfg.topics.book_events, frame_size=128, snapshot_every=700)
            await collect(cfg.bootstrap, cfg.topics.signals, done_at(999))
            await asyncio.sleep(2.0)
        async with running(build_trader(cfg, ex, model="ofi", book_capacity=SPEC.book_capacity), ready_timeout_s=30):
            await produce(second, cfg.bootstrap, cfg.topics.book_events, frame_size=128, snapshot_every=700)
            await collect(cfg.bootstrap, cfg.topics.signals, done_at(1999))

            def traded_to_end(msgs) -> bool:
                last = {}
                for _, v in msgs:
                    d = json.loads(v)
                    last[d["symbol"]] = max(last.get(d["symbol"], -1), d.get("seq", -1))
                return len(last) == len(SYMS) and min(last.values()) >= 1999

            await collect(cfg.bootstrap, cfg.topics.pnl, traded_to_end)
            fills = [json.loads(v) for _, v in await read_all(cfg.bootstrap, cfg.topics.fills)]
            pnl = [json.loads(v) for _, v in await read_all(cfg.bootstrap, cfg.topics.pnl)]
    offline = run_backtest(feeds(), SPEC, strategy=OfiRule(), exec_cfg=ex, baselines=[])
    for sym in SYMS:
        lf = [f for f in fills if f["symbol"] == sym]
        off = offline.lanes[("ofi", sym)].fills
        assert [f["seq"] for f in lf] == off["seq"].tolist(), f"{sym}: fills lost or repeated"
        np.testing.assert_allclose([f["price"] for f in lf], off["price"], rtol=0, atol=1e-12)
        lp = [p for p in pnl if p["symbol"] == sym]
        rec = offline.lanes[("ofi", sym)]
        assert lp[-1]["equity"] == pytest.approx(rec.equity[-1], abs=1e-6)
        assert lp[-1]["position"] == rec.position[-1]
        assert [f["fill_seq"] for f in lf] == list(range(1, len(lf) + 1))  # numbered for deduplication
        assert len({p["seq"] for p in lp}) == len(lp)  # every P&L record marks a new row


async def test_damaged_checkpoint_is_reported_and_resyncs_by_request(stream_config, tmp_path) -> None:
    """A damaged newest checkpoint is counted and logged; the symbol asks for a snapshot and the producer sends one."""
    from streamsig import telemetry as M
    from streamsig.live.checkpoint import (encode_checkpoint, generation_topic, partition_for, split_record,
                                           state_topics)

    cfg = stream_config
    ck_topic, _, req_topic = state_topics(cfg.topics)
    await ensure_topics(cfg.bootstrap, cfg.topics.all() + (ck_topic, req_topic), cfg.partitions)
    first, second = halves(feeds())
    async with running(build_worker(cfg, SPEC, OfiRule(), "ofi", tmp_path / "a"), ready_timeout_s=30):
        await produce(first, cfg.bootstrap, cfg.topics.book_events, frame_size=128, snapshot_every=0)
        await collect(cfg.bootstrap, cfg.topics.signals, done_at(999))
    # the newest AAA checkpoint on the broker is truncated (its record envelope is intact), the local one too
    from aiokafka import AIOKafkaProducer

    good = encode_checkpoint("worker", "AAA", 10_000, {"seq": 5000})
    p = AIOKafkaProducer(bootstrap_servers=cfg.bootstrap)
    await p.start()
    for rec in split_record(good[:-40], 10_000):
        await p.send_and_wait(generation_topic(ck_topic, partition_for(b"AAA", cfg.partitions), 0), rec, key=b"AAA",
                              partition=0)
    await p.stop()
    from streamsig.live.checkpoint import LocalStore

    path = LocalStore(tmp_path / "a", "worker").path("AAA")
    path.write_bytes(path.read_bytes()[:100])
    before = M.CHECKPOINT_CORRUPT.labels("AAA")._value.get()
    reqs = M.SNAPSHOT_REQUESTS.labels("AAA")._value.get()
    async with running(build_worker(cfg, SPEC, OfiRule(), "ofi", tmp_path / "a"), ready_timeout_s=30):
        # paced over about 4 s: the producer answers a request at its next 512 events, so one that comes
        # after the last of those began is not answered (at speed 1 the whole replay took 1 s)
        stats = await produce(second, cfg.bootstrap, cfg.topics.book_events, speed=0.25, frame_size=128,
                              snapshot_every=0, requests_topic=req_topic)
        msgs = await collect(cfg.bootstrap, cfg.topics.signals, done_at(1999))
    assert M.CHECKPOINT_CORRUPT.labels("AAA")._value.get() >= before + 2  # broker and local copy
    assert M.SNAPSHOT_REQUESTS.labels("AAA")._value.get() > reqs
    assert stats.requested >= 1  # the producer answered with a snapshot (none are periodic here)
    live = by_symbol(msgs)
    offline = run_backtest(feeds(), SPEC, strategy=OfiRule(), baselines=[]).signals
    a, o = live["AAA"], offline["AAA"]
    assert len(np.unique(a["seq"])) == len(a)
    resumed = a[a["seq"] >= 1000]
    assert len(resumed) and resumed["seq"][-1] == 1999  # healed long before the end, not silently fresh
    tail = o[np.isin(o["seq"], resumed["seq"])]
    assert resumed["seq"].tolist() == tail["seq"].tolist()
    for sym in SYMS[1:]:
        assert live[sym].tobytes() == offline[sym].tobytes()


async def test_unchanged_state_is_not_checkpointed_again(stream_config, tmp_path) -> None:
    """Once the stream is idle, neither the local file nor the checkpoint topic is written again."""
    from streamsig.live.checkpoint import LocalStore, generation_topic, partition_for, state_topics

    cfg = stream_config
    ck_topic = generation_topic(state_topics(cfg.topics)[0], partition_for(b"AAA", cfg.partitions), 0)
    await ensure_topics(cfg.bootstrap, cfg.topics.all(), cfg.partitions)
    store = LocalStore(tmp_path / "a", "worker")
    async with running(build_worker(cfg, SPEC, OfiRule(), "ofi", tmp_path / "a", checkpoint_s=0.5),
                       ready_timeout_s=30):
        await produce(feeds()[:1], cfg.bootstrap, cfg.topics.book_events, frame_size=128, snapshot_every=0)
        await collect(cfg.bootstrap, cfg.topics.signals, lambda m: any(decode_signals(v).last_seq == 1999
                                                                       for _, v in m))
        await asyncio.sleep(1.5)
        st = store.path("AAA").stat()
        n = len(await read_all(cfg.bootstrap, ck_topic, idle_s=0.5))
        await asyncio.sleep(2.5)  # five more checkpoint rounds
        st2 = store.path("AAA").stat()
        n2 = len(await read_all(cfg.bootstrap, ck_topic, idle_s=0.5))
    assert (st2.st_ino, st2.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    assert n2 == n and n >= 1


async def test_a_checkpoint_in_progress_holds_up_no_batch_and_commits_only_what_it_saved(
        stream_config, tmp_path, monkeypatch) -> None:
    """While a checkpoint's writes are held up, later frames still get their signals; the offsets it
    commits are those taken with its state, not those acknowledged while it was writing."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    import streamsig.live.worker as W
    from streamsig.live.checkpoint import partition_for

    cfg = stream_config
    await ensure_topics(cfg.bootstrap, cfg.topics.all(), cfg.partitions)
    first, second = halves(feeds()[:1])
    entered, release = asyncio.Event(), asyncio.Event()
    real = W.save_changed

    async def held_save(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        entered.set()
        await release.wait()
        return await real(*args, **kwargs)

    monkeypatch.setattr(W, "save_changed", held_save)
    tp = TopicPartition(cfg.topics.book_events, partition_for(b"AAA", cfg.partitions))
    group = AIOKafkaConsumer(bootstrap_servers=cfg.bootstrap, group_id=cfg.app_id, enable_auto_commit=False)
    await group.start()
    app = build_worker(cfg, SPEC, OfiRule(), "ofi", tmp_path / "a", checkpoint_s=3600)
    try:
        async with running(app, ready_timeout_s=30):
            st1 = await produce(first, cfg.bootstrap, cfg.topics.book_events, frame_size=128, snapshot_every=0)
            await collect(cfg.bootstrap, cfg.topics.signals, lambda m: any(decode_signals(v).last_seq >= 999
                                                                           for _, v in m))
            saving = asyncio.ensure_future(app.streamsig_save())
            await asyncio.wait_for(entered.wait(), 10)
            st2 = await produce(second, cfg.bootstrap, cfg.topics.book_events, frame_size=128, snapshot_every=0)
            try:
                msgs = await collect(cfg.bootstrap, cfg.topics.signals,
                                     lambda m: any(decode_signals(v).last_seq == 1999 for _, v in m), timeout=20)
            finally:
                release.set()
            assert max(decode_signals(v).last_seq for _, v in msgs) == 1999, "batches waited for the checkpoint"
            await asyncio.wait_for(saving, 20)
            taken = await group.committed(tp)
            await app.streamsig_save()  # the next one commits what is acknowledged by then
            later = await group.committed(tp)
    finally:
        await group.stop()
    assert taken is not None and 0 < taken <= st1.frames, (taken, st1.frames)
    assert st1.frames < later <= st1.frames + st2.frames, (later, st1.frames, st2.frames)
