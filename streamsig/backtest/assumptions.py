"""The modelling assumptions of a backtest, in words, with this run's numbers.

Every report lists them; they restate :mod:`streamsig.trading.executor` and
:mod:`streamsig.trading.portfolio` for the settings used.

>>> lines = assumptions({"exec": {"fee_bps": 2.0}, "bar_ns": 1_000_000_000})
>>> any("2 bps" in s for s in lines)
True
"""
from __future__ import annotations

from typing import Any


def _num(x: Any) -> str:
    return "none" if x is None else f"{x:g}" if isinstance(x, (int, float)) else str(x)


def clock(ts_ns: int) -> str:
    """An exchange timestamp for humans: UTC date-time, or time of day for LOBSTER's ns after midnight.

    >>> clock(38_711_076_891_398), clock(1_704_067_200_000_000_000)
    ('10:45:11.076 (after midnight)', '2024-01-01 00:00:00.000 UTC')
    """
    s, ms = divmod(int(ts_ns) // 1_000_000, 1000)
    if ts_ns < 86_400_000_000_000 * 2:
        return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.{ms:03d} (after midnight)"
    import datetime as dt

    t = dt.datetime.fromtimestamp(s, tz=dt.timezone.utc)
    return f"{t:%Y-%m-%d %H:%M:%S}.{ms:03d} UTC"


def assumptions(config: dict[str, Any]) -> list[str]:
    """Plain-language assumptions for a backtest ``config`` (as in ``BacktestResult.config``)."""
    ex = config.get("exec", {})
    lat_ns = (ex.get("signal_latency_ns", 0) or 0) + (ex.get("order_latency_ns", 0) or 0)
    lat_ev = (ex.get("signal_latency_events", 0) or 0) + (ex.get("order_latency_events", 0) or 0)
    passive = config.get("passive", False)
    size = config.get("size", 1.0)
    out = [
        "Replay: events are applied in file order; features, scores, policy and fills are computed at "
        "every consistent book (end of an atomic batch). Rejected events (crossed books, sequence gaps, "
        "off-tick prices) are dropped exactly as the live feature state drops them.",
        "Signals: the model scores each feature row; the policy turns p_up - p_down into a target "
        f"position (settings: {config.get('policy') or 'defaults'}). A changed target is sent as one order "
        "answering that row's sequence number.",
        f"Latency: an order acts once book time reaches its signal time + {_num(lat_ns)} ns and at least "
        f"{max(1, lat_ev)} further book update(s) have arrived; it then trades against the book of that "
        "update, never the book it was decided on.",
        ("Orders rest passively at our touch behind the visible queue; trades at our price use up the queue "
         "ahead first; cancels are assumed to come from behind us; a trade through our price or the far "
         "touch reaching it fills the rest at our limit price (maker fee "
         f"{_num(ex.get('maker_fee_bps', 0.0))} bps)." if passive else
         "Orders are market orders: they walk the opposite side from the touch and fill at the volume-"
         "weighted price of the levels taken; depth that is short leaves the rest for the next update."),
        "No market impact: our fills do not remove liquidity from the replayed book, and the book does "
        "not react to our orders (flattering for repeated sweeps of thin books).",
        f"Costs: taker fee {_num(ex.get('fee_bps', 0.0))} bps of notional; slippage "
        f"{_num(ex.get('slippage_bps', 0.0))} bps and {_num(ex.get('cross_ticks', 0))} extra tick(s) against "
        "us on every market fill; the spread is paid by crossing the book. Costs paid are fees plus the "
        "fill price's distance from the mid at the fill.",
        f"Sizing and limits: every strategy trades up to {_num(size)} unit(s) per symbol; position cap "
        f"{_num(ex.get('max_position'))}, child order cap {_num(ex.get('max_order_size'))}; kill switch at "
        f"a drawdown of {_num(config.get('max_drawdown'))} (fraction of the symbol's equity peak): it "
        "flattens with a market order and refuses new risk.",
        "Accounting: average cost in the quote currency; equity is cash plus positions marked at the mid at "
        "every feature row; positions open at the end are marked, not closed. A round trip runs flat to flat "
        "and is net of its fees.",
        "Capital: " + (f"{_num(config.get('capital'))} split evenly over the symbols" if config.get("capital")
                       else "per symbol, the notional of the traded size at its first mid (1x leverage)")
        + "; returns are on that fixed base (no compounding).",
        f"Metrics: on the account equity sampled every {config.get('bar_ns', 0) / 1e9:g} s (last value in "
        "each bar); Sharpe and Sortino are annualised with the sampling rate implied by the timestamps "
        "(calendar time, 365.25 days); VaR and CVaR are historical, 95 %, per bar.",
        "Symbols are independent: each has its own executor, portfolio and risk limits; the account adds "
        "their P&L. Baselines trade the same events with the same costs, latency and limits.",
    ]
    if config.get("start_ns") is not None:
        out.append(f"Trading starts at exchange time {clock(config['start_ns'])}; earlier rows only warm up "
                   "features and strategy state.")
    if config.get("walk_forward"):
        wf = config["walk_forward"]
        out.append(f"Walk-forward: the rows are split in time into {wf.get('folds')} folds of equal row "
                   "count; the model trained on fold k alone trades fold k+1 (out of sample); the curve "
                   "stitches folds 2..K. Labels are computed inside each training fold only.")
    return out
