"""Sequences are trusted within bounds, in the worker and in the trader (real embedded broker).

A forged snapshot far ahead is a SEQUENCE_JUMP dead letter and moves nothing; a
frame that steps back without being a redelivery is a SEQUENCE dead letter; a
redelivery is dropped quietly; a restarted producer (new session id, numbering
from 0 again) is followed, not skipped as duplicates.
"""
from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from streamsig.backtest.runner import run_backtest
from streamsig.book import events as E
from streamsig.book.book import Book
from streamsig.book.sources import open_feeds
from streamsig.features import FeatureSpec
from streamsig.live.config import running
from streamsig.live.guard import SequenceGuard, Verdict
from streamsig.live.trader import build_trader
from streamsig.trading import PolicyConfig
from streamsig.live.worker import build_worker
from streamsig.trading import ExecConfig
from streamsig.trading.rules import OfiRule
from streamsig.wire.frames import decode_frame, encode_frame, parse_dead_letter
from streamsig.wire.signals import decode_signals
from streamsig.wire.topics import ensure_topics
from tests.test_stream_e2e import collect

SPEC = FeatureSpec(levels=10)
SYM = "SQ"


def frames_of(ev: np.ndarray, tick: float, epoch: int, ts0: int, size: int = 400) -> list[bytes]:
    """``ev`` as frames cut at update ends, producer timestamps ts0, ts0+1, ..."""
    eob = np.flatnonzero(ev["flags"] & E.EOB)
    out, start = [], 0
    while start < len(ev):
        k = min(int(np.searchsorted(eob, start + size - 1)), len(eob) - 1)
        cut = int(eob[k]) + 1 if eob[k] >= start else len(ev)
        out.append(encode_frame(SYM, np.ascontiguousarray(ev[start:cut]), ts0 + len(out), tick, epoch))
        start = cut
    return out


def hostile_stream() -> tuple[np.ndarray, float, list[bytes]]:
    """Session 1 with a forged far-ahead snapshot, a step back and a redelivery; then session 2 from 0."""
    feed = open_feeds("synthetic", symbols=[SYM], n_updates=1200, seed=11)[0]
    ev, tick = feed.read_all(), feed.tick_size
    cut = int(np.flatnonzero(ev["seq"] == 600)[0])
    first = frames_of(ev[:cut], tick, epoch=1, ts0=1)
    ts = len(first) + 1
    book = Book(capacity=64)
    book.apply(ev[:cut])
    forged = encode_frame(SYM, book.snapshot_events(10**15, int(ev["exch_ts"][cut - 1])), ts, tick, 1)
    back = encode_frame(SYM, np.ascontiguousarray(ev[(ev["seq"] >= 100) & (ev["seq"] < 150)]), ts + 1, tick, 1)
    second = frames_of(ev[cut:], tick, epoch=1, ts0=ts + 2)
    again = frames_of(ev, tick, epoch=2, ts0=10**6)  # the producer restarted: numbering from 0
    return ev, tick, first + [forged, back, first[1]] + second + again


def test_guard_tells_redelivery_from_step_back() -> None:
    ev = E.empty(4)
    ev["seq"], ev["flags"] = [10, 11, 12, 13], E.EOB
    g = SequenceGuard(window=50)
    assert g.check(decode_frame(encode_frame(SYM, ev, 100, 0.01, 7)))[0] is Verdict.ACCEPT
    assert g.check(decode_frame(encode_frame(SYM, ev, 100, 0.01, 7)))[0] is Verdict.ACCEPT  # redelivered
    verdict, reason, why = g.check(decode_frame(encode_frame(SYM, ev, 101, 0.01, 7)))  # newer, yet behind
    assert (verdict, reason.name) == (Verdict.REJECT, "SEQUENCE") and "13" in why
    ahead = ev.copy()
    ahead["seq"] += 64
    assert g.check(decode_frame(encode_frame(SYM, ahead, 102, 0.01, 7)))[1].name == "SEQUENCE_JUMP"
    assert g.closed == 13  # a rejected frame moves no watermark
    ahead["seq"] -= 30  # within the window: a gap, accepted (the book resyncs at a snapshot)
    assert g.check(decode_frame(encode_frame(SYM, ahead, 103, 0.01, 7)))[0] is Verdict.ACCEPT
    assert g.closed == 47
    old = g.check(decode_frame(encode_frame(SYM, ev, 104, 0.01, 6)))  # an earlier session, newer frame
    assert old[1].name == "SEQUENCE"
    g2 = SequenceGuard()
    g2.restore(g.state())
    assert g2.state() == g.state()
    import time

    future = g.check(decode_frame(encode_frame(SYM, ahead, 105, 0.01, time.time_ns() + 10**15)))
    assert future[1].name == "SEQUENCE_JUMP" and g.epoch == 7  # a forged session id cannot take over


@pytest.mark.slow
async def test_worker_bounds_sequences_and_follows_a_restarted_producer(stream_config, tmp_path) -> None:
    from aiokafka import AIOKafkaProducer

    cfg = stream_config
    await ensure_topics(cfg.bootstrap, cfg.topics.all(), cfg.partitions)
    ev, tick, stream = hostile_stream()
    last = int(ev["seq"][-1])

    def done(msgs) -> bool:
        return any((f := decode_signals(v)).epoch == 2 and f.last_seq == last for _, v in msgs)

    async with running(build_worker(cfg, SPEC, OfiRule(), "ofi", tmp_path / "w"), ready_timeout_s=30):
        p = AIOKafkaProducer(bootstrap_servers=cfg.bootstrap)
        await p.start()
        for value in stream:
            await p.send_and_wait(cfg.topics.book_events, value, key=SYM.encode())
        await p.stop()
        sig = await collect(cfg.bootstrap, cfg.topics.signals, done)
        dead = await collect(cfg.bootstrap, cfg.topics.dead_letter, lambda m: len(m) >= 2, timeout=10)
    recs = [parse_dead_letter(v) for _, v in dead]
    assert sorted(r["reason"] for r in recs) == ["SEQUENCE", "SEQUENCE_JUMP"], recs
    jump = next(r for r in recs if r["reason"] == "SEQUENCE_JUMP")
    forged = next(v for v in stream if decode_frame(v).first_seq == 10**15)
    assert jump["seq"] == 10**15 and jump["raw"] == forged and jump["raw_len"] == len(forged)
    offline = run_backtest(open_feeds("synthetic", symbols=[SYM], n_updates=1200, seed=11), SPEC,
                           strategy=OfiRule(), baselines=[]).signals[SYM]
    frames = [decode_signals(v) for _, v in sig]
    for epoch in (1, 2):  # both sessions answered in full, each as an offline run of its events
        got = np.concatenate([f.records for f in frames if f.epoch == epoch])
        assert got.tobytes() == offline.tobytes(), epoch


@pytest.mark.slow
async def test_trader_bounds_sequences_and_follows_a_restarted_producer(stream_config, tmp_path) -> None:
    from aiokafka import AIOKafkaProducer

    cfg = stream_config
    await ensure_topics(cfg.bootstrap, cfg.topics.all(), cfg.partitions)
    ev, tick, stream = hostile_stream()
    exec_cfg = ExecConfig(fee_bps=1.0)
    offline = run_backtest(open_feeds("synthetic", symbols=[SYM], n_updates=1200, seed=11), SPEC,
                           strategy=OfiRule(size=1.0), exec_cfg=exec_cfg, baselines=[])
    off = offline.lanes[("ofi", SYM)].fills["seq"].tolist()
    assert len(off) > 2
    worker = build_worker(cfg, SPEC, OfiRule(size=1.0), "ofi-rule", tmp_path / "w")
    trader = build_trader(cfg, exec_cfg, PolicyConfig(max_position=1.0), model="ofi-rule",
                          book_capacity=SPEC.book_capacity)

    def fills_done(msgs) -> bool:  # all of session 1, then session 2 trades again from seq 0
        seqs = [json.loads(v)["seq"] for _, v in msgs]
        return len(seqs) > len(off) and seqs[-1] >= off[-2]

    async with running(worker, ready_timeout_s=30), running(trader, ready_timeout_s=30):
        p = AIOKafkaProducer(bootstrap_servers=cfg.bootstrap)
        await p.start()
        for value in stream:
            await p.send_and_wait(cfg.topics.book_events, value, key=SYM.encode())
        await p.stop()
        fills = await collect(cfg.bootstrap, cfg.topics.fills, fills_done, timeout=60)
        await asyncio.sleep(1.0)
    seqs = [json.loads(v)["seq"] for _, v in fills]
    assert seqs[:len(off)] == off  # the forged snapshot and the step back changed nothing
    again = seqs[len(off):]
    assert again and again[0] < off[-1]  # the restarted producer is traded, not skipped
    assert all(s in off for s in again[1:])  # on the same rows as an offline run of its events
