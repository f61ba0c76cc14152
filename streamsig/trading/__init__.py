"""Paper trading: probabilities -> target position -> fills -> P&L and metrics.

One step of a driver (backtest or live), at each consistent book (end of batch)::

    fills = ex.on_book(ts, book)            # orders that became active trade here
    for f in fills: pf.on_fill(f)
    pf.mark(ts, mid, symbol)
    if pf.killed and not ex.halted: ex.halt(ts)
    if signal: ex.submit(ts, seq, pf.allow(policy.target(probs)))

and ``ex.on_trade(ts, price_ticks, size, side)`` for each ``TRADE`` event as it
arrives (it can fill resting passive orders; book those fills the same way).
"""
from streamsig.trading.executor import BookView, ExecConfig, Executor, Fill
from streamsig.trading.performance import LiveStats, summary
from streamsig.trading.policy import PolicyConfig, SignalPolicy
from streamsig.trading.portfolio import Portfolio

__all__ = ["BookView", "ExecConfig", "Executor", "Fill", "LiveStats", "PolicyConfig", "Portfolio", "SignalPolicy", "summary"]
