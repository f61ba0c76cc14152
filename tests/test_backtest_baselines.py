"""Baselines and execution in the backtest, checked by hand on tiny books and on synthetic data."""
from __future__ import annotations

import numpy as np
import pytest

from streamsig.trading.rules import BuyAndHold, Flat, OfiRule, Sma, default_baselines
from streamsig.backtest.runner import run_backtest
from streamsig.book import events as E
from streamsig.book.sources import Feed, open_feeds
from streamsig.features import FeatureSpec
from streamsig.trading import ExecConfig

SPEC = FeatureSpec(levels=2, ofi_windows=(2,), ret_rows=(1,), rv_rows=(2,), depth_ks=(1,))

# (bid or ask, price ticks, size) per batch; one batch every 1000 ns; tick 0.01
BATCHES = [
    [("B", 9990, 5.0), ("A", 10010, 3.0)],  # row 0: 99.90 / 100.10, mid 100.00
    [("B", 9995, 2.0)],                     # row 1: 99.95 / 100.10, mid 100.025
    [("A", 10005, 1.0)],                    # row 2: 99.95 / 100.05 (1) 100.10 (3), mid 100.00
    [("B", 10000, 4.0)],                    # row 3: 100.00 / 100.05, mid 100.025
    [("A", 10005, 0.0)],                    # row 4: 100.00 / 100.10, mid 100.05
    [("B", 10005, 1.0)],                    # row 5: 100.05 / 100.10, mid 100.075
]


def hand_feed() -> Feed:
    rows = []
    for seq, batch in enumerate(BATCHES):
        if seq == 0:
            rows.append((E.CLEAR | E.SNAPSHOT, 0, 0.0, seq))
        for k, (side, px, sz) in enumerate(batch):
            fl = E.DEPTH | (E.BUY if side == "B" else E.SELL) | (E.EOB if k == len(batch) - 1 else 0)
            rows.append((fl | (E.SNAPSHOT if seq == 0 else 0), px, sz, seq))
    ev = E.empty(len(rows))
    ev["flags"] = [r[0] for r in rows]
    ev["price"] = [r[1] for r in rows]
    ev["size"] = [r[2] for r in rows]
    ev["seq"] = [r[3] for r in rows]
    ev["exch_ts"] = ev["seq"] * 1000
    return Feed("H", 0.01, 2, "hand", lambda: iter([ev]))


def test_flat_has_no_pnl_and_no_trades() -> None:
    res = run_backtest(open_feeds("synthetic", n_updates=3000, symbols=["S"], levels=5), FeatureSpec(levels=5),
                       exec_cfg=ExecConfig(fee_bps=3.0, order_latency_events=2))
    s = res.summary("flat")
    assert s["pnl"] == 0.0 and s["n_trades"] == 0.0 and s["fees"] == 0.0 and s["turnover"] == 0.0
    assert len(res.lanes[("flat", "S")].fills) == 0
    assert (res.lanes[("flat", "S")].position == 0).all()


def test_buy_and_hold_pnl_by_hand() -> None:
    """Buy 2 at row 0, filled at row 1's ask (100.10); fee 10 bps; marked at the last mid 100.075."""
    res = run_backtest([hand_feed()], SPEC, baselines=[BuyAndHold(2.0)], exec_cfg=ExecConfig(fee_bps=10.0),
                       capital=1000.0)
    rec = res.lanes[("buy_and_hold", "H")]
    (f,) = rec.fills
    assert (f["ts_ns"], f["side"], f["qty"]) == (1000, 1, 2.0) and f["price"] == pytest.approx(100.10)
    fee = 2 * 100.10 * 10e-4  # 0.2002
    assert rec.fees == pytest.approx(fee)
    # mid change from the fill (100.025 -> 100.075) minus entry costs (half spread paid + fee)
    mid_change = 2 * (100.075 - 100.025)
    entry_cost = 2 * (100.10 - 100.025) + fee
    pnl = res.summary("buy_and_hold")["pnl"]
    assert pnl == pytest.approx(mid_change - entry_cost) == pytest.approx(-0.2502)
    assert res.summary("buy_and_hold")["costs"] == pytest.approx(entry_cost)


def test_latency_in_events_and_ns_by_hand() -> None:
    """Two updates of latency: the order meets row 2's book and walks 1 @ 100.05 + 1 @ 100.10."""
    res = run_backtest([hand_feed()], SPEC, baselines=[BuyAndHold(2.0)],
                       exec_cfg=ExecConfig(order_latency_events=2), capital=1000.0)
    (f,) = res.lanes[("buy_and_hold", "H")].fills
    assert f["ts_ns"] == 2000 and f["price"] == pytest.approx(100.075)
    res = run_backtest([hand_feed()], SPEC, baselines=[BuyAndHold(2.0)],
                       exec_cfg=ExecConfig(order_latency_ns=2500), capital=1000.0)
    (f,) = res.lanes[("buy_and_hold", "H")].fills
    assert f["ts_ns"] == 3000  # first book at or after 0 + 2500 ns


def test_kill_switch_flattens_and_stops() -> None:
    res = run_backtest([hand_feed()], SPEC, baselines=[BuyAndHold(2.0)], exec_cfg=ExecConfig(fee_bps=10.0),
                       capital=1000.0, max_drawdown=1e-4)
    rec = res.lanes[("buy_and_hold", "H")]
    assert rec.killed
    assert [int(s) for s in rec.fills["side"]] == [1, -1] and rec.position[-1] == 0.0
    assert rec.fills["seq"][-1] == -1  # the halt's flattening order


def test_max_position_caps_targets() -> None:
    res = run_backtest([hand_feed()], SPEC, baselines=[BuyAndHold(5.0)],
                       exec_cfg=ExecConfig(max_position=1.0), capital=1000.0)
    assert res.lanes[("buy_and_hold", "H")].position.max() == 1.0


def _rows(mid: list[float], ofi: list[float] | None = None) -> tuple[np.ndarray, FeatureSpec]:
    spec = FeatureSpec(levels=1, ofi_windows=(50,))
    rows = np.zeros((len(mid), spec.n_features))
    rows[:, spec.index("mid")] = mid
    if ofi is not None:
        rows[:, spec.index("ofi_1_sum_50")] = ofi
    return rows, spec


@pytest.mark.parametrize("strategy", [Sma(fast=3, slow=7), OfiRule(window=50), OfiRule(window=50, threshold=0.5)])
def test_rule_targets_do_not_depend_on_chunking(strategy: Sma | OfiRule) -> None:
    rng = np.random.default_rng(0)
    mid = list(100 + np.cumsum(rng.normal(size=200)))
    mid[17] = float("nan")  # a one-sided book
    rows, spec = _rows(mid, list(rng.normal(size=200)))
    whole = strategy.start("X", spec).step(rows, np.arange(200))[1]
    tr = strategy.start("X", spec)
    parts = [tr.step(rows[a:b], np.arange(a, b))[1] for a, b in [(0, 1), (1, 5), (5, 6), (6, 120), (120, 200)]]
    np.testing.assert_array_equal(whole, np.concatenate(parts))
    assert set(np.unique(whole)) <= {-1.0, 0.0, 1.0} and (whole != 0).any()


def test_sma_and_ofi_rules_by_hand() -> None:
    rows, spec = _rows([1, 2, 3, 4, 3, 2, 1, 1], [0.0, 2.0, 0.1, -0.2, -3.0, 0.4, 0.0, 5.0])
    sma = Sma(fast=1, slow=3).start("X", spec).step(rows, np.arange(8))[1]
    assert sma.tolist() == [0, 0, 1, 1, -1, -1, -1, -1]  # fast vs slow: 3 > 2, 4 > 3, 3 < 3.33, ...
    ofi = OfiRule(window=50, threshold=1.0).start("X", spec).step(rows, np.arange(8))[1]
    assert ofi.tolist() == [0, 1, 1, 1, -1, -1, -1, 1]


def test_default_baselines_trade_the_given_size() -> None:
    names = [b.name for b in default_baselines(3.0)]
    assert names == ["flat", "buy_and_hold", "sma", "ofi"]
    res = run_backtest(open_feeds("synthetic", n_updates=3000, symbols=["S"], levels=5), FeatureSpec(levels=5),
                       baselines=default_baselines(3.0))
    for n in names[1:]:
        assert np.abs(res.lanes[(n, "S")].position).max() == 3.0
    assert Flat().name == "flat"


def test_passive_orders_fill_as_maker() -> None:
    res = run_backtest(open_feeds("synthetic", n_updates=5000, symbols=["S"], levels=5), FeatureSpec(levels=5),
                       exec_cfg=ExecConfig(maker_fee_bps=-1.0), passive=True)
    fills = res.lanes[("sma", "S")].fills
    assert len(fills) > 0 and fills["maker"].all() and (fills["fee"] < 0).all()
