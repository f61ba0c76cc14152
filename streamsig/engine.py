"""One symbol's live signal path: events -> book + features -> model -> target position.

``SignalEngine`` is synchronous and I/O-free. The stream worker calls
``on_events`` once per symbol per batch, on the events of all that symbol's
frames that were waiting together (one frame when there is no backlog); the
backtest drives the very same
``FeatureState`` and :class:`~streamsig.trading.strategies.Strategy` objects, so
a file replayed through either gives the same signals.

Delivery is at-least-once, so the engine is idempotent by sequence: a leading
run of events at or below the last applied sequence (a redelivered frame) is
skipped without a reject (:func:`~streamsig.book.sequence.fresh_start`;
snapshots included: live sequences never restart); later out-of-order events
are rejected by the kernel.

Each signal record (:func:`signal_records`) carries the row's mid and touch
(best bid and ask, price and size), so the live trader marks its account and
checks its book without running the feature kernel.

>>> from streamsig.trading.rules import default_baselines
>>> from streamsig.book.sources import open_feeds
>>> from streamsig.features import FeatureSpec
>>> feed = open_feeds("synthetic", symbols=["S"], n_updates=300, seed=3)[0]
>>> ev = feed.read_all()
>>> eng = SignalEngine("S", FeatureSpec(levels=10), feed.tick_size, default_baselines(1.0)[1])
>>> out = eng.on_events(ev)
>>> len(out.signals), out.duplicates, len(eng.on_events(ev).signals)   # a redelivery changes nothing
(300, 0, 0)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from streamsig.book.records import SIGNAL_DTYPE
from streamsig.book import events as E
from streamsig.book.sequence import fresh_start
from streamsig.features import FeatureSpec, FeatureState
from streamsig.trading.policy import PolicyConfig, SignalPolicy

_RESYNC = int(E.Reason.RESYNC)
_DUP = int(E.Reason.DUPLICATE)
_BENIGN = int(E.Reason.BENIGN_DELETE)


def signal_records(seq: np.ndarray, ts: np.ndarray, probs: np.ndarray | None, targets: np.ndarray,
                   rows: np.ndarray, spec: FeatureSpec, tick_size: float) -> np.ndarray:
    """``SIGNAL_DTYPE`` records of a chunk's feature rows (the backtest and the engine both use this).

    The touch comes from the rows: prices from ``mid`` and ``spread_ticks``,
    sizes from ``depth_bid_1``/``depth_ask_1`` (NaN if the spec lacks depth 1).
    """
    out = np.zeros(len(seq), SIGNAL_DTYPE)
    out["seq"], out["ts_ns"], out["target"] = seq, ts, targets
    p = np.full((len(seq), 3), np.nan) if probs is None else probs
    out["p_down"], out["p_flat"], out["p_up"] = p[:, 0], p[:, 1], p[:, 2]
    mid = rows[:, spec.index("mid")]
    out["mid"] = mid
    half = 0.5 * rows[:, spec.index("spread_ticks")]
    bid_t = np.rint(mid / tick_size - half)
    out["bid"], out["ask"] = bid_t * tick_size, (bid_t + 2.0 * half) * tick_size
    names = spec.names
    out["bid_sz"] = rows[:, names.index("depth_bid_1")] if "depth_bid_1" in names else np.nan
    out["ask_sz"] = rows[:, names.index("depth_ask_1")] if "depth_ask_1" in names else np.nan
    return out


@dataclass
class EngineOutput:
    """What one :meth:`SignalEngine.on_events` call produced."""

    signals: np.ndarray  #: SIGNAL_DTYPE, one per feature row
    rows: np.ndarray  #: the feature rows (n, F)
    rejected: np.ndarray  #: indices (into the events given) of rejected events, resync drops excluded
    reasons: np.ndarray  #: reason code per rejected event
    duplicates: int  #: events skipped as already applied (redelivered, or periodic snapshots)
    resync_dropped: int  #: events dropped while waiting for a snapshot
    gap: bool  #: these events opened a sequence gap (the book waits for a snapshot)
    challenger: np.ndarray | None = None  #: the online challenger's signals (SIGNAL_DTYPE), if enabled
    benign_deletes: int = 0  #: deletes of levels the book did not hold (no-ops, not rejects)


class SignalEngine:
    """Feature state + strategy of one symbol (see module doc)."""

    def __init__(self, symbol: str, spec: FeatureSpec, tick_size: float, strategy: Any,
                 challenger: Any = None, challenger_policy: PolicyConfig = PolicyConfig()) -> None:
        self.symbol, self.spec, self.tick_size = symbol, spec, tick_size
        self.state = FeatureState(spec, tick_size)
        self.strategy = strategy
        self.trader = strategy.start(symbol, spec)
        #: an online model (``streamsig.models.OnlineChallenger``) scored beside the champion;
        #: it learns each row only once that row's label has matured
        self.challenger = challenger
        if challenger is not None:
            self._ch_cols = spec.select(list(challenger.features))
            self._ch_policy = SignalPolicy(challenger_policy)
            self._imid = spec.index("mid")

    @property
    def last_seq(self) -> int:
        return self.state.last_seq

    def on_events(self, events: np.ndarray) -> EngineOutput:
        """Apply a run of events (one frame, or several frames joined); returns its signals and rejects."""
        skip = fresh_start(events["seq"], self.state.last_seq)
        ev = events[skip:]
        was_waiting = self.state.needs_snapshot
        rows, idx, reasons = self.state.update(ev)
        ts = ev["exch_ts"][idx]
        probs, targets = self.trader.step(rows, ts)
        sig = signal_records(ev["seq"][idx], ts, probs, targets, rows, self.spec, self.tick_size)
        bad = np.flatnonzero((reasons != 0) & (reasons != _RESYNC) & (reasons != _DUP) & (reasons != _BENIGN))
        n_resync = int(np.count_nonzero(reasons == _RESYNC))
        skip_dup = skip + int(np.count_nonzero(reasons == _DUP))
        gap = (not was_waiting and self.state.needs_snapshot
               and not np.any(reasons == int(E.Reason.CROSSED)))
        ch = self._challenge(rows, sig) if self.challenger is not None else None
        return EngineOutput(sig, rows, bad + skip, reasons[bad], skip_dup, n_resync, gap, ch,
                            int(np.count_nonzero(reasons == _BENIGN)))

    def _challenge(self, rows: np.ndarray, sig: np.ndarray) -> np.ndarray:
        out = sig.copy()
        x = np.nan_to_num(rows[:, self._ch_cols], nan=0.0, posinf=0.0, neginf=0.0)  # warm-up NaN -> 0
        champ = np.stack([sig["p_down"], sig["p_flat"], sig["p_up"]], axis=1)  # scored too once labels mature
        for i in range(len(rows)):
            p = self.challenger.process_one(x[i], mid=float(rows[i, self._imid]), ts_ns=int(sig["ts_ns"][i]),
                                            symbol=self.symbol, champion=champ[i])
            out["p_down"][i], out["p_flat"][i], out["p_up"][i] = p[0], p[1], p[2]
            out["target"][i] = self._ch_policy.target(p)
        return out

    # ---- checkpoints -------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to resume: kernel state bytes and the strategy's state.

        A trader with ``state()`` (a sequence model's: its policy and window)
        saves that; a model trader's state is its policy; a rule trader (plain
        numbers and arrays) is saved whole, its attributes as they are. Every
        value is an array, bytes or a JSON scalar.
        """
        pol = getattr(self.trader, "policy", None)
        if hasattr(self.trader, "state"):
            strat = {"trader": self.trader.state()}
        elif pol is not None:
            strat = {"policy": pol.state()}
        else:
            strat = {"attrs": {k: (v.copy() if isinstance(v, np.ndarray) else v)
                               for k, v in vars(self.trader).items()}}
        ck = {"symbol": self.symbol, "tick_size": self.tick_size, "state": self.state.to_bytes(),
              "strategy": strat}
        if self.challenger is not None:
            ck["challenger"] = self.challenger.state_bytes()
            ck["challenger_policy"] = self._ch_policy.state()
        return ck

    def restore(self, ck: dict[str, Any]) -> None:
        """Resume from :meth:`checkpoint` output (same spec and strategy)."""
        self.state.load_bytes(ck["state"])
        strat = ck.get("strategy") or {}
        if "trader" in strat:
            self.trader.restore(strat["trader"])
        elif "policy" in strat:
            self.trader.policy.restore(strat["policy"])
        elif "attrs" in strat:
            vars(self.trader).update(strat["attrs"])
        if self.challenger is not None and ck.get("challenger") is not None:
            from streamsig.models import OnlineChallenger

            self.challenger = OnlineChallenger.from_bytes(ck["challenger"])
            self._ch_policy.restore(ck["challenger_policy"])
