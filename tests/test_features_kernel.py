"""The compiled kernel equals the independent reference, per event and in batch."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from streamsig.book import events as E
from streamsig.features import FeatureSpec, FeatureState, compute_features
from tests.reference_features import random_events, reference_features

SPEC = FeatureSpec(levels=5, depth_ks=(1, 3), ofi_windows=(3, 20), ret_rows=(1, 5, 20),
                   rv_rows=(5, 20), time_windows=(1.0, 5.0), trade_window=4)


def assert_frames_close(kernel: np.ndarray, ref, names: list[str]) -> None:
    for j, name in enumerate(names):
        a, b = kernel[:, j], ref[name].to_numpy(float)
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=name)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 400), levels=st.integers(1, 6))
def test_kernel_equals_reference_on_random_books(seed: int, n: int, levels: int) -> None:
    spec = FeatureSpec(levels=levels, depth_ks=(1, 3), ofi_windows=(3, 20), ret_rows=(1, 5),
                       rv_rows=(5,), time_windows=(1.0,), trade_window=4)
    ev = random_events(seed, n, levels=levels)
    tab = compute_features(ev, spec, tick_size=0.5)
    ref = reference_features(ev, spec, tick=0.5)
    assert len(tab.values) == len(ref)
    np.testing.assert_array_equal(tab.sequence, ref["sequence"].to_numpy())
    assert_frames_close(tab.values, ref, spec.names)


# ---- books as real feeds make them ---------------------------------------------------------
# Prices on a narrow grid so that updates cross the book, deletes empty a side, more levels
# arrive than the book holds, deletes name levels the book never held, and snapshots clear the
# book mid-stream (one side of a snapshot may be empty).
_PX = st.integers(95, 105)
_OP = st.one_of(
    st.tuples(st.just("set"), st.booleans(), _PX, st.integers(1, 20)),
    st.tuples(st.just("del"), st.booleans(), _PX, st.just(0)),
    st.tuples(st.just("trade"), st.booleans(), _PX, st.integers(1, 5)),
)
_SNAP = st.tuples(st.just("clear"), st.lists(st.tuples(_PX, st.integers(1, 20)), max_size=8),
                  st.lists(st.tuples(_PX, st.integers(1, 20)), max_size=8))
_BATCH = st.one_of(st.lists(_OP, min_size=1, max_size=5), _SNAP.map(lambda x: [x]))


def feed_events(batches: list[list[tuple]], clear_first: bool) -> np.ndarray:
    """Event array of drawn batches (seq = batch number, one EOB per batch)."""
    rows: list[tuple[int, int, int, float]] = []
    if clear_first:
        batches = [[("clear", [(99, 5)], [(101, 5)])]] + batches
    for s, batch in enumerate(batches):
        evs = []
        for op in batch:
            if op[0] == "clear":
                evs.append((E.CLEAR | E.SNAPSHOT, 0, 0.0))
                bids = {p: float(q) for p, q in op[1]}
                asks = {p: float(q) for p, q in op[2]}
                evs += [(E.DEPTH | E.BUY | E.SNAPSHOT, p, q) for p, q in bids.items()]
                evs += [(E.DEPTH | E.SELL | E.SNAPSHOT, p, q) for p, q in asks.items()]
            elif op[0] == "trade":
                evs.append((E.TRADE | (E.BUY if op[1] else E.SELL), op[2], float(op[3])))
            else:
                evs.append((E.DEPTH | (E.BUY if op[1] else E.SELL), op[2], float(op[3])))
        rows += [(f | (E.EOB if j == len(evs) - 1 else 0), s, p, q) for j, (f, p, q) in enumerate(evs)]
    ev = E.empty(len(rows))
    for i, (f, s, p, q) in enumerate(rows):
        t = 1_000_000_000 + 250_000_000 * s
        ev[i] = (f, -1, t, t, s, p, q, 0, 0.0)
    return ev


@settings(max_examples=300, deadline=None)
@given(batches=st.lists(_BATCH, min_size=1, max_size=60), clear_first=st.booleans(),
       levels=st.integers(1, 4), extra=st.integers(0, 3))
def test_kernel_equals_reference_on_feed_like_books(batches, clear_first, levels, extra) -> None:
    """Books that cross, empty a side, exceed the level capacity and clear mid-stream."""
    spec = FeatureSpec(levels=levels, depth_ks=(1, 2), ofi_windows=(3,), ret_rows=(1, 4), rv_rows=(3,),
                       time_windows=(1.0,), trade_window=3, capacity=levels + extra)
    ev = feed_events(batches, clear_first)
    tab = compute_features(ev, spec, tick_size=0.5)
    counts: dict = {}
    ref = reference_features(ev, spec, tick=0.5, counts=counts)
    assert len(tab.values) == len(ref)
    np.testing.assert_array_equal(tab.sequence, ref["sequence"].to_numpy())
    assert_frames_close(tab.values, ref, spec.names)
    assert tab.rejects[E.Reason.BENIGN_DELETE] == counts["benign"]
    assert tab.rejects[E.Reason.CROSSED] == counts["crossed"]
    assert tab.rejects[E.Reason.ZERO_SIZE_ADD] == 0


def test_per_event_path_equals_batch_path() -> None:
    ev = random_events(7, 2000, levels=5)
    batch = compute_features(ev, SPEC, tick_size=0.01).values
    st_ = FeatureState(SPEC, tick_size=0.01)
    rows = []
    for k in range(len(ev)):
        row, reason = st_.on_event(ev[k:k + 1])
        assert reason == 0
        if row is not None:
            rows.append(row.copy())
    np.testing.assert_array_equal(np.array(rows), batch)  # bit-identical, same kernel


def test_frames_of_any_size_give_identical_rows() -> None:
    ev = random_events(3, 1500, levels=5)
    batch = compute_features(ev, SPEC, tick_size=0.01).values
    st_ = FeatureState(SPEC, tick_size=0.01)
    parts = [st_.update(ev[i:i + 37])[0] for i in range(0, len(ev), 37)]
    np.testing.assert_array_equal(np.concatenate(parts), batch)


def test_checkpoint_restore_continues_identically() -> None:
    ev = random_events(11, 1000, levels=5)
    whole = compute_features(ev, SPEC, tick_size=0.01).values
    a = FeatureState(SPEC, tick_size=0.01)
    first = a.update(ev[:700])[0]
    b = FeatureState(SPEC, tick_size=0.01)
    b.load_bytes(a.to_bytes())
    rest = b.update(ev[700:])[0]
    np.testing.assert_array_equal(np.concatenate([first, rest]), whole)


def _valid_book_events() -> np.ndarray:
    ev = E.empty(3)
    ev["flags"] = [E.CLEAR | E.SNAPSHOT, E.DEPTH | E.BUY | E.SNAPSHOT, E.DEPTH | E.SELL | E.SNAPSHOT | E.EOB]
    ev["price"] = [0, 100, 102]
    ev["size"] = [0.0, 5.0, 5.0]
    return ev


@pytest.mark.parametrize("size,reason", [(np.nan, E.Reason.NAN), (np.inf, E.Reason.NAN),
                                         (-1.0, E.Reason.NEGATIVE_SIZE)])
def test_bad_sizes_are_rejected_and_stream_continues(size: float, reason: E.Reason) -> None:
    st_ = FeatureState(FeatureSpec(levels=1), tick_size=0.01)
    st_.update(_valid_book_events())
    bad = E.empty(2)
    bad["flags"] = [E.DEPTH | E.BUY | E.EOB, E.DEPTH | E.BUY | E.EOB]
    bad["seq"] = [1, 2]
    bad["price"] = [100, 101]
    bad["size"] = [size, 4.0]
    rows, idx, reasons = st_.update(bad)
    assert reasons.tolist() == [reason, 0]
    assert len(rows) == 2  # the bad event is dropped, its batch still closes
    assert rows[1][0] == pytest.approx((1.01 + 1.02) / 2)


def test_crossed_book_rejects_and_waits_for_snapshot() -> None:
    st_ = FeatureState(FeatureSpec(levels=1), tick_size=0.01)
    st_.update(_valid_book_events())
    ev = E.empty(2)
    ev["flags"] = [E.DEPTH | E.BUY | E.EOB, E.DEPTH | E.SELL | E.EOB]
    ev["seq"] = [1, 2]
    ev["price"] = [102, 103]
    ev["size"] = [1.0, 1.0]
    rows, _, reasons = st_.update(ev)
    assert reasons.tolist() == [E.Reason.CROSSED, E.Reason.RESYNC]
    assert len(rows) == 0 and st_.needs_snapshot
    snap = _valid_book_events()
    snap["seq"] = 3
    rows, _, reasons = st_.update(snap)
    assert reasons.tolist() == [0, 0, 0] and len(rows) == 1 and not st_.needs_snapshot


def test_sequence_backwards_rejected_and_delete_of_a_missing_level_is_benign() -> None:
    st_ = FeatureState(FeatureSpec(levels=1), tick_size=0.01)
    st_.update(_valid_book_events())
    ev = E.empty(4)
    ev["flags"] = [E.DEPTH | E.BUY | E.EOB, E.DEPTH | E.BUY | E.EOB, E.DEPTH | E.BUY | E.EOB,
                   E.DEPTH | E.SELL | E.EOB]
    ev["seq"] = [1, 1, 2, 3]
    ev["price"] = [99, 99, 98, 101]
    ev["size"] = [1.0, 2.0, 0.0, np.nan]
    rows, _, reasons = st_.update(ev)
    # a delete of a level the book never held is a counted no-op: its batch still gives a row;
    # a real reject (a repeated sequence, a NaN size) stays a reject
    assert reasons.tolist() == [0, E.Reason.SEQUENCE, E.Reason.BENIGN_DELETE, E.Reason.NAN]
    assert len(rows) == 3 and not st_.needs_snapshot


def test_benign_delete_does_not_hide_a_crossed_book() -> None:
    st_ = FeatureState(FeatureSpec(levels=1), tick_size=0.01)
    st_.update(_valid_book_events())
    ev = E.empty(2)
    ev["flags"] = [E.DEPTH | E.BUY, E.DEPTH | E.BUY | E.EOB]
    ev["seq"] = [1, 1]
    ev["price"] = [103, 90]
    ev["size"] = [1.0, 0.0]
    rows, _, reasons = st_.update(ev)
    assert reasons.tolist() == [0, E.Reason.CROSSED] and len(rows) == 0 and st_.needs_snapshot


def test_gap_forces_resync() -> None:
    st_ = FeatureState(FeatureSpec(levels=1), tick_size=0.01)
    st_.update(_valid_book_events())
    ev = E.empty(1)
    ev["flags"], ev["seq"], ev["price"], ev["size"] = E.DEPTH | E.BUY | E.EOB, 5, 99, 1.0
    rows, _, reasons = st_.update(ev)
    assert reasons.tolist() == [E.Reason.RESYNC] and len(rows) == 0 and st_.needs_snapshot


def test_periodic_snapshot_of_applied_state_is_skipped() -> None:
    from streamsig.book.book import Book

    ev = random_events(5, 300, levels=5)
    batch = compute_features(ev, SPEC, tick_size=0.01)
    # insert the book as it stands after update 150 as a snapshot, as the producer does
    cut = int(np.flatnonzero((ev["seq"] == 150) & ((ev["flags"] & E.EOB) != 0))[0]) + 1
    book = Book(capacity=64)
    book.apply(ev[:cut])
    snap = book.snapshot_events(150, int(ev["exch_ts"][cut - 1]))
    with_snap = np.concatenate([ev[:cut], snap, ev[cut:]])
    tab = compute_features(with_snap, SPEC, tick_size=0.01)
    np.testing.assert_array_equal(tab.values, batch.values)
    assert tab.rejects[E.Reason.DUPLICATE] == len(snap) and tab.rejects[1:9].sum() == 0
    # after a gap the same snapshot heals the book: rows resume from it
    gap = np.concatenate([ev[:cut - 5], snap, ev[cut:]])
    healed = compute_features(gap, SPEC, tick_size=0.01)
    np.testing.assert_array_equal(healed.values[-50:, :9], batch.values[-50:, :9])
