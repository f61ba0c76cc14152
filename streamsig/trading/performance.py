"""Performance metrics on an equity series (pure numpy), and their O(1) live version.

Conventions:

* ``equity`` is account value in quote currency, capital included (e.g.
  ``10_000 + P&L``), one sample per period; ``ts_ns`` are the sample times.
* Returns are on a **fixed capital base**: ``r_t = (E_t - E_{t-1}) / capital``
  with ``capital = E_0`` unless given. P&L from fixed-size paper trading does not
  compound, so returns add up: ``sum(r) == total_return``, and the annualised
  return is arithmetic, ``mean(r) * periods_per_year``.
* Drawdown is relative to the running peak of equity, ``1 - E_t / max(E_0..E_t)``.
* Sharpe and Sortino are annualised by ``sqrt(periods_per_year)``. Samples taken
  at every book event are irregular: resample them first (:func:`resample_last`).
* Losses (VaR, CVaR, drawdown) are reported as positive numbers.

>>> eq = np.array([100.0, 110.0, 99.0, 104.5])
>>> total_return(eq), round(max_drawdown(eq), 12)
(0.045, 0.1)
"""
from __future__ import annotations

import math

import numpy as np

SECONDS_PER_YEAR = 365.25 * 86400.0


def returns(equity: np.ndarray, capital: float | None = None) -> np.ndarray:
    """Per-period returns on the capital base (``capital`` defaults to ``equity[0]``)."""
    e = np.asarray(equity, dtype=np.float64)
    return np.diff(e) / (e[0] if capital is None else capital)


def total_return(equity: np.ndarray, capital: float | None = None) -> float:
    """``(E_end - E_0) / capital``."""
    e = np.asarray(equity, dtype=np.float64)
    return float((e[-1] - e[0]) / (e[0] if capital is None else capital))


def annualised_return(equity: np.ndarray, periods_per_year: float,
                      capital: float | None = None) -> float:
    """Arithmetic annualised return, ``mean(r) * periods_per_year``."""
    r = returns(equity, capital)
    return float(r.mean() * periods_per_year) if r.size else math.nan


def periods_per_year(ts_ns: np.ndarray, seconds_per_year: float = SECONDS_PER_YEAR) -> float:
    """Sampling frequency implied by timestamps: intervals per year on average.

    >>> periods_per_year(np.array([0, 86_400_000_000_000, 172_800_000_000_000]))
    365.25
    """
    t = np.asarray(ts_ns, dtype=np.int64)
    span = (t[-1] - t[0]) * 1e-9 if t.size > 1 else 0.0
    return float((t.size - 1) * seconds_per_year / span) if span > 0 else math.nan


_ppy_from_ts = periods_per_year  # summary() has a parameter of the same name


def resample_last(ts_ns: np.ndarray, values: np.ndarray, period_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """First sample, then the last value at or before each bar close ``k * period_ns``.

    >>> resample_last(np.array([5, 12, 18, 31]), np.array([1.0, 2.0, 3.0, 4.0]), 10)
    (array([ 5, 10, 20, 30, 40]), array([1., 1., 3., 3., 4.]))
    """
    t = np.asarray(ts_ns, dtype=np.int64)
    v = np.asarray(values)
    first, last = t[0] // period_ns + 1, -(-t[-1] // period_ns)
    ends = np.arange(first, last + 1, dtype=np.int64) * period_ns
    idx = np.searchsorted(t, ends, side="right") - 1
    return np.concatenate([t[:1], ends]), np.concatenate([v[:1], v[idx]])


def sharpe(r: np.ndarray, periods_per_year: float = 1.0, risk_free: float = 0.0) -> float:
    """Annualised Sharpe ratio, ``mean(r - rf) / std(r, ddof=1) * sqrt(ppy)``.

    Sharpe, W. F. (1994), "The Sharpe Ratio", J. Portfolio Management 21(1).
    ``risk_free`` is per period. NaN with fewer than 2 returns or zero spread.
    """
    r = np.asarray(r, dtype=np.float64)
    if r.size < 2:
        return math.nan
    sd = r.std(ddof=1)
    return float((r.mean() - risk_free) / sd * math.sqrt(periods_per_year)) if sd > 0 else math.nan


def downside_deviation(r: np.ndarray, target: float = 0.0) -> float:
    """``sqrt(mean(min(r - target, 0)^2))`` over *all* periods (not only the losing ones).

    Sortino, F. A. and Price, L. N. (1994), "Performance measurement in a
    downside risk framework", J. Investing 3(3).
    """
    r = np.asarray(r, dtype=np.float64)
    return float(np.sqrt(np.mean(np.minimum(r - target, 0.0) ** 2))) if r.size else math.nan


def sortino(r: np.ndarray, periods_per_year: float = 1.0, target: float = 0.0) -> float:
    """Annualised Sortino ratio, ``(mean(r) - target) / downside_deviation * sqrt(ppy)``."""
    dd = downside_deviation(r, target)
    if not dd > 0:
        return math.nan
    return float((np.mean(r) - target) / dd * math.sqrt(periods_per_year))


def drawdowns(equity: np.ndarray) -> np.ndarray:
    """Drawdown at every sample, ``1 - E_t / running peak`` (equity must stay positive)."""
    e = np.asarray(equity, dtype=np.float64)
    return 1.0 - e / np.maximum.accumulate(e)


def max_drawdown(equity: np.ndarray) -> float:
    """Largest drawdown from a running peak, as a fraction of that peak."""
    return float(drawdowns(equity).max())


def drawdown_duration(equity: np.ndarray, ts_ns: np.ndarray | None = None) -> float:
    """Longest time from a peak to the first sample back at or above it
    (or to the last sample, if never recovered): in periods, or in ``ts_ns`` units.

    >>> drawdown_duration(np.array([100.0, 90, 95, 100, 105, 104]))
    3.0
    """
    e = np.asarray(equity, dtype=np.float64)
    n = e.size
    x = np.arange(n, dtype=np.float64) if ts_ns is None else np.asarray(ts_ns, dtype=np.float64)
    at_peak = e >= np.maximum.accumulate(e)
    p = np.maximum.accumulate(np.where(at_peak, np.arange(n), 0))  # last peak index
    under = np.where(at_peak, 0.0, x - x[p])
    recover = np.where(at_peak[1:] & ~at_peak[:-1], x[1:] - x[p[:-1]], 0.0)
    return float(max(under.max(initial=0.0), recover.max(initial=0.0)))


def calmar(equity: np.ndarray, periods_per_year: float, capital: float | None = None) -> float:
    """Annualised return over maximum drawdown (whole sample).

    Young, T. W. (1991), "Calmar Ratio: A Smoother Tool", Futures 20(1).
    """
    mdd = max_drawdown(equity)
    return annualised_return(equity, periods_per_year, capital) / mdd if mdd > 0 else math.nan


def var_cvar(r: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Historical VaR and CVaR (expected shortfall) at ``level``, as positive losses.

    With the returns sorted ascending and ``k = ceil(n * (1 - level))``, VaR is
    ``-r_(k)`` (the empirical quantile) and CVaR is ``-mean(r_(1..k))``, the
    average of the ``k`` worst returns (Acerbi, C. and Tasche, D. (2002),
    "Expected shortfall: a natural coherent alternative to Value at Risk",
    Economic Notes 31(2)).
    """
    r = np.sort(np.asarray(r, dtype=np.float64))
    if r.size == 0:
        return math.nan, math.nan
    k = max(1, math.ceil(round(r.size * (1.0 - level), 9)))
    return float(-r[k - 1]), float(-r[:k].mean())


def hit_rate(trade_pnl: np.ndarray) -> float:
    """Fraction of round trips with P&L > 0 (NaN without trades)."""
    p = np.asarray(trade_pnl, dtype=np.float64)
    return float((p > 0).mean()) if p.size else math.nan


def profit_factor(trade_pnl: np.ndarray) -> float:
    """Sum of winning trades over the absolute sum of losing ones (inf if no losses)."""
    p = np.asarray(trade_pnl, dtype=np.float64)
    win, loss = float(p[p > 0].sum()), float(-p[p < 0].sum())
    if loss > 0:
        return win / loss
    return math.inf if win > 0 else math.nan


def turnover(notional: float, capital: float) -> float:
    """Traded notional (both sides) over capital: times the capital was turned over."""
    return float(notional) / capital


def avg_holding(open_ts: np.ndarray, close_ts: np.ndarray) -> float:
    """Mean round-trip holding time in timestamp units (NaN without trades)."""
    d = np.asarray(close_ts, dtype=np.float64) - np.asarray(open_ts, dtype=np.float64)
    return float(d.mean()) if d.size else math.nan


def _clean(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def summary(equity: np.ndarray, ts_ns: np.ndarray | None = None, *, capital: float | None = None,
            periods_per_year: float | None = None, trade_pnl: np.ndarray = (),
            holding_ns: np.ndarray = (), fees: float = 0.0, spread_cost: float = 0.0,
            notional: float = 0.0, level: float = 0.95) -> dict[str, float | None]:
    """All metrics in one JSON-safe dict with a fixed key order.

    Values are floats, or None where undefined (no trades, zero spread, no
    periods per year known). ``periods_per_year`` defaults to the one implied by
    ``ts_ns``; durations are in seconds when ``ts_ns`` is given. ``spread_cost``
    is what fills paid against the mid (negative when passive fills earned it).

    >>> s = summary(np.array([100.0, 101.0, 100.0, 102.0]), periods_per_year=4)
    >>> s["total_return"], s["max_drawdown_periods"], s["n_trades"]
    (0.02, 2.0, 0.0)
    """
    e = np.asarray(equity, dtype=np.float64)
    cap = float(e[0] if capital is None else capital)
    ppy = periods_per_year
    if ppy is None:
        ppy = _ppy_from_ts(ts_ns) if ts_ns is not None else math.nan
    r = returns(e, cap)
    var, cvar = var_cvar(r, level)
    pnl = np.asarray(trade_pnl, dtype=np.float64)
    hold = np.asarray(holding_ns, dtype=np.float64)
    pct = round(level * 100)
    out = {
        "start_equity": e[0], "end_equity": e[-1], "pnl": e[-1] - e[0], "capital": cap,
        "total_return": total_return(e, cap),
        "annualised_return": annualised_return(e, ppy, cap),
        "sharpe": sharpe(r, ppy), "sortino": sortino(r, ppy), "calmar": calmar(e, ppy, cap),
        "max_drawdown": max_drawdown(e),
        "max_drawdown_periods": drawdown_duration(e),
        "max_drawdown_seconds": drawdown_duration(e, ts_ns) * 1e-9 if ts_ns is not None else math.nan,
        f"var_{pct}": var, f"cvar_{pct}": cvar,
        "n_periods": r.size, "periods_per_year": ppy,
        "n_trades": pnl.size, "hit_rate": hit_rate(pnl), "profit_factor": profit_factor(pnl),
        "avg_holding_seconds": float(hold.mean()) * 1e-9 if hold.size else math.nan,
        "turnover": turnover(notional, cap), "notional": notional,
        "fees": fees, "spread_cost": spread_cost, "costs": fees + spread_cost,
    }
    return {k: _clean(float(v)) for k, v in out.items()}


class LiveStats:
    """Running Sharpe, Sortino, drawdown and hit rate, O(1) per update.

    Feed equity with :meth:`update` and closed round-trip P&L with :meth:`trade`;
    the values equal the batch functions on the same series (returns on the
    capital base; Welford's running mean and variance). ``drawdown`` is the
    current one; ``max_drawdown_time`` is in ``ts_ns`` units (periods if no
    timestamps are given).

    ``sharpe`` and ``sortino`` are per update scaled by ``sqrt(periods_per_year)``:
    annualised only if updates come on a regular clock of that many per year.
    The live paper trader updates once per processed batch of book frames, an
    irregular clock, and keeps the default ``periods_per_year=1``, so its Sharpe
    (the ``streamsig_sharpe_ratio`` gauge) is the mean over the standard
    deviation of the returns between updates, **not annualised**: it depends on
    how frames were batched and is comparable only with itself. For an
    annualised figure, resample the equity on a regular clock
    (:func:`resample_last`) and use :func:`sharpe`, as the backtest does.

    >>> st = LiveStats(capital=100.0)
    >>> for x in [100.0, 110.0, 99.0, 104.5]:
    ...     st.update(x)
    >>> round(st.total_return, 12), round(st.max_drawdown, 12), st.max_drawdown_periods
    (0.045, 0.1, 2.0)
    """

    def __init__(self, capital: float | None = None, periods_per_year: float = 1.0) -> None:
        self.capital, self.periods_per_year = capital, periods_per_year
        self.n = 0  # returns seen
        self._first = self._last = math.nan
        self._mean = self._m2 = self._down2 = 0.0
        self._peak = -math.inf
        self._peak_i, self._peak_t, self._i = 0, 0.0, -1
        self.drawdown = self.max_drawdown = 0.0
        self.max_drawdown_periods = self.max_drawdown_time = 0.0
        self.n_trades = self._wins = 0
        self._gain = self._loss = 0.0

    def update(self, equity: float, ts_ns: int | None = None) -> None:
        """Add one equity sample."""
        self._i += 1
        t = float(self._i if ts_ns is None else ts_ns)
        if self._i == 0:
            self._first = equity
            if self.capital is None:
                self.capital = equity
        else:
            r = (equity - self._last) / self.capital
            self.n += 1
            d = r - self._mean
            self._mean += d / self.n
            self._m2 += d * (r - self._mean)
            self._down2 += min(r, 0.0) ** 2
        self._last = equity
        if equity >= self._peak:
            if self.drawdown > 0.0:  # recovered: the spell ends here
                self._dur(t)
            self._peak, self._peak_i, self._peak_t, self.drawdown = equity, self._i, t, 0.0
        else:
            self.drawdown = 1.0 - equity / self._peak
            self.max_drawdown = max(self.max_drawdown, self.drawdown)
            self._dur(t)

    def _dur(self, t: float) -> None:
        self.max_drawdown_periods = max(self.max_drawdown_periods, float(self._i - self._peak_i))
        self.max_drawdown_time = max(self.max_drawdown_time, t - self._peak_t)

    def trade(self, pnl: float) -> None:
        """Add the P&L of one closed round trip."""
        self.n_trades += 1
        if pnl > 0:
            self._wins += 1
            self._gain += pnl
        elif pnl < 0:
            self._loss -= pnl

    @property
    def total_return(self) -> float:
        return (self._last - self._first) / self.capital if self._i >= 0 else math.nan

    @property
    def sharpe(self) -> float:
        if self.n < 2 or self._m2 <= 0:
            return math.nan
        return self._mean / math.sqrt(self._m2 / (self.n - 1)) * math.sqrt(self.periods_per_year)

    @property
    def sortino(self) -> float:
        dd = math.sqrt(self._down2 / self.n) if self.n else 0.0
        return self._mean / dd * math.sqrt(self.periods_per_year) if dd > 0 else math.nan

    @property
    def hit_rate(self) -> float:
        return self._wins / self.n_trades if self.n_trades else math.nan

    @property
    def profit_factor(self) -> float:
        if self._loss > 0:
            return self._gain / self._loss
        return math.inf if self._gain > 0 else math.nan
