"""The report's charts, as PNG bytes (matplotlib, Agg backend, no files).

Each function draws one figure from a :class:`BacktestResult`. Long curves are
thinned to at most ``MAX_POINTS`` samples per line (every k-th, the last kept).
"""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from streamsig.backtest.result import BacktestResult  # noqa: E402
from streamsig.trading import performance  # noqa: E402

MAX_POINTS = 4000
HOUR_NS = 3_600_000_000_000


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _thin(n: int) -> np.ndarray:
    step = max(1, -(-n // MAX_POINTS))
    idx = np.arange(0, n, step)
    return idx if n == 0 or idx[-1] == n - 1 else np.append(idx, n - 1)


def _time_axis(ts: np.ndarray, t0: int) -> tuple[np.ndarray, str]:
    span = (int(ts.max()) - t0) / 1e9 if len(ts) else 0.0
    unit, div = ("h", 3600.0) if span > 7200 else ("min", 60.0) if span > 120 else ("s", 1.0)
    return (ts - t0) / 1e9 / div, f"time from first row ({unit})"


def _t0(res: BacktestResult) -> int:
    starts = [int(r.ts_ns[0]) for r in res.lanes.values() if len(r.ts_ns)]
    return min(starts) if starts else 0


def equity(res: BacktestResult) -> bytes:
    """Account P&L and drawdown over time, every strategy."""
    fig, (ax, dd) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    t0 = _t0(res)
    label = "time"
    for s in res.strategies:
        ts, eq, cap = res.curve(s)
        if not len(ts):
            continue
        k = _thin(len(ts))
        x, label = _time_axis(ts[k], t0)
        lw = 2.0 if s == res.primary else 1.0
        ax.plot(x, eq[k] - cap, lw=lw, label=s, drawstyle="steps-post")
        dd.plot(x, -performance.drawdowns(eq)[k] * 100, lw=lw, label=s, drawstyle="steps-post")
    ax.set_ylabel("P&L (quote currency)")
    ax.set_title("Equity after costs")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    dd.set_ylabel("drawdown (%)")
    dd.set_xlabel(label)
    dd.grid(alpha=0.3)
    return _png(fig)


def position(res: BacktestResult, strategy: str) -> bytes:
    """Position over time of one strategy, per symbol."""
    fig, ax = plt.subplots(figsize=(10, 3))
    t0 = _t0(res)
    for sym in res.symbols:
        r = res.lanes[(strategy, sym)]
        if len(r.ts_ns):
            k = _thin(len(r.ts_ns))
            x, label = _time_axis(r.ts_ns[k], t0)
            ax.plot(x, r.position[k], drawstyle="steps-post", lw=1.0, label=sym)
            ax.set_xlabel(label)
    ax.set_ylabel("position (units)")
    ax.set_title(f"Position: {strategy}")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def pnl_by_hour(res: BacktestResult) -> bytes:
    """Account P&L earned in each hour of the day (exchange clock), every strategy."""
    fig, ax = plt.subplots(figsize=(10, 3))
    n = max(1, len(res.strategies))
    width = 0.8 / n
    seen = np.zeros(24, bool)
    for j, s in enumerate(res.strategies):
        ts, eq, cap = res.curve(s)
        if not len(ts):
            continue
        hour = (ts // HOUR_NS) % 24
        d = np.diff(eq, prepend=cap)
        tot = np.bincount(hour, weights=d, minlength=24)
        hrs = np.flatnonzero(np.bincount(hour, minlength=24))
        seen[hrs] = True
        ax.bar(hrs + (j - (n - 1) / 2) * width, tot[hrs], width=width, label=s)
    ax.set_xticks(np.flatnonzero(seen))
    ax.set_xlabel("hour of day (exchange clock)")
    ax.set_ylabel("P&L")
    ax.set_title("P&L by hour")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def calibration(edges: np.ndarray, mean_bps: np.ndarray, counts: np.ndarray, horizon: str) -> bytes:
    """Mean realised forward return per bucket of predicted edge p_up - p_down."""
    fig, ax = plt.subplots(figsize=(10, 3.5))
    centre = 0.5 * (edges[:-1] + edges[1:])
    ok = counts > 0
    ax.bar(centre[ok], mean_bps[ok], width=0.9 * np.diff(edges)[ok], color="tab:blue")
    for c, m, n in zip(centre[ok], mean_bps[ok], counts[ok]):
        ax.annotate(f"{n}", (c, m), ha="center", va="bottom" if m >= 0 else "top", fontsize=7)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("predicted edge p_up - p_down (bucket)")
    ax.set_ylabel(f"mean forward return over {horizon} (bps)")
    ax.set_title("Signal calibration (numbers: rows per bucket)")
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def importance(names: list[str], values: list[float]) -> bytes:
    """Horizontal bars of feature importance (largest on top)."""
    order = np.argsort(values)[-20:]
    fig, ax = plt.subplots(figsize=(10, 0.3 * len(order) + 1.2))
    ax.barh([names[i] for i in order], [values[i] for i in order], color="tab:green")
    ax.set_xlabel("importance (from the model card)")
    ax.set_title("Feature importance")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return _png(fig)
