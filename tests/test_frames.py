"""Frame codec, dead-letter records and the Framer (no broker needed)."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from streamsig.book import events as E
from streamsig.wire.frames import (
    HEADER_SIZE,
    FrameError,
    Framer,
    decode_frame,
    dead_letter_record,
    encode_frame,
    parse_dead_letter,
    peek_symbol,
)


def make_events(n: int, seq0: int = 100, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = E.empty(n)
    ev["flags"] = E.DEPTH | E.BUY
    ev["seq"] = seq0 + np.arange(n) // 2
    ev["exch_ts"] = rng.integers(0, 2**62, n)
    ev["price"] = rng.integers(-(2**40), 2**40, n)
    ev["size"] = rng.random(n) * 100
    ev["order_id"] = rng.integers(0, 2**62, n)
    return ev


@pytest.mark.parametrize("n", [1, 2, 500, 4096])
def test_round_trip_is_exact_and_zero_copy(n: int) -> None:
    ev = make_events(n)
    data = encode_frame("BTC-USD", ev, 1_700_000_000_123_456_789)
    assert len(data) == HEADER_SIZE + 64 * n
    f = decode_frame(data)
    assert (f.version, f.symbol, f.count, f.first_seq, f.epoch) == (2, "BTC-USD", n, 100, 0)
    assert f.producer_ts_ns == 1_700_000_000_123_456_789
    assert f.events.tobytes() == ev.tobytes()
    assert np.shares_memory(f.events, np.frombuffer(data, np.uint8))
    assert f.events.flags.aligned and not f.events.flags.writeable
    with pytest.raises(ValueError):
        f.events["size"][0] = 1.0


def test_writable_buffers_give_read_only_views() -> None:
    data = bytearray(encode_frame("X", make_events(3), 0))
    f = decode_frame(memoryview(data))
    assert not f.events.flags.writeable
    assert f.events.tobytes() == make_events(3).tobytes()


def test_empty_frame_and_unicode_symbol() -> None:
    f = decode_frame(encode_frame("ÄPFEL", E.empty(0), 5))
    assert (f.symbol, f.count, f.first_seq, len(f.events)) == ("ÄPFEL", 0, -1, 0)
    assert peek_symbol(encode_frame("ETH-USD", make_events(1), 0)) == "ETH-USD"


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 300), sym=st.text(min_size=1, max_size=4), ts=st.integers(0, 2**63 - 1))
def test_round_trip_property(n: int, sym: str, ts: int) -> None:
    ev = make_events(n, seed=n)
    f = decode_frame(encode_frame(sym, ev, ts))
    assert (f.symbol, f.count, f.producer_ts_ns) == (sym, n, ts)
    assert f.events.tobytes() == ev.tobytes()


def test_encode_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="symbol"):
        encode_frame("", make_events(1), 0)
    with pytest.raises(ValueError, match="symbol"):
        encode_frame("X" * 17, make_events(1), 0)
    with pytest.raises(ValueError, match="EVENT_DTYPE"):
        encode_frame("X", np.zeros(3), 0)


def _patched(data: bytes, offset: int, fmt: str, value: object) -> bytes:
    buf = bytearray(data)
    struct.pack_into(fmt, buf, offset, value)
    return bytes(buf)


GOOD = encode_frame("SYM", make_events(4), 0)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "short buffer"),
        (GOOD[:HEADER_SIZE - 1], "short buffer"),
        (b"XXXX" + GOOD[4:], "bad magic"),
        (_patched(GOOD, 4, "<B", 9), "unknown frame version 9"),
        (_patched(GOOD, 6, "<H", 32), "itemsize"),
        (_patched(GOOD, 5, "<B", 0), "symbol length"),
        (_patched(GOOD, 5, "<B", 17), "symbol length"),
        (_patched(GOOD, 8, "<B", 0xFF), "not utf-8"),
        (GOOD[:-1], "length mismatch"),
        (GOOD + b"\x00" * 64, "length mismatch"),
        (_patched(GOOD, 32, "<I", 5), "length mismatch"),
        (_patched(GOOD, 24, "<q", 7), "first_seq"),
        (_patched(GOOD, 4, "<B", 1), "unknown frame version 1"),
        (_patched(GOOD, 12, "<B", ord("x")), "padding"),
        (_patched(GOOD, 48, "<q", -1), "bad session fields"),
        (_patched(GOOD, 56, "<q", 3), "bad session fields"),
    ],
    ids=["empty", "short", "magic", "version", "itemsize", "symlen0", "symlen17", "utf8",
         "truncated", "trailing", "count", "first_seq", "v1", "padding", "epoch", "reserved"],
)
def test_corrupt_frames_raise_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(data)
    assert reason in info.value.reason
    assert "\n" not in str(info.value)


def test_dead_letter_keeps_raw_bytes() -> None:
    raw = bytes(range(256))
    rec = dead_letter_record("BTC-USD", "bad magic", 42, {"partition": 1, "offset": 9}, raw)
    back = parse_dead_letter(rec)
    assert back["raw"] == raw and back["raw_len"] == 256
    assert (back["symbol"], back["reason"], back["seq"], back["detail"]) == (
        "BTC-USD", "bad magic", 42, {"partition": 1, "offset": 9})
    assert "ts_ns" not in back  # deterministic unless a timestamp is given
    assert rec == dead_letter_record("BTC-USD", "bad magic", 42, {"partition": 1, "offset": 9}, raw)
    none = parse_dead_letter(dead_letter_record(None, "x", None, "é", None, ts_ns=5))
    assert (none["raw"], none["detail"], none["ts_ns"]) == (None, "é", 5)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0

    def __call__(self) -> int:
        return self.t


def test_framer_bounds_by_count() -> None:
    fr = Framer("X", max_events=500, max_delay_ns=None)
    ev = make_events(1250)
    frames = fr.add(ev[:700]) + fr.add(ev[700:])
    assert [decode_frame(f).count for f in frames] == [500, 500]
    assert fr.pending == 250 and fr.poll() is None and fr.deadline_ns is None
    frames.append(fr.flush())
    assert fr.flush() is None and fr.pending == 0
    joined = np.concatenate([decode_frame(f).events for f in frames])
    assert joined.tobytes() == ev.tobytes()


def test_framer_size_one_emits_every_event() -> None:
    fr = Framer("X", max_events=1)
    frames = fr.add(make_events(3))
    assert [decode_frame(f).count for f in frames] == [1, 1, 1]
    assert [decode_frame(f).first_seq for f in frames] == [100, 100, 101]


def test_framer_bounds_by_time() -> None:
    clock, wall = FakeClock(), FakeClock()
    wall.t = 1_000_000_000
    fr = Framer("X", max_events=100, max_delay_ns=5_000, clock=clock, wall_clock=wall)
    assert fr.add(make_events(3)) == []
    assert fr.deadline_ns == 5_000
    clock.t = 4_999
    assert fr.poll() is None
    assert fr.add(make_events(2, seq0=200)) == []  # the oldest event sets the deadline
    clock.t = 5_000
    f = decode_frame(fr.poll())
    assert (f.count, f.producer_ts_ns, fr.pending, fr.deadline_ns) == (5, 1_000_000_000, 0, None)
    clock.t = 9_000
    assert fr.add(make_events(1)) == [] and fr.deadline_ns == 14_000
    assert [decode_frame(x).count for x in fr.add(make_events(1), now_ns=14_000)] == [2]


def test_framer_zero_delay_emits_each_call_and_copies_input() -> None:
    fr = Framer("X", max_events=10, max_delay_ns=0)
    ev = make_events(4)
    frames = fr.add(ev)
    ev["seq"] = -1  # the framer copied the events
    assert len(frames) == 1 and decode_frame(frames[0]).events["seq"].tolist() == [100, 100, 101, 101]


def test_framer_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        Framer("X", max_events=0)
    with pytest.raises(ValueError):
        Framer("X", max_delay_ns=-1)
    with pytest.raises(ValueError):
        Framer("", max_events=1)
    with pytest.raises(ValueError):
        Framer("X").add(np.zeros(2))
