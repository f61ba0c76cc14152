"""The README's demo, as a user runs it: the whole pipeline, and a websocket client gets signals."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamsig.live.broker import free_port

pytestmark = pytest.mark.slow


async def test_demo_runs_and_a_websocket_client_receives_signals(tmp_path) -> None:
    import websockets

    ws_port, metrics_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamsig.cli", "demo", "--duration", "30", "--speed", "2",
         "--ws-port", str(ws_port), "--metrics-port", str(metrics_port), "--token", "t0k"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    got: list[dict] = []
    try:
        deadline = time.monotonic() + 60
        ws = None
        while ws is None and time.monotonic() < deadline:
            try:
                ws = await websockets.connect(f"ws://127.0.0.1:{ws_port}/?token=t0k")
            except OSError:
                await asyncio.sleep(0.5)
        assert ws is not None, "the demo's websocket server never came up"
        await ws.send(json.dumps({"op": "subscribe", "symbols": "*"}))
        while time.monotonic() < deadline and sum(m.get("type") == "signal" for m in got) < 5:
            try:
                got.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=5)))
            except asyncio.TimeoutError:
                pass
        await ws.close()
    finally:
        out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err[-2000:]
    signals = [m for m in got if m.get("type") == "signal"]
    assert len(signals) >= 5, (got[:5], out[-500:])
    card = json.loads((Path(__file__).resolve().parents[1] / "models" / "default" / "card.json").read_text())
    assert {s["model"] for s in signals} == {card["model_id"]}
    assert {s["symbol"] for s in signals} <= {"SYNA", "SYNB", "SYNC"}
    assert all(s["producer_ts_ns"] <= s["worker_ts_ns"] for s in signals)
    assert "stopped cleanly" in out
    assert "page     http://127.0.0.1:" in out and "/?token=t0k" in out
    # the next demo in this folder replays from the first event again: no worker checkpoint is left to resume
    state = tmp_path / ".streamsig" / "demo-state"
    assert not state.exists() or not list(state.rglob("*.ckpt")), sorted(state.rglob("*"))
