"""Bad input goes to the dead-letter topic with a reason and a counter; the stream keeps running."""
from __future__ import annotations

import numpy as np
import pytest

from streamsig.trading.rules import OfiRule
from streamsig.book import events as E
from streamsig.book.sources import open_feeds
from streamsig.features import FeatureSpec
from streamsig import telemetry as M
from streamsig.live.config import running
from streamsig.wire.frames import encode_frame, parse_dead_letter
from streamsig.wire.signals import decode_signals
from streamsig.wire.topics import ensure_topics
from streamsig.live.worker import build_worker
from tests.test_stream_e2e import collect

pytestmark = pytest.mark.slow


def _count(reason: str) -> float:
    return M.REGISTRY.get_sample_value("streamsig_dead_letters_total", {"reason": reason}) or 0.0


async def test_bad_events_are_dead_lettered_and_the_stream_goes_on(stream_config, tmp_path) -> None:
    from aiokafka import AIOKafkaProducer

    cfg = stream_config
    await ensure_topics(cfg.bootstrap, cfg.topics.all(), cfg.partitions)
    feed = open_feeds("synthetic", symbols=["ZZZ"], n_updates=400, seed=2)[0]
    ev = feed.read_all()
    good1, good2 = ev[ev["seq"] < 200], ev[ev["seq"] >= 200]
    last = good1[-1]
    bad = np.repeat(last, 4)
    bad["flags"] = E.DEPTH | E.BUY | E.EOB
    bad["seq"] = [200, 201, 202, 150]  # NaN, negative, out of order sequence (after 2 rows)
    bad["size"] = [np.nan, -5.0, 1.0, 1.0]
    bad["price"] = last["price"]
    good2 = good2.copy()
    good2["seq"] += 3  # the stream goes on after the bad updates
    before = {r: _count(r) for r in ("NAN", "NEGATIVE_SIZE", "SEQUENCE", "BAD_FRAME")}
    async with running(build_worker(cfg, FeatureSpec(levels=10), OfiRule(), "ofi", tmp_path), ready_timeout_s=30):
        p = AIOKafkaProducer(bootstrap_servers=cfg.bootstrap)
        await p.start()
        topic, key, tick = cfg.topics.book_events, b"ZZZ", feed.tick_size
        await p.send_and_wait(topic, encode_frame("ZZZ", good1, 1, tick), key=key)
        await p.send_and_wait(topic, encode_frame("ZZZ", bad, 2, tick), key=key)
        await p.send_and_wait(topic, b"SSGF-not-a-frame", key=key)
        await p.send_and_wait(topic, encode_frame("ZZZ", good2, 3, tick), key=key)
        await p.stop()
        want_last = int(good2["seq"][-1])
        sig = await collect(cfg.bootstrap, cfg.topics.signals,
                            lambda m: any(decode_signals(v).last_seq == want_last for _, v in m))
        dead = await collect(cfg.bootstrap, cfg.topics.dead_letter, lambda m: len(m) >= 4, timeout=10)
    recs = [parse_dead_letter(v) for _, v in dead]
    reasons = sorted(r["reason"] for r in recs)
    assert reasons == ["BAD_FRAME", "NAN", "NEGATIVE_SIZE", "SEQUENCE"], recs
    nan = next(r for r in recs if r["reason"] == "NAN")
    assert nan["symbol"] == "ZZZ" and nan["seq"] == 200 and nan["raw"]  # the event itself is kept
    for r in before:
        assert _count(r) == before[r] + 1, r
    seqs = np.concatenate([decode_signals(v).records["seq"] for _, v in sig])
    assert seqs[-1] == want_last and 201 in seqs and 202 in seqs  # rows kept coming after the rejects


async def test_crossed_book_is_dead_lettered_and_healed_by_the_next_snapshot(stream_config, tmp_path) -> None:
    from aiokafka import AIOKafkaProducer

    from streamsig.book.book import Book

    cfg = stream_config
    await ensure_topics(cfg.bootstrap, cfg.topics.all(), cfg.partitions)
    feed = open_feeds("synthetic", symbols=["XX"], n_updates=300, seed=8)[0]
    ev = feed.read_all()
    head, tail = ev[ev["seq"] < 100], ev[ev["seq"] >= 100].copy()
    book = Book(capacity=64)
    book.apply(head)
    crossed = np.repeat(head[-1], 1)
    crossed["flags"], crossed["seq"] = E.DEPTH | E.BUY | E.EOB, 100
    crossed["price"], crossed["size"] = book.best_ask() + 1, 3.0  # a bid above the best ask
    book.apply(tail[tail["seq"] < 150])
    snap = book.snapshot_events(151, int(tail[tail["seq"] < 150]["exch_ts"][-1]))  # resync point
    later = tail[tail["seq"] >= 150]
    later["seq"] += 2
    before = _count("CROSSED")
    async with running(build_worker(cfg, FeatureSpec(levels=10), OfiRule(), "ofi", tmp_path), ready_timeout_s=30):
        p = AIOKafkaProducer(bootstrap_servers=cfg.bootstrap)
        await p.start()
        t, k, tick = cfg.topics.book_events, b"XX", feed.tick_size
        for part in (head, crossed, tail[tail["seq"] < 150], snap, later):
            await p.send_and_wait(t, encode_frame("XX", np.ascontiguousarray(part), 1, tick), key=k)
        await p.stop()
        want = int(later["seq"][-1])
        sig = await collect(cfg.bootstrap, cfg.topics.signals,
                            lambda m: any(decode_signals(v).last_seq == want for _, v in m))
        dead = await collect(cfg.bootstrap, cfg.topics.dead_letter, lambda m: len(m) >= 1, timeout=10)
    assert [parse_dead_letter(v)["reason"] for _, v in dead] == ["CROSSED"]
    assert _count("CROSSED") == before + 1
    seqs = np.concatenate([decode_signals(v).records["seq"] for _, v in sig])
    assert seqs.max() == want and 151 in seqs  # the snapshot's row, then the stream goes on
    assert not any(100 <= q < 151 for q in seqs.tolist())  # nothing from the untrusted book
