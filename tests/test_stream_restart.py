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
