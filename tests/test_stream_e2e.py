"""The live path on the real embedded broker: producer -> worker -> signals -> trader.

Live signals and fills must equal the offline replay (the backtest runner) of
the same events with the same strategy.
"""
from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from streamsig.trading.rules import OfiRule
from streamsig.backtest.runner import run_backtest
from streamsig.book.sources import open_feeds
from streamsig.features import FeatureSpec
from streamsig.live.config import running
from streamsig.live.producer import produce
from streamsig.wire.signals import decode_signals
from streamsig.wire.topics import ensure_topics
from streamsig.live.trader import build_trader
from streamsig.live.worker import build_worker
from streamsig.trading import ExecConfig

pytestmark = pytest.mark.slow

SPEC = FeatureSpec(levels=10)


def feeds():
    return open_feeds("synthetic", symbols=["AAA", "BBB"], n_updates=3000, seed=5)


async def collect(bootstrap: str, topic: str, done, timeout: float = 60.0) -> list[tuple[bytes, bytes]]:
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                         enable_auto_commit=False, fetch_max_wait_ms=50)
    await c.start()
    out: list[tuple[bytes, bytes]] = []
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not done(out) and loop.time() < end:
            batch = await c.getmany(timeout_ms=200)
            for msgs in batch.values():
                out += [(m.key, m.value) for m in msgs]
    finally:
        await c.stop()
    return out


def last_seqs(fs) -> dict[str, int]:
    return {f.symbol: int(f.read_all()["seq"][-1]) for f in fs}


async def test_live_signals_and_fills_equal_offline(stream_config, tmp_path) -> None:
    cfg = stream_config
    await ensure_topics(cfg.bootstrap, cfg.topics.all(), cfg.partitions)
    strat = OfiRule(size=1.0)
    worker = build_worker(cfg, SPEC, strat, "ofi-rule", state_dir=tmp_path / "state")
    exec_cfg = ExecConfig(fee_bps=1.0)
    trader = build_trader(cfg, SPEC, exec_cfg, size=1.0, model="ofi-rule")
    ends = last_seqs(feeds())

    def signals_done(msgs) -> bool:
        seen = {}
        for _, v in msgs:
            f = decode_signals(v)
            seen[f.symbol] = max(seen.get(f.symbol, -1), f.last_seq)
        return seen == ends

    async with running(worker, ready_timeout_s=30), running(trader, ready_timeout_s=30):
        stats = await produce(feeds(), cfg.bootstrap, cfg.topics.book_events, speed=None, frame_size=200,
                              snapshot_every=1000)
        assert stats.snapshots >= 4
        sig_msgs = await collect(cfg.bootstrap, cfg.topics.signals, signals_done)
        await asyncio.sleep(2.0)  # let the trader drain
        fills_msgs = await collect(cfg.bootstrap, cfg.topics.fills, lambda m: False, timeout=3.0)
        pnl_msgs = await collect(cfg.bootstrap, cfg.topics.pnl, lambda m: False, timeout=3.0)
        dead = await collect(cfg.bootstrap, cfg.topics.dead_letter, lambda m: False, timeout=1.0)
    assert signals_done(sig_msgs)
    assert dead == []
    offline = run_backtest(feeds(), SPEC, strategy=OfiRule(size=1.0), exec_cfg=exec_cfg, baselines=[])
    for sym in ends:
        recs = np.concatenate([decode_signals(v).records for k, v in sig_msgs if k == sym.encode()])
        assert len(np.unique(recs["seq"])) == len(recs)  # no duplicate signal
        assert recs.tobytes() == offline.signals[sym].tobytes()  # byte-identical signals
        live_fills = [json.loads(v) for k, v in fills_msgs if k == sym.encode()]
        off = offline.lanes[("ofi", sym)].fills
        assert len(live_fills) == len(off) > 0
        assert [f["seq"] for f in live_fills] == off["seq"].tolist()
        np.testing.assert_allclose([f["price"] for f in live_fills], off["price"], rtol=0, atol=1e-12)
        last_pnl = [json.loads(v) for k, v in pnl_msgs if k == sym.encode()][-1]
        rec = offline.lanes[("ofi", sym)]
        assert last_pnl["equity"] == pytest.approx(rec.equity[-1], abs=1e-6)
