import json
import math

import numpy as np
import pytest

from streamsig.trading import performance as M

# Equity on a capital of 100, four periods:
#   returns (E_t - E_{t-1}) / 100 = 0.10, -0.11, 0.055, 0.025   (sum 0.07)
EQ = np.array([100.0, 110.0, 99.0, 104.5, 107.0])
R = np.array([0.10, -0.11, 0.055, 0.025])


def test_returns_and_total_return():
    np.testing.assert_allclose(M.returns(EQ), R)
    np.testing.assert_allclose(M.returns(EQ, capital=200.0), R / 2)  # same P&L, twice the capital
    assert M.total_return(EQ) == pytest.approx(0.07)  # (107 - 100) / 100


def test_annualised_return():
    # mean(r) = 0.07 / 4 = 0.0175 per period; 12 periods a year -> 0.21
    assert M.annualised_return(EQ, 12) == pytest.approx(0.21)


def test_sharpe():
    # mean 0.0175; deviations 0.0825, -0.1275, 0.0375, 0.0075
    # squares 0.00680625 + 0.01625625 + 0.00140625 + 0.00005625 = 0.024525
    # sample variance 0.024525 / 3 = 0.008175; sd = 0.0904157...
    # Sharpe at 4 periods a year: 0.0175 / 0.0904157 * 2 = 0.3871009
    assert M.sharpe(R, 4) == pytest.approx(0.0175 / math.sqrt(0.008175) * 2)
    assert M.sharpe(R, 4) == pytest.approx(0.3871009, rel=1e-6)
    # a risk-free rate of 0.0075 per period: (0.0175 - 0.0075) / 0.0904157 * 2
    assert M.sharpe(R, 4, risk_free=0.0075) == pytest.approx(0.01 / math.sqrt(0.008175) * 2)
    assert math.isnan(M.sharpe(np.array([0.01]))) and math.isnan(M.sharpe(np.array([0.01, 0.01])))


def test_sortino_downside_deviation():
    # min(r, 0) = 0, -0.11, 0, 0; mean of squares over all 4 periods = 0.0121 / 4 = 0.003025
    # downside deviation sqrt(0.003025) = 0.055; Sortino = 0.0175 / 0.055 * sqrt(4) = 0.636363...
    assert M.downside_deviation(R) == pytest.approx(0.055)
    assert M.sortino(R, 4) == pytest.approx(0.0175 / 0.055 * 2)
    # target 0.03: r - 0.03 = 0.07, -0.14, 0.025, -0.005 -> (0.0196 + 0.000025) / 4 = 0.00490625
    assert M.downside_deviation(R, 0.03) == pytest.approx(math.sqrt(0.00490625))
    assert M.sortino(R, 1, target=0.03) == pytest.approx((0.0175 - 0.03) / math.sqrt(0.00490625))
    assert math.isnan(M.sortino(np.array([0.01, 0.02])))  # no downside


def test_max_drawdown_and_duration():
    # peak 110 at t=1, trough 99: 1 - 99/110 = 0.1; never back to 110 -> 4 - 1 = 3 periods
    np.testing.assert_allclose(M.drawdowns(EQ), [0, 0, 0.1, 0.05, 1 - 107 / 110], atol=1e-15)
    assert M.max_drawdown(EQ) == pytest.approx(0.1)
    assert M.drawdown_duration(EQ) == 3.0
    # two spells: 100 @ t=0 back at 100 @ t=40 (40), and 100 @ t=40 to the end at t=60 (20)
    eq, ts = np.array([100.0, 90.0, 95.0, 100.0, 99.0]), np.array([0, 10, 25, 40, 60])
    assert M.drawdown_duration(eq, ts) == 40.0
    assert M.drawdown_duration(eq) == 3.0  # periods: t index 0 -> 3
    assert M.drawdown_duration(np.array([1.0, 2.0, 3.0])) == 0.0


def test_calmar():
    # annualised 0.0175 * 4 = 0.07 over a max drawdown of 0.1 -> 0.7
    assert M.calmar(EQ, 4) == pytest.approx(0.7)
    assert math.isnan(M.calmar(np.array([1.0, 2.0]), 4))  # no drawdown


def test_var_cvar_historical():
    r = np.array([0.01 * i for i in range(-5, 15)])  # 20 returns: -0.05, -0.04, ..., 0.14
    # 95%: k = ceil(20 * 0.05) = 1 -> VaR = CVaR = 0.05 (the worst return, as a loss)
    assert M.var_cvar(r, 0.95) == pytest.approx((0.05, 0.05))
    # 90%: k = 2 -> VaR = 0.04, CVaR = (0.05 + 0.04) / 2 = 0.045
    assert M.var_cvar(r, 0.90) == pytest.approx((0.04, 0.045))
    # 10 returns at 95%: k = ceil(0.5) = 1
    assert M.var_cvar(R, 0.95) == pytest.approx((0.11, 0.11))
    # 75% of the 4 returns: k = 1 -> 0.11; 50%: k = 2 -> VaR -0.025 (a gain), CVaR (0.11 - 0.025) / 2
    assert M.var_cvar(R, 0.5) == pytest.approx((-0.025, 0.0425))


def test_trade_metrics():
    pnl = np.array([5.0, -2.0, 0.0, 3.0])
    assert M.hit_rate(pnl) == 0.5  # 2 of 4 above zero; a zero trade is not a hit
    assert M.profit_factor(pnl) == 4.0  # (5 + 3) / 2
    assert M.profit_factor(np.array([1.0])) == math.inf
    assert math.isnan(M.hit_rate(np.array([]))) and math.isnan(M.profit_factor(np.array([0.0])))
    assert M.avg_holding(np.array([0, 10]), np.array([4, 30])) == 12.0  # (4 + 20) / 2
    assert M.turnover(2500.0, 1000.0) == 2.5


def test_periods_per_year_and_resample():
    hourly = np.arange(5, dtype=np.int64) * 3_600_000_000_000
    assert M.periods_per_year(hourly) == pytest.approx(8766.0)  # 365.25 * 24
    ts, v = M.resample_last(np.array([3, 9, 10, 27]), np.array([1.0, 2.0, 3.0, 4.0]), 10)
    # first sample, then the last value at or before 10, 20, 30
    assert ts.tolist() == [3, 10, 20, 30] and v.tolist() == [1.0, 3.0, 3.0, 4.0]


def test_summary_values_and_json():
    s = M.summary(EQ, np.arange(5) * 10**9, periods_per_year=4, trade_pnl=[5.0, -2.0],
                  holding_ns=[2 * 10**9, 4 * 10**9], fees=1.5, spread_cost=0.5, notional=250.0)
    assert list(s) == [
        "start_equity", "end_equity", "pnl", "capital", "total_return", "annualised_return",
        "sharpe", "sortino", "calmar", "max_drawdown", "max_drawdown_periods",
        "max_drawdown_seconds", "var_95", "cvar_95", "n_periods", "periods_per_year", "n_trades",
        "hit_rate", "profit_factor", "avg_holding_seconds", "turnover", "notional", "fees",
        "spread_cost", "costs"]
    assert s["pnl"] == 7.0 and s["total_return"] == pytest.approx(0.07)
    assert s["annualised_return"] == pytest.approx(0.07)  # 0.0175 * 4
    assert s["sharpe"] == pytest.approx(0.0175 / math.sqrt(0.008175) * 2)
    assert s["sortino"] == pytest.approx(0.0175 / 0.055 * 2)
    assert s["calmar"] == pytest.approx(0.7)
    assert s["max_drawdown_periods"] == 3.0 and s["max_drawdown_seconds"] == 3.0
    assert (s["var_95"], s["cvar_95"]) == pytest.approx((0.11, 0.11))
    assert (s["n_trades"], s["hit_rate"], s["profit_factor"]) == (2.0, 0.5, 2.5)
    assert s["avg_holding_seconds"] == 3.0 and s["turnover"] == 2.5 and s["costs"] == 2.0
    assert all(type(v) is float for v in s.values())
    assert json.loads(json.dumps(s, allow_nan=False)) == s


def test_summary_undefined_values_are_none():
    s = M.summary(np.array([100.0, 100.0]))
    assert s["sharpe"] is None and s["periods_per_year"] is None and s["hit_rate"] is None
    assert s["max_drawdown"] == 0.0
    json.dumps(s, allow_nan=False)
    # periods per year from the timestamps: daily samples -> 365.25
    s = M.summary(EQ, np.arange(5) * 86_400 * 10**9)
    assert s["periods_per_year"] == pytest.approx(365.25)


def live_vs_batch(eq, ts=None, pnl=(), capital=None, ppy=252.0):
    st = M.LiveStats(capital=capital, periods_per_year=ppy)
    for i, x in enumerate(eq):
        st.update(float(x), None if ts is None else int(ts[i]))
    for p in pnl:
        st.trade(float(p))
    r = M.returns(eq, capital)
    assert st.n == r.size
    assert st.total_return == pytest.approx(M.total_return(eq, capital), rel=1e-12)
    assert st.sharpe == pytest.approx(M.sharpe(r, ppy), rel=1e-9)
    assert st.sortino == pytest.approx(M.sortino(r, ppy), rel=1e-9)
    assert st.max_drawdown == pytest.approx(M.max_drawdown(eq), rel=1e-12)
    assert st.drawdown == pytest.approx(M.drawdowns(eq)[-1], rel=1e-12, abs=1e-15)
    assert st.max_drawdown_periods == M.drawdown_duration(eq)
    if ts is not None:
        assert st.max_drawdown_time == M.drawdown_duration(eq, ts)
    if len(pnl):
        assert st.hit_rate == M.hit_rate(np.asarray(pnl))
        assert st.profit_factor == pytest.approx(M.profit_factor(np.asarray(pnl)))


def test_live_stats_equal_batch_on_hand_example():
    live_vs_batch(EQ, np.arange(5) * 7, pnl=[5.0, -2.0, 0.0, 3.0], ppy=4)
    st = M.LiveStats(periods_per_year=4)
    for x in EQ:
        st.update(x)
    # the same hand numbers as the batch tests
    assert st.sharpe == pytest.approx(0.0175 / math.sqrt(0.008175) * 2)
    assert st.sortino == pytest.approx(0.0175 / 0.055 * 2)
    assert (st.max_drawdown, st.max_drawdown_periods) == (pytest.approx(0.1), 3.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_live_stats_equal_batch_on_random_walks(seed):
    rng = np.random.default_rng(seed)
    eq = 1e4 + np.cumsum(rng.normal(0.5, 20.0, 2000))
    ts = np.cumsum(rng.integers(1, 10**6, 2000))
    live_vs_batch(eq, ts, pnl=rng.normal(0, 1, 50), capital=1e4)
