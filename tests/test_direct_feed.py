"""A topic fed past Faust's streams (streamsig.live.batches.DirectFeed), on the real embedded broker."""
from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streamsig.live.batches import direct_feed
from streamsig.live.config import make_app, raw_topic, running
from streamsig.wire.topics import ensure_topics

pytestmark = pytest.mark.slow
N = 3000


async def _produce(bootstrap: str, topic: str, start: int, n: int) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
    await p.start()
    try:
        for i in range(start, start + n):
            await p.send(topic, str(i).encode(), key=str(i % 7).encode())
        await p.flush()
    finally:
        await p.stop()


async def test_a_direct_feed_delivers_every_message_once_in_order_in_bounded_batches_and_commits_them(
        stream_config) -> None:
    cfg = stream_config
    topic = cfg.topics.book_events
    await ensure_topics(cfg.bootstrap, [topic], cfg.partitions)
    await _produce(cfg.bootstrap, topic, 0, N)  # waiting before the app starts: a backlog
    app = make_app(cfg, broker_commit_interval=3600.0)
    feed = direct_feed(app, topic, limit=64)
    with pytest.raises(ValueError):
        direct_feed(app, topic)
    got: dict[int, list[int]] = {}
    sizes: list[int] = []
    stream_saw: list[bytes] = []

    @app.agent(raw_topic(app, topic))
    async def agent(stream):  # type: ignore[no-untyped-def]
        async def watch_stream() -> None:
            async for v in stream:
                stream_saw.append(v)
        watcher = asyncio.ensure_future(watch_stream())
        try:
            async for batch in feed.batches(app, 100):
                sizes.append(len(batch))
                for m in batch:
                    got.setdefault(m.partition, []).append(int(m.value))
        finally:
            watcher.cancel()

    async with running(app):
        await _produce(cfg.bootstrap, topic, N, N)  # and more while it runs
        async with asyncio.timeout(30):
            while sum(map(len, got.values())) < 2 * N:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the last batch is acknowledged at the agent's next step
        await app.consumer.commit()
        check = AIOKafkaConsumer(bootstrap_servers=cfg.bootstrap, group_id=cfg.app_id, enable_auto_commit=False)
        await check.start()
        try:
            committed = {p: await check.committed(TopicPartition(topic, p)) for p in range(cfg.partitions)}
        finally:
            await check.stop()
    values = sorted(v for vs in got.values() for v in vs)
    assert values == list(range(2 * N))  # every message once
    for vs in got.values():
        by_key: dict[int, list[int]] = {}
        for v in vs:
            by_key.setdefault(v % 7, []).append(v)
        assert all(k == sorted(k) for k in by_key.values())  # in order per key (and partition)
    assert max(sizes) <= 100 and len(sizes) < 2 * N / 5  # batches, bounded by max_batch
    assert stream_saw == []  # nothing went through Faust's stream
    assert sum(committed.values()) >= 2 * N - len(got) * 100  # all but at most the last batch per partition


async def test_clearing_a_feed_drops_what_it_holds_and_unblocks_the_fetch_loop() -> None:
    from types import SimpleNamespace

    from streamsig.live.batches import DirectFeed

    feed = DirectFeed(limit=2)
    await feed.put([SimpleNamespace(tp=0)] * 3, 0, feed.epoch, 1)  # over the limit: the next put waits
    stale = asyncio.ensure_future(feed.put([SimpleNamespace(tp=0)], 0, feed.epoch, 1))
    await asyncio.sleep(0.05)
    assert not stale.done()  # the fetch loop waits while the feed is full
    feed.clear()
    await asyncio.wait_for(stale, 1)  # a clear lets it go on, and what it held is dropped
    assert feed._held == 0 and not feed._lists
    await feed.put([SimpleNamespace(tp=0)], 0, feed.epoch - 1, 1)  # fetched before the clear: dropped
    assert not feed._lists


async def test_a_batch_taken_before_a_rebalance_is_not_acknowledged_after_it() -> None:
    """The caller skips what was revoked while it waited; acking the batch anyway would book those
    offsets as done after Faust forgot the partition's acks, and a later commit could pass them."""
    from types import SimpleNamespace

    from streamsig.live.batches import DirectFeed

    acked: list[int] = []
    consumer = SimpleNamespace(assignment=lambda: {0}, ack=lambda m: acked.append(m.offset))
    app = SimpleNamespace(consumer=consumer)
    feed = DirectFeed(limit=100)
    batches = feed.batches(app, 10)
    await feed.put([SimpleNamespace(tp=0, offset=1), SimpleNamespace(tp=0, offset=2)], 0, feed.epoch, 1)
    assert [m.offset for m in await batches.__anext__()] == [1, 2]
    feed.clear()  # the rebalance, while the batch was in use
    await feed.put([SimpleNamespace(tp=0, offset=3)], 0, feed.epoch, 1)
    assert [m.offset for m in await batches.__anext__()] == [3]
    await feed.put([SimpleNamespace(tp=0, offset=4)], 0, feed.epoch, 1)
    await batches.__anext__()
    assert acked == [3]  # the batch of the old epoch was not acknowledged; the next one was
    await batches.aclose()


async def test_each_message_of_a_batch_keeps_the_time_its_fetch_came_back() -> None:
    """Batches join and split fetched lists and drop revoked partitions; the fetch times follow."""
    from types import SimpleNamespace

    from streamsig.live.batches import DirectFeed

    consumer = SimpleNamespace(assignment=lambda: {0}, ack=lambda m: None)
    feed = DirectFeed(limit=100)
    batches = feed.batches(SimpleNamespace(consumer=consumer), 4)
    await feed.put([SimpleNamespace(tp=0, offset=1), SimpleNamespace(tp=1, offset=1)], 0, feed.epoch, 100)
    await feed.put([SimpleNamespace(tp=0, offset=i) for i in (2, 3, 4, 5)], 0, feed.epoch, 200)
    got = await batches.__anext__()
    assert [(m.tp, m.offset) for m in got] == [(0, 1), (0, 2), (0, 3)]  # four taken, partition 1 dropped
    assert feed.fetched_ns == [100, 200, 200]
    await feed.put([SimpleNamespace(tp=0, offset=i) for i in (6, 7, 8)], 0, feed.epoch, 300)
    got = await batches.__anext__()  # the rest of the split list, then part of the next
    assert [m.offset for m in got] == [4, 5, 6, 7] and feed.fetched_ns == [200, 200, 300, 300]
    got = await batches.__anext__()  # the rest of that list
    assert [m.offset for m in got] == [8] and feed.fetched_ns == [300]
    await batches.aclose()
