"""Nothing the worker publishes exceeds the producer's request limit (real embedded broker).

Two 20,000-event frames waiting together answer with over 1.8 MB of signals:
they go out as several messages under the limit, covering every row. A 5 MB
garbage message is dead-lettered with a truncated payload, its size and sha256.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from streamsig.backtest.runner import run_backtest
from streamsig.book import events as E
from streamsig.book.sources import open_feeds
from streamsig.features import FeatureSpec
from streamsig.live.config import running
from streamsig.live.worker import build_worker
from streamsig.trading.rules import OfiRule
from streamsig.wire.frames import encode_frame, parse_dead_letter
from streamsig.wire.signals import decode_signals
from streamsig.wire.topics import ensure_topics
from tests.test_stream_e2e import collect

pytestmark = pytest.mark.slow
SPEC = FeatureSpec(levels=10)


async def test_large_answers_are_split_and_huge_input_is_dead_lettered_small(stream_config, tmp_path) -> None:
    from aiokafka import AIOKafkaProducer

    cfg = stream_config
    limit = cfg.max_message_bytes
    assert limit == 1_000_000
    await ensure_topics(cfg.bootstrap, cfg.topics.all(), cfg.partitions)
    feed = open_feeds("synthetic", symbols=["BIG"], n_updates=40_000, seed=1)[0]
    ev = feed.read_all()
    eob = np.flatnonzero(ev["flags"] & E.EOB)
    cut = int(eob[np.searchsorted(eob, 20_000)]) + 1
    garbage = b"SSGF" + os.urandom(5 * 1024 * 1024)
    p = AIOKafkaProducer(bootstrap_servers=cfg.bootstrap, max_request_size=8 * 1024 * 1024)
    await p.start()
    # sent before the worker starts, so that it takes both frames in one batch
    for part in (ev[:cut], ev[cut:]):
        assert len(part) >= 20_000
        await p.send_and_wait(cfg.topics.book_events, encode_frame("BIG", np.ascontiguousarray(part), 1,
                                                                   feed.tick_size, 1), key=b"BIG")
    await p.send_and_wait(cfg.topics.book_events, garbage, key=b"BIG")
    await p.stop()
    last = int(ev["seq"][-1])
    async with running(build_worker(cfg, SPEC, OfiRule(), "ofi", tmp_path), ready_timeout_s=30):
        sig = await collect(cfg.bootstrap, cfg.topics.signals,
                            lambda m: any(decode_signals(v).last_seq == last for _, v in m))
        dead = await collect(cfg.bootstrap, cfg.topics.dead_letter, lambda m: len(m) >= 1, timeout=20)
    assert len(sig) >= 2 and all(len(v) <= limit - 4096 for _, v in sig)
    got = np.concatenate([decode_signals(v).records for _, v in sig])
    offline = run_backtest([feed], SPEC, strategy=OfiRule(), baselines=[]).signals["BIG"]
    assert got.tobytes() == offline.tobytes()  # every row, once, in order
    [(_, value)] = dead
    rec = parse_dead_letter(value)
    assert rec["reason"] == "BAD_FRAME" and len(value) < limit
    assert rec["raw_len"] == len(garbage) and rec["raw_truncated"] is True
    assert rec["raw_sha256"] == hashlib.sha256(garbage).hexdigest()
    assert rec["raw"] == garbage[:len(rec["raw"])] and 0 < len(rec["raw"]) < len(garbage)
