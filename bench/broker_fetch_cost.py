"""How the embedded broker's CPU grows with what it stores, with and without a consumer fetching.

A fresh embedded broker gets ``--rate`` messages/s of 100 bytes (with a send timestamp) for a number of
windows. In the ``fetching`` phase one consumer reads them with ``--fetch-wait-ms``; in the ``produce_only``
phase (another fresh broker) nobody reads. Each window reports the broker's CPU (percent of one core) and,
when fetching, the produce -> consume latency. If the broker's cost per fetch grows with what it holds,
the fetching phase's CPU and latency climb window after window while the produce-only phase stays flat.

Then ``preloaded`` finds what the cost grows with. Each case is a fresh broker given ``--preload``
stored batches before a consumer at the end of the ``cost`` topic times a live stream at ``--rate``
for one window: none; single-message batches in another topic; single-message batches in the
consumed topic; the same messages in the consumed topic in batches of 100.

    python bench/broker_fetch_cost.py            # 6 windows of 5 s per phase at 1,000 messages/s
    python bench/broker_fetch_cost.py --quick    # 3 windows of 2.5 s per phase

The last line is one JSON object: ``fetching`` and ``produce_only`` (per window: ``stored``,
``broker_cpu_pct``, ``p50_ms``, ``p99_ms``), ``cpu_growth_pct`` (last minus first fetching window),
``preloaded`` (per case: ``where``, ``batches``, ``per_batch``, ``broker_cpu_pct``, ``p50_ms``,
``p99_ms``) and the settings.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import numpy as np
from _proc import ROOT, cpu_s

sys.path.insert(0, str(ROOT))


async def _read_stamps(cons, lat: list[int]) -> None:  # noqa: ANN001 - an aiokafka consumer
    """Forever: the produce -> consume time (ns) of every stamped message ``cons`` gets, into ``lat``."""
    while True:
        for msgs in (await cons.getmany(timeout_ms=500)).values():
            now = time.time_ns()
            lat.extend(now - int(m.value[:19]) for m in msgs if m.value[:1].isdigit())


async def _paced(prod, rate: int, window_s: float, broker_pid: int, sent: int, keyed: bool) -> tuple[int, float]:  # noqa: ANN001
    """Send stamped 100-byte messages to "cost" at ``rate``/s for ``window_s``; (messages sent in all, broker CPU %)."""
    c0, t0 = cpu_s(broker_pid), time.monotonic()
    while time.monotonic() - t0 < window_s:
        for _ in range(max(1, rate // 100)):
            body = str(time.time_ns()).encode() + b"x" * 81
            await prod.send("cost", body, key=str(sent % 5).encode() if keyed else None)
            sent += 1
        await asyncio.sleep(0.01)
    return sent, round(100 * (cpu_s(broker_pid) - c0) / (time.monotonic() - t0), 1)


def _quantiles(lat: list[int]) -> dict:
    ms = np.asarray(lat, dtype=np.float64) / 1e6
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None}


async def phase(rate: int, windows: int, window_s: float, fetch_wait_ms: int, fetching: bool) -> list[dict]:
    """One fresh broker, ``windows`` windows of paced production; the figures of each window."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from streamsig.live.broker import EmbeddedBroker
    from streamsig.wire.topics import ensure_topics

    broker = EmbeddedBroker().start()
    assert broker.pid is not None
    out: list[dict] = []
    lat: list[int] = []
    try:
        await ensure_topics(broker.bootstrap, ["cost"], 4)
        prod = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
        await prod.start()
        cons = None
        reader = None
        if fetching:
            cons = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None,
                                    fetch_max_wait_ms=fetch_wait_ms)
            await cons.start()
            cons.assign([TopicPartition("cost", p) for p in range(4)])
            reader = asyncio.create_task(_read_stamps(cons, lat))
        sent = 0
        for _ in range(windows):
            lat.clear()
            sent, cpu = await _paced(prod, rate, window_s, broker.pid, sent, keyed=True)
            out.append({"stored": sent, "broker_cpu_pct": cpu, **_quantiles(lat)})
            print(("fetching     " if fetching else "produce only ") + json.dumps(out[-1]), flush=True)
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        await prod.stop()
        if cons is not None:
            await cons.stop()
    finally:
        broker.stop()
    return out


async def preloaded(where: str, batches: int, per_batch: int, rate: int, window_s: float,
                    fetch_wait_ms: int) -> dict:
    """One fresh broker holding ``batches`` batches of ``per_batch`` 100-byte messages in topic ``where``
    ("cost", the one consumed, or "other"); the produce -> consume latency of a live stream into "cost"."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from streamsig.live.broker import EmbeddedBroker
    from streamsig.wire.topics import ensure_topics

    broker = EmbeddedBroker().start()
    assert broker.pid is not None
    lat: list[int] = []
    try:
        await ensure_topics(broker.bootstrap, ["cost", "other"], 4)
        prod = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
        await prod.start()
        for i in range(batches):
            b = prod.create_batch()
            for _ in range(per_batch):
                b.append(key=None, value=b"-" * 100, timestamp=None)
            b.close()
            await (await prod.send_batch(b, where, partition=i % 4))
        cons = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, fetch_max_wait_ms=fetch_wait_ms)
        await cons.start()
        tps = [TopicPartition("cost", p) for p in range(4)]
        cons.assign(tps)
        await cons.seek_to_end(*tps)
        reader = asyncio.create_task(_read_stamps(cons, lat))  # the preloaded messages carry no stamp
        await asyncio.sleep(1.0)
        lat.clear()
        _, cpu = await _paced(prod, rate, window_s, broker.pid, 0, keyed=False)
        await asyncio.sleep(0.5)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await prod.stop()
        await cons.stop()
    finally:
        broker.stop()
    out = {"where": where, "batches": batches, "per_batch": per_batch, "broker_cpu_pct": cpu, **_quantiles(lat)}
    print("preloaded    " + json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 windows of 2.5 s per phase (under a minute)")
    ap.add_argument("--rate", type=int, default=1_000, help="messages per second")
    ap.add_argument("--fetch-wait-ms", type=int, default=10, help="the consumer's fetch_max_wait_ms")
    ap.add_argument("--preload", type=int, default=20_000, help="batches stored before each preloaded case")
    a = ap.parse_args()
    windows, window_s = (3, 2.5) if a.quick else (6, 5.0)
    fetching = asyncio.run(phase(a.rate, windows, window_s, a.fetch_wait_ms, True))
    produce_only = asyncio.run(phase(a.rate, windows, window_s, a.fetch_wait_ms, False))
    n = a.preload
    cases = [("cost", 0, 1), ("other", n, 1), ("cost", n, 1), ("cost", n // 100, 100)]
    pre = [asyncio.run(preloaded(w, b, k, a.rate, window_s, a.fetch_wait_ms)) for w, b, k in cases]
    print(json.dumps({"preloaded": pre, "rate": a.rate, "fetch_wait_ms": a.fetch_wait_ms, "window_s": window_s,
                      "fetching": fetching, "produce_only": produce_only,
                      "cpu_growth_pct": round(fetching[-1]["broker_cpu_pct"] - fetching[0]["broker_cpu_pct"], 1)}))


if __name__ == "__main__":
    main()
