"""Chaos: separate broker, producer, worker(s) and trader processes, ``kill -9`` at seeded points.

Every topic is read back from the beginning at the end and compared with an
uninterrupted (offline) run of the same feeds: signals, fills, positions and
P&L per symbol equal, no duplicate, nothing missing, and every produced book
event accounted for in the surviving checkpoints.

``STREAMSIG_CHAOS_SEEDS`` (default ``1``) picks the kill schedules, e.g.
``STREAMSIG_CHAOS_SEEDS=1,2,3,4,5``. Each run prints one ``CHAOS {...}`` line
with its counts and takeover times (``pytest -s`` shows them).
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamsig.book import events as E
from streamsig.live.broker import EmbeddedBroker
from streamsig.live.checkpoint import (BrokerStore, CheckpointError, LocalStore, decode_checkpoint, partition_for,
                                       state_topics)
from streamsig.wire.frames import FrameError, decode_frame
from streamsig.wire.signals import decode_signals
from streamsig.wire.topics import Topics, ensure_topics

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SEEDS = [int(s) for s in os.environ.get("STREAMSIG_CHAOS_SEEDS", "1").split(",") if s.strip()]
FEED_SEED = 7


def symbols_one_per_partition(n: int) -> list[str]:
    """``n`` symbol names that the default partitioner puts on ``n`` different partitions."""
    out: dict[int, str] = {}
    i = 0
    while len(out) < n:
        s = f"S{i:02d}"
        out.setdefault(partition_for(s.encode(), n), s)
        i += 1
    return [out[p] for p in range(n)]


class Proc:
    """One streamsig CLI process (``sys.executable -m streamsig.cli``) with its log file."""

    def __init__(self, name: str, args: list[str], logdir: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.args, self.logdir, self.env = name, args, logdir, env or {}
        self.p: subprocess.Popen | None = None
        self.runs = 0

    def start(self, **extra_env: str) -> None:
        self.runs += 1
        env = dict(os.environ, PYTHONPATH=str(ROOT), **self.env, **extra_env)
        if "STREAMSIG_CRASH_AT" not in extra_env:
            env.pop("STREAMSIG_CRASH_AT", None)
        log = open(self.logdir / f"{self.name}.{self.runs}.log", "wb")  # noqa: SIM115 - lives with the process
        self.p = subprocess.Popen([sys.executable, "-m", "streamsig.cli", *self.args], stdout=log,
                                  stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.started = time.monotonic()

    def ready(self) -> bool:
        """The Faust worker has joined its group and started its agents (an exited process never will)."""
        if self.p is not None and self.p.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.p.returncode} before it was ready:\n{self.tail()}")
        return b"[^Worker]: Ready" in self.log().read_bytes()

    def log(self) -> Path:
        return self.logdir / f"{self.name}.{self.runs}.log"

    def log_text(self) -> str:
        """Every run's log, joined."""
        return "".join((self.logdir / f"{self.name}.{i}.log").read_bytes().decode("utf-8", "replace")
                       for i in range(1, self.runs + 1))

    def tail(self, n: int = 4000) -> str:
        """The end of the current run's log (what a failed wait shows)."""
        return self.log().read_bytes()[-n:].decode("utf-8", "replace")

    def alive(self) -> bool:
        return self.p is not None and self.p.poll() is None

    def kill9(self) -> None:
        assert self.p is not None
        os.kill(self.p.pid, signal.SIGKILL)
        self.p.wait()

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (graceful: final checkpoint and commit) and wait."""
        assert self.p is not None
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode


@dataclass
class Monitor:
    """Watches book-events, signals and pnl while the run goes on (timing only; results come from the read-back)."""

    topics: Topics
    every: int
    since_snap: dict[str, int] = field(default_factory=dict)
    snap_at: dict[str, list[float]] = field(default_factory=dict)
    last_sig: dict[str, int] = field(default_factory=dict)
    last_pnl: dict[str, int] = field(default_factory=dict)
    sig_times: dict[str, list[float]] = field(default_factory=dict)

    async def run(self, bootstrap: str, stop: asyncio.Event) -> None:
        from aiokafka import AIOKafkaConsumer

        t = self.topics
        c = AIOKafkaConsumer(t.book_events, t.signals, t.pnl, bootstrap_servers=bootstrap, group_id=None,
                             auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=50)
        await c.start()
        try:
            while not stop.is_set():
                batch = await c.getmany(timeout_ms=100)
                now = time.monotonic()
                for tp, msgs in batch.items():
                    for m in msgs:
                        if tp.topic == t.book_events:
                            try:
                                fr = decode_frame(m.value)
                            except FrameError:
                                continue
                            snap = np.flatnonzero(fr.events["flags"] & E.SNAPSHOT)
                            n = self.since_snap.get(fr.symbol, 0)
                            if len(snap):
                                self.snap_at.setdefault(fr.symbol, []).append(now)
                                n = len(fr.events) - int(snap[-1]) - 1
                            else:
                                n += len(fr.events)
                            self.since_snap[fr.symbol] = n
                        elif tp.topic == t.signals:
                            f = decode_signals(m.value)
                            self.last_sig[f.symbol] = max(self.last_sig.get(f.symbol, -1), f.last_seq)
                            self.sig_times.setdefault(f.symbol, []).append(now)
                        else:
                            d = json.loads(m.value)
                            self.last_pnl[d["symbol"]] = max(self.last_pnl.get(d["symbol"], -1), d["seq"])
        finally:
            await c.stop()

    def phase(self) -> float:
        """Median fraction of the snapshot interval since each symbol's last snapshot."""
        if not self.since_snap:
            return 0.0
        return float(np.median([v / self.every for v in self.since_snap.values()]))

    def takeover(self, kill_t: float) -> float:
        """Longest wait, over symbols, from the kill to that symbol's first signal after it."""
        waits = []
        for ts in self.sig_times.values():
            after = [x for x in ts if x > kill_t]
            if after:
                waits.append(after[0] - kill_t)
        return max(waits) if waits else float("nan")


async def read_topic(bootstrap: str, topic: str, idle_s: float = 1.5) -> list[tuple[bytes, bytes]]:
    """Every record of ``topic``, all partitions, from the beginning until idle."""
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                         enable_auto_commit=False, fetch_max_wait_ms=50,
                         max_partition_fetch_bytes=8 * 1024 * 1024)
    await c.start()
    out: list[tuple[bytes, bytes]] = []
    try:
        quiet = time.monotonic()
        while time.monotonic() - quiet < idle_s:
            batch = await c.getmany(timeout_ms=200)
            for msgs in batch.values():
                out += [(m.key, m.value) for m in msgs]
                quiet = time.monotonic()
    finally:
        await c.stop()
    return out


def reference(syms: list[str], n_updates: int, with_trades: bool) -> tuple[Any, dict[str, int]]:
    """The uninterrupted run: the same feeds, strategy and costs, offline."""
    from streamsig.backtest.runner import run_backtest
    from streamsig.book.sources import open_feeds
    from streamsig.cli.options import trading_configs
    from streamsig.models.registry import default_model
    from streamsig.trading.strategies import load_strategy

    policy, ex = trading_configs()  # what ``worker`` and ``trade`` run with no policy or cost options
    strat, _, spec = load_strategy(default_model(), "ofi", policy)
    feeds = open_feeds("synthetic", symbols=syms, n_updates=n_updates, seed=FEED_SEED)
    ends = {f.symbol: int(f.read_all()["seq"][-1]) for f in feeds}
    return run_backtest(feeds, spec, strategy=strat, exec_cfg=ex, policy_cfg=policy, baselines=[]), ends


async def wait_for(cond: Callable[[], bool], timeout: float, what: str, show: Any = None,
                   logs: tuple[Proc, ...] = ()) -> None:
    """Poll ``cond`` until true; on timeout fail with ``show()`` and the log tails of ``logs``."""
    t0 = time.monotonic()
    end = t0 + timeout
    n = 0
    while not cond():
        if time.monotonic() > end:
            extra = "" if show is None else f" ({show()})"
            tails = "".join(f"\n--- {p.name} (run {p.runs}) ---\n{p.tail()}" for p in logs)
            raise AssertionError(f"timed out waiting for {what}{extra}{tails}")
        await asyncio.sleep(0.2)
        n += 1
        if show is not None and n % 25 == 0 and os.environ.get("STREAMSIG_CHAOS_VERBOSE"):
            print(f"  {time.monotonic() - t0:.0f} s {what}: {show()}", flush=True)
    if os.environ.get("STREAMSIG_CHAOS_VERBOSE"):
        print(f"  waited {time.monotonic() - t0:.1f} s for {what}", flush=True)


async def check_and_count(bootstrap: str, topics: Topics, partitions: int, ref: Any, syms: list[str],
                          trades: bool) -> dict[str, Any]:
    """Read every topic back; assert the equalities; return the counts."""
    ck_topic, tck_topic, req_topic = state_topics(topics)
    book = await read_topic(bootstrap, topics.book_events)
    sigs = await read_topic(bootstrap, topics.signals)
    dead = await read_topic(bootstrap, topics.dead_letter)
    store = BrokerStore(bootstrap, ck_topic, partitions)
    await store.start()
    try:
        blobs = {k: v for p in range(partitions) for k, v in (await store.load_partition(p)).items()}
    finally:
        await store.stop()
    reqs = await read_topic(bootstrap, req_topic)
    produced: dict[str, int] = {}
    for _, v in book:
        fr = decode_frame(v)
        produced[fr.symbol] = produced.get(fr.symbol, 0) + len(fr.events)
    counts = {k: decode_checkpoint(blob, k, "worker").state["counts"] for k, blob in blobs.items()}
    out: dict[str, Any] = {"events": sum(produced.values()), "signals": 0, "duplicates": 0, "missing": 0,
                           "extra": 0, "dead_letters": len(dead), "snapshot_requests": len(reqs),
                           "redelivered": 0}
    live: dict[str, list[np.ndarray]] = {}
    for _, v in sigs:
        f = decode_signals(v)
        live.setdefault(f.symbol, []).append(np.array(f.records))
    for sym in syms:
        got = np.concatenate(live[sym])
        want = ref.signals[sym]
        out["signals"] += len(got)
        out["duplicates"] += len(got) - len(np.unique(got["seq"]))
        out["missing"] += len(np.setdiff1d(want["seq"], got["seq"]))
        out["extra"] += len(np.setdiff1d(got["seq"], want["seq"]))
        c = counts[sym]
        out["redelivered"] += c.get("redelivered", 0)
        assert c["events"] == produced[sym], (sym, c, produced[sym])
        assert c["applied"] + c["skipped"] + c["resync_dropped"] + c["rejected"] == c["events"], (sym, c)
        assert got.tobytes() == want.tobytes(), f"{sym}: signals differ from the uninterrupted run"
    out["applied"] = sum(counts[s]["applied"] for s in syms)
    out["skipped"] = sum(counts[s]["skipped"] for s in syms)
    out["dead_lettered_events"] = sum(counts[s]["rejected"] for s in syms)
    assert out["duplicates"] == out["missing"] == out["extra"] == 0
    if trades:
        fills = [json.loads(v) for _, v in await read_topic(bootstrap, topics.fills)]
        pnl = [json.loads(v) for _, v in await read_topic(bootstrap, topics.pnl)]
        out.update(fills=len(fills), fills_ref=0, fill_duplicates=0, pnl={}, pnl_ref={})
        for sym in syms:
            lane = ref.lanes[next(k for k in ref.lanes if k[1] == sym)]
            lf = [f for f in fills if f["symbol"] == sym]
            out["fills_ref"] += len(lane.fills)
            out["fill_duplicates"] += len(lf) - len({f["fill_seq"] for f in lf})
            assert [f["fill_seq"] for f in lf] == list(range(1, len(lf) + 1)), f"{sym}: fills repeated or lost"
            assert [(f["seq"], f["side"]) for f in lf] == list(zip(lane.fills["seq"].tolist(),
                                                                   lane.fills["side"].tolist()))
            np.testing.assert_allclose([f["price"] for f in lf], lane.fills["price"], rtol=0, atol=1e-9)
            np.testing.assert_allclose([f["qty"] for f in lf], lane.fills["qty"], rtol=0, atol=1e-12)
            lp = [p for p in pnl if p["symbol"] == sym]
            assert len({p["seq"] for p in lp}) == len(lp), f"{sym}: a P&L record was published twice"
            last = lp[-1]
            out["pnl"][sym] = last["pnl"]
            assert last["equity"] == pytest.approx(float(lane.equity[-1]), abs=1e-6), sym
            assert last["position"] == float(lane.position[-1]), sym
            out["pnl_ref"][sym] = round(float(lane.equity[-1]) - (last["equity"] - last["pnl"]), 8)
        assert out["fills"] == out["fills_ref"] and out["fill_duplicates"] == 0
    return out


def common_args(bootstrap: str, prefix: str, partitions: int) -> list[str]:
    return ["--kafka", bootstrap, "--topic-prefix", prefix, "--partitions", str(partitions)]


def saved_seq(folders: list[Path], syms: list[str]) -> dict[str, int]:
    """The highest sequence a local worker checkpoint in ``folders`` holds, per symbol."""
    out: dict[str, int] = {}
    for folder in folders:
        store = LocalStore(folder, "worker")
        for sym in syms:
            try:
                ck = store.load(sym)
            except CheckpointError:
                continue
            if ck is not None:
                out[sym] = max(out.get(sym, -1), int(ck.state.get("seq", -1)))
    return out


async def kill_schedule(proc: Proc, rng: random.Random, hook: str, hook_n: tuple[int, int], kills: int,
                        log: list, t0: float) -> None:
    """Start ``proc`` and ``kill -9`` it ``kills`` times, restarting it after each.

    One seeded incarnation runs with ``STREAMSIG_CRASH_AT=<hook>:<n>`` and kills
    itself inside a write; the others are killed 1-4 s after they are ready.
    """
    hook_at = rng.randrange(kills)
    for i in range(kills):
        if i == hook_at:
            spec = f"{hook}:{rng.randint(*hook_n)}"
            proc.start(STREAMSIG_CRASH_AT=spec)
            end = time.monotonic() + 240  # the hook needs output, which needs the other process up
            while proc.alive() and time.monotonic() < end:
                await asyncio.sleep(0.1)
            assert not proc.alive(), f"{proc.name} did not crash at {spec}"
            log.append((proc.name, "hook " + spec, round(time.monotonic() - t0, 1), proc.p.returncode))
        else:
            proc.start()
            await wait_for(proc.ready, 120, f"{proc.name} to be ready", logs=(proc,))
            await asyncio.sleep(rng.uniform(1.0, 4.0))
            proc.kill9()
            log.append((proc.name, "kill -9", round(time.monotonic() - t0, 1)))
        await asyncio.sleep(rng.uniform(0.1, 0.5))
    proc.start()


@pytest.mark.parametrize("seed", SEEDS)
async def test_worker_and_trader_survive_kill_9(seed: int, tmp_path: Path) -> None:
    syms, n_updates, every = ["AAA", "BBB", "CCC", "DDD"], 25_000, 2_000
    t_ref = time.monotonic()
    prefix, parts = f"chaos-a{seed}", 4
    ref, ends = reference(syms, n_updates, True)
    t_ref = time.monotonic() - t_ref
    rng = random.Random(seed)
    with EmbeddedBroker() as b:
        topics = Topics(prefix)
        await ensure_topics(b.bootstrap, topics.all() + state_topics(topics) + (topics.signals + "-challenger",),
                            parts)
        base = common_args(b.bootstrap, prefix, parts)
        rotate = {"STREAMSIG_CHECKPOINT_ROTATE_BYTES": "250000"}  # checkpoint generations rotate during the run
        worker = Proc("worker", ["worker", *base, "--state-dir", str(tmp_path / "w"), "--metrics-port", "0"],
                      tmp_path, rotate)
        trader = Proc("trader", ["trade", *base, "--state-dir", str(tmp_path / "t"), "--metrics-port", "0"],
                      tmp_path, rotate)
        producer = Proc("producer", ["produce", *base, "--source", "synthetic", "--symbols", ",".join(syms),
                                     "--updates", str(n_updates), "--seed", str(FEED_SEED), "--speed", "1",
                                     "--frame-delay-ms", "50", "--snapshot-every", str(every)], tmp_path)
        mon = Monitor(topics, every)
        stop = asyncio.Event()
        watcher = asyncio.create_task(mon.run(b.bootstrap, stop))
        try:
            t0 = time.monotonic()
            producer.start()
            log: list = []
            await asyncio.gather(
                kill_schedule(worker, rng, "file-write", (3, 12), 3, log, t0),
                # few enough sends that a trader taking large batches reaches the hook
                kill_schedule(trader, rng, "output-sent", (1, 6), 3, log, t0))
            await wait_for(lambda: not producer.alive(), 120, "the producer")
            assert producer.p.returncode == 0
            await wait_for(lambda: all(mon.last_sig.get(s, -1) >= e for s, e in ends.items()), 180, "signals",
                           lambda: mon.last_sig, (worker, trader))
            await wait_for(lambda: all(mon.last_pnl.get(s, -1) >= e for s, e in ends.items()), 180, "P&L",
                           lambda: mon.last_pnl, (worker, trader))
            # the last incarnations may still be starting (the output was complete before them): a
            # SIGTERM before Faust installs its handlers ends a process without its graceful stop
            await wait_for(worker.ready, 120, "the last worker to be ready", logs=(worker,))
            await wait_for(trader.ready, 120, "the last trader to be ready", logs=(trader,))
            # the output may be complete before the last worker has caught up with it (an earlier
            # incarnation published it); stopped sooner, its final checkpoint would not count it all
            await wait_for(lambda: all(saved_seq([tmp_path / "w"], syms).get(s, -1) >= e for s, e in ends.items()),
                           120, "the last worker to checkpoint the end", lambda: saved_seq([tmp_path / "w"], syms),
                           (worker,))
            assert worker.stop() == 0 and trader.stop() == 0
            t_run = time.monotonic() - t0
        finally:
            stop.set()
            await watcher
            for p in (worker, trader, producer):
                if p.alive():
                    p.kill9()
        res = await check_and_count(b.bootstrap, topics, parts, ref, syms, True)
    rotations = sum(p.log_text().count("rotated to generation") for p in (worker, trader))
    assert rotations >= 1  # the state survived a rotation as well as the kills
    res.update(seed=seed, kills=log, rotations=rotations, reference_s=round(t_ref, 1), run_s=round(t_run, 1),
               wall_s=round(time.monotonic() - t0, 1))
    print("CHAOS", json.dumps(res))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_workers,when", [(2, "before"), (3, "after")])
async def test_scale_out_kill_and_restart_a_worker(n_workers: int, when: str, seed: int, tmp_path: Path) -> None:
    """Workers with one state folder each share 8 partitions; one is killed just before/after a snapshot, then restarted."""
    parts, n_updates, every = 8, 24_000, 4_000
    syms = symbols_one_per_partition(parts)
    prefix = f"chaos-b{n_workers}{when}{seed}"
    ref, ends = reference(syms, n_updates, False)
    rng = random.Random(seed * 100 + n_workers)
    with EmbeddedBroker() as b:
        topics = Topics(prefix)
        await ensure_topics(b.bootstrap, topics.all() + state_topics(topics) + (topics.signals + "-challenger",),
                            parts)
        base = common_args(b.bootstrap, prefix, parts)
        workers = [Proc(f"worker{i}", ["worker", *base, "--state-dir", str(tmp_path / f"w{i}"),
                                       "--metrics-port", "0"], tmp_path) for i in range(n_workers)]
        producer = Proc("producer", ["produce", *base, "--source", "synthetic", "--symbols", ",".join(syms),
                                     "--updates", str(n_updates), "--seed", str(FEED_SEED), "--speed", "1",
                                     "--frame-delay-ms", "50", "--snapshot-every", str(every)], tmp_path)
        mon = Monitor(topics, every)
        stop = asyncio.Event()
        watcher = asyncio.create_task(mon.run(b.bootstrap, stop))
        victim = workers[rng.randrange(n_workers)]
        try:
            for w in workers:
                w.start()
            await asyncio.sleep(10.0)  # all members joined and the group settled
            t0 = time.monotonic()
            producer.start()
            await wait_for(lambda: len(mon.since_snap) == parts, 60, "the stream")
            skip = rng.randint(0, 1)  # which snapshot: the first or the second after the start
            for _ in range(skip):
                await wait_for(lambda: mon.phase() > 0.5, 60, "mid-interval")
                await wait_for(lambda: mon.phase() < 0.5, 60, "a snapshot")
            if when == "before":
                await wait_for(lambda: mon.phase() >= 0.9, 60, "just before a snapshot")
            else:
                await wait_for(lambda: mon.phase() > 0.5, 60, "mid-interval")
                await wait_for(lambda: mon.phase() <= 0.1, 60, "just after a snapshot")
            phase = mon.phase()
            kill_t = time.monotonic()
            victim.kill9()
            await asyncio.sleep(rng.uniform(9.0, 12.0))  # the survivors take over, then it comes back
            victim.start()
            await wait_for(lambda: not producer.alive(), 120, "the producer")
            await wait_for(lambda: all(mon.last_sig.get(s, -1) >= e for s, e in ends.items()), 180, "signals",
                           lambda: mon.last_sig, tuple(workers))
            await wait_for(victim.ready, 180, "the restarted worker to rejoin", logs=(victim,))
            folders = [tmp_path / f"w{i}" for i in range(n_workers)]
            await wait_for(lambda: all(saved_seq(folders, syms).get(s, -1) >= e for s, e in ends.items()), 120,
                           "a checkpoint of the end of every symbol", lambda: saved_seq(folders, syms),
                           tuple(workers))
            for w in workers:
                assert w.stop() == 0
        finally:
            stop.set()
            await watcher
            for p in (*workers, producer):
                if p.alive():
                    p.kill9()
        res = await check_and_count(b.bootstrap, topics, parts, ref, syms, False)
    res.update(seed=seed, workers=n_workers, when=when, phase=round(phase, 2), victim=victim.name,
               kill_at_s=round(kill_t - t0, 1), takeover_s=round(mon.takeover(kill_t), 2))
    print("CHAOS", json.dumps(res))
