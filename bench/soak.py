"""Soak benchmark: the pipeline at a fixed offered rate for N minutes, watched the whole time.

An embedded broker, a worker and a paper trader (``streamsig worker`` and
``streamsig trade`` child processes, default model) run while this process
offers ``--rate`` book updates per second over ``--symbols`` synthetic symbols
(framed like the producer, 20 ms frames by default as in the demo, with
periodic snapshots) and reads the signals
back. Every ``--every`` seconds it samples throughput (updates/s the worker
applied), end-to-end latency (producer timestamp of a book frame to its signals
arriving here), the worker's lag (updates offered but not yet taken in) and
the RSS of each process (broker, worker, trader, this one).

At the end it waits (``--drain`` seconds at most) for the worker to catch up
and counts: ``lost`` is what was offered and neither applied, skipped as a
duplicate snapshot, dropped for a resync nor dead-lettered; with
``"drained": false`` the worker had not caught up and ``lost`` is its lag.

    python bench/soak.py --minutes 10 --rate 5000
    python bench/soak.py --quick          # 20 s at 1000 updates/s

Prints one JSON object on its last line (keys: minutes, rate, p99_ms, max_lag,
rss_start_mb, rss_end_mb, produced, processed, dead_lettered, lost, and more).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from _proc import child_env, rss_mb

from streamsig.book.book import Book
from streamsig.book.sources import open_feeds
from streamsig.live.broker import EmbeddedBroker, free_port
from streamsig.live.config import StreamConfig
from streamsig.live.producer import with_snapshots
from streamsig.wire.frames import Framer
from streamsig.wire.signals import decode_signals
from streamsig.wire.topics import Topics, ensure_topics



def scrape(port: int) -> dict[str, float]:
    """Sum of each metric family's samples on a /metrics endpoint (labels summed away)."""
    out: dict[str, float] = {}
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return out
    for line in body.splitlines():
        if not line or line[0] == "#":
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        except ValueError:
            pass
    return out


def spawn(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "streamsig.cli", *args], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, env=child_env(), cwd=log.parent)


def updates_of(rate: float, seconds: float, symbols: list[str], seed: int = 1) -> list[tuple[str, float, np.ndarray]]:
    """Per symbol: (symbol, tick, events with snapshots) for ``rate * seconds`` updates in all."""
    n = int(rate * seconds / len(symbols)) + 1
    out = []
    for f in open_feeds("synthetic", symbols=symbols, n_updates=n, seed=seed):
        pieces, _, _ = with_snapshots(f.read_all(), Book(capacity=64), 10_000, 0)
        out.append((f.symbol, f.tick_size, np.concatenate(pieces)))
    return out


async def offer(bootstrap: str, topic: str, feeds, rate: float, seconds: float, produced: list[int],
                frame_ms: float = 20.0) -> None:
    """Send the feeds' updates at ``rate`` per second in all (round robin over symbols), framed."""
    from aiokafka import AIOKafkaProducer

    prod = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1, acks=1, enable_idempotence=False,
                            max_request_size=4 * 1024 * 1024)
    await prod.start()
    epoch = time.time_ns()
    framers = {s: Framer(s, 500, int(frame_ms * 1e6), tick_size=t, epoch=epoch) for s, t, _ in feeds}
    eobs = {s: np.flatnonzero(ev["flags"] & 1 << 5) for s, _, ev in feeds}
    pos = {s: 0 for s, _, _ in feeds}  # next event index
    done = {s: 0 for s, _, _ in feeds}  # updates sent
    per_sym = rate / len(feeds)
    t0 = time.monotonic()
    tick_s = 0.005
    try:
        while True:
            el = time.monotonic() - t0
            if el >= seconds:
                break
            for s, _, ev in feeds:
                due = min(int(per_sym * el), len(eobs[s]))
                if due > done[s]:
                    end = int(eobs[s][due - 1]) + 1
                    for fr in framers[s].add(ev[pos[s]:end]):
                        await prod.send(topic, fr, key=s.encode())
                    produced[0] += end - pos[s]
                    pos[s], done[s] = end, due
                fr = framers[s].poll()
                if fr is not None:
                    await prod.send(topic, fr, key=s.encode())
            await asyncio.sleep(tick_s)
        for s, _, _ in feeds:
            fr = framers[s].flush()
            if fr is not None:
                await prod.send(topic, fr, key=s.encode())
        await prod.flush()
    finally:
        await prod.stop()


async def read_signals(bootstrap: str, topic: str, lat_ms: list[float], stop: asyncio.Event) -> None:
    from aiokafka import AIOKafkaConsumer

    # the services' fetch wait: a shorter one costs the embedded broker more CPU the more it holds
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                         enable_auto_commit=False, fetch_max_wait_ms=StreamConfig.fetch_max_wait_ms)
    await c.start()
    try:
        while not stop.is_set():
            batch = await c.getmany(timeout_ms=200)
            now = time.time_ns()
            for msgs in batch.values():
                for m in msgs:
                    lat_ms.append((now - decode_signals(m.value).producer_ts_ns) / 1e6)
    finally:
        await c.stop()


async def main_async(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="streamsig-soak-"))
    broker = EmbeddedBroker(None).start()
    prefix = "soak"
    topics = Topics(prefix)
    await ensure_topics(broker.bootstrap, topics.all() + (topics.signals + "-challenger",), 4)
    wport, tport = free_port(), free_port()
    common = ["--kafka", broker.bootstrap, "--topic-prefix", prefix]
    worker = spawn(["worker", *common, "--metrics-port", str(wport), "--state-dir", str(work / "state")],
                   work / "worker.log")
    trader = spawn(["trade", *common, "--metrics-port", str(tport), "--state-dir", str(work / "trader-state")],
                   work / "trader.log")  # not the user's folder: a trader resumes the checkpoints it finds
    procs = {"broker": broker.pid, "worker": worker.pid, "trader": trader.pid, "bench": os.getpid()}
    seconds = args.minutes * 60
    syms = [f"K{i}" for i in range(args.symbols)]
    feeds = updates_of(args.rate, seconds + 5, syms)
    try:
        deadline = time.monotonic() + 60
        while not scrape(wport):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError(f"worker did not start; see {work / 'worker.log'}")
            await asyncio.sleep(0.5)
        # warm up: a few frames of one extra symbol, until the worker has answered them
        warm = updates_of(200, 1, ["WARM"])
        await offer(broker.bootstrap, topics.book_events, warm, 400, 0.6, [0])
        while scrape(wport).get("streamsig_frames_processed_total", 0) == 0:
            if time.monotonic() > deadline + 60 or worker.poll() is not None:
                raise RuntimeError(f"worker does not consume; see {work / 'worker.log'}")
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)
        m0 = scrape(wport)
        warm_taken = int(m0.get("streamsig_events_processed_total", 0))
        base = sum(m0.get(k, 0.0) for k in ("streamsig_events_processed_total", "streamsig_duplicate_events_total",
                                              "streamsig_resync_dropped_events_total"))
        rss_start = {k: round(rss_mb(p), 1) for k, p in procs.items() if p}
        produced = [0]
        lat: list[float] = []
        stop = asyncio.Event()
        reader = asyncio.create_task(read_signals(broker.bootstrap, topics.signals, lat, stop))
        sender = asyncio.create_task(offer(broker.bootstrap, topics.book_events, feeds, args.rate, seconds, produced,
                                           args.frame_ms))
        samples: list[dict] = []
        t_start = last_t = time.monotonic()
        last_done = base
        while not sender.done():
            await asyncio.sleep(min(args.every, max(0.5, seconds / 6)))
            m = scrape(wport)
            taken = sum(m.get(k, 0.0) for k in ("streamsig_events_processed_total",
                                                  "streamsig_duplicate_events_total",
                                                  "streamsig_resync_dropped_events_total"))
            now = time.monotonic()
            samples.append({"t_s": round(now - t_start, 1),
                            "updates_per_s": round((taken - last_done) / (now - last_t)),
                            "lag": int(produced[0] - (taken - base)),
                            "p99_ms": round(float(np.percentile(lat[-5000:], 99)), 2) if lat else None,
                            "rss_mb": {k: round(rss_mb(p), 1) for k, p in procs.items() if p}})
            last_t, last_done = now, taken
            print(json.dumps(samples[-1]), flush=True)
        await sender
        drained = False
        drain_end = time.monotonic() + args.drain
        while time.monotonic() < drain_end:  # wait for the worker to take everything in
            m = scrape(wport)
            taken = sum(m.get(k, 0.0) for k in ("streamsig_events_processed_total", "streamsig_duplicate_events_total",
                                                  "streamsig_resync_dropped_events_total"))
            if taken - base + m.get("streamsig_dead_letters_total", 0.0) >= produced[0]:
                drained = True
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)
        stop.set()
        await reader
        m = scrape(wport)
        rss_end = {k: round(rss_mb(p), 1) for k, p in procs.items() if p}
        processed = int(m.get("streamsig_events_processed_total", 0)) - warm_taken
        dups = int(m.get("streamsig_duplicate_events_total", 0) + m.get("streamsig_resync_dropped_events_total", 0)
                   - (base - warm_taken))
        dead = int(m.get("streamsig_dead_letters_total", 0))
        alive = {"worker": worker.poll() is None, "trader": trader.poll() is None, "broker": broker.running}
        return {"bench": "soak", "minutes": args.minutes, "rate": args.rate, "symbols": args.symbols,
                "frame_ms": args.frame_ms,
                "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat else None,
                "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat else None,
                "max_lag": max((s["lag"] for s in samples), default=0),
                "throughput_per_s": [s["updates_per_s"] for s in samples],
                "rss_start_mb": rss_start, "rss_end_mb": rss_end,
                "produced": produced[0], "processed": processed, "skipped_snapshot_events": dups,
                "dead_lettered": dead, "drained": drained,
                # only meaningful once drained; before that it is the lag left at the end
                "lost": produced[0] - processed - dups - dead,
                "signal_messages": len(lat), "alive": alive, "trader_fills": int(scrape(tport).get(
                    "streamsig_fills_total", 0))}
    finally:
        for p in (worker, trader):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
        broker.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="how long to offer updates")
    ap.add_argument("--rate", type=float, default=5000.0, help="offered book updates per second, all symbols")
    ap.add_argument("--symbols", type=int, default=4)
    ap.add_argument("--frame-ms", type=float, default=20.0, help="most time an update waits for its frame")
    ap.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--drain", type=float, default=120.0, help="most seconds to wait for the worker to catch up")
    ap.add_argument("--quick", action="store_true", help="20 s at 1000 updates/s (under 60 s in all)")
    args = ap.parse_args()
    if args.quick:
        args.minutes, args.rate, args.every, args.drain = 1 / 3, 1000.0, 5.0, 10.0
    print(json.dumps(asyncio.run(main_async(args))))


if __name__ == "__main__":
    main()
