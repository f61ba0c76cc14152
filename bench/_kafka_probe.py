"""Measure the Kafka side on this machine: producer throughput, Faust overhead, startup, latency.

    python bench/_kafka_probe.py [--kafka HOST:PORT] [--quick]

Without ``--kafka`` an embedded Tansu broker is started. Prints one line per figure.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import time
import uuid

import numpy as np

from streamsig.book import events as E
from streamsig.live.broker import resolve_kafka
from streamsig.live.config import StreamConfig, make_app, raw_topic, running
from streamsig.wire.frames import decode_frame, encode_frame
from streamsig.wire.topics import ensure_topics


def _frames(size: int, n: int) -> list[bytes]:
    ev = E.empty(size * n)
    ev["seq"] = np.arange(size * n)
    return [encode_frame("BTC-USD", ev[i * size : (i + 1) * size], 0) for i in range(n)]


async def producer_throughput(bootstrap: str, size: int, seconds: float) -> tuple[float, float]:
    """Messages/s and events/s for frames of ``size`` events, keyed by one symbol."""
    from aiokafka import AIOKafkaProducer

    topic = f"probe-prod-{size}-{uuid.uuid4().hex[:6]}"
    await ensure_topics(bootstrap, [topic], 1)
    frames = _frames(size, 256)
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1 << 20,
                         max_request_size=4 << 20)
    await p.start()
    sent, t0 = 0, time.perf_counter()
    try:
        while time.perf_counter() - t0 < seconds:
            futs = [await p.send(topic, f, key=b"BTC-USD") for f in frames]
            await asyncio.gather(*futs)
            sent += len(frames)
    finally:
        await p.stop()
    dt = time.perf_counter() - t0
    return sent / dt, sent * size / dt


async def _fill(bootstrap: str, topic: str, size: int, n: int) -> None:
    from aiokafka import AIOKafkaProducer

    await ensure_topics(bootstrap, [topic], 1)
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1 << 20)
    await p.start()
    try:
        await asyncio.gather(*[await p.send(topic, f, key=b"BTC-USD") for f in _frames(size, n)])
    finally:
        await p.stop()


async def consumer_throughput(bootstrap: str, size: int, n: int) -> tuple[float, float]:
    """Plain aiokafka consumer: wall and CPU microseconds per message, decoding each frame."""
    from aiokafka import AIOKafkaConsumer

    topic = f"probe-cons-{size}-{uuid.uuid4().hex[:6]}"
    await _fill(bootstrap, topic, size, n)
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                         fetch_max_wait_ms=20, max_partition_fetch_bytes=4 << 20)
    await c.start()
    got, t0, c0 = 0, time.perf_counter(), time.process_time()
    try:
        while got < n:
            for msgs in (await c.getmany(timeout_ms=200, max_records=10_000)).values():
                for m in msgs:
                    decode_frame(m.value)
                got += len(msgs)
    finally:
        await c.stop()
    return (time.perf_counter() - t0) / n * 1e6, (time.process_time() - c0) / n * 1e6


async def faust_overhead(bootstrap: str, size: int, n: int) -> tuple[float, float]:
    """Wall and CPU microseconds per message for a Faust agent that only decodes each frame."""

    tag = f"probe-faust-{size}-{uuid.uuid4().hex[:6]}"
    cfg = StreamConfig(bootstrap=bootstrap, app_id=tag, topic_prefix=tag, partitions=1)
    await _fill(bootstrap, cfg.topics.book_events, size, n)
    app = make_app(cfg)
    seen: list[float] = []
    cpu: list[float] = []
    done = asyncio.Event()

    @app.agent(raw_topic(app, cfg.topics.book_events))
    async def agent(stream):  # type: ignore[no-untyped-def]
        async for value in stream:
            decode_frame(value)
            seen.append(time.perf_counter())
            cpu.append(time.process_time())
            if len(seen) == n:
                done.set()

    async with running(app):
        await asyncio.wait_for(done.wait(), 120)
    # skip the first 10% (fetch warm-up) to get the steady per-message cost
    k = n // 10
    return (seen[-1] - seen[k]) / (n - 1 - k) * 1e6, (cpu[-1] - cpu[k]) / (n - 1 - k) * 1e6


async def startup_and_latency(bootstrap: str, fetch_wait_ms: int, session_s: float) -> tuple[float, float, float]:
    """Seconds from app start to first message; median and max produce→agent latency (ms)."""
    from aiokafka import AIOKafkaProducer

    tag = f"probe-lat-{uuid.uuid4().hex[:6]}"
    cfg = StreamConfig(bootstrap=bootstrap, app_id=tag, topic_prefix=tag, partitions=1,
                       fetch_max_wait_ms=fetch_wait_ms, session_timeout_s=session_s,
                       heartbeat_s=min(1.0, session_s / 3))
    await ensure_topics(bootstrap, [cfg.topics.book_events], 1)
    app = make_app(cfg)
    q: asyncio.Queue[float] = asyncio.Queue()

    @app.agent(raw_topic(app, cfg.topics.book_events))
    async def agent(stream):  # type: ignore[no-untyped-def]
        async for _ in stream:
            q.put_nowait(time.perf_counter())

    p = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await p.start()
    await p.send_and_wait(cfg.topics.book_events, b"x", key=b"k")
    t0 = time.perf_counter()
    lat: list[float] = []
    try:
        async with running(app):
            first = await asyncio.wait_for(q.get(), 60) - t0
            for _ in range(30):
                ts = time.perf_counter()
                await p.send_and_wait(cfg.topics.book_events, b"x", key=b"k")
                lat.append((await asyncio.wait_for(q.get(), 10) - ts) * 1e3)
                await asyncio.sleep(0.037)
    finally:
        await p.stop()
    return first, float(np.median(lat)), max(lat)


async def main(args: argparse.Namespace) -> None:
    bootstrap, broker = resolve_kafka(args.kafka)
    secs = 1.0 if args.quick else 3.0
    try:
        print(f"broker {bootstrap} ({'embedded Tansu' if broker else 'external'})")
        for size in (1, 500):
            msgs, evs = await producer_throughput(bootstrap, size, secs)
            print(f"aiokafka producer, frame size {size:>3}: {msgs:>9,.0f} msg/s {evs:>12,.0f} events/s")
        n = 2000 if args.quick else 20000
        for size in (1, 500):
            us, cpu = await consumer_throughput(bootstrap, size, n)
            print(f"aiokafka consumer (decode), frame size {size:>3}: {us:6.1f} us/msg wall, {cpu:6.1f} cpu "
                  f"= {size / us * 1e6:>12,.0f} events/s")
        for size in (1, 500):
            us, cpu = await faust_overhead(bootstrap, size, n)
            print(f"faust agent (decode only), frame size {size:>3}: {us:6.1f} us/msg wall, {cpu:6.1f} cpu "
                  f"= {size / us * 1e6:>12,.0f} events/s")
        for wait, session in ((1500, 6.0), (100, 6.0), (50, 6.0), (20, 6.0), (20, 3.0)):
            first, med, mx = await startup_and_latency(bootstrap, wait, session)
            print(f"faust fetch_max_wait {wait:>4} ms, session {session:g} s: first message after "
                  f"{first:.2f} s, latency median {med:.1f} ms, max {mx:.1f} ms")
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kafka", default=None, help="bootstrap servers (default: embedded Tansu)")
    ap.add_argument("--quick", action="store_true", help="shorter runs")
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main(ap.parse_args()))
