"""Acknowledged output on the real broker: offsets come from the broker; a failing send is retried, never dropped silently."""
from __future__ import annotations

import pytest

from streamsig import telemetry as M
from streamsig.live.config import make_app, raw_topic, running
from streamsig.live.output import send_acked
from streamsig.wire.frames import parse_dead_letter
from streamsig.wire.topics import ensure_topics
from tests.test_stream_e2e import collect

pytestmark = pytest.mark.slow


async def test_send_acked_returns_broker_offsets_and_dead_letters_what_fails(stream_config) -> None:
    cfg = stream_config
    await ensure_topics(cfg.bootstrap, cfg.topics.all(), cfg.partitions)
    app = make_app(cfg)
    out, dead = raw_topic(app, cfg.topics.signals), raw_topic(app, cfg.topics.dead_letter)

    @app.agent(raw_topic(app, cfg.topics.fills))
    async def idle(stream):  # type: ignore[no-untyped-def] - gives the app a partition assignment
        async for _ in stream:
            pass

    async with running(app, ready_timeout_s=30):
        mds = await send_acked([(out, b"A", b"one"), (out, b"A", b"two")], dead)
        assert [m is not None for m in mds] == [True, True]
        assert mds[1].offset == mds[0].offset + 1 and mds[0].partition == mds[1].partition  # acked, in order
        name = cfg.topics.signals
        retries = M.SEND_RETRIES.labels(name)._value.get()
        # larger than the producer's request limit: every attempt fails; the dead letter carries the
        # payload truncated (with its length and digest), so it is delivered and the slot is None
        mds = await send_acked([(out, b"A", b"x" * 1_200_000)], dead)
        assert mds == [None]
        assert M.SEND_RETRIES.labels(name)._value.get() == retries + 3
    dl = await collect(cfg.bootstrap, cfg.topics.dead_letter, lambda m: len(m) >= 1)
    rec = parse_dead_letter(dl[0][1])
    assert rec["reason"] == "PUBLISH_FAILED" and rec["raw_len"] == 1_200_000 and rec["raw_truncated"]
    recs = await collect(cfg.bootstrap, cfg.topics.signals, lambda m: False, timeout=3)
    assert sorted(v for _, v in recs) == [b"one", b"two"]
