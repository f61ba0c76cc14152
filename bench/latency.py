"""Latency budget per stage, with the broker's own floor measured in the same run.

One process tree, one run, on one broker (embedded Tansu unless ``--kafka``):

- floor: a bare aiokafka relay process with the same hops as streamsig
  (producer -> topic -> relay consumer -> relay producer -> topic -> consumer),
  the same book frames, the same producer, fetch wait and producer linger;
- faust (``--faust``): the same relay as a Faust agent that only forwards,
  which separates Faust's own cost from streamsig's;
- streamsig: ``streamsig worker`` and ``streamsig serve`` as their own
  processes, a websocket client here, at offered rates of 1k, 5k, 20k and 100k
  updates/s and frame bounds of 1 ms and 5 ms.

Every book frame is stamped by the producer; the worker stamps when it took
the frame and when it published the signals, the server when it fetched them
and when it wrote them to this client; the client's receipt closes the chain.
Per stage and end to end the run reports p50/p99 (p99.9 end to end), the
offered rate as measured (events produced / producer wall time), and whether
the run kept up (how long after the producer's last event its signals
arrived). End to end is per book update: each frame of the case, read back
from its topic, to the first message received that answers it, as the
floor's listener sees each forwarded frame; ``per_message_ms`` is per message
received, from the oldest frame it answers. ``steal_pct`` is the share of the
machine's CPU time its hypervisor took while the case was produced. The
websocket server must run, or the benchmark fails.

Each case's symbols are named so that symbol i lands on partition i % 4: the
floor and streamsig spread their frames over the partitions alike (the number
of batches stored per produce request follows the partitions written).
``--probe`` runs a plain consumer of each case's first topic beside the case's
own (``probe_ms`` per case, ``first_hop_excess_p50_ms``): what the broker's
first hop costs on that topic at that moment, whoever reads it.

    python bench/latency.py [--quick] [--kafka HOST:PORT] [--fetch-wait-ms N] [--seconds S] [--faust] [--probe] [--trader]

``--quick``: the floor and streamsig at 5k updates/s with 1 ms frames only (< 60 s).
The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import secrets
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from _proc import ROOT, child_env, cpu_s, cpu_times, steal_pct
SYMBOLS_PER_CASE = 5  # the synthetic feed runs at ~1,000 updates/s per symbol in real time
RATES = (1_000, 5_000, 20_000, 100_000)
FRAME_BOUNDS_MS = (1.0, 5.0)
STAGES = ("produce_to_worker", "worker", "worker_to_server", "server", "client")
_PTS = struct.Struct("<q")  # the producer stamp at offset 40 of a book frame
#: stages read from the worker's and server's histograms (interpolated in their buckets); the
#: first is seen by no stamp in a signal: producer stamp -> the worker's fetch came back
METRIC_STAGES = {"produce_to_fetch": "worker", "produce_to_worker": "worker", "worker": "worker",
                 "publish": "worker", "worker_to_server": "server", "server": "server", "end_to_end": "server"}
PARTITIONS = 4
KEPT_UP_S = 0.5
DRAIN_S = 20.0  # how long a case waits for its last signals before it counts as not kept up  # the last event's signals arrive within this of the producer's end


def _pct(x: np.ndarray, q: float) -> float:
    return round(float(np.percentile(x, q)), 3) if len(x) else float("nan")


# ---- child roles -----------------------------------------------------------------------------
async def role_produce(a: argparse.Namespace) -> None:
    """Replay synthetic feeds onto a topic at a pace; print the producer's own figures as JSON."""
    from streamsig.book.sources import open_feeds
    from streamsig.live.producer import produce

    syms = a.symbols.split(",")
    n_updates = max(200, int(a.seconds * a.rate / len(syms)))
    feeds = open_feeds("synthetic", symbols=syms, n_updates=n_updates, seed=7)
    speed = a.rate / (1_000 * len(syms))
    t0 = time.time_ns()
    stats = await produce(feeds, a.bootstrap, a.topic, speed, 500, a.frame_ms, snapshot_every=0)
    t1 = time.time_ns()
    print(json.dumps({"events": stats.events, "frames": stats.frames, "start_ns": t0, "end_ns": t1,
                      "last_seq": stats.last_seq}), flush=True)


async def tail_consumer(bootstrap: str, topic: str, fetch_wait_ms: int, **kwargs: Any) -> Any:
    """A started plain consumer (no group) of every partition of ``topic``, at its end."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    cons = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                            fetch_max_wait_ms=fetch_wait_ms, **kwargs)
    await cons.start()
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    cons.assign(tps)
    await cons.seek_to_end(*tps)
    for tp in tps:
        await cons.position(tp)
    return cons


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's end offset now (with the embedded broker one batch early, which costs nothing:
    what is read back from there is sorted by symbol)."""
    cons = await tail_consumer(bootstrap, topic, 100)
    try:
        return {tp.partition: await cons.position(tp) for tp in cons.assignment()}
    finally:
        await cons.stop()


async def read_frames(bootstrap: str, topic: str, start: dict[int, int], last_seq: dict[str, int],
                      timeout_s: float = 30.0) -> dict[str, np.ndarray]:
    """Per symbol of ``last_seq``: (last sequence, producer stamp) of each of its book frames on ``topic``
    from the offsets ``start``, read back until each symbol's last frame (``last_seq``) was seen."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from streamsig.wire.frames import decode_frame

    cons = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                            fetch_max_wait_ms=100, max_partition_fetch_bytes=1 << 20)
    await cons.start()
    out: dict[str, list[tuple[int, int]]] = {s: [] for s in last_seq}
    seen = {s: -1 for s in last_seq}
    try:
        tps = [TopicPartition(topic, p) for p in start]
        cons.assign(tps)
        for tp in tps:
            cons.seek(tp, start[tp.partition])
        deadline = time.monotonic() + timeout_s
        while any(seen[s] < e for s, e in last_seq.items()) and time.monotonic() < deadline:
            for msgs in (await cons.getmany(timeout_ms=500)).values():
                for m in msgs:
                    f = decode_frame(m.value)
                    if f.symbol in out and f.count:
                        q = int(f.events["seq"][-1])
                        out[f.symbol].append((q, f.producer_ts_ns))
                        seen[f.symbol] = max(seen[f.symbol], q)
    finally:
        await cons.stop()
    return {s: np.array(v, dtype=np.int64).reshape(-1, 2) for s, v in out.items()}


def per_update_ms(frames: dict[str, np.ndarray], answers: list[tuple], since_ns: int) -> tuple[np.ndarray, int]:
    """Each book frame (stamped at or after ``since_ns``) to the first message received that answers it
    (same symbol, sequence at or above the frame's last): the latency of every update, as the floor's
    listener sees it per forwarded frame. Also the number of frames no message answered."""
    by: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
    for sym, seq, rx in answers:
        by[sym].append((rx, seq))
    lat, missing = [], 0
    for sym, fr in frames.items():
        fr = fr[fr[:, 1] >= since_ns]
        got = np.array(sorted(by.get(sym, [])), dtype=np.int64).reshape(-1, 2)
        if not len(fr):
            continue
        reach = np.maximum.accumulate(got[:, 1]) if len(got) else got[:, 1]  # highest seq answered by then
        i = np.searchsorted(reach, fr[:, 0], side="left")
        ok = i < len(got)
        missing += int(np.count_nonzero(~ok))
        lat.append((got[i[ok], 0] - fr[ok, 1]) / 1e6)
    return (np.concatenate(lat) if lat else np.zeros(0)), missing


async def role_relay(a: argparse.Namespace) -> None:
    """Bare aiokafka relay: forward every message of ``src`` unchanged to ``dst``."""
    from aiokafka import AIOKafkaProducer

    cons = await tail_consumer(a.bootstrap, a.src, a.fetch_wait_ms, auto_offset_reset="latest")
    prod = AIOKafkaProducer(bootstrap_servers=a.bootstrap, linger_ms=0, acks=-1, enable_idempotence=False)
    await prod.start()
    print("ready", flush=True)
    try:
        while True:
            for msgs in (await cons.getmany(timeout_ms=500)).values():
                for m in msgs:
                    await prod.send(a.dst, m.value, key=m.key)
    finally:
        await cons.stop()
        await prod.stop()


async def role_probe(a: argparse.Namespace) -> None:
    """A plain consumer of ``src`` beside the case's own: (producer stamp, fetch returned) of each frame
    into the file ``dst`` as int64 pairs, on SIGTERM (or ``seconds`` after it started, should its
    parent have failed before stopping it)."""
    from streamsig.wire.frames import decode_frame

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    cons = await tail_consumer(a.bootstrap, a.src, a.fetch_wait_ms)
    print("ready", flush=True)
    pairs: list[tuple[int, int]] = []
    deadline = time.monotonic() + a.seconds
    while not stop.is_set() and time.monotonic() < deadline:
        batch = await cons.getmany(timeout_ms=100)
        now = time.time_ns()
        pairs.extend((decode_frame(m.value).producer_ts_ns, now) for msgs in batch.values() for m in msgs)
    await cons.stop()
    np.asarray(pairs, dtype=np.int64).reshape(-1, 2).tofile(a.dst)


def role_faust_relay(a: argparse.Namespace, settle: Any, settle_later: Any) -> None:
    """A Faust agent that only forwards (the worker's app settings and direct feed, no decoding, no engine)."""
    from streamsig.live.batches import direct_feed
    from streamsig.live.config import StreamConfig, make_app, raw_topic, run_worker

    cfg = StreamConfig(bootstrap=a.bootstrap, app_id=f"faust-relay-{secrets.token_hex(3)}",
                       session_timeout_s=3.0, heartbeat_s=0.5, fetch_max_wait_ms=a.fetch_wait_ms)
    app = make_app(cfg, broker_commit_interval=1.0)  # fresh topics: from the start, so the warm-up counts
    src, dst = raw_topic(app, a.src), raw_topic(app, a.dst)
    feed = direct_feed(app, a.src)

    @app.agent(src)
    async def forward(stream):  # type: ignore[no-untyped-def]
        print("ready", flush=True)  # the agent runs; the warm-up case waits for the group join
        async for messages in feed.batches(app, 1024):
            for m in messages:
                await dst.send(value=m.value)

    app.task(settle_later)
    settle()
    run_worker(app, loglevel="warning")


# ---- the measuring side ----------------------------------------------------------------------
@dataclass
class Case:
    kind: str  # floor | faust | streamsig
    rate: int
    frame_ms: float
    symbols: list[str]
    rows: list[tuple] = field(default_factory=list)  # per message: stamps (ns) and receipt
    answers: list[tuple] = field(default_factory=list)  # per message: (symbol, last seq, receipt ns)
    seen: dict[str, int] = field(default_factory=dict)
    done_at: int = 0


def case_symbols(n: int) -> list[str]:
    """Case ``n``'s symbol names, chosen so that symbol ``i`` lands on partition ``i % PARTITIONS``.

    Every case then spreads its frames over the partitions alike. With names taken as they come, the
    key hash put five symbols on three partitions in one case and on four in the next: one batch per
    partition and produce request, so a quarter fewer stored batches, and a fetch of the embedded
    broker costs with the batches stored in what it reads (``bench/broker_fetch_cost.py``).
    """
    from aiokafka.partitioner import DefaultPartitioner

    part, every = DefaultPartitioner(), list(range(PARTITIONS))
    out = []
    for i in range(SYMBOLS_PER_CASE):
        name = next(f"C{n}S{i}-{k:03d}" for k in range(1000)
                    if part(f"C{n}S{i}-{k:03d}".encode(), every, every) == i % PARTITIONS)
        out.append(name)
    return out


class Collector:
    """Routes received messages to the running case by symbol."""

    def __init__(self) -> None:
        self.by_symbol: dict[str, Case] = {}
        self.event = asyncio.Event()

    def add(self, case: Case) -> None:
        for s in case.symbols:
            self.by_symbol[s] = case

    def on(self, symbol: str, seq: int, row: tuple) -> None:
        case = self.by_symbol.get(symbol)
        if case is None:
            return
        case.rows.append(row)
        case.answers.append((symbol, seq, row[5]))
        if seq > case.seen.get(symbol, -1):
            case.seen[symbol] = seq
            self.event.set()


async def kafka_listener(bootstrap: str, topic: str, fetch_wait_ms: int, col: Collector) -> asyncio.Task:
    """The floor's last hop: a plain consumer of the relay's output (as the websocket server reads)."""
    from streamsig.wire.frames import decode_frame

    cons = await tail_consumer(bootstrap, topic, fetch_wait_ms)

    async def pump() -> None:
        try:
            while True:
                batch = await cons.getmany(timeout_ms=500)
                now = time.time_ns()
                for msgs in batch.values():
                    for m in msgs:
                        f = decode_frame(m.value)
                        if f.count:
                            col.on(f.symbol, int(f.events["seq"][-1]), (f.producer_ts_ns, 0, 0, 0, 0, now))
        finally:
            await cons.stop()

    return asyncio.create_task(pump())


async def ws_listener(port: int, token: str, col: Collector) -> asyncio.Task:
    """A websocket client subscribed to every symbol (default: target changes + each frame's last record)."""
    from websockets.asyncio.client import connect

    ws = await connect(f"ws://127.0.0.1:{port}/?token={token}", max_size=None, compression=None)
    json.loads(await ws.recv())  # hello
    await ws.send(json.dumps({"op": "subscribe", "symbols": "*"}))
    json.loads(await ws.recv())

    async def pump() -> None:
        loads = json.loads
        try:
            async for raw in ws:
                now = time.time_ns()
                m = loads(raw)
                if m.get("type") != "signal":
                    continue
                col.on(m["symbol"], m["seq"], (m["producer_ts_ns"], m.get("worker_received_ns", 0), m["worker_ts_ns"],
                                               m.get("server_ts_ns", 0), m.get("sent_ts_ns", 0), now))
        finally:
            await ws.close()

    return asyncio.create_task(pump())


async def run_case(case: Case, bootstrap: str, topic: str, seconds: float, col: Collector,
                   cpu: dict[str, int] | None = None, probe_wait_ms: int = 0) -> dict:
    """Produce one case from its own process, wait for its last signals, return its figures.

    ``cpu`` names processes (the broker, the relay or worker and server) whose CPU use while the case
    is produced is reported, in percent of one core. With ``probe_wait_ms``, a plain consumer with
    that fetch wait reads ``topic`` beside the case's own; its produce -> fetch is ``probe_ms``."""
    col.add(case)
    probe = None
    if probe_wait_ms:
        fd, probe_file = tempfile.mkstemp(prefix="streamsig-probe-")
        os.close(fd)
        probe = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--role", "probe", "--bootstrap", bootstrap, "--src", topic, "--dst", probe_file,
            "--fetch-wait-ms", str(probe_wait_ms), "--seconds", str(seconds + DRAIN_S + 60),
            stdout=subprocess.PIPE, env=child_env(), cwd=ROOT)
        assert probe.stdout is not None
        if (await asyncio.wait_for(probe.stdout.readline(), 60.0)).strip() != b"ready":
            raise RuntimeError("the probe consumer did not start")
    start = await end_offsets(bootstrap, topic)
    cpu = {k: p for k, p in (cpu or {}).items() if p}
    c0, t0, m0 = {k: cpu_s(p) for k, p in cpu.items()}, time.monotonic(), cpu_times()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--role", "produce", "--bootstrap", bootstrap, "--topic", topic,
        "--symbols", ",".join(case.symbols), "--rate", str(case.rate), "--frame-ms", str(case.frame_ms),
        "--seconds", str(seconds), stdout=subprocess.PIPE, env=child_env(), cwd=ROOT)
    out, _ = await proc.communicate()
    busy = {k: round(100 * (cpu_s(p) - c0[k]) / max(time.monotonic() - t0, 1e-9), 1) for k, p in cpu.items()}
    steal = steal_pct(m0, cpu_times())
    if proc.returncode:
        raise RuntimeError(f"producer failed ({proc.returncode})")
    st = json.loads(out.decode().strip().splitlines()[-1])
    ends = {s: int(q) for s, q in st["last_seq"].items()}
    deadline = time.monotonic() + DRAIN_S
    while not all(case.seen.get(s, -1) >= e for s, e in ends.items()) and time.monotonic() < deadline:
        col.event.clear()
        try:
            await asyncio.wait_for(col.event.wait(), 1.0)
        except asyncio.TimeoutError:
            pass
    drained = all(case.seen.get(s, -1) >= e for s, e in ends.items())
    probed = None
    if probe is not None:
        probe.terminate()
        await probe.wait()
        probed = np.fromfile(probe_file, dtype=np.int64).reshape(-1, 2)
        os.unlink(probe_file)
    frames = await read_frames(bootstrap, topic, start, ends)
    last_rx = max((r[5] for r in case.rows), default=st["end_ns"])
    lag_s = (last_rx - st["end_ns"]) / 1e9 if drained else float("inf")
    wall = (st["end_ns"] - st["start_ns"]) / 1e9
    rows = np.array(case.rows, dtype=np.int64).reshape(-1, 6)
    warm = st["start_ns"] + int(0.1 * wall * 1e9)  # skip the first 10% (joins, first compiles)
    rows = rows[rows[:, 0] >= warm]
    e2e = (rows[:, 5] - rows[:, 0]) / 1e6  # per message received, from the oldest frame it answers
    upd, unanswered = per_update_ms(frames, case.answers, warm)
    res = {"kind": case.kind, "rate": case.rate, "frame_ms": case.frame_ms,
           "offered_per_s": round(st["events"] / wall), "events": st["events"], "messages": int(len(rows)),
           "frames": int(len(upd)) + unanswered, "unanswered": unanswered,
           "p50_ms": _pct(upd, 50), "p99_ms": _pct(upd, 99), "p999_ms": _pct(upd, 99.9),
           "per_message_ms": {"p50_ms": _pct(e2e, 50), "p99_ms": _pct(e2e, 99), "p999_ms": _pct(e2e, 99.9)},
           "lag_s": round(lag_s, 3), "kept_up": bool(drained and lag_s <= KEPT_UP_S and not unanswered),
           "cpu_pct": busy, "steal_pct": steal}
    if probed is not None:
        kept = probed[probed[:, 0] >= warm]
        hop = (kept[:, 1] - kept[:, 0]) / 1e6
        res["probe_ms"] = {"p50_ms": _pct(hop, 50), "p99_ms": _pct(hop, 99)}
    if case.kind == "streamsig" and len(rows) and rows[:, 1:5].min() > 0:  # every stamp present
        stamps = [rows[:, i] for i in range(6)]
        res["stages"] = {name: {"p50_ms": _pct((stamps[i + 1] - stamps[i]) / 1e6, 50),
                                "p99_ms": _pct((stamps[i + 1] - stamps[i]) / 1e6, 99)}
                         for i, name in enumerate(STAGES)}
    return res


class Children:
    """Child processes of this run, stopped (SIGTERM, then SIGKILL) in reverse order."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.tails: dict[int, collections.deque] = {}

    def start(self, args: list[str], env: dict[str, str], ready: str | None = None,
              timeout_s: float = 90.0) -> subprocess.Popen:
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT, text=True)
        self.procs.append(p)
        seen: list[str] = []
        if ready is not None:
            t0 = time.monotonic()
            while time.monotonic() - t0 < timeout_s:
                line = p.stdout.readline()
                if not line:
                    break
                seen.append(line)
                if ready in line:
                    break
            else:
                line = ""
            if ready not in line:
                raise RuntimeError(f"{args[2:4]} did not start:\n" + "".join(seen[-20:]))
        self.tails[p.pid] = tail = collections.deque(seen, maxlen=40)
        threading.Thread(target=lambda: [tail.append(x) for x in p.stdout], daemon=True).start()
        return p

    def check(self) -> None:
        """Raise with its last output if a child has exited."""
        for p in self.procs:
            if p.poll() is not None and p.returncode not in (0, -15):
                raise RuntimeError(f"{p.args[2:4]} exited ({p.returncode}):\n" + "".join(self.tails[p.pid]))

    def stop(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)


def idle_cpu(pids: dict[str, int], seconds: float = 3.0) -> dict[str, float]:
    """Percent of one core each process uses while no data flows."""
    c0 = {k: cpu_s(p) for k, p in pids.items()}
    time.sleep(seconds)
    return {k: round(100 * (cpu_s(p) - c0[k]) / seconds, 1) for k, p in pids.items()}


def scrape(port: int) -> dict[str, float]:
    """``streamsig_stage_latency_seconds`` samples of a process's /metrics, by sample name and labels."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("streamsig_stage_latency_seconds"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def hist_quantile(before: dict[str, float], after: dict[str, float], stage: str, q: float) -> float:
    """Quantile (ms) of one stage's histogram between two scrapes, interpolated in its bucket."""
    buckets = []
    for k, v in after.items():
        if k.startswith("streamsig_stage_latency_seconds_bucket") and f'stage="{stage}"' in k:
            le = k.split('le="')[1].split('"')[0]
            buckets.append((float(le), v - before.get(k, 0.0)))
    buckets.sort()
    if not buckets or buckets[-1][1] <= 0:
        return float("nan")
    rank, lo, below = q * buckets[-1][1], 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if le == float("inf"):
                return lo * 1e3
            return round((lo + (le - lo) * (rank - below) / max(n - below, 1e-9)) * 1e3, 3)
        lo, below = le, n
    return float("nan")


async def main_async(a: argparse.Namespace) -> dict:
    from streamsig.live.broker import free_port, resolve_kafka
    from streamsig.live.config import StreamConfig
    from streamsig.wire.topics import Topics, ensure_topics

    fetch = a.fetch_wait_ms or StreamConfig().fetch_max_wait_ms
    bootstrap, brk = resolve_kafka(a.kafka)
    broker_pid = brk.pid if brk is not None else None  # an external broker's CPU is not seen
    kids = Children()
    tag = secrets.token_hex(3)
    results: list[dict] = []
    extra: dict = {"fetch_wait_ms": fetch, "load_avg_start": os.getloadavg()}
    plan = [(5_000, 1.0)] if a.quick else [(r, f) for r in RATES for f in FRAME_BOUNDS_MS]
    if a.cases:  # "RATE:FRAME_MS,..." instead of the plan (the 5k/1 ms floor is always run)
        plan = [(int(r), float(f)) for r, f in (c.split(":") for c in a.cases.split(","))]
    # the floor runs at the same rates and frame bounds, so each case has its like-for-like floor
    floor_plan = sorted({(5_000, 1.0), *plan})
    secs = a.seconds or (8.0 if a.quick else 10.0)
    probe_wait = fetch if a.probe else 0
    n = 0

    def case(kind: str, rate: int, frame_ms: float) -> Case:
        nonlocal n
        n += 1
        return Case(kind, rate, frame_ms, case_symbols(n))

    def renew(old: Any) -> tuple[str, Any, int | None]:
        """A fresh embedded broker for the next kind (the embedded one slows down with all it stores)."""
        if old is None:
            return bootstrap, None, None
        old.stop()
        boot, new = resolve_kafka(a.kafka)
        return boot, new, new.pid

    env = child_env()
    env.update({"STREAMSIG_FETCH_MAX_WAIT_MS": str(fetch), "STREAMSIG_SESSION_TIMEOUT_S": "3",
                "STREAMSIG_HEARTBEAT_S": "0.5"})
    try:
        col = Collector()
        # ---- floor: bare aiokafka relay (and the same relay as a Faust agent) ----
        fin, fout = f"lat{tag}-floor-in", f"lat{tag}-floor-out"
        await ensure_topics(bootstrap, [fin, fout], PARTITIONS)
        relay = kids.start([sys.executable, __file__, "--role", "relay", "--bootstrap", bootstrap, "--src", fin,
                            "--dst", fout, "--fetch-wait-ms", str(fetch)], env, ready="ready")
        extra["idle_cpu_pct"] = idle_cpu({"aiokafka_relay": relay.pid}, 2.0)
        task = await kafka_listener(bootstrap, fout, fetch, col)
        await run_case(case("floor", 1_000, 1.0), bootstrap, fin, 2.0, col)  # warm-up
        for rate, fm in floor_plan:
            results.append(await run_case(case("floor", rate, fm), bootstrap, fin, secs, col,
                                          {"broker": broker_pid, "relay": relay.pid}, probe_wait))
            print(_row(results[-1]), flush=True)
        kids.stop(relay)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        bootstrap, brk, broker_pid = renew(brk)
        if a.faust:
            fin, fout = f"lat{tag}-faust-in", f"lat{tag}-faust-out"
            await ensure_topics(bootstrap, [fin, fout], PARTITIONS)
            task = await kafka_listener(bootstrap, fout, fetch, col)
            frelay = kids.start([sys.executable, __file__, "--role", "faust-relay", "--bootstrap", bootstrap,
                                 "--src", fin, "--dst", fout, "--fetch-wait-ms", str(fetch)], env, ready="ready")
            await run_case(case("faust", 1_000, 1.0), bootstrap, fin, 2.0, col)
            extra["idle_cpu_pct"].update(idle_cpu({"faust_relay": frelay.pid}, 2.0))
            results.append(await run_case(case("faust", 5_000, 1.0), bootstrap, fin, secs, col))
            print(_row(results[-1]), flush=True)
            kids.stop(frelay)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            bootstrap, brk, broker_pid = renew(brk)

        # ---- streamsig: worker and websocket server as their own processes ----
        prefix = f"lat{tag}-"
        topics = Topics(prefix)
        await ensure_topics(bootstrap, topics.all(), PARTITIONS)
        wport, mport_w, mport_s = free_port(), free_port(), free_port()
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # checkpoints on tmpfs: see docs/latency.md
        state = tempfile.mkdtemp(prefix="streamsig-latency-", dir=shm)
        cli = [sys.executable, "-m", "streamsig.cli"]
        worker = kids.start(cli + ["worker", "--kafka", bootstrap, "--topic-prefix", prefix, "--partitions", str(PARTITIONS),
                                   "--state-dir", state, "--metrics-port", str(mport_w)], env, ready="metrics on")
        token = secrets.token_hex(8)
        try:
            server = kids.start(cli + ["serve", "--kafka", bootstrap, "--topic-prefix", prefix, "--port", str(wport),
                                       "--token", token, "--metrics-port", str(mport_s)], env, ready="serving")
            task = await ws_listener(wport, token, col)
        except Exception as exc:
            raise RuntimeError(f"the websocket server cannot run: {exc}") from exc
        ports, stages = {"worker": mport_w, "server": mport_s}, dict(METRIC_STAGES)
        trader = None
        if a.trader:  # the paper trader beside them: its stages from its /metrics
            ports["trader"] = free_port()
            stages.update({"worker_to_trader": "trader", "trader": "trader"})
            trader = kids.start(cli + ["trade", "--kafka", bootstrap, "--topic-prefix", prefix, "--partitions",
                                       str(PARTITIONS), "--state-dir", tempfile.mkdtemp(prefix="streamsig-latency-t-",
                                                                                        dir=shm),
                                       "--metrics-port", str(ports["trader"])], env, ready="metrics on")
        await run_case(case("streamsig", 1_000, 1.0), bootstrap, topics.book_events, 3.0, col)  # joins, compiles
        extra["idle_cpu_pct"].update(idle_cpu({"worker": worker.pid, "server": server.pid}, 3.0))
        for rate, fm in plan:
            kids.check()
            before = {who: scrape(port) for who, port in ports.items()}
            results.append(await run_case(case("streamsig", rate, fm), bootstrap, topics.book_events, secs, col,
                                          {"broker": broker_pid, "worker": worker.pid, "server": server.pid,
                                           "trader": trader.pid if trader else None}, probe_wait))
            after = {who: scrape(port) for who, port in ports.items()}
            results[-1]["metrics_ms"] = {s: {"p50_ms": hist_quantile(before[who], after[who], s, 0.5),
                                             "p99_ms": hist_quantile(before[who], after[who], s, 0.99)}
                                         for s, who in stages.items()}
            print(_row(results[-1]), flush=True)
            print(_metrics_row(results[-1]), flush=True)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        kids.stop_all()
        if brk is not None:
            brk.stop()
    extra["load_avg_end"] = os.getloadavg()
    return summarise(results, extra)


def _row(r: dict) -> str:
    st = r.get("stages", {})
    cells = " ".join(f"{st[s]['p50_ms']:>6.2f}/{st[s]['p99_ms']:<7.2f}" if s in st else f"{'-':>14}" for s in STAGES)
    return (f"{r['kind']:<9} {r['rate']:>7} {r['frame_ms']:>4.0f} {r['offered_per_s']:>8} {r['p50_ms']:>8.2f} "
            f"{r['p99_ms']:>8.2f} {r['p999_ms']:>8.2f} {cells} {r['lag_s']:>6.2f} {str(r['kept_up']):>5}"
            f" {r.get('cpu_pct', {}).get('broker', float('nan')):>6.1f} {r.get('steal_pct', float('nan')):>5.1f}"
            + (f"\n  per message received, from the oldest frame it answers: {r['per_message_ms']['p50_ms']:.1f}/"
               f"{r['per_message_ms']['p99_ms']:.1f}/{r['per_message_ms']['p999_ms']:.1f}"
               if r["kind"] != "floor" else "")
            + (f"\n  plain consumer of the first topic: {r['probe_ms']['p50_ms']:.1f}/{r['probe_ms']['p99_ms']:.1f}"
               if "probe_ms" in r else ""))


def _metrics_row(r: dict) -> str:
    m = r.get("metrics_ms", {})
    return "  from /metrics: " + ", ".join(f"{s} {v['p50_ms']:.1f}/{v['p99_ms']:.1f}" for s, v in m.items())


HEADER = (f"{'kind':<9} {'rate':>7} {'fr':>4} {'offered':>8} {'p50':>8} {'p99':>8} {'p99.9':>8} "
          + " ".join(f"{s[:14]:>14}" for s in STAGES) + f" {'lag_s':>6} {'kept':>5} {'brk%':>6} {'st%':>5}")


def summarise(results: list[dict], extra: dict) -> dict:
    """The last-line JSON: overhead over the floor at 5k/s with 1 ms frames, stages, max rate kept up."""
    def pick(kind: str, rate: int = 5_000, fm: float = 1.0) -> dict:
        return next(r for r in results if r["kind"] == kind and r["rate"] == rate and r["frame_ms"] == fm)

    f = pick("floor")
    try:
        s = pick("streamsig")
    except StopIteration:  # --cases without 5k/1 ms: report the first case
        s = next(r for r in results if r["kind"] == "streamsig")
    kept = [r["offered_per_s"] for r in results if r["kind"] == "streamsig" and r["kept_up"]]
    out = {"p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"], "p999_ms": s["p999_ms"],
           "per_message_ms": s["per_message_ms"], "floor_per_message_ms": f["per_message_ms"],
           "floor_p50_ms": f["p50_ms"], "floor_p99_ms": f["p99_ms"],
           "overhead_p50_ms": round(s["p50_ms"] - f["p50_ms"], 3),
           "overhead_p99_ms": round(s["p99_ms"] - f["p99_ms"], 3),
           "stages": s.get("stages", {}), "stages_from_metrics": s.get("metrics_ms", {}),
           "max_rate_kept_up": max(kept) if kept else 0}
    faust = [r for r in results if r["kind"] == "faust"]
    if "probe_ms" in s and "probe_ms" in f:  # the first hop as a plain consumer saw it, streamsig minus floor
        out["first_hop_excess_p50_ms"] = round(s["probe_ms"]["p50_ms"] - f["probe_ms"]["p50_ms"], 3)
    if faust:
        out["faust_relay_p50_ms"], out["faust_relay_p99_ms"] = faust[0]["p50_ms"], faust[0]["p99_ms"]
    out.update(extra)
    out["cases"] = [{k: r[k] for k in ("kind", "rate", "frame_ms", "offered_per_s", "p50_ms", "p99_ms",
                                       "p999_ms", "per_message_ms", "frames", "messages", "unanswered", "lag_s", "kept_up", "cpu_pct", "steal_pct",
                                       "probe_ms") if k in r}
                    for r in results]
    for c in out["cases"]:  # against the floor of the same rate and frame bound
        if c["kind"] == "streamsig":
            try:
                fl = pick("floor", c["rate"], c["frame_ms"])
            except StopIteration:
                continue
            c["overhead_p50_ms"] = round(c["p50_ms"] - fl["p50_ms"], 3)
            c["overhead_p99_ms"] = round(c["p99_ms"] - fl["p99_ms"], 3)
            c["floor_kept_up"] = fl["kept_up"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="floor and streamsig at 5k/s, 1 ms frames (< 60 s)")
    ap.add_argument("--kafka", default=None, help="external broker (default: embedded Tansu)")
    ap.add_argument("--fetch-wait-ms", type=int, default=0, help="consumer fetch wait (default: StreamConfig's)")
    ap.add_argument("--seconds", type=float, default=0.0, help="production time per case")
    ap.add_argument("--faust", action="store_true", help="also time a Faust agent that only forwards")
    ap.add_argument("--cases", default="", help='only these streamsig cases, e.g. "5000:5,20000:5"')
    ap.add_argument("--trader", action="store_true",
                    help="run the paper trader beside the worker and report its stages (worker_to_trader, trader)")
    ap.add_argument("--probe", action="store_true",
                    help="beside each case, a plain consumer of its first topic: the broker's first hop alone")
    ap.add_argument("--role", default="main", choices=["main", "produce", "relay", "faust-relay", "probe"],
                    help=argparse.SUPPRESS)
    for opt in ("--bootstrap", "--topic", "--symbols", "--src", "--dst"):
        ap.add_argument(opt, default="", help=argparse.SUPPRESS)
    ap.add_argument("--rate", type=int, default=5_000, help=argparse.SUPPRESS)
    ap.add_argument("--frame-ms", type=float, default=1.0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    # every process settles its heap as the streamsig commands do (streamsig.heap), the floor's too
    from streamsig.heap import settle, settle_later, settled

    if a.role == "produce":
        import streamsig.book.sources, streamsig.live.producer  # noqa: F401,E401 - in the settled heap
        asyncio.run(settled(role_produce(a)))
    elif a.role == "relay":
        asyncio.run(settled(role_relay(a)))
    elif a.role == "faust-relay":
        role_faust_relay(a, settle, settle_later)
    elif a.role == "probe":
        asyncio.run(settled(role_probe(a)))
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the children on the way out
        print(HEADER, flush=True)
        print(json.dumps(asyncio.run(settled(main_async(a)))))


if __name__ == "__main__":
    main()
