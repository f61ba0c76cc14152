"""The websocket signal server: tokens, subscriptions, slow clients, and the live path from Kafka."""
from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from streamsig.book.records import SIGNAL_DTYPE
from streamsig.telemetry import REGISTRY
from streamsig.serve.ws import CLOSE_SLOW_CONSUMER, PROTOCOL, SignalServer
from streamsig.wire.signals import decode_signals, encode_signals
from streamsig.wire.topics import Topics, ensure_topics

TOKEN = "s3cret-token"


def url(server: SignalServer, token: str | None = TOKEN) -> str:
    return f"ws://127.0.0.1:{server.port}/" + (f"?token={token}" if token is not None else "")


async def client(server: SignalServer, symbols: list[str] | str | None = None, every: bool = False,
                 **kwargs) -> ClientConnection:
    """A connected, greeted client, subscribed to ``symbols`` if given."""
    ws = await connect(url(server), **kwargs)
    assert json.loads(await ws.recv()) == {"type": "hello", "protocol": PROTOCOL}
    if symbols is not None:
        await ws.send(json.dumps({"op": "subscribe", "symbols": symbols, "all": every}))
        reply = json.loads(await ws.recv())
        assert reply["type"] == "subscribed" and reply["all"] is every
    return ws


async def read_until(ws: ClientConnection, *last: dict, timeout: float = 10.0) -> list[dict]:
    """Messages until, for each of ``last``, one whose items include it has arrived."""
    out: list[dict] = []
    waiting = list(last)
    async with asyncio.timeout(timeout):
        while waiting:
            msg = json.loads(await ws.recv())
            out.append(msg)
            waiting = [w for w in waiting if not all(msg.get(k) == v for k, v in w.items())]
    return out


def dropped() -> float:
    return REGISTRY.get_sample_value("streamsig_websocket_clients_dropped_total") or 0.0


def records(seq0: int, targets: list[float], ts0: int = 1_700_000_000_000_000_000) -> np.ndarray:
    rec = np.zeros(len(targets), SIGNAL_DTYPE)
    rec["seq"] = np.arange(seq0, seq0 + len(targets))
    rec["ts_ns"] = ts0 + rec["seq"] * 1000
    rec["p_up"] = np.linspace(0.1, 0.6, len(targets))
    rec["p_down"] = 0.2
    rec["p_flat"] = 1.0 - rec["p_up"] - rec["p_down"]
    rec["target"] = targets
    return rec


async def test_token_required() -> None:
    async with SignalServer(None, port=0, tokens=[TOKEN, "other"]) as server:
        for token in (None, "", "wrong", TOKEN + "x"):  # refused before the upgrade completes
            with pytest.raises(InvalidStatus) as info:
                await connect(url(server, token))
            assert info.value.response.status_code == 401 and b"token" in info.value.response.body
        assert server.n_clients == 0
        for token in (TOKEN, "other"):
            async with connect(url(server, token)) as ws:
                assert json.loads(await ws.recv())["type"] == "hello"


async def test_bad_requests_get_errors_not_disconnects() -> None:
    async with SignalServer(None, port=0, tokens=[TOKEN]) as server:
        async with await client(server) as ws:
            for bad in ("not json", "[1]", '{"op": "buy"}', '{"op": "subscribe", "symbols": []}',
                        '{"op": "subscribe", "symbols": ["A"], "all": "yes"}'):
                await ws.send(bad)
                assert json.loads(await ws.recv())["type"] == "error"
            await ws.send('{"op": "subscribe", "symbols": ["A"]}')
            assert json.loads(await ws.recv()) == {"type": "subscribed", "count": 1, "all": False}


async def test_subscription_filters_by_symbol() -> None:
    async with SignalServer(None, port=0, tokens=[TOKEN]) as server:
        a = await client(server, ["XXX"])
        b = await client(server, ["YYY", "ZZZ"])
        star = await client(server, "*")
        none = await client(server)  # connected but not subscribed
        for i in range(30):
            sym = ("XXX", "YYY", "ZZZ")[i % 3]
            assert server.broadcast({"type": "pnl", "symbol": sym, "i": i}) == 2  # its subscriber and "*"
        server.broadcast({"type": "pnl", "symbol": "XXX", "i": "end"})
        server.broadcast({"type": "pnl", "symbol": "YYY", "i": "end"})
        got_a = await read_until(a, {"i": "end"})
        got_b = await read_until(b, {"i": "end"})
        got_star = await read_until(star, {"symbol": "YYY", "i": "end"})
        assert [m["i"] for m in got_a] == list(range(0, 30, 3)) + ["end"]
        assert {m["symbol"] for m in got_a} == {"XXX"}
        assert [m["i"] for m in got_b] == [i for i in range(30) if i % 3] + ["end"]
        assert [m["i"] for m in got_star] == list(range(30)) + ["end", "end"]
        # unsubscribe: b keeps ZZZ only
        await b.send(json.dumps({"op": "unsubscribe", "symbols": ["YYY"]}))
        assert json.loads(await b.recv()) == {"type": "unsubscribed", "count": 1}
        server.broadcast({"type": "pnl", "symbol": "YYY", "i": "after"})
        server.broadcast({"type": "pnl", "symbol": "ZZZ", "i": "after"})
        assert [m["symbol"] for m in await read_until(b, {"i": "after"})] == ["ZZZ"]
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await none.recv()
        for ws in (a, b, star, none):
            await ws.close()


async def test_changes_only_by_default_every_record_on_request() -> None:
    async with SignalServer(None, port=0, tokens=[TOKEN]) as server:
        sparse = await client(server, ["AAA"])
        full = await client(server, ["AAA"], every=True)
        f1 = decode_signals(encode_signals("AAA", "m1", records(10, [0, 0, 1, 1, 1, -1, -1]), 5, 6, 16))
        f2 = decode_signals(encode_signals("AAA", "m1", records(17, [-1, -1, -1]), 7, 8, 19))
        server.publish_signals(f1)
        server.publish_signals(f2)
        got_full = await read_until(full, {"seq": 19})
        got_sparse = await read_until(sparse, {"seq": 19})
        assert [m["seq"] for m in got_full] == list(range(10, 20))
        # first record, each change of target, the last record of each frame
        assert [m["seq"] for m in got_sparse] == [10, 12, 15, 16, 19]
        assert [m["target"] for m in got_sparse] == [0, 1, -1, -1, -1]
        m = got_full[2]
        assert (m["type"], m["symbol"], m["model"]) == ("signal", "AAA", "m1")
        assert (m["producer_ts_ns"], m["worker_ts_ns"], m["exch_ts_ns"]) == (5, 6, 1_700_000_000_000_012_000)
        assert m["p_up"] == pytest.approx(0.1 + 2 * 0.5 / 6, abs=1e-6) and m["p_down"] == 0.2
        await sparse.close()
        await full.close()


async def test_slow_client_is_dropped_others_keep_everything_in_order() -> None:
    n, pad = 3000, "x" * 4000  # kernel buffers on loopback hold a few MB before the slow queue fills
    dropped0 = dropped()
    async with SignalServer(None, port=0, tokens=[TOKEN], queue_size=64) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window fills fast
        sock.connect(("127.0.0.1", server.port))
        slow = await client(server, "*", sock=sock, max_queue=1)
        fast = await client(server, "*")
        received: list[int] = []

        async def read_fast() -> None:
            async for raw in fast:
                received.append(json.loads(raw)["i"])
                if received[-1] == n - 1:
                    return

        reader = asyncio.create_task(read_fast())
        t0 = time.perf_counter()
        dropped_at = None
        for i in range(n):
            server.broadcast({"type": "pnl", "symbol": "AAA", "i": i, "pad": pad})  # never awaits a client
            if i % 8 == 7:
                await asyncio.sleep(0.0005)
            if dropped_at is None and server.n_clients == 1:
                dropped_at = i
        await asyncio.wait_for(reader, 20)
        assert dropped_at is not None and dropped_at < n // 2, dropped_at
        assert received == list(range(n))  # the fast client lost nothing and saw it in order
        assert dropped() == dropped0 + 1
        assert time.perf_counter() - t0 < 15
        with pytest.raises(ConnectionClosed) as info:  # the slow client, reading at last, finds 4408
            async with asyncio.timeout(10):
                while True:
                    await slow.recv()
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (CLOSE_SLOW_CONSUMER, "slow consumer")
        await fast.close()


@pytest.mark.slow
def stage_count(stage: str) -> float:
    return REGISTRY.get_sample_value("streamsig_stage_latency_seconds_count", {"stage": stage}) or 0.0


async def test_live_signals_pnl_and_fills_from_kafka(kafka: str, unique_prefix: str) -> None:
    from aiokafka import AIOKafkaProducer

    topics = Topics(unique_prefix)
    await ensure_topics(kafka, topics.all(), 3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka, linger_ms=0)
    await producer.start()
    try:
        # before the server starts: a server that starts at the end never sends it
        stale = encode_signals("AAA", "m1", records(0, [1]), time.time_ns(), time.time_ns(), 0)
        await producer.send_and_wait(topics.signals, stale, key=b"AAA")
        async with SignalServer(kafka, topics, port=0, tokens=[TOKEN]) as server:
            before = stage_count("worker_to_server"), stage_count("server")
            a = await client(server, ["AAA"])  # changes only
            star = await client(server, "*", every=True)
            sent: dict[str, list] = {"AAA": [], "BBB": []}
            for k in range(4):
                for sym, targets in (("AAA", [0, 1, 1, 1, 0]), ("BBB", [1, 1, -1, -1, -1])):
                    rec = records(100 + 5 * k, targets)
                    pts = time.time_ns()
                    await producer.send_and_wait(topics.signals, key=sym.encode(), value=encode_signals(
                        sym, "lgbm-7", rec, pts, pts + 1000, int(rec["seq"][-1])))
                    sent[sym].append((rec, pts))
            pnl = {"type": "pnl", "symbol": "AAA", "strategy": "lgbm-7", "equity": 100123.5, "pnl": 123.5,
                   "position": 2.0, "drawdown": 0.0125, "sharpe": 1.75, "fills": 9, "killed": False}
            await producer.send_and_wait(topics.pnl, json.dumps(pnl).encode(), key=b"AAA")
            fill = {"symbol": "BBB", "ts_ns": 1_700_000_000_000_123_000, "seq": 117, "side": -1, "qty": 1.0,
                    "price": 99.5, "fee": 0.01, "maker": False, "mid": 99.51, "type": "fill"}
            await producer.send_and_wait(topics.fills, json.dumps(fill).encode(), key=b"BBB")
            # topics and partitions are not ordered with each other: wait for each one's last message
            got_star = await read_until(star, {"type": "pnl"}, {"type": "fill"}, {"symbol": "AAA", "seq": 119},
                                        {"symbol": "BBB", "seq": 119})
            got_a = await read_until(a, {"type": "pnl"}, {"symbol": "AAA", "seq": 119})
            received_ns = time.time_ns()
            after = stage_count("worker_to_server"), stage_count("server")
        # a server started from the beginning does read the early frame (it may fan it out before any
        # client has subscribed, so watch what it publishes)
        late = SignalServer(kafka, topics, port=0, tokens=[TOKEN], from_beginning=True)
        replayed: asyncio.Queue = asyncio.Queue()
        late.publish_signals = lambda frame, received_ns=None: replayed.put_nowait(frame) or 0
        async with late:
            async with asyncio.timeout(10):
                first = await replayed.get()
                while first.symbol != "AAA":
                    first = await replayed.get()
            assert (first.model_id, first.last_seq) == ("m1", 0)
    finally:
        await producer.stop()

    sigs = [m for m in got_star if m["type"] == "signal"]
    assert [m for m in got_star if m["type"] == "pnl"] == [pnl] == [m for m in got_a if m["type"] == "pnl"]
    assert [m for m in got_star if m["type"] == "fill"] == [fill]
    assert not [m for m in got_a if m["type"] == "fill"]  # a BBB fill is not for an AAA subscriber
    # stage latency: each of the 8 signal frames was timed on receipt, each signal record on its way out
    n_sig_sent = len(sigs) + len([m for m in got_a if m["type"] == "signal"])
    assert (after[0] - before[0], after[1] - before[1]) == (8, n_sig_sent)
    for sym in ("AAA", "BBB"):
        mine = [m for m in sigs if m["symbol"] == sym]
        expect = np.concatenate([r for r, _ in sent[sym]])
        assert [m["seq"] for m in mine] == expect["seq"].tolist()  # every record, in order, no stale one
        assert [m["target"] for m in mine] == expect["target"].tolist()
        np.testing.assert_allclose([m["p_up"] for m in mine], expect["p_up"], atol=1e-6)
        np.testing.assert_allclose([m["p_flat"] for m in mine], expect["p_flat"], atol=1e-6)
        assert [m["exch_ts_ns"] for m in mine] == expect["ts_ns"].tolist()
        assert {m["model"] for m in mine} == {"lgbm-7"}
        pts = [p for r, p in sent[sym] for _ in r]
        assert [m["producer_ts_ns"] for m in mine] == pts
        for m in mine:  # producer -> worker -> server -> client, all on one clock here
            assert m["producer_ts_ns"] < m["worker_ts_ns"] <= m["server_ts_ns"] <= received_ns
            assert 0 < (received_ns - m["producer_ts_ns"]) / 1e9 < 30
    # changes only: AAA targets 0 1 1 1 0 per frame -> the first record, then each change (+1, +4; +4 is also
    # the frame's last); a later frame's first 0 repeats the previous frame's last target
    assert [m["seq"] for m in got_a if m["type"] == "signal"] == [100] + [100 + 5 * k + j for k in range(4)
                                                                          for j in (1, 4)]
    assert {m["symbol"] for m in got_a} == {"AAA"}


def test_default_token_is_generated_and_printed() -> None:
    from streamsig.cli.serve import tokens_or_new

    assert tokens_or_new(["a", " ", "b"], {}) == (["a", "b"], False)
    (tok,), generated = tokens_or_new(None, {})
    assert generated and tok != tokens_or_new(None, {})[0][0]


def line(stream, timeout: float = 30.0) -> str:
    """One line from a child's pipe, or fail after ``timeout`` seconds instead of hanging."""
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "no output from the child process"
    return stream.readline()


@pytest.mark.slow
def test_serve_command_runs_and_stops_on_sigterm(kafka: str, unique_prefix: str, tmp_path) -> None:
    from streamsig.live.broker import free_port

    ws_port, metrics_port = free_port(), free_port()
    script = ("import typer; from streamsig.cli.serve import register; app = typer.Typer(); "
              "register(app); app()")
    env = {k: v for k, v in os.environ.items() if k != "STREAMSIG_TOKEN"}
    proc = subprocess.Popen([sys.executable, "-c", script, "serve", "--kafka", kafka, "--port", str(ws_port),
                             "--metrics-port", str(metrics_port), "--topic-prefix", unique_prefix],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        token = line(proc.stdout).strip().removeprefix("token: ")
        assert len(token) > 20
        ready = line(proc.stderr)
        assert f"ws://127.0.0.1:{ws_port}/" in ready and f"{unique_prefix}-signals" in ready, ready

        async def talk() -> None:
            async with connect(f"ws://127.0.0.1:{ws_port}/?token={token}") as ws:
                assert json.loads(await ws.recv())["type"] == "hello"
            with pytest.raises(InvalidStatus) as info:
                await connect(f"ws://127.0.0.1:{ws_port}/?token=nope")
            assert info.value.response.status_code == 401

        asyncio.run(talk())
        import urllib.request

        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        assert "streamsig_websocket_messages_sent_total 1.0" in body
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)  # drains the pipes: a full one would block the process
        assert proc.returncode == 0, err[-3000:]
        if "did not stop" in err:  # stopped by the grace bound: still a stop, but say where it hung
            warnings.warn("serve's graceful stop hung: " + err[-20000:])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_gives_up_a_stop_that_hangs_and_says_where() -> None:
    """A shutdown stuck past its grace still ends the process (status 0), with the stacks on stderr."""
    script = ("import asyncio, time\n"
              "from streamsig.cli.serve import _watchdog\n"
              "async def stuck_forever():\n"
              "    await asyncio.Event().wait()\n"
              "async def main():\n"
              "    t = asyncio.ensure_future(stuck_forever())\n"
              "    _watchdog(0.3, None, asyncio.get_running_loop())\n"
              "    await asyncio.sleep(0)\n"
              "    time.sleep(60)\n"
              "asyncio.run(main())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "did not stop within 0.3 s" in done.stderr
    assert "line 9 in main" in done.stderr, done.stderr  # the main thread's stack
    assert "stuck_forever" in done.stderr, done.stderr  # the pending task
