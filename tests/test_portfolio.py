import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from streamsig.trading.executor import ExecConfig, Executor, Fill
from streamsig.trading.portfolio import Portfolio


def book(bid: tuple[int, float], ask: tuple[int, float]) -> SimpleNamespace:
    """A one-level book view."""
    return SimpleNamespace(bid_px=np.array([bid[0]]), bid_sz=np.array([bid[1]]), n_bid=1,
                           ask_px=np.array([ask[0]]), ask_sz=np.array([ask[1]]), n_ask=1)


BOOK = book((99, 5.0), (101, 5.0))


def fill(ts, side, qty, price, fee=0.0, mid=math.nan, sym="X", seq=0):
    return Fill(sym, ts, seq, side, qty, price, fee, False, mid)


def identity(pf: Portfolio) -> float:
    """capital + realised + unrealised - fees, which must equal the marked equity."""
    return pf.capital + pf.realised() + pf.unrealised() - pf.fees


def test_long_round_trip_with_fees():
    pf = Portfolio(capital=1000.0)
    pf.on_fill(fill(1, +1, 2.0, 100.0, fee=0.2))  # cash 1000 - 200 - 0.2 = 799.8
    assert pf.mark(2, 101.0, "X") == pytest.approx(1001.8)  # 799.8 + 2 * 101
    assert pf.unrealised("X") == pytest.approx(2.0)  # 2 * (101 - 100)
    pf.on_fill(fill(3, -1, 2.0, 103.0, fee=0.2))  # cash 799.8 + 206 - 0.2 = 1005.6
    assert pf.mark(4, 104.0, "X") == pytest.approx(1005.6)
    assert pf.realised("X") == pytest.approx(6.0)  # 2 * (103 - 100), gross of fees
    assert pf.fees == pytest.approx(0.4) and pf.position("X") == 0.0
    (rt,) = pf.round_trips()
    # trip P&L net of fees: 6 - 0.2 - 0.2 = 5.6
    assert (rt["open_ts"], rt["close_ts"], rt["side"]) == (1, 3, 1) and rt["pnl"] == pytest.approx(5.6)
    p = pf.positions["X"]
    assert (p.fills, p.notional) == (2, pytest.approx(406.0))  # 200 + 206 traded


def test_short_round_trip_with_fees():
    pf = Portfolio(capital=1000.0)
    pf.on_fill(fill(1, -1, 3.0, 50.0, fee=0.15))  # cash 1000 + 150 - 0.15 = 1149.85
    # marked at 48: 1149.85 - 3 * 48 = 1005.85; unrealised -3 * (48 - 50) = +6
    assert pf.mark(2, 48.0, "X") == pytest.approx(1005.85)
    assert pf.unrealised("X") == pytest.approx(6.0)
    assert pf.mark(2, 48.0, "X") == pytest.approx(identity(pf))
    pf.on_fill(fill(3, +1, 3.0, 49.0, fee=0.147))
    # realised 3 * (50 - 49) = 3; trip 3 - 0.15 - 0.147 = 2.703
    assert pf.realised("X") == pytest.approx(3.0)
    assert pf.round_trips()["pnl"][0] == pytest.approx(2.703)
    assert pf.round_trips()["side"][0] == -1
    assert pf.mark(4, 47.0, "X") == pytest.approx(1000 + 3 - 0.297)


def test_average_cost_partial_close_and_reversal():
    pf = Portfolio(capital=1000.0)
    pf.on_fill(fill(1, +1, 1.0, 100.0))
    pf.on_fill(fill(2, +1, 1.0, 110.0))  # avg (100 + 110) / 2 = 105
    assert pf.positions["X"].avg == pytest.approx(105.0)
    pf.on_fill(fill(3, -1, 1.0, 120.0))  # realised 1 * (120 - 105) = 15, still 1 long at 105
    assert (pf.realised(), pf.position("X"), pf.positions["X"].avg) == (15.0, 1.0, 105.0)
    pf.on_fill(fill(4, -1, 4.0, 95.0, fee=0.4))
    # closes 1: realised += 1 * (95 - 105) = -10 -> 5; fee share 0.4 * 1/4 = 0.1
    # trip 1..4: 15 - 10 - 0.1 = 4.9; new short trip of 3 @ 95 opened with fee 0.3
    assert pf.realised() == pytest.approx(5.0)
    assert pf.position("X") == -3.0 and pf.positions["X"].avg == 95.0
    pf.on_fill(fill(5, +1, 3.0, 93.0))  # realised 3 * (95 - 93) = 6; trip 6 - 0.3 = 5.7
    rt = pf.round_trips()
    assert rt["open_ts"].tolist() == [1, 4] and rt["close_ts"].tolist() == [4, 5]
    assert rt["side"].tolist() == [1, -1]
    assert rt["pnl"] == pytest.approx([4.9, 5.7])
    assert pf.mark(6, 90.0, "X") == pytest.approx(1000 + 11 - 0.4)


def test_equity_identity_over_random_fills():
    rng = np.random.default_rng(3)
    pf = Portfolio(capital=1e4)
    for t in range(300):
        sym = "AB"[t % 2]
        pf.on_fill(fill(t, int(rng.choice([-1, 1])), float(rng.integers(1, 4)),
                        float(rng.normal(100, 2)), fee=float(rng.uniform(0, 0.1)), sym=sym))
        eq = pf.mark(t, float(rng.normal(100, 2)), sym)
        assert eq == pytest.approx(identity(pf), abs=1e-8)


def test_spread_cost_against_mid():
    pf = Portfolio(capital=1000.0)
    pf.on_fill(fill(1, +1, 2.0, 101.0, mid=100.0))  # paid 2 * (101 - 100) = 2
    pf.on_fill(Fill("X", 2, 0, -1, 2.0, 101.0, 0.0, True, 100.0))  # passive sell earned 2 * 1
    pf.on_fill(fill(3, -1, 1.0, 99.5, mid=100.0))  # paid -1 * (99.5 - 100) = 0.5
    assert pf.positions["X"].spread_cost == pytest.approx(0.5)


def test_kill_switch_trips_and_latches():
    pf = Portfolio(capital=1000.0, max_drawdown=0.05)
    pf.on_fill(fill(1, +1, 10.0, 100.0))
    assert pf.mark(1, 100.0, "X") == 1000.0
    assert pf.mark(2, 104.0, "X") == 1040.0  # new peak
    pf.mark(3, 99.0, "X")  # 990: drawdown 1 - 990/1040 = 0.0481 <= 0.05
    assert not pf.killed and pf.allow(2.0) == 2.0
    pf.mark(4, 98.7, "X")  # 987: drawdown 1 - 987/1040 = 0.0510 > 0.05
    assert pf.killed and pf.kill_ts == 4 and pf.allow(2.0) == 0.0
    assert pf.drawdown == pytest.approx(1 - 987 / 1040)
    pf.mark(5, 120.0, "X")  # recovery does not re-arm
    assert pf.killed and pf.allow(-1.0) == 0.0


def test_kill_switch_with_executor_flattens_and_refuses_new_risk():
    ex = Executor(ExecConfig(), "X")
    pf = Portfolio(capital=1000.0, max_drawdown=0.01)
    books = [BOOK, BOOK, book((90, 5.0), (92, 5.0)), BOOK, BOOK, BOOK]
    signals = {0: 2.0, 3: -2.0, 4: 1.0}  # update index -> target
    fills = []
    for t, b in enumerate(books):
        for f in ex.on_book(t, b):
            pf.on_fill(f)
            fills.append(f)
        pf.mark(t, (b.bid_px[0] + b.ask_px[0]) / 2, "X")
        if pf.killed and not ex.halted:
            ex.halt(t)
        if t in signals:
            ex.submit(t, t, pf.allow(signals[t]))
    # t=1: buy 2 @ 101; t=2 mid 91: equity 1000 - 202 + 182 = 980, drawdown 2% > 1% -> halt
    # t=3: sell 2 @ 99 (bid) to flatten; the signals at t=3 and t=4 get target 0
    assert [(f.ts_ns, f.seq, f.side, f.qty, f.price) for f in fills] == \
        [(1, 0, 1, 2.0, 101.0), (3, -1, -1, 2.0, 99.0)]
    assert pf.killed and pf.kill_ts == 2 and pf.position("X") == 0.0
    assert pf.equity == pytest.approx(1000 - 202 + 198)


def test_equity_curve_and_report():
    pf = Portfolio(capital=100.0)
    for t, mid in enumerate([100.0, 110.0, 99.0, 104.5]):
        if t == 0:
            pf.mark(0, mid, "X")
            pf.on_fill(fill(0, +1, 1.0, 100.0))
        else:
            pf.mark(t * 1_000_000_000, mid, "X")
    ts, eq = pf.equity_curve()
    assert ts.tolist() == [0, 10**9, 2 * 10**9, 3 * 10**9]
    assert eq.tolist() == [100.0, 110.0, 99.0, 104.5]
    r = pf.report(periods_per_year=4)
    # returns on capital 100: 0.10, -0.11, 0.055; total 0.045; one open trip so no round trips yet
    assert r["total_return"] == pytest.approx(0.045) and r["max_drawdown"] == pytest.approx(0.1)
    assert r["n_trades"] == 0.0 and r["hit_rate"] is None and r["max_drawdown_seconds"] == 2.0
    assert r["turnover"] == pytest.approx(1.0)  # 100 notional / 100 capital


def test_snapshot_restore_json_round_trip():
    pf = Portfolio(capital=500.0, max_drawdown=0.2)
    pf.on_fill(fill(1, +1, 2.0, 100.0, fee=0.1, mid=99.5))
    pf.mark(1, 100.0, "X")
    pf.mark(2, 7.0, "Y")  # a symbol with no position
    pf.on_fill(fill(3, -1, 1.0, 102.0, fee=0.1))
    snap = json.loads(json.dumps(pf.snapshot()))
    q = Portfolio.restore(snap)
    for p in (pf, q):
        p.on_fill(fill(4, -1, 2.0, 101.0))
        p.mark(5, 101.0, "X")
    assert q.snapshot() == pf.snapshot()
    assert q.round_trips().tolist() == pf.round_trips().tolist()
    np.testing.assert_array_equal(q.equity_curve()[1], pf.equity_curve()[1])


def test_capital_must_be_positive():
    with pytest.raises(ValueError):
        Portfolio(capital=0.0)
