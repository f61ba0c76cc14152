"""The live demo: broker, producer, worker, trader, websocket server and metrics in one process."""
from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamsig.book.instrument import Instrument
from streamsig.book.sources import Feed
from streamsig.features import FeatureSpec
from streamsig.trading import ExecConfig, PolicyConfig


async def run_demo(feeds: list[Feed], bootstrap: str, strategy: Any, model_id: str, spec: FeatureSpec,
                   speed: float | None, duration: float | None, ws_port: int, metrics_port: int,
                   token: str | None, state_dir: Path, say=print, exec_cfg: ExecConfig = ExecConfig(),
                   policy: PolicyConfig = PolicyConfig(), prefix: str = "demo",
                   partitions: int = 4, page_port: int = 8766, challenger: Any = None,
                   fee_for: Callable[[Instrument | None], float] | None = None) -> dict[str, Any]:
    """Run everything until the replay ends (plus a short drain), ``duration`` s, or Ctrl-C.

    ``challenger`` (a factory of ``OnlineChallenger``) runs the online model beside the champion.
    The replay starts from the first event every time, so the worker's checkpoints go to a
    folder of this run under ``state_dir`` (removed at the end): a checkpoint left by an earlier
    run would make the worker skip, as already applied, everything up to where that run stopped.

    ``exec_cfg`` and ``policy`` are the paper trader's (the strategy already holds its policy);
    ``fee_for(instrument)``, when given, is each feed's taker fee (its instrument's).
    """
    from streamsig.serve.page import PageServer
    from streamsig.telemetry import serve_metrics
    from streamsig.live.config import stream_config
    from streamsig.live.config import running
    from streamsig.live.producer import ProduceStats, produce
    from streamsig.wire.topics import ensure_topics
    from streamsig.live.trader import build_trader
    from streamsig.live.worker import build_worker

    cfg = stream_config(bootstrap, prefix, partitions, app_id=f"streamsig-demo-{secrets.token_hex(3)}",
                        session_timeout_s=3.0, heartbeat_s=0.5)
    await ensure_topics(bootstrap, cfg.topics.all(), cfg.partitions)
    serve_metrics(metrics_port)
    run_dir = state_dir / cfg.app_id
    worker = build_worker(cfg, spec, strategy, model_id, run_dir, challenger=challenger)
    by_symbol = {f.symbol: f.instrument for f in feeds}
    trader = build_trader(cfg, exec_cfg, policy, book_capacity=spec.book_capacity,
                          instrument_for=lambda sym, _tick: by_symbol.get(sym), fee_for=fee_for)
    token = token or secrets.token_urlsafe(12)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(s, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(shutil.rmtree, run_dir, True)
        # the page and its websocket first: a client can connect while the apps join their groups
        server = await _start_ws(stack, bootstrap, cfg, ws_port, token)
        page = PageServer("127.0.0.1", page_port, server.port).start()
        server.allow_origins(page.origins())
        stack.callback(page.stop)
        await stack.enter_async_context(running(worker, ready_timeout_s=60))
        await stack.enter_async_context(running(trader, ready_timeout_s=60))
        t0 = time.monotonic()  # --duration counts from here, once every part is up
        say(f"broker   {bootstrap} (topics prefixed '{cfg.topic_prefix}-')")
        say(f"metrics  http://127.0.0.1:{metrics_port}/metrics")
        if server:
            say(f"signals  ws://127.0.0.1:{server.port}/?token={token}  "
                "(send {\"op\":\"subscribe\",\"symbols\":\"*\"})")
        say(f"page     {page.url(token)}")
        say(f"model    {model_id}; symbols {', '.join(f.symbol for f in feeds)}; "
            f"speed {'max' if speed is None else f'{speed:g}x'}")
        sent = ProduceStats()
        prod = asyncio.create_task(produce(feeds, bootstrap, cfg.topics.book_events, speed, 500, 20.0, 5000,
                                           stop=stop, stats=sent))
        last = 0.0
        while not stop.is_set():
            await asyncio.sleep(0.2)
            now = time.monotonic()
            if now - last >= 1.0:
                last = now
                say(f"[{now - t0:6.1f}s] {status_line(worker, trader)}", status=True)
            if duration is not None and now - t0 >= duration:
                break
            if prod.done() and (prod.exception() or _caught_up(worker, trader, sent)):
                break
        stop.set()
        stats = await prod
        say(f"[{time.monotonic() - t0:6.1f}s] {status_line(worker, trader)}")
    return {"events": stats.events, "frames": stats.frames,
            "pnl": {s: t.pnl() for s, t in getattr(trader, "streamsig_traders", {}).items()}}


def _caught_up(worker: Any, trader: Any, sent: Any) -> bool:
    """True once the worker has applied, and the trader traded, every sequence sent."""
    engines = getattr(worker, "streamsig_engines", {})
    traders = getattr(trader, "streamsig_traders", {})
    return all(sym in engines and engines[sym].last_seq >= seq and sym in traders
               and traders[sym].traded_seq >= seq for sym, seq in sent.last_seq.items())


async def _start_ws(stack: contextlib.AsyncExitStack, bootstrap: str, cfg: Any, port: int, token: str) -> Any:
    from streamsig.serve.ws import SignalServer

    server = SignalServer(bootstrap, cfg.topics, "127.0.0.1", port, [token])
    await stack.enter_async_context(server)
    return server


def status_line(worker_app: Any, trader_app: Any) -> str:
    """One line: per symbol last sequence, position and P&L."""
    parts = []
    for sym, eng in sorted(getattr(worker_app, "streamsig_engines", {}).items()):
        tr = getattr(trader_app, "streamsig_traders", {}).get(sym)
        rec = tr.pnl() if tr else {}
        pnl = rec.get("pnl")
        parts.append(f"{sym} seq {eng.last_seq} pos {rec.get('position', 0):+g} "
                     f"pnl {pnl if pnl is not None else 0:+.2f}")
    return " | ".join(parts) or "waiting for data..."
