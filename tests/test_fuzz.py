"""Fuzzing the worker through the real broker: random mixes of malformed input between good frames.

Each example starts a worker on fresh topics and sends a good stream (frames
cut at update ends, periodic snapshots) with bad items drawn from every class
in between: raw bytes, oversized garbage, frames with corrupt headers, NaN and
infinite sizes, negative sizes, zero-event frames, absurd prices, sequence
jumps and reversals, unknown and hostile symbols, and a crossed book at the
end. The worker must stay up, dead-letter every bad item once with its reason,
count them, and answer the good frames exactly as the engine does offline.
"""
from __future__ import annotations

import asyncio
import struct
import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from streamsig import telemetry as M
from streamsig.book import events as E
from streamsig.book.book import Book
from streamsig.book.sources import open_feeds
from streamsig.engine import SignalEngine
from streamsig.features import FeatureSpec
from streamsig.live.config import StreamConfig, running
from streamsig.live.producer import with_snapshots
from streamsig.live.worker import build_worker
from streamsig.trading.rules import OfiRule
from streamsig.wire.frames import encode_frame, parse_dead_letter
from streamsig.wire.signals import decode_signals
from streamsig.wire.topics import ensure_topics
from tests.test_stream_e2e import collect

pytestmark = pytest.mark.slow
SPEC = FeatureSpec(levels=10)
HOSTILE = ["F\x00X", "F\u202eX", "F X", "F\u200fX"]
WHOLE = {"bytes": "BAD_FRAME", "oversized": "BAD_FRAME", "header": "BAD_FRAME", "jump": "SEQUENCE_JUMP",
         "reversal": "SEQUENCE", "hostile": "BAD_SYMBOL", "unknown": "UNKNOWN_SYMBOL", "empty": "BAD_COUNT",
         "price": "BAD_PRICE"}
INSERTS = {"nan": ("NAN", np.nan), "inf": ("NAN", np.inf), "negative": ("NEGATIVE_SIZE", -3.0)}
KINDS = sorted(WHOLE) + sorted(INSERTS)


def good_frames(seed: int) -> tuple[list[np.ndarray], float]:
    feed = open_feeds("synthetic", symbols=["G"], n_updates=500, seed=seed)[0]
    pieces, _, _ = with_snapshots(feed.read_all(), Book(capacity=64), every=120, since=0)
    ev = np.concatenate(pieces)
    eob = np.flatnonzero(ev["flags"] & E.EOB)
    cuts = [0] + [int(eob[min(i, len(eob) - 1)]) + 1 for i in range(70, len(eob), 70)] + [len(ev)]
    frames = [ev[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]
    return frames, feed.tick_size


def with_insert(frame: np.ndarray, size: float, rnd: int) -> np.ndarray:
    """``frame`` with one bad depth event placed at the start of a non-snapshot update (same seq)."""
    starts = [k for k in range(len(frame)) if not frame["flags"][k] & E.SNAPSHOT
              and (k == 0 or frame["seq"][k - 1] < frame["seq"][k])]
    k = starts[rnd % len(starts)]
    bad = frame[k:k + 1].copy()
    bad["flags"], bad["size"] = E.DEPTH | E.BUY, size
    return np.concatenate([frame[:k], bad, frame[k:]])


def _patch(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


@st.composite
def plans(draw: st.DrawFn) -> tuple[int, list[tuple[int, str, int]]]:
    """(feed seed, [(position among good frames, kind, random int)]); position 0 is before any good frame."""
    seed = draw(st.integers(0, 50))
    n = draw(st.integers(1, 8))
    items = draw(st.lists(st.tuples(st.integers(0, 7), st.sampled_from(KINDS), st.integers(0, 2**16)),
                          min_size=n, max_size=n))
    crossed = draw(st.booleans())
    return seed, items + ([(99, "crossed", 0)] if crossed else [])


def build(plan, sym: str) -> tuple[list[tuple[str, bytes]], np.ndarray, dict[str, int], float]:
    """The messages to send, the events the worker must apply, and the dead letters expected by reason."""
    seed, items = plan
    goods, tick = good_frames(seed)
    items = [(0 if kind not in ("jump", "reversal") else max(1, pos), kind, r) for pos, kind, r in items
             if kind != "crossed"] + [i for i in items if i[1] == "crossed"]
    inserts: dict[int, list[tuple[float, int]]] = {}
    expected: dict[str, int] = {}
    out: list[tuple[str, bytes]] = []
    applied: list[np.ndarray] = []
    ts = 1
    for pos, kind, r in items:
        if kind in INSERTS:
            inserts.setdefault(min(pos, len(goods) - 1), []).append((INSERTS[kind][1], r))
            expected[INSERTS[kind][0]] = expected.get(INSERTS[kind][0], 0) + 1
    book = Book(capacity=64)
    last_seq = -1
    for i in range(len(goods) + 1):
        for pos, kind, r in items:
            if kind in INSERTS or (min(pos, len(goods)) != i and kind != "crossed") or (kind == "crossed"
                                                                                      and i != len(goods)):
                continue
            ts += 1
            nxt = goods[min(i, len(goods) - 1)]
            if kind == "bytes":
                value = bytes((r * 7 + k) % 256 for k in range(r % 200))
            elif kind == "oversized":
                value = b"SSGF" + bytes(1_200_000)
            elif kind == "header":
                good = encode_frame(sym, nxt, ts, tick, 1)
                value = [_patch(good, 4, "<B", 9), _patch(good, 6, "<H", 32), _patch(good, 20, "<B", 65),
                         _patch(good, 56, "<q", 1), _patch(good, 24, "<q", 12345), good[:-1]][r % 6]
            elif kind == "jump":
                far = nxt.copy()
                far["seq"] += 10**9
                value = encode_frame(sym, far, ts, tick, 1)
            elif kind == "reversal":
                value = encode_frame(sym, goods[0], ts, tick, 1)  # produced later, yet behind: no redelivery
            elif kind == "hostile":
                out.append((HOSTILE[r % len(HOSTILE)], encode_frame(HOSTILE[r % len(HOSTILE)], nxt, ts, tick, 1)))
                expected["BAD_SYMBOL"] = expected.get("BAD_SYMBOL", 0) + 1
                continue
            elif kind == "unknown":
                out.append(("U" + sym, encode_frame("U" + sym, nxt, ts, tick, 1)))
                expected["UNKNOWN_SYMBOL"] = expected.get("UNKNOWN_SYMBOL", 0) + 1
                continue
            elif kind == "empty":
                value = encode_frame(sym, nxt[:0], ts, tick, 1)
            elif kind == "price":
                big = nxt.copy()
                big["price"][r % len(big)] = 2**62
                big["flags"][r % len(big)] |= E.DEPTH
                value = encode_frame(sym, big, ts, tick, 1)
            else:  # crossed: a bid above the best ask, as the last update
                bad = E.empty(1)
                bad["flags"], bad["seq"], bad["size"] = E.DEPTH | E.BUY | E.EOB, last_seq + 1, 1.0
                bad["price"] = book.best_ask() + 1
                value = encode_frame(sym, bad, ts, tick, 1)
                applied.append(bad)
                expected["CROSSED"] = expected.get("CROSSED", 0) + 1
                out.append((sym, value))
                continue
            expected[WHOLE[kind]] = expected.get(WHOLE[kind], 0) + 1
            out.append((sym, value))
        if i < len(goods):
            fr = goods[i]
            book.apply(fr)
            last_seq = int(fr["seq"][-1])
            for size, r in inserts.get(i, []):
                fr = with_insert(fr, size, r)
            ts += 1
            out.append((sym, encode_frame(sym, np.ascontiguousarray(fr), ts, tick, 1)))
            applied.append(fr)
    return out, np.concatenate(applied), expected, tick


def _dead_counts() -> dict[str, float]:
    return {s.labels["reason"]: s.value for m in M.REGISTRY.collect() if m.name == "streamsig_dead_letters"
            for s in m.samples if s.name.endswith("_total")}


async def run_one(kafka: str, plan, tmp_path) -> None:
    from aiokafka import AIOKafkaProducer

    prefix = f"t-fuzz-{uuid.uuid4().hex[:8]}"
    sym = "F" + uuid.uuid4().hex[:6].upper()
    cfg = StreamConfig(bootstrap=kafka, app_id=prefix, topic_prefix=prefix, partitions=1, session_timeout_s=3.0,
                       heartbeat_s=0.5, datadir=str(tmp_path / prefix), allow_symbols=sym)
    messages, events, expected, tick = build(plan, sym)
    offline = SignalEngine(sym, SPEC, tick, OfiRule()).on_events(events)
    want = offline.signals
    await ensure_topics(cfg.bootstrap, cfg.topics.all(), cfg.partitions)
    before = _dead_counts()
    async with running(build_worker(cfg, SPEC, OfiRule(), "ofi", tmp_path / prefix / "state"), ready_timeout_s=30):
        p = AIOKafkaProducer(bootstrap_servers=cfg.bootstrap, max_request_size=4 * 1024 * 1024)
        await p.start()
        for key, value in messages:
            await p.send_and_wait(cfg.topics.book_events, value, key=key.encode("utf-8", "replace"))
        await p.stop()
        n_dead = sum(expected.values())
        last = int(want["seq"][-1])
        sig = await collect(cfg.bootstrap, cfg.topics.signals,
                            lambda m: any(decode_signals(v).last_seq >= last for _, v in m), timeout=30)
        await collect(cfg.bootstrap, cfg.topics.dead_letter, lambda m: len(m) >= n_dead, timeout=20)
        await asyncio.sleep(0.3)  # anything extra would show up now
        dead = await collect(cfg.bootstrap, cfg.topics.dead_letter, lambda m: False, timeout=1.0)
    got_reasons: dict[str, int] = {}
    for _, v in dead:
        r = parse_dead_letter(v)["reason"]
        got_reasons[r] = got_reasons.get(r, 0) + 1
    assert got_reasons == expected, (plan, got_reasons, expected)
    after = _dead_counts()
    assert {r: after.get(r, 0) - before.get(r, 0) for r in expected} == expected  # counters match
    got = np.concatenate([decode_signals(v).records for _, v in sig]) if sig else want[:0]
    assert got.tobytes() == want.tobytes(), plan  # the good frames answered as offline


@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan=plans())
@example(plan=(3, [(i % 5 + 1, kind, 11 * i) for i, kind in enumerate(KINDS)] + [(99, "crossed", 0)]))  # every class
def test_worker_survives_random_malformed_input(kafka: str, tmp_path_factory, plan) -> None:
    asyncio.run(run_one(kafka, plan, tmp_path_factory.mktemp("fuzz")))
