"""Bounded per-symbol cost and sane values: symbols capped and validated, prices, ticks, counts checked."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from streamsig import telemetry as M
from streamsig.backtest.runner import run_backtest
from streamsig.book import events as E
from streamsig.book.sources import open_feeds
from streamsig.features import FeatureSpec
from streamsig.live.checkpoint import symbol_file
from streamsig.live.config import running
from streamsig.live.guard import SymbolGate, check_symbol, check_values
from streamsig.live.worker import build_worker
from streamsig.trading.rules import OfiRule
from streamsig.wire.frames import decode_frame, encode_frame, parse_dead_letter
from streamsig.wire.signals import decode_signals
from streamsig.wire.topics import ensure_topics
from tests.test_stream_e2e import collect

SPEC = FeatureSpec(levels=10)
HOSTILE = ["X\x00Y", "A\u202eB", "A B", "\u200fRTL", "TAB\t"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_symbol_names_are_refused(name: str) -> None:
    assert check_symbol(name) is not None
    reason, _ = SymbolGate().check(name, {})
    assert reason.name == "BAD_SYMBOL"


def test_symbol_cap_and_allow_list() -> None:
    gate = SymbolGate(max_symbols=2)
    assert gate.check("A", {}) is None and gate.check("B", {"A"}) is None
    assert gate.check("C", {"A", "B"})[0].name == "UNKNOWN_SYMBOL"
    assert gate.check("A", {"A", "B"}) is None  # a symbol already held always passes
    only = SymbolGate(allow=["BTC-USD"])
    assert only.check("ETH-USD", {})[0].name == "UNKNOWN_SYMBOL" and only.check("BTC-USD", {}) is None


def _frame(events: np.ndarray, tick: float = 0.01) -> object:
    return decode_frame(encode_frame("S", np.ascontiguousarray(events), 1, tick, 1))


def test_values_out_of_range_have_a_reason_each() -> None:
    ev = E.empty(2)
    ev["flags"] = [E.DEPTH | E.BUY, E.DEPTH | E.SELL | E.EOB]
    ev["price"], ev["size"] = [100, 101], [1.0, 1.0]
    assert check_values(_frame(ev)) is None
    assert check_values(_frame(ev[:0]))[0].name == "BAD_COUNT"
    big = ev.copy()
    big["price"][1] = 2**62
    reason, why = check_values(_frame(big))
    assert reason.name == "BAD_PRICE" and "event 1" in why
    low = ev.copy()
    low["price"][0] = -(2**63)
    assert check_values(_frame(low))[0].name == "BAD_PRICE"
    assert check_values(_frame(ev, 1e-8), tick_size=0.01)[0].name == "BAD_TICK"
    assert check_values(_frame(ev, 0.01), tick_size=0.01) is None


def _label_values() -> set[str]:
    return {v for m in M.REGISTRY.collect() for s in m.samples for v in s.labels.values()}


@pytest.mark.slow
async def test_worker_caps_symbols_and_dead_letters_bad_values(stream_config, tmp_path) -> None:
    from aiokafka import AIOKafkaProducer

    cfg = stream_config.replace(max_symbols=2)
    await ensure_topics(cfg.bootstrap, cfg.topics.all(), cfg.partitions)
    feeds = open_feeds("synthetic", symbols=["AA", "BB", "CC"], n_updates=600, seed=3)
    evs = {f.symbol: f.read_all() for f in feeds}
    tick = feeds[0].tick_size
    a = evs["AA"]
    cut = int(np.flatnonzero(a["seq"] == 300)[0])
    nxt = np.ascontiguousarray(a[cut:cut + 3])
    big = nxt.copy()
    big["price"] = 2**62
    sent: list[tuple[str, bytes]] = [
        ("AA", encode_frame("AA", np.ascontiguousarray(a[:cut]), 1, tick, 1)),
        ("BB", encode_frame("BB", evs["BB"], 1, tick, 1)),
        ("CC", encode_frame("CC", evs["CC"], 1, tick, 1)),  # a third symbol: over the cap
        *[(s, encode_frame(s, evs["BB"][:5], 1, tick, 1)) for s in HOSTILE],
        ("AA", encode_frame("AA", big, 2, tick, 1)),  # 2**62 ticks
        ("AA", encode_frame("AA", nxt, 3, 1e-8, 1)),  # a tick unlike the symbol's
        ("AA", encode_frame("AA", nxt[:0], 4, tick, 1)),  # no events
        ("AA", encode_frame("AA", np.ascontiguousarray(a[cut:]), 5, tick, 1)),
    ]
    state = tmp_path / "state"
    worker = build_worker(cfg, SPEC, OfiRule(), "ofi", state, checkpoint_s=0.2)
    async with running(worker, ready_timeout_s=30):
        p = AIOKafkaProducer(bootstrap_servers=cfg.bootstrap)
        await p.start()
        for sym, value in sent[:2]:
            await p.send_and_wait(cfg.topics.book_events, value, key=sym.encode())
        # symbols sit on different partitions, so the cap admits whichever arrives first: hold AA and BB first
        loop = asyncio.get_running_loop()
        end = loop.time() + 30
        while set(worker.streamsig_engines) != {"AA", "BB"} and loop.time() < end:
            await asyncio.sleep(0.05)
        for sym, value in sent[2:]:
            await p.send_and_wait(cfg.topics.book_events, value, key=sym.encode())
        await p.stop()
        last = int(a["seq"][-1])
        sig = await collect(cfg.bootstrap, cfg.topics.signals,
                            lambda m: any(decode_signals(v).symbol == "AA" and decode_signals(v).last_seq == last
                                          for _, v in m))
        dead = await collect(cfg.bootstrap, cfg.topics.dead_letter, lambda m: len(m) >= 4 + len(HOSTILE))
        await asyncio.sleep(0.5)  # a checkpoint
    recs = [parse_dead_letter(v) for _, v in dead]
    by_reason = sorted((r["reason"], r["symbol"]) for r in recs)
    assert by_reason == sorted([("UNKNOWN_SYMBOL", "CC"), ("BAD_PRICE", "AA"), ("BAD_TICK", "AA"),
                                ("BAD_COUNT", "AA")] + [("BAD_SYMBOL", s) for s in HOSTILE])
    assert set(worker.streamsig_engines) == {"AA", "BB"}
    labels = _label_values()
    assert not any(s in labels for s in HOSTILE + ["CC"])
    assert {p.name for p in state.iterdir()} == {symbol_file(s) for s in ("AA", "BB")}  # no state for the rest
    got = np.concatenate([decode_signals(v).records for _, v in sig if decode_signals(v).symbol == "AA"])
    offline = run_backtest(feeds[:1], SPEC, strategy=OfiRule(), baselines=[]).signals["AA"]
    assert got.tobytes() == offline.tobytes()  # the refused frames changed nothing
