"""Broker loss: the broker is SIGKILLed and restarted on its port mid-run; every process survives and says so."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import time

import pytest

from streamsig import telemetry as M
from streamsig.book.sources import open_feeds
from streamsig.features import FeatureSpec
from streamsig.live.broker import EmbeddedBroker, free_port
from streamsig.live.checkpoint import read_partition
from streamsig.live.config import StreamConfig, running
from streamsig.live.producer import ProduceStats, produce
from streamsig.live.trader import build_trader
from streamsig.live.worker import build_worker
from streamsig.serve.ws import SignalServer
from streamsig.trading import ExecConfig
from streamsig.trading.rules import OfiRule
from streamsig.wire.frames import parse_dead_letter
from streamsig.wire.signals import decode_signals
from streamsig.wire.topics import ensure_topics
from tests.test_stream_e2e import collect

SPEC = FeatureSpec(levels=10)
SYMS = ["KA", "KB"]


def _kill(broker: EmbeddedBroker) -> None:
    assert broker.pid is not None
    os.kill(broker.pid, signal.SIGKILL)
    broker._proc.wait(10)  # noqa: SLF001 - reap it; stop() would SIGTERM a live one
    broker.stop()


def test_broker_rebinds_its_port_at_once_after_a_kill() -> None:
    port = free_port()
    b = EmbeddedBroker(port).start()
    try:
        s = socket.create_connection(("127.0.0.1", port))  # a client connected when the broker dies,
        s.sendall(b"\x00\x00\x00\x10half")  # in the middle of a request
        time.sleep(0.2)  # let the broker read it (unread data would make the close a reset)
        _kill(b)
        s.close()  # the broker's side of it now waits in TIME_WAIT on the port
        again = EmbeddedBroker(port).start()
        assert again.running and again.bootstrap == f"127.0.0.1:{port}"
        again.stop()
    finally:
        b.stop()


async def test_a_reader_waiting_for_its_marker_survives_a_broker_that_comes_back_empty() -> None:
    """A checkpoint partition being read when the broker dies: the marker written before is lost with it,
    and the reader's position lies beyond the recreated partition's end; it reads that from 0 and writes
    its marker again."""
    from aiokafka import AIOKafkaProducer

    port = free_port()
    broker = EmbeddedBroker(port).start()
    token, seen = b"marker-1", []
    try:
        await ensure_topics(broker.bootstrap, ["ck"], 1)
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await p.start()
        for i in range(10):
            await p.send_and_wait("ck", b"old-%d" % i, key=b"k", partition=0)
        await p.stop()

        async def resend() -> None:
            q = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
            await q.start()
            try:
                await q.send_and_wait("ck", token, key=b"", partition=0)
            finally:
                await q.stop()

        def on(key: bytes | None, value: bytes | None) -> bool:
            seen.append(value)
            return value == token

        reader = asyncio.create_task(read_partition(broker.bootstrap, "ck", 0, 0, on, idle_s=None, resend=resend,
                                                    timeout_s=45))
        await _until(lambda: len(seen) == 10, timeout=30)  # read to the end; the marker is not there
        _kill(broker)
        broker = EmbeddedBroker(port).start()  # the same port, nothing kept
        await asyncio.wait_for(reader, 50)
    finally:
        broker.stop()
    assert seen == [b"old-%d" % i for i in range(10)] + [token]


def _value(name: str, **labels: str) -> float:
    for metric in M.REGISTRY.collect():  # the first series whose labels include ``labels``
        for s in metric.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


async def _until(cond, timeout: float = 90.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_every_process_survives_a_broker_restart_and_reports_it(unique_prefix: str, tmp_path) -> None:
    port = free_port()
    broker = EmbeddedBroker(port).start()
    # 4 partitions, as the broker auto-creates a topic that a client names before it is recreated
    cfg = StreamConfig(bootstrap=broker.bootstrap, app_id=unique_prefix, topic_prefix=unique_prefix, partitions=4,
                       session_timeout_s=3.0, heartbeat_s=0.5, datadir=str(tmp_path / "faust"))
    t = cfg.topics
    roles = ("worker", "trader", "server", "producer")
    outages = {r: _value("streamsig_broker_outages_total", role=r) for r in roles}
    losses = {r: _value("streamsig_broker_data_losses_total", role=r) for r in ("worker", "trader", "server")}
    try:
        await ensure_topics(cfg.bootstrap, t.all(), cfg.partitions)
        worker = build_worker(cfg, SPEC, OfiRule(), "ofi", tmp_path / "w")
        trader = build_trader(cfg, ExecConfig(), model="ofi", book_capacity=SPEC.book_capacity)
        server = SignalServer(cfg.bootstrap, t, port=0, tokens=["tok"], partitions=cfg.partitions)
        async with running(worker, ready_timeout_s=30), running(trader, ready_timeout_s=30), server:
            feeds = open_feeds("synthetic", symbols=SYMS, n_updates=1500, seed=4)
            await produce(feeds, cfg.bootstrap, t.book_events, frame_size=100, snapshot_every=300)
            await _until(lambda: len(worker.streamsig_engines) == len(SYMS))
            _kill(broker)
            for r in ("worker", "trader", "server"):
                await _until(lambda r=r: _value("streamsig_broker_up", role=r, broker=cfg.bootstrap) == 0.0)
            # a producer started while the broker is down waits for it, then sends (numbering from 0)
            stats = ProduceStats()
            prod = asyncio.create_task(produce(feeds, cfg.bootstrap, t.book_events, frame_size=100,
                                               snapshot_every=300, stats=stats))
            await _until(lambda: _value("streamsig_broker_up", role="producer", broker=cfg.bootstrap) == 0.0)
            broker = EmbeddedBroker(port).start()  # the same port, at once; memory storage: all lost
            for r in ("worker", "trader", "server"):
                await _until(lambda r=r: _value("streamsig_broker_up", role=r, broker=cfg.bootstrap) == 1.0,
                             timeout=90)
                await _until(lambda r=r: _value("streamsig_broker_data_losses_total", role=r) >= losses[r] + 1,
                             timeout=90)
            await asyncio.wait_for(prod, 120)  # the producer rode out the outage
            # the worker reported the loss per symbol, and goes on producing signals after it
            dead = await collect(cfg.bootstrap, t.dead_letter,
                                 lambda m: sum(parse_dead_letter(v)["reason"] == "BROKER_LOSS" for _, v in m)
                                 >= len(SYMS))
            lost = sorted(parse_dead_letter(v)["symbol"] for _, v in dead
                          if parse_dead_letter(v)["reason"] == "BROKER_LOSS")
            assert lost == SYMS
            again = await collect(cfg.bootstrap, t.signals,
                                  lambda m: {decode_signals(v).symbol for _, v in m} == set(SYMS))
            assert {decode_signals(v).symbol for _, v in again} == set(SYMS)
            # the trader follows the new session too
            await _until(lambda: all(g.epoch == stats.epoch for g in trader.streamsig_guards.values()), timeout=90)
        for r in roles:
            assert _value("streamsig_broker_outages_total", role=r) >= outages[r] + 1, r
        for r in ("worker", "trader", "server"):  # one loss, reported once
            assert _value("streamsig_broker_data_losses_total", role=r) == losses[r] + 1, r
    finally:
        broker.stop()
