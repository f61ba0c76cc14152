"""The embedded broker, topic creation, frames over Kafka and a Faust round trip.

Everything marked ``slow`` talks TCP to a real broker on loopback.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamsig.book import events as E
from streamsig.live.broker import BrokerError, EmbeddedBroker, probe_metadata, resolve_kafka
from streamsig.live.config import StreamConfig, make_app, raw_topic, reread_from_start, running
from streamsig.wire.frames import decode_frame, encode_frame
from streamsig.wire.topics import Topics, ensure_topics, partition_counts


def _events(n: int, seq0: int) -> np.ndarray:
    ev = E.empty(n)
    ev["flags"] = E.DEPTH | E.SELL | E.EOB
    ev["seq"] = np.arange(seq0, seq0 + n)
    ev["price"] = 1000 + np.arange(n)
    ev["size"] = 1.5
    return ev


def _refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return True
    return False


@pytest.mark.slow
def test_broker_starts_answers_and_stops() -> None:
    with EmbeddedBroker() as broker:
        assert broker.running and broker.bootstrap == f"127.0.0.1:{broker.port}"
        brokers = probe_metadata(broker.host, broker.port)
        assert [(h, p) for _, h, p in brokers] == [("127.0.0.1", broker.port)]
        with pytest.raises(BrokerError, match="already in use"):
            EmbeddedBroker(port=broker.port).start()
    assert not broker.running
    assert _refused(broker.host, broker.port)


def test_broker_failure_is_one_line_with_output() -> None:
    with pytest.raises(BrokerError) as info:
        EmbeddedBroker(binary="/bin/sleep", startup_timeout_s=2).start()
    msg = str(info.value)
    assert "\n" not in msg and "exited with code" in msg and "unrecognized option" in msg


def test_resolve_kafka_prefers_explicit_then_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSIG_KAFKA", "envhost:9092")
    assert resolve_kafka("kafka://given:9093") == ("given:9093", None)
    assert resolve_kafka(None) == ("envhost:9092", None)


@pytest.mark.slow
async def test_ensure_topics_creates_partitions(kafka: str, unique_prefix: str) -> None:
    names = Topics(unique_prefix).all()
    assert await ensure_topics(kafka, names, partitions=3) == {n: 3 for n in names}
    # already there: left alone, reported as is
    assert await ensure_topics(kafka, names[:2], partitions=5) == {n: 3 for n in names[:2]}
    assert await partition_counts(kafka, names) == {n: 3 for n in names}


@pytest.mark.slow
async def test_frames_round_trip_keyed_by_symbol(kafka: str, unique_prefix: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = Topics(unique_prefix).book_events
    await ensure_topics(kafka, [topic], partitions=4)
    symbols = ["BTC-USD", "ETH-USD", "AAPL", "MSFT", "SOL-USD"]
    sent: dict[str, list[bytes]] = defaultdict(list)
    producer = AIOKafkaProducer(bootstrap_servers=kafka, linger_ms=5)
    await producer.start()
    try:
        seq = 0
        for size in (1, 7, 1, 500, 3):
            for sym in symbols:
                frame = encode_frame(sym, _events(size, seq), 123)
                seq += size
                sent[sym].append(frame)
                await producer.send(topic, frame, key=sym.encode())
        await producer.flush()
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka, auto_offset_reset="earliest", fetch_max_wait_ms=20,
        enable_auto_commit=False,
    )
    await consumer.start()
    got: dict[str, list[bytes]] = defaultdict(list)
    parts: dict[str, set[int]] = defaultdict(set)
    total = sum(len(v) for v in sent.values())
    try:
        async with asyncio.timeout(15):
            n = 0
            while n < total:
                batch = await consumer.getmany(timeout_ms=500)
                for tp, msgs in batch.items():
                    for m in msgs:
                        sym = m.key.decode()
                        got[sym].append(m.value)
                        parts[sym].add(tp.partition)
                        assert decode_frame(m.value).symbol == sym
                        n += 1
    finally:
        await consumer.stop()
    assert got == sent  # byte-identical, in order per symbol
    assert all(len(p) == 1 for p in parts.values())


@pytest.mark.slow
async def test_faust_agent_forwards_frame_counts(stream_config: StreamConfig) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    cfg = stream_config
    await ensure_topics(cfg.bootstrap, cfg.topics.all(), cfg.partitions)
    app = make_app(cfg)
    book_events = raw_topic(app, cfg.topics.book_events)
    signals = raw_topic(app, cfg.topics.signals)

    @app.agent(book_events)
    async def count_events(stream):  # type: ignore[no-untyped-def]
        async for key, value in stream.items():
            f = decode_frame(value)
            out = {"symbol": f.symbol, "first_seq": f.first_seq, "count": f.count}
            await signals.send(key=key, value=json.dumps(out).encode())

    sizes = [1, 500, 3, 1, 64]
    producer = AIOKafkaProducer(bootstrap_servers=cfg.bootstrap)
    await producer.start()
    seq = 0
    try:
        # half before the worker starts (read from earliest), half while it runs
        for size in sizes[:2]:
            await producer.send_and_wait(cfg.topics.book_events, encode_frame("X", _events(size, seq), 0), key=b"X")
            seq += size
        async with running(app, ready_timeout_s=20):
            # the short fetch wait reached aiokafka's fetcher (Faust would use 1500 ms)
            assert app.consumer._thread._consumer._fetcher._fetch_max_wait_ms == cfg.fetch_max_wait_ms
            for size in sizes[2:]:
                await producer.send_and_wait(
                    cfg.topics.book_events, encode_frame("X", _events(size, seq), 0), key=b"X")
                seq += size
            consumer = AIOKafkaConsumer(
                cfg.topics.signals, bootstrap_servers=cfg.bootstrap, auto_offset_reset="earliest",
                fetch_max_wait_ms=20,
            )
            await consumer.start()
            try:
                results = []
                async with asyncio.timeout(15):
                    while len(results) < len(sizes):
                        for msgs in (await consumer.getmany(timeout_ms=200)).values():
                            results += [json.loads(m.value) for m in msgs]
            finally:
                await consumer.stop()
    finally:
        await producer.stop()
    assert [r["count"] for r in results] == sizes
    assert [r["first_seq"] for r in results] == list(np.cumsum([0] + sizes[:-1]))
    assert {r["symbol"] for r in results} == {"X"}


async def _app_counting_offsets(cfg: StreamConfig) -> tuple[Any, list[int]]:
    """A Faust app that commits nothing by itself during a test and records the offset of each
    book-events record it takes in, and six records on that topic's partition 0."""
    from aiokafka import AIOKafkaProducer

    await ensure_topics(cfg.bootstrap, cfg.topics.all(), cfg.partitions)
    app = make_app(cfg, broker_commit_interval=3600.0)
    book_events = raw_topic(app, cfg.topics.book_events)
    seen: list[int] = []

    @app.agent(book_events)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            seen.append(event.message.offset)

    producer = AIOKafkaProducer(bootstrap_servers=cfg.bootstrap)
    await producer.start()
    try:
        for i in range(6):
            await producer.send_and_wait(cfg.topics.book_events, encode_frame("X", _events(1, i), 0), key=b"X",
                                         partition=0)
    finally:
        await producer.stop()
    return app, seen


async def _until_seen(seen: list[int], n: int) -> None:
    async with asyncio.timeout(15):
        while len(seen) < n:
            await asyncio.sleep(0.05)


def _partition_0(app: Any, cfg: StreamConfig) -> Any:
    return next(tp for tp in app.consumer.assignment() if tp.topic == cfg.topics.book_events and tp.partition == 0)


async def test_partition_without_committed_offset_is_sought_to_the_beginning(stream_config: StreamConfig) -> None:
    """Seeking to the committed offsets (as Faust does after a rebalance, or after dropping records it
    fetched while its flow was suspended) rewinds a partition nobody has committed yet to offset 0:
    left at its fetch position, the records fetched and dropped would never be delivered."""
    cfg = stream_config
    app, seen = await _app_counting_offsets(cfg)
    async with running(app, ready_timeout_s=20):
        await _until_seen(seen, 6)
        tp = _partition_0(app, cfg)
        assert await app.consumer.position(tp) == 6
        app.consumer.pause_partitions([tp])  # no fetch moves the position while it is looked at
        committed = await app.consumer.seek_to_committed()
        assert not committed.get(tp)
        assert await app.consumer.position(tp) == 0
    assert seen[:6] == list(range(6))


async def test_offset_committed_before_a_loss_was_noticed_does_not_hide_the_new_records(
        stream_config: StreamConfig) -> None:
    """A rebalance after the broker lost its topics: an offset committed to a recreated topic before the
    loss was noticed is void, so the partition is read from 0 again, and none of its records is skipped
    as already read (Faust takes the offsets the seek returns as the offsets read)."""
    cfg = stream_config
    app, seen = await _app_counting_offsets(cfg)
    async with running(app, ready_timeout_s=20):
        await _until_seen(seen, 6)
        tp = _partition_0(app, cfg)
        assert await app.consumer._thread.commit({tp: 6})  # noqa: SLF001 - committed before the loss is noticed
        await reread_from_start(app)  # the loss is noticed: everything is read again
        await _until_seen(seen, 12)
        await app.consumer.perform_seek()  # as after a rebalance: the commit of 6 is void, so from 0 again
        await _until_seen(seen, 18)
        assert app.consumer._read_offset[tp] == 5  # noqa: SLF001
        # a commit on its way while the loss is noticed (a rebalance commits what was acknowledged)
        thread, release = app.consumer._thread, asyncio.Event()  # noqa: SLF001
        sent = thread.commit

        async def slow_commit(offsets):  # type: ignore[no-untyped-def]
            await release.wait()
            return await sent(offsets)

        thread.commit = slow_commit
        commit = asyncio.create_task(app.consumer._commit_offsets({tp: 6}))  # noqa: SLF001
        await asyncio.sleep(0.2)
        await reread_from_start(app)
        await _until_seen(seen, 24)
        release.set()
        await commit
        assert app.consumer._committed_offset.get(tp) is None  # noqa: SLF001 - not booked as committed
        await app.consumer.perform_seek()  # the commit does not count as one made after the loss
        await _until_seen(seen, 30)
    assert seen == list(range(6)) * 5


WORKER_SCRIPT = """
import sys
from streamsig.live.config import StreamConfig, make_app, raw_topic, run_worker

cfg = StreamConfig(bootstrap=sys.argv[1], app_id=sys.argv[2], topic_prefix=sys.argv[2],
                   partitions=1, session_timeout_s=3.0, heartbeat_s=0.5, datadir=sys.argv[3])
app = make_app(cfg)
topic = raw_topic(app, cfg.topics.book_events)

@app.agent(topic)
async def echo(stream):
    async for value in stream:
        print("GOT", value.decode(), flush=True)

@app.timer(0.2)
async def tick():
    await topic.send(key=b"k", value=b"tick")

run_worker(app, loglevel="warning", quiet=True)
"""


@pytest.mark.slow
def test_cli_worker_stops_cleanly_on_sigterm(kafka: str, unique_prefix: str, tmp_path: Path) -> None:
    asyncio.run(ensure_topics(kafka, [Topics(unique_prefix).book_events], 1))
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-u", str(script), kafka, unique_prefix, str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        deadline = time.monotonic() + 20
        lines = []
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("GOT tick") or not line:
                break
        assert any(ln.startswith("GOT tick") for ln in lines), "".join(lines)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0, "".join(lines) + rest
        assert time.monotonic() - t0 < 10
        assert "Traceback" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
