"""Faust's cost per message: waiting one-event frames through Faust's stream and through a direct feed.

    python bench/feed_cost.py [--quick] [--kafka HOST:PORT]

For each way in, a fresh Faust app (streamsig's settings) takes N one-event book frames that wait
on a 4-partition topic, in batches of up to 1,024 (``ready_batches`` over the agent's stream, or
``DirectFeed.batches``), doing nothing with them; the time runs from the first batch to the last
frame. Three rounds each, alternating. The last line is one JSON object (microseconds per message).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

from streamsig.book import events as E
from streamsig.live.batches import direct_feed, ready_batches
from streamsig.live.broker import resolve_kafka
from streamsig.live.config import StreamConfig, make_app, raw_topic, running
from streamsig.wire.frames import encode_frame
from streamsig.wire.topics import ensure_topics


async def fill(bootstrap: str, n: int) -> str:
    """A new topic holding ``n`` one-event frames of five symbols."""
    from aiokafka import AIOKafkaProducer

    topic = f"feed-cost-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [topic], 4)
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await p.start()
    ev = E.empty(1)
    try:
        for i in range(n):
            ev["seq"] = i
            sym = f"S{i % 5}"
            await p.send(topic, encode_frame(sym, ev, 0, 0.01), key=sym.encode())
        await p.flush()
    finally:
        await p.stop()
    return topic


async def take_all(bootstrap: str, topic: str, n: int, direct: bool) -> float:
    """Microseconds per message for one app taking the ``n`` frames of ``topic``."""
    cfg = StreamConfig(bootstrap=bootstrap, app_id=f"feed-cost-{uuid.uuid4().hex[:8]}", session_timeout_s=3.0,
                       heartbeat_s=0.5)
    app = make_app(cfg)
    t = raw_topic(app, topic)
    feed = direct_feed(app, topic) if direct else None
    seen = {"n": 0, "t0": 0.0}
    done = asyncio.Event()

    @app.agent(t)
    async def agent(stream):  # type: ignore[no-untyped-def]
        batches = feed.batches(app, 1024) if feed is not None else ready_batches(stream, 1024)
        async for batch in batches:
            if not seen["t0"]:
                seen["t0"] = time.perf_counter()
            seen["n"] += len(batch)
            if seen["n"] >= n:
                done.set()

    async with running(app):
        await asyncio.wait_for(done.wait(), 600)
        dt = time.perf_counter() - seen["t0"]
    return dt / n * 1e6


async def main_async(a: argparse.Namespace) -> dict:
    bootstrap, broker = resolve_kafka(a.kafka)
    n = 5_000 if a.quick else 30_000
    out: dict[str, list[float]] = {"stream_us_per_msg": [], "direct_us_per_msg": []}
    try:
        for _ in range(3):
            for direct in (False, True):
                topic = await fill(bootstrap, n)
                us = await take_all(bootstrap, topic, n, direct)
                key = "direct_us_per_msg" if direct else "stream_us_per_msg"
                out[key].append(round(us, 1))
                print(f"{key.split('_')[0]:>6}: {n} frames, {us:.1f} us per message", flush=True)
    finally:
        if broker is not None:
            broker.stop()
    return {"frames": n, **out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="5,000 frames per round (< 60 s)")
    ap.add_argument("--kafka", default=None, help="external broker (default: embedded Tansu)")
    print(json.dumps(asyncio.run(main_async(ap.parse_args()))))


if __name__ == "__main__":
    main()
