"""End-to-end stream benchmark on the embedded broker: one worker, real Kafka round trips.

- throughput: book updates/s through one worker (decode, book, features, model,
  publish) with events produced as fast as possible, for the default frames and
  for frames of one event;
- latency: producer timestamp of a book frame -> its signals received by a
  websocket client, at an offered rate that is measured (events produced /
  producer wall time); the benchmark fails if the websocket server cannot run.
  Per-stage figures and the broker's own floor: ``bench/latency.py``.

    python bench/stream.py [--quick] [--kafka HOST:PORT]

Prints one JSON object on its last line.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time

import numpy as np

from streamsig.book.sources import open_feeds
from streamsig.features import FeatureSpec
from streamsig.live.broker import resolve_kafka
from streamsig.cli.live import default_model, load_strategy, stream_config
from streamsig.live.config import running
from streamsig.live.producer import produce
from streamsig.wire.signals import decode_signals
from streamsig.wire.topics import ensure_topics
from streamsig.trading import PolicyConfig
from streamsig.live.worker import build_worker


async def _signals_consumer(bootstrap: str, topic: str):
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="latest",
                         enable_auto_commit=False, fetch_max_wait_ms=5)
    await c.start()
    await c.getmany(timeout_ms=500)
    return c


async def run_case(bootstrap: str, n_updates: int, n_symbols: int, frame_size: int, frame_delay_ms: float,
                   speed: float | None, use_ws: bool) -> dict:
    cfg = stream_config(bootstrap, f"bench{secrets.token_hex(3)}", 4, app_id=f"bench-{secrets.token_hex(3)}",
                        session_timeout_s=3.0, heartbeat_s=0.5, fetch_max_wait_ms=5)
    await ensure_topics(bootstrap, cfg.topics.all(), cfg.partitions)
    strat, model_id, spec = load_strategy(default_model(), "ofi", PolicyConfig(enter=0.2))
    spec = spec or FeatureSpec(levels=10)
    syms = [f"S{i}" for i in range(n_symbols)]
    feeds = open_feeds("synthetic", symbols=syms, n_updates=n_updates, seed=1)
    ends = {f.symbol: int(f.read_all()["seq"][-1]) for f in feeds}
    worker = build_worker(cfg, spec, strat, model_id, None, checkpoint_s=5.0)
    lat: list[float] = []
    first_pts: list[int] = []
    last_wts: list[int] = []
    done = asyncio.Event()
    seen: dict[str, int] = {}

    def on_frame(f, recv_ns: int) -> None:
        lat.append((recv_ns - f.producer_ts_ns) / 1e6)
        first_pts.append(f.producer_ts_ns)
        last_wts.append(f.worker_ts_ns)
        seen[f.symbol] = max(seen.get(f.symbol, -1), f.last_seq)
        if all(seen.get(s, -1) >= e for s, e in ends.items()):
            done.set()

    async with running(worker, ready_timeout_s=60):
        if use_ws:
            ws_task = await _ws_listener(bootstrap, cfg, on_frame)
        else:
            cons = await _signals_consumer(bootstrap, cfg.topics.signals)

            async def pump() -> None:
                while not done.is_set():
                    batch = await cons.getmany(timeout_ms=50)
                    now = time.time_ns()
                    for msgs in batch.values():
                        for m in msgs:
                            on_frame(decode_signals(m.value), now)

            ws_task = asyncio.create_task(pump())
        t0 = time.time_ns()
        stats = await produce(feeds, bootstrap, cfg.topics.book_events, speed, frame_size, frame_delay_ms,
                              snapshot_every=0)
        t_produced = time.time_ns()
        waiter = asyncio.ensure_future(done.wait())
        try:
            await asyncio.wait({waiter, ws_task}, timeout=120, return_when=asyncio.FIRST_COMPLETED)
            if not done.is_set():
                if ws_task.done() and ws_task.exception() is not None:
                    raise RuntimeError(f"the signal reader stopped: {ws_task.exception()!r}")
                raise TimeoutError("not every symbol's last signal arrived within 120 s")
        finally:
            waiter.cancel()
            ws_task.cancel()
    span = (max(last_wts) - t0) / 1e9 if last_wts else float("nan")
    lat_a = np.array(lat)
    return {"events": stats.events, "frames": stats.frames, "updates_per_s": stats.events / span,
            "offered_per_s": stats.events / max(1e-9, (t_produced - t0) / 1e9),
            "p50_ms": float(np.percentile(lat_a, 50)), "p99_ms": float(np.percentile(lat_a, 99))}


async def _ws_listener(bootstrap: str, cfg, on_frame):  # noqa: ANN001, ANN202
    """Websocket client receiving every signal record (raises if the server cannot run)."""
    import websockets

    from streamsig.serve.ws import SignalServer
    port = 18000 + secrets.randbelow(2000)
    server = SignalServer(bootstrap, cfg.topics, "127.0.0.1", port, ["bench"],
                          fetch_max_wait_ms=cfg.fetch_max_wait_ms)
    await server.__aenter__()
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/?token=bench", max_size=None)
    # changes and each frame's last record (the default): a client taking every record in Python is
    # evicted as a slow consumer (close code 4408) at these rates
    await ws.send(json.dumps({"op": "subscribe", "symbols": "*"}))

    class _F:  # the fields on_frame needs, from one websocket message
        pass

    async def pump() -> None:
        try:
            async for raw in ws:
                now = time.time_ns()
                msg = json.loads(raw)
                if msg.get("type") != "signal":
                    continue
                f = _F()
                f.producer_ts_ns, f.worker_ts_ns = msg["producer_ts_ns"], msg["worker_ts_ns"]
                f.symbol, f.last_seq = msg["symbol"], msg["seq"]
                on_frame(f, now)
        finally:
            await ws.close()
            await server.__aexit__(None, None, None)

    return asyncio.create_task(pump())


async def main_async(args: argparse.Namespace) -> dict:
    bootstrap, brk = resolve_kafka(args.kafka)
    try:
        q = args.quick
        n_max = 20_000 if q else 200_000
        big = await run_case(bootstrap, n_max // 4, 4, 500, 5.0, None, False)
        one = await run_case(bootstrap, 1_000 if q else 5_000, 2, 1, 0.0, None, False)
        # offered rate: 5 symbols at 1,000 updates/s each (real-time pacing), default 5 ms frame bound
        paced = await run_case(bootstrap, 3_000 if q else 10_000, 5, 500, 5.0, 1.0, True)
        paced20 = await run_case(bootstrap, 3_000 if q else 10_000, 5, 500, 20.0, 1.0, True)
    finally:
        if brk is not None:
            brk.stop()
    return {"updates_per_s": round(big["updates_per_s"]), "updates_per_s_frame1": round(one["updates_per_s"]),
            "p50_ms": round(paced["p50_ms"], 3), "p99_ms": round(paced["p99_ms"], 3),
            "offered_rate": round(paced["offered_per_s"]), "offered_rate_requested": 5000,
            "frame_size": 500, "frame_delay_ms": 5.0,
            "max_rate_p50_ms": round(big["p50_ms"], 3), "max_rate_p99_ms": round(big["p99_ms"], 3),
            "p50_ms_frame_delay_20ms": round(paced20["p50_ms"], 3),
            "p99_ms_frame_delay_20ms": round(paced20["p99_ms"], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller runs, under 60 s")
    ap.add_argument("--kafka", default=None, help="external broker (default: embedded Tansu)")
    print(json.dumps(asyncio.run(main_async(ap.parse_args()))))


if __name__ == "__main__":
    main()
