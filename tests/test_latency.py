"""Stage stamps end to end: the signal frame's stamps, and the stage histograms of worker, trader and server."""
from __future__ import annotations

import asyncio
import json
import struct
import time

import numpy as np
import pytest
from prometheus_client import generate_latest
from websockets.asyncio.client import connect

from streamsig.book.records import SIGNAL_DTYPE
from streamsig.book.sources import open_feeds
from streamsig.features import FeatureSpec
from streamsig.live.config import running
from streamsig.live.producer import produce
from streamsig.live.trader import build_trader
from streamsig.live.worker import build_worker
from streamsig.serve.ws import SignalServer
from streamsig.telemetry import REGISTRY, STAGES
from streamsig.trading import ExecConfig
from streamsig.trading.rules import OfiRule
from streamsig.wire.frames import FrameError
from streamsig.wire.signals import HEADER_SIZE, VERSION, decode_signals, encode_signals
from streamsig.wire.topics import ensure_topics

TOKEN = "stage-token"


def _records(n: int) -> np.ndarray:
    rec = np.zeros(n, SIGNAL_DTYPE)
    rec["seq"] = np.arange(n) + 10
    rec["target"] = 1.0
    return rec


def test_signal_frame_carries_three_stamps() -> None:
    data = encode_signals("BTC", "m", _records(2), 100, 300, 11, worker_received_ns=200)
    assert data[4] == VERSION == 4  # schema version
    f = decode_signals(data)
    assert (f.producer_ts_ns, f.worker_received_ns, f.worker_ts_ns, f.last_seq) == (100, 200, 300, 11)
    assert struct.unpack_from("<q", data, 84)[0] == 200  # offset 84, as the layout says
    with_epoch = decode_signals(encode_signals("BTC", "m", _records(1), 1, 3, 10, 77, worker_received_ns=2))
    assert (with_epoch.epoch, with_epoch.worker_received_ns) == (77, 2)


def test_version_3_frames_decode_with_epoch_0_and_older_ones_are_refused() -> None:
    rec = _records(2)
    # version 3 as written before the epoch: the same fields in a 96-byte header
    v3 = struct.pack("<4sBBBB16s32sqqqIqI", b"SSGS", 3, 3, 1, 0, b"BTC", b"m", 100, 300, 11, 2, 200, 0) + rec.tobytes()
    f = decode_signals(v3)
    assert (f.symbol, f.model_id, f.producer_ts_ns, f.worker_received_ns, f.worker_ts_ns, f.last_seq, f.epoch) == (
        "BTC", "m", 100, 200, 300, 11, 0)
    assert f.records["seq"].tolist() == [10, 11]
    relabelled = bytearray(encode_signals("BTC", "m", rec, 100, 300, 11, 5))
    relabelled[4] = 3  # a version 4 frame called 3: its records would start 8 bytes early
    with pytest.raises(FrameError, match="does not match count"):
        decode_signals(bytes(relabelled))
    for ver in (1, 2):
        old = bytearray(v3)
        old[4] = ver  # older layouts: their header and records mean something else
        with pytest.raises(FrameError, match=f"version {ver}"):
            decode_signals(bytes(old))


@pytest.mark.parametrize("offset,value,reason", [
    (4, 5, "version 5"),
    (92, 1, "non-zero reserved"),
    (7, 1, "non-zero reserved"),
])
def test_codec_stays_strict(offset: int, value: int, reason: str) -> None:
    data = bytearray(encode_signals("BTC", "m", _records(1), 1, 3, 10, worker_received_ns=2))
    data[offset] = value
    with pytest.raises(FrameError, match=reason):
        decode_signals(bytes(data))
    assert HEADER_SIZE == 104


def _stage_counts(what: str = "count") -> dict[str, float]:
    return {s: REGISTRY.get_sample_value(f"streamsig_stage_latency_seconds_{what}", {"stage": s}) or 0.0
            for s in STAGES}


@pytest.mark.slow
async def test_stage_histograms_of_worker_trader_and_server(stream_config, tmp_path) -> None:
    cfg = stream_config
    await ensure_topics(cfg.bootstrap, cfg.topics.all(), cfg.partitions)
    spec = FeatureSpec(levels=10)
    feeds = open_feeds("synthetic", symbols=["STA", "STB"], n_updates=1500, seed=3)
    ends = {f.symbol: int(f.read_all()["seq"][-1]) for f in feeds}
    before, before_sum = _stage_counts(), _stage_counts("sum")
    worker = build_worker(cfg, spec, OfiRule(size=1.0), "ofi-rule", state_dir=tmp_path / "state")
    trader = build_trader(cfg, ExecConfig(fee_bps=1.0), model="ofi-rule")
    got: list[tuple[dict, int]] = []
    async with running(worker, ready_timeout_s=60), running(trader, ready_timeout_s=60), \
            SignalServer(cfg.bootstrap, cfg.topics, port=0, tokens=[TOKEN], partitions=cfg.partitions,
                         fetch_max_wait_ms=cfg.fetch_max_wait_ms) as server:
        ws = await connect(f"ws://127.0.0.1:{server.port}/?token={TOKEN}")
        await ws.recv()  # hello
        await ws.send(json.dumps({"op": "subscribe", "symbols": "*"}))
        await ws.recv()
        await produce(feeds, cfg.bootstrap, cfg.topics.book_events, speed=None, frame_size=100, snapshot_every=0)
        seen: dict[str, int] = {}
        async with asyncio.timeout(60):
            while any(seen.get(s, -1) < e for s, e in ends.items()):
                m = json.loads(await ws.recv())
                if m["type"] == "signal":
                    got.append((m, time.time_ns()))
                    seen[m["symbol"]] = max(seen.get(m["symbol"], -1), m["seq"])
        await ws.close()
        async with asyncio.timeout(30):  # the trader reads the same signals on its own
            while _stage_counts()["trader"] == before["trader"]:
                await asyncio.sleep(0.2)

    stamps = ("producer_ts_ns", "worker_received_ns", "worker_ts_ns", "server_ts_ns", "sent_ts_ns")
    for m, received in got:  # one clock here: every hop's stamp follows the one before it
        chain = [m[k] for k in stamps] + [received]
        assert chain == sorted(chain) and chain[0] > 0, m
    after = _stage_counts()
    grew = {s: after[s] - before[s] for s in STAGES}
    assert all(n > 0 for n in grew.values()), grew
    assert grew["server"] == grew["end_to_end"] == len(got)  # one client: one observation per message sent
    assert grew["produce_to_fetch"] == grew["produce_to_worker"]  # every frame once, none redelivered
    assert grew["publish"] <= grew["worker"]  # once per batch published, the worker stage once per symbol in it
    took = {s: _stage_counts("sum")[s] - before_sum[s] for s in ("produce_to_fetch", "produce_to_worker")}
    assert 0 < took["produce_to_fetch"] <= took["produce_to_worker"], took  # fetched before the worker took it
    text = generate_latest(REGISTRY).decode()
    for s in STAGES:
        assert f'streamsig_stage_latency_seconds_bucket{{le="0.0001",stage="{s}"}}' in text
        assert f'streamsig_stage_latency_seconds_bucket{{le="10.0",stage="{s}"}}' in text
