"""The live path on the real embedded broker: producer -> worker -> signals -> trader.

Live signals, fills (whole records) and P&L must equal the offline replay (the
backtest runner) of the same events with the same strategy: the shipped ONNX
model (models/default) with the commands' default settings and a position of
two units (all-in), and the OFI rule.
"""
from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from streamsig.cli.options import trading_configs
from streamsig.models.registry import default_model
from streamsig.trading.rules import OfiRule
from streamsig.trading.strategies import load_strategy
from streamsig.backtest.runner import run_backtest
from streamsig.book.sources import open_feeds
from streamsig.features import FeatureSpec
from streamsig.live.config import running
from streamsig.live.producer import produce
from streamsig.wire.signals import decode_signals
from streamsig.wire.topics import ensure_topics
from streamsig.live.trader import build_trader
from streamsig.live.worker import build_worker

pytestmark = pytest.mark.slow

SPEC = FeatureSpec(levels=10)


def feeds():
    return open_feeds("synthetic", symbols=["AAA", "BBB"], n_updates=3000, seed=5)


FILL_KEYS = ("ts_ns", "seq", "side", "qty", "price", "fee", "maker", "mid")


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


async def run_live(cfg, spec, strat, model_id: str, exec_cfg, policy, tmp_path):  # noqa: ANN001, ANN201
    await ensure_topics(cfg.bootstrap, cfg.topics.all(), cfg.partitions)
    worker = build_worker(cfg, spec, strat, model_id, state_dir=tmp_path / "state")
    trader = build_trader(cfg, exec_cfg, policy, model=model_id, book_capacity=spec.book_capacity)
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
    return ends, sig_msgs, fills_msgs, pnl_msgs


def assert_same(ends, sig_msgs, fills_msgs, pnl_msgs, offline, name: str) -> None:  # noqa: ANN001
    for sym in ends:
        recs = np.concatenate([decode_signals(v).records for k, v in sig_msgs if k == sym.encode()])
        assert len(np.unique(recs["seq"])) == len(recs)  # no duplicate signal
        assert recs.tobytes() == offline.signals[sym].tobytes()  # byte-identical signals
        live_fills = [json.loads(v) for k, v in fills_msgs if k == sym.encode()]
        off = offline.lanes[(name, sym)].fills
        assert len(live_fills) == len(off) > 0
        for lf, of in zip(live_fills, off.tolist()):  # whole records: side, qty, price, fee, time...
            assert lf["symbol"] == sym
            assert tuple(lf[k] for k in FILL_KEYS) == tuple(of), (lf, of)
        last_pnl = [json.loads(v) for k, v in pnl_msgs if k == sym.encode()][-1]
        rec = offline.lanes[(name, sym)]
        assert last_pnl["equity"] == pytest.approx(rec.equity[-1], abs=1e-6)
        assert last_pnl["position"] == rec.position[-1]


async def test_live_model_signals_and_fills_equal_offline(stream_config, tmp_path) -> None:
    # the threshold policy: the edge policy finds no move worth 1 bp on this synthetic feed and stays flat
    policy, exec_cfg = trading_configs(enter=0.05, max_position=2.0, kind="threshold")
    strat, model_id, spec = load_strategy(default_model(), "ofi", policy)  # as the worker loads it
    live = await run_live(stream_config, spec, strat, model_id, exec_cfg, policy, tmp_path)
    offline = run_backtest(feeds(), spec, model_dir=default_model(), exec_cfg=exec_cfg, policy_cfg=policy,
                           baselines=[])
    assert_same(*live, offline, "model")
    assert {abs(f["qty"]) for _, v in live[2] for f in [json.loads(v)]} >= {2.0}  # all-in entries


async def test_live_rule_signals_and_fills_equal_offline(stream_config, tmp_path) -> None:
    policy, exec_cfg = trading_configs()
    live = await run_live(stream_config, SPEC, OfiRule(size=1.0), "ofi-rule", exec_cfg, policy, tmp_path)
    offline = run_backtest(feeds(), SPEC, strategy=OfiRule(size=1.0), exec_cfg=exec_cfg, baselines=[])
    assert_same(*live, offline, "ofi")
