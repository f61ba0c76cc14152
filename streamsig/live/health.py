"""What the live processes report about themselves: consumer lag and model scores.

Every function here only sets metrics of :mod:`streamsig.telemetry`. Broker
reachability (``streamsig_broker_up``) is reported by
:class:`~streamsig.wire.health.BrokerWatch`.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np

from streamsig import telemetry as M

CLASSES = ("down", "flat", "up")
BIN_EDGES = tuple(f"{(i + 1) / 10:.1f}" for i in range(10))  #: calibration bins by upper edge


def record_lag(app: Any, consumer: str) -> int:
    """Set ``streamsig_consumer_lag_messages`` for each partition a Faust app holds; return the total.

    Lag is the partition's high watermark minus the next offset the agents
    will process (the last offset they read plus one; before any read, the
    committed offset).
    """
    c = app.consumer
    read = getattr(c, "_read_offset", {})  # faust keeps what its agents have read here
    committed = getattr(c, "_committed_offset", {})
    total = 0
    for tp in c.assignment():
        if "__assignor" in tp.topic:  # faust's own leader-election topic
            continue
        try:
            hw = c.highwater(tp)
        except Exception:  # noqa: BLE001, S112 - no fetch yet for this partition: nothing to report
            continue
        if hw is None:
            continue
        last = read.get(tp)
        nxt = last + 1 if last is not None else (committed.get(tp) or 0)
        lag = max(0, int(hw) - int(nxt))
        M.CONSUMER_LAG.labels(consumer, tp.topic, str(tp.partition)).set(lag)
        total += lag
    return total


def add_health_timer(app: Any, consumer: str, interval_s: float = 1.0) -> None:
    """Register a Faust timer that records consumer lag every ``interval_s``."""

    @app.timer(interval_s)
    async def health() -> None:  # type: ignore[no-untyped-def]
        with contextlib.suppress(Exception):  # the consumer may be between assignments
            record_lag(app, consumer)


_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, looked up once (the worker calls this per batch)."""
    key = (id(metric), *labels)  # the metrics are module-level objects that live as long as the process
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


_last_observed: dict[tuple[str, str], float] = {}


def observe_scores(model: str, symbol: str, sig: np.ndarray, limit: int = 16, every_s: float = 0.05,
                   now: float | None = None) -> int:
    """Observe up to ``limit`` evenly spaced rows of a signal batch in ``streamsig_signal_probability``.

    A sample: at most one batch per ``every_s`` per model and symbol, so the
    histogram costs the same at any rate; rows without probabilities (rules,
    warm-up) are skipped. Returns rows observed.
    """
    now = time.monotonic() if now is None else now
    if now - _last_observed.get((model, symbol), -np.inf) < every_s:
        return 0
    _last_observed[(model, symbol)] = now
    probs = np.stack([sig["p_down"], sig["p_flat"], sig["p_up"]], axis=1)
    probs = probs[np.isfinite(probs).all(axis=1)]
    if not len(probs):
        return 0
    step = max(1, -(-len(probs) // limit))
    sample = probs[::step]
    children = [_child(M.SCORES, model, c) for c in CLASSES]
    for row in sample.tolist():
        for child, p in zip(children, row):
            child.observe(p)
    return len(sample)


class TallyBuffer:
    """Matured-label tallies summed per symbol and role, added to the counters every ``flush_s``.

    The worker adds a tally per batch (numpy sums only); the Prometheus
    counters move at most every ``flush_s`` seconds and at :meth:`flush`.
    """

    def __init__(self, models: dict[str, str], flush_s: float = 0.5) -> None:
        self.models, self.flush_s = models, flush_s
        self._sums: dict[tuple[str, str], dict[str, Any]] = {}
        self._last = time.monotonic()

    def add(self, symbol: str, tally: dict[str, dict[str, Any]], now: float | None = None) -> None:
        for role, t in tally.items():
            acc = self._sums.get((symbol, role))
            if acc is None:
                self._sums[(symbol, role)] = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in t.items()}
            else:
                for k, v in t.items():
                    acc[k] += v
        now = time.monotonic() if now is None else now
        if now - self._last >= self.flush_s:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Add everything summed so far to the counters."""
        sums, self._sums = self._sums, {}
        for (symbol, role), t in sums.items():
            record_tally(symbol, self.models, {role: t})
        self._last = time.monotonic() if now is None else now


def record_tally(symbol: str, models: dict[str, str], tally: dict[str, dict[str, Any]]) -> None:
    """Add an ``OnlineChallenger.take_tally()`` to the matured-label counters.

    ``models`` maps a role ("champion", "challenger") to the model id it is exported under;
    a tally may hold either role or both.
    """
    for role, t in tally.items():
        model = models[role]
        if t["drifts"]:
            _child(M.DRIFTS, symbol, model).inc(t["drifts"])
        if not t["matured"]:
            continue
        _child(M.MATURED, symbol, model).inc(t["matured"])
        _child(M.HITS, symbol, model).inc(t["hits"])
        pred, obs = t["predicted"].tolist(), t["observed"].tolist()
        for ci, cls in enumerate(CLASSES):
            for bi, n in enumerate(pred[ci]):
                if n:
                    _child(M.CALIB_PRED, model, cls, BIN_EDGES[bi]).inc(n)
                    _child(M.CALIB_HIT, model, cls, BIN_EDGES[bi]).inc(obs[ci][bi])


def champion_label(strategy: Any) -> dict[str, Any] | None:
    """The label config of a model strategy's card (None for rules, which have no probabilities)."""
    card = getattr(getattr(strategy, "scorer", None), "card", None)
    label = card.get("label") if isinstance(card, dict) else None
    return {k: v for k, v in label.items() if k != "description"} if isinstance(label, dict) else None


def zero_model_series(symbol: str, models: dict[str, str]) -> None:
    """Create a symbol's matured-label and drift series at 0, so they exist before the first label matures."""
    for model in models.values():
        M.MATURED.labels(symbol, model)
        M.HITS.labels(symbol, model)
        M.DRIFTS.labels(symbol, model)
