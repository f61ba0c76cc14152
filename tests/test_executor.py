import json
import math
from dataclasses import dataclass

import numpy as np
import pytest

from streamsig.trading.executor import ExecConfig, Executor, Fill, fill_to_dict


@dataclass
class Book:
    bid_px: np.ndarray
    bid_sz: np.ndarray
    ask_px: np.ndarray
    ask_sz: np.ndarray
    n_bid: int
    n_ask: int


def book(bids: list[tuple[int, float]], asks: list[tuple[int, float]], depth: int = 5) -> Book:
    """Fixed-width arrays like the real book: unused slots are zero."""
    def side(levels):
        px, sz = np.zeros(depth, np.int64), np.zeros(depth)
        for i, (p, s) in enumerate(levels):
            px[i], sz[i] = p, s
        return px, sz
    bp, bs = side(bids)
    ap, as_ = side(asks)
    return Book(bp, bs, ap, as_, len(bids), len(asks))


BOOK = book([(99, 5.0), (98, 4.0)], [(101, 1.0), (102, 3.0)])


def key(fills):
    return [(f.ts_ns, f.seq, f.side, f.qty, round(f.price, 10), round(f.fee, 10), f.maker) for f in fills]


def test_market_buy_walks_two_levels_with_fee():
    ex = Executor(ExecConfig(tick_size=0.5, fee_bps=10), symbol="X")
    assert ex.submit(0, 1, 2.0)
    (f,) = ex.on_book(5, BOOK)
    # 1 @ 101 ticks + 1 @ 102 ticks -> VWAP 101.5 ticks * 0.5 = 50.75
    # fee = 2 * 50.75 * 10 / 1e4 = 0.1015
    assert (f.symbol, f.ts_ns, f.seq, f.side, f.qty, f.maker) == ("X", 5, 1, 1, 2.0, False)
    assert f.price == pytest.approx(50.75) and f.fee == pytest.approx(0.1015)
    assert f.mid == pytest.approx(50.0)  # (99 + 101) / 2 * 0.5
    assert ex.position == 2.0 and not ex.working
    assert ex.on_book(6, BOOK) == ()


def test_market_sell_cross_ticks_and_slippage():
    ex = Executor(ExecConfig(tick_size=1.0, cross_ticks=1, slippage_bps=100))
    ex.submit(0, 1, -1.0)
    (f,) = ex.on_book(1, BOOK)
    # best bid 99, one extra tick against us -> 98, then 1% slippage -> 98 * 0.99
    assert f.side == -1 and f.price == pytest.approx(97.02)
    ex.submit(2, 2, 0.0)
    (f,) = ex.on_book(3, BOOK)
    # buy back at ask 101: (101 + 1) * 1.01 = 103.02
    assert f.side == 1 and f.price == pytest.approx(103.02)


def test_partial_fill_when_depth_is_short_then_rest_next_update():
    ex = Executor()
    ex.submit(0, 1, 5.0)
    (f,) = ex.on_book(1, BOOK)
    # whole ask side: 1 @ 101 + 3 @ 102 = 4 units, VWAP (101 + 306) / 4 = 101.75
    assert f.qty == 4.0 and f.price == pytest.approx(101.75)
    assert ex.position == 4.0 and ex.working
    (g,) = ex.on_book(2, book([(100, 1.0)], [(103, 2.0)]))
    assert (g.qty, g.price, g.seq) == (1.0, 103.0, 1)
    assert ex.position == 5.0 and not ex.working


def test_empty_side_waits_for_liquidity():
    ex = Executor()
    ex.submit(0, 1, 1.0)
    assert ex.on_book(1, book([(99, 1.0)], [])) == ()
    assert key(ex.on_book(2, BOOK)) == [(2, 1, 1, 1.0, 101.0, 0.0, False)]


def test_max_order_size_slices_and_max_position_clips():
    ex = Executor(ExecConfig(max_order_size=1.0, max_position=2.0))
    ex.submit(0, 1, 10.0)  # clipped to 2, sent one unit per update
    fills = [f for t in (1, 2, 3) for f in ex.on_book(t, BOOK)]
    assert [(f.ts_ns, f.qty, f.price) for f in fills] == [(1, 1.0, 101.0), (2, 1.0, 101.0)]
    assert ex.position == 2.0


def test_latency_in_ns_uses_book_at_activation():
    ex = Executor(ExecConfig(signal_latency_ns=100, order_latency_ns=400))
    ex.submit(1_000, 1, 1.0)  # active from 1_000 + 100 + 400 = 1_500
    assert ex.on_book(1_200, BOOK) == ()
    assert ex.on_book(1_499, BOOK) == ()
    later = book([(104, 1.0)], [(105, 1.0)])
    assert key(ex.on_book(1_500, later)) == [(1_500, 1, 1, 1.0, 105.0, 0.0, False)]


def test_latency_in_events():
    ex = Executor(ExecConfig(signal_latency_events=1, order_latency_events=2))
    ex.submit(0, 1, 1.0)  # processed on the 3rd book update after the signal
    assert ex.on_book(1, BOOK) == ()
    assert ex.on_book(2, BOOK) == ()
    (f,) = ex.on_book(3, book([(100, 1.0)], [(102, 1.0)]))
    assert (f.ts_ns, f.price) == (3, 102.0)


def test_latency_ns_and_events_both_required():
    ex = Executor(ExecConfig(order_latency_ns=10, order_latency_events=2))
    ex.submit(0, 1, 1.0)
    assert ex.on_book(20, BOOK) == ()  # time passed, 1 update only
    assert len(ex.on_book(21, BOOK)) == 1
    ex.submit(30, 2, 0.0)
    assert ex.on_book(31, BOOK) == () and ex.on_book(32, BOOK) == ()  # 2 updates, too early
    assert len(ex.on_book(40, BOOK)) == 1


def test_zero_latency_fills_at_next_update():
    ex = Executor()
    ex.submit(7, 1, 1.0)
    assert len(ex.on_book(7, BOOK)) == 1


def test_passive_buy_fills_after_queue_consumed():
    ex = Executor(ExecConfig(tick_size=0.5, maker_fee_bps=-2.0))
    ex.submit(0, 1, 2.0, passive=True)
    assert ex.on_book(1, BOOK) == ()  # joins the bid at 99 behind 5 units
    assert ex.on_trade(2, 99, 9.0, +1) == ()  # buyer-initiated print: not against our bid
    assert ex.on_trade(2, 99, 3.0, -1) == ()  # 5 - 3 = 2 ahead
    assert ex.on_book(3, book([(99, 1.0)], [(101, 1.0)])) == ()  # cancels: visible 1 -> 1 ahead
    (f,) = ex.on_trade(4, 99, 2.0, -1)  # 1 clears the queue, 1 fills us
    # maker fill at 99 * 0.5 = 49.5, fee = 1 * 49.5 * -2 / 1e4 = -0.0099 (a rebate)
    assert (f.ts_ns, f.side, f.qty, f.maker) == (4, 1, 1.0, True)
    assert f.price == pytest.approx(49.5) and f.fee == pytest.approx(-0.0099)
    assert f.mid == pytest.approx(50.0)  # last book seen: (99 + 101) / 2 * 0.5
    (g,) = ex.on_trade(5, 99, 4.0, -1)  # queue empty: 1 left to fill
    assert g.qty == 1.0 and ex.position == 2.0 and not ex.working
    assert ex.on_trade(6, 99, 4.0, -1) == ()


def test_passive_fills_on_trade_through_and_on_cross():
    ex = Executor()
    ex.submit(0, 1, 3.0, passive=True)
    ex.on_book(1, BOOK)
    (f,) = ex.on_trade(2, 98, 1.0, -1)  # a sell printed below our 99 bid: our level is gone
    assert (f.qty, f.price, f.maker) == (3.0, 99.0, True)
    ex.submit(3, 2, 0.0, passive=True)  # sell 3 at the ask 101 behind 1
    ex.on_book(4, BOOK)
    (g,) = ex.on_book(5, book([(101, 2.0)], [(102, 1.0)]))  # bid reaches our ask: filled
    assert (g.side, g.qty, g.price, g.seq) == (-1, 3.0, 101.0, 2)
    assert ex.position == 0.0


def test_passive_queue_when_level_vanishes_or_is_out_of_view():
    ex = Executor()
    ex.submit(0, 1, 1.0, passive=True)
    ex.on_book(1, BOOK)  # 5 ahead at 99
    ex.on_book(2, book([(100, 1.0), (97, 2.0)], [(101, 1.0)]))  # 99 empty inside the view -> 0 ahead
    (f,) = ex.on_trade(3, 99, 0.5, -1)
    assert f.qty == 0.5
    ex = Executor()
    ex.submit(0, 1, 1.0, passive=True)
    ex.on_book(1, BOOK)
    ex.on_book(2, book([(100, 1.0)], [(101, 1.0)]))  # 99 below the one shown level: unknown, keep 5
    assert ex.on_trade(3, 99, 4.0, -1) == ()
    assert ex.on_trade(3, 99, 1.5, -1)[0].qty == 0.5


def test_new_target_replaces_resting_passive_order():
    ex = Executor()
    ex.submit(0, 1, 2.0, passive=True)
    ex.on_book(1, BOOK)
    ex.submit(2, 2, 1.0)  # market order for the whole target replaces the bid
    (f,) = ex.on_book(3, BOOK)
    assert (f.seq, f.qty, f.maker) == (2, 1.0, False)
    assert ex.on_trade(4, 98, 10.0, -1) == ()  # the bid was cancelled


def test_duplicate_signal_is_ignored():
    ex = Executor(symbol="X")
    assert ex.submit(0, 5, 1.0)
    fills = list(ex.on_book(1, BOOK))
    # at-least-once redelivery: the same signals again, then a new one
    assert not ex.submit(2, 5, 1.0)
    assert not ex.submit(2, 4, -3.0)
    fills += ex.on_book(3, BOOK)
    assert ex.submit(4, 6, 0.0)
    fills += ex.on_book(5, BOOK)
    assert [(f.seq, f.side, f.qty) for f in fills] == [(5, 1, 1.0), (6, -1, 1.0)]


def test_halt_flattens_and_refuses_new_risk():
    ex = Executor(ExecConfig(order_latency_events=1))
    ex.submit(0, 1, 2.0)
    ex.on_book(1, BOOK)
    ex.submit(2, 2, 3.0)  # in flight when the kill switch trips: dropped
    ex.halt(2)
    (f,) = ex.on_book(3, BOOK)
    assert (f.seq, f.side, f.qty, f.price) == (-1, -1, 2.0, 99.0)
    assert ex.submit(4, 3, 1.0, passive=True)  # accepted as a signal, but the target is 0
    assert ex.on_book(5, BOOK) == () and ex.position == 0.0 and ex.halted


def test_snapshot_restore_mid_order():
    cfg = ExecConfig(order_latency_events=2, maker_fee_bps=1.0)
    a = Executor(cfg, "X")
    a.submit(0, 1, 2.0, passive=True)
    a.on_book(1, BOOK)
    a.on_book(2, BOOK)  # child rests at 99 behind 5
    a.submit(3, 2, -1.0)  # in flight
    b = Executor.restore(cfg, json.loads(json.dumps(a.snapshot())))
    script = [("t", 4, 99, 6.0, -1), ("b", 5), ("b", 6)]
    out = []
    for ex in (a, b):
        got = []
        for s in script:
            got += ex.on_trade(*s[1:]) if s[0] == "t" else ex.on_book(s[1], BOOK)
        out.append(key(got))
    assert out[0] == out[1] == [(4, 1, 1, 1.0, 99.0, 0.0099, True), (6, 2, -1, 2.0, 99.0, 0.0, False)]
    assert a.submit(7, 2, 0.0) is b.submit(7, 2, 0.0) is False


def test_fill_to_dict_is_json_safe():
    f = Fill("X", 1, 2, -1, 1.5, 10.0, 0.01, True, math.nan)
    d = fill_to_dict(f)
    assert json.loads(json.dumps(d)) == {"symbol": "X", "ts_ns": 1, "seq": 2, "side": -1, "qty": 1.5,
                                         "price": 10.0, "fee": 0.01, "maker": True, "mid": None}
    assert f.signed_qty == -1.5
