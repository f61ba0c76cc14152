"""The seam between backtest and live: same events and settings, same signals, fills and P&L.

The backtest (``run_backtest``) and the live components (``SignalEngine`` per
book frame, the signal wire codec, and ``LiveTrader``'s per-frame step) are
driven over the same random synthetic feed with random policy (either kind) and execution
settings, random frame sizes, periodic snapshots, redelivered frames and any
order of book and signal frames. Nothing may differ.
"""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from streamsig.backtest.runner import run_backtest
from streamsig.cli.options import trading_configs
from streamsig.book.book import Book
from streamsig.book.events import EOB
from streamsig.book.records import FILL_DTYPE
from streamsig.book.sources import Feed, open_feeds
from streamsig.engine import SignalEngine
from streamsig.features import FeatureSpec, FeatureState
from streamsig.live.producer import with_snapshots
from streamsig.live.trader import LiveTrader
from streamsig.trading import ExecConfig
from streamsig.trading.policy import POLICY_KINDS
from streamsig.trading.cursor import BookCursor
from streamsig.models.registry import default_model
from streamsig.trading.strategies import ModelStrategy, load_strategy
from streamsig.wire.signals import decode_signals, encode_signals

SPEC = FeatureSpec(levels=5)
MODEL = default_model()


class ImbalanceScorer:
    """A deterministic stand-in model: the edge follows the top-of-book imbalance (its card's class
    moves let the edge policy trade it too)."""

    features = ["qimb_1", "ofi_1_sum_10"]
    card = {"model_id": "imbalance", "class_moves": {"mean_return": [-1e-3, 0.0, 1e-3]}}

    def score_batch(self, X: np.ndarray) -> np.ndarray:
        e = np.tanh(3.0 * X[:, 0].astype(np.float64) + 0.05 * X[:, 1])
        return np.column_stack([(1 - e) * 0.45, np.full(len(X), 0.1), (1 + e) * 0.45])


def fills_array(fills) -> np.ndarray:  # noqa: ANN001
    return np.array([(f.ts_ns, f.seq, f.side, f.qty, f.price, f.fee, f.maker, f.mid) for f in fills], FILL_DTYPE)


def cuts(rng: np.random.Generator, n: int, lo: int, hi: int) -> list[int]:
    """Random cut points 0 < c < n, pieces of lo..hi items."""
    at = np.cumsum(rng.integers(lo, hi + 1, n // lo + 1))
    return at[at < n].tolist()


@st.composite
def scenario(draw):  # noqa: ANN001, ANN201
    """Option values as a user gives them, turned into configs the way every command does."""
    enter = draw(st.sampled_from([0.05, 0.1, 0.15, 0.3]))
    max_pos = draw(st.sampled_from([0.5, 1.0, 2.0, 3.0]))
    return trading_configs(
        kind=draw(st.sampled_from(POLICY_KINDS)), margin_bps=draw(st.sampled_from([0.0, 0.5, 3.0])),
        enter=enter, exit=draw(st.sampled_from([-0.1, 0.0, enter / 2, enter])), max_position=max_pos,
        unit=draw(st.one_of(st.none(), st.sampled_from([0.5, 1.0, max_pos]))), min_hold=draw(st.integers(0, 6)),
        fee_bps=draw(st.sampled_from([0.0, 1.0, 2.5])), maker_fee_bps=draw(st.sampled_from([-1.0, 0.0, 0.5])),
        slippage_bps=draw(st.sampled_from([0.0, 0.7])),
        latency_ns=draw(st.sampled_from([0, 1_000, 2_000_000, 20_000_000])),
        latency_events=draw(st.integers(0, 4)), max_drawdown=draw(st.sampled_from([0.0, 0.2, 0.002])),
        passive=draw(st.booleans()))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=scenario(), seed=st.integers(0, 10_000), n=st.integers(120, 500), onnx=st.booleans(),
       snapshot_every=st.sampled_from([0, 50, 200]), order=st.integers(0, 2**32 - 1))
def test_backtest_and_live_agree(cfg, seed: int, n: int, onnx: bool, snapshot_every: int,  # noqa: ANN001
                                 order: int) -> None:
    policy, ex = cfg
    rng = np.random.default_rng(order)  # chunks, frames, redeliveries and arrival order
    # the model's longest window is 100 rows: give it rows to trade after its warm-up
    feed = open_feeds("synthetic", symbols=["S"], n_updates=n + (400 if onnx else 0), seed=seed)[0]
    events = feed.read_all()
    # the shipped ONNX model, loaded as the worker loads it and as the backtest loads it; or a toy
    # scorer whose edge reaches every threshold
    if onnx:
        live_strategy, _, spec = load_strategy(MODEL, "ofi", policy)
        offline = dict(model_dir=MODEL)
    else:
        live_strategy, spec = ModelStrategy(ImbalanceScorer(), policy), SPEC
        offline = dict(strategy=ModelStrategy(ImbalanceScorer(), policy))

    # offline, in random chunks (the chunking must not matter either)
    pieces = np.split(events, cuts(rng, len(events), 1, 400))
    chunked = Feed(feed.symbol, feed.tick_size, feed.levels, feed.label, lambda: iter(pieces), len(events))
    res = run_backtest([chunked], spec, exec_cfg=ex, policy_cfg=policy, baselines=[], **offline)
    off = res.lanes[("model", "S")]

    # live: the producer's snapshots, random frames, some redelivered, book/signal order shuffled
    stream = np.concatenate(with_snapshots(events, Book(capacity=64, tick_size=feed.tick_size),
                                           snapshot_every, 0)[0])
    frames = np.split(stream, cuts(rng, len(stream), 1, 120))
    engine = SignalEngine("S", spec, feed.tick_size, live_strategy)
    trader = LiveTrader("S", feed.tick_size, ex, policy.max_position, book_capacity=spec.book_capacity)
    signals, fills, pending = [], [], []
    for fr in frames:
        # a redelivered frame (one that ends an update: a repeated tail of an update still open is
        # not recognisable by sequence alone)
        again = bool(fr["flags"][-1] & EOB) and rng.random() < 0.1
        for piece in [fr, fr] if again else [fr]:
            out = engine.on_events(piece)
            signals.append(out.signals)
            sf = decode_signals(encode_signals("S", "m", out.signals, 0, 0, engine.last_seq))
            if pending or rng.random() < 0.5:
                pending.append(sf)  # the signal frame arrives later (signal frames keep their order)
            else:
                trader.on_signals(sf)
            trader.on_book(piece)
            fills += trader.drain()
            if pending and rng.random() < 0.5:
                for p in pending:
                    trader.on_signals(p)
                pending.clear()
                fills += trader.drain()
    for p in pending:
        trader.on_signals(p)
    fills += trader.drain()

    event(f"onnx={onnx} policy={policy.kind} fills={'yes' if len(off.fills) else 'no'} maker={bool(off.fills['maker'].any())} "
          f"killed={off.killed}")
    live_sig = np.concatenate(signals)
    assert live_sig.tobytes() == res.signals["S"].tobytes()
    assert fills_array(fills).tobytes() == off.fills.tobytes()
    assert trader.desyncs == 0
    pf = trader.lane.pf
    if pf is None:
        assert len(off.equity) == 0
    else:
        assert pf.equity == off.equity[-1]
        assert pf.killed == off.killed
        assert trader.lane.ex.position == off.position[-1]


def test_live_signals_carry_mid_and_touch() -> None:
    feed = open_feeds("synthetic", symbols=["S"], n_updates=300, seed=2)[0]
    ev = feed.read_all()
    eng = SignalEngine("S", SPEC, feed.tick_size, ModelStrategy(ImbalanceScorer()))
    sig = eng.on_events(ev).signals
    book = BookCursor(SPEC.book_capacity, feed.tick_size)
    book.begin(ev)
    _, idx, _ = FeatureState(SPEC, feed.tick_size).update(ev)
    for k in (0, 10, len(sig) - 1):
        b = book.at(int(idx[k]))
        assert sig["bid"][k] == b.bid_px[0] * feed.tick_size and sig["ask"][k] == b.ask_px[0] * feed.tick_size
        assert sig["bid_sz"][k] == b.bid_sz[0] and sig["ask_sz"][k] == b.ask_sz[0]
        assert sig["mid"][k] == 0.5 * (b.bid_px[0] + b.ask_px[0]) * feed.tick_size


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 1000), bad=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 5)), max_size=30))
def test_cursor_book_equals_the_kernel_book_on_bad_input(seed: int, bad) -> None:  # noqa: ANN001
    """Stale sequences, NaN and negative sizes, bad flags, gaps and crossings: the cursor's book
    is the feature kernel's book at every row."""
    from streamsig.book import events as E

    ev = open_feeds("synthetic", symbols=["S"], n_updates=400, seed=seed)[0].read_all().copy()
    for pos, kind in bad:
        i = pos % len(ev)
        if kind == 0:
            ev["seq"][i] = max(0, ev["seq"][i] - 3)
        elif kind == 1:
            ev["size"][i] = np.nan
        elif kind == 2:
            ev["size"][i] = -1.0
        elif kind == 3:
            ev["flags"][i] |= E.BUY | E.SELL
        elif kind == 4:
            ev["seq"][i:] += 5  # a gap
        else:
            ev["price"][i] = ev["price"][i] + (-50 if ev["flags"][i] & E.SELL else 50)  # crosses
    state = FeatureState(SPEC, 0.01)
    cur = BookCursor(SPEC.book_capacity, 0.01)
    cur.begin(ev)
    lo = 0
    for hi in range(50, len(ev) + 50, 50):
        part = ev[lo:hi]
        _, idx, _ = state.update(part)
        cur.at(min(hi, len(ev)) - 1)
        for side in ("bid", "ask"):
            n = getattr(state, f"n_{side}")
            assert getattr(cur, f"n_{side}") == n
            assert (getattr(cur, f"{side}_px")[:n] == getattr(state, f"{side}_px")[:n]).all()
            assert (getattr(cur, f"{side}_sz")[:n] == getattr(state, f"{side}_sz")[:n]).all()
        lo = hi


def test_trader_counts_a_book_that_differs_from_the_workers() -> None:
    feed = open_feeds("synthetic", symbols=["S"], n_updates=300, seed=4)[0]
    ev = feed.read_all()
    eng = SignalEngine("S", SPEC, feed.tick_size, ModelStrategy(ImbalanceScorer()))
    sf = decode_signals(encode_signals("S", "m", eng.on_events(ev).signals, 0, 0, eng.last_seq))
    for bad, expect in ((False, 0), (True, 1)):
        book = ev.copy()
        if bad:  # the trader's copy of the book gets other sizes after the first 40 events
            book["size"][40:] = book["size"][40:] + 1.0
        tr = LiveTrader("S", feed.tick_size, ExecConfig(), book_capacity=SPEC.book_capacity)
        tr.on_signals(sf)
        tr.on_book(book)
        tr.drain()
        assert tr.desyncs == expect
