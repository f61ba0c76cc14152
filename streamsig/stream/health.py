"""What the live processes report about themselves: consumer lag, broker reachability, model scores.

Every function here only sets metrics of :mod:`streamsig.serve.metrics`.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import numpy as np

from streamsig.serve import metrics as M

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
        except Exception:  # noqa: BLE001 - no fetch yet for this partition
            continue
        if hw is None:
            continue
        last = read.get(tp)
        nxt = last + 1 if last is not None else (committed.get(tp) or 0)
        lag = max(0, int(hw) - int(nxt))
        M.CONSUMER_LAG.labels(consumer, tp.topic, str(tp.partition)).set(lag)
        total += lag
    return total


async def probe_brokers(bootstrap: str, timeout_s: float = 1.0) -> int:
    """Open (and close) a TCP connection to each bootstrap server; set ``streamsig_broker_up``; return how many are up."""
    up = 0
    for server in [s.strip() for s in bootstrap.split(",") if s.strip()]:
        host, _, port = server.rpartition(":")
        ok = 0
        with contextlib.suppress(OSError, asyncio.TimeoutError, ValueError):
            _, w = await asyncio.wait_for(asyncio.open_connection(host.strip("[]") or "127.0.0.1", int(port)),
                                          timeout_s)
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()
            ok = 1
        M.BROKER_UP.labels(server).set(ok)
        up += ok
    return up


def add_health_timer(app: Any, consumer: str, bootstrap: str, interval_s: float = 1.0) -> None:
    """Register a Faust timer that records consumer lag and broker reachability every ``interval_s``."""

    @app.timer(interval_s)
    async def health() -> None:  # type: ignore[no-untyped-def]
        await probe_brokers(bootstrap)
        with contextlib.suppress(Exception):  # the consumer may be between assignments
            record_lag(app, consumer)


def observe_scores(model: str, sig: np.ndarray, limit: int = 64) -> int:
    """Observe up to ``limit`` evenly spaced rows of a signal batch in ``streamsig_signal_probability``.

    A sample, so the histogram costs the same per message at any rate; rows
    without probabilities (rules, warm-up) are skipped. Returns rows observed.
    """
    probs = np.stack([sig["p_down"], sig["p_flat"], sig["p_up"]], axis=1)
    probs = probs[np.isfinite(probs).all(axis=1)]
    if not len(probs):
        return 0
    step = max(1, -(-len(probs) // limit))
    sample = probs[::step]
    children = [M.SCORES.labels(model, c) for c in CLASSES]
    for row in sample.tolist():
        for child, p in zip(children, row):
            child.observe(p)
    return len(sample)


def record_tally(symbol: str, models: dict[str, str], tally: dict[str, dict[str, Any]]) -> None:
    """Add an ``OnlineChallenger.take_tally()`` to the matured-label counters.

    ``models`` maps a role ("champion", "challenger") to the model id it is exported under;
    a tally may hold either role or both.
    """
    for role, t in tally.items():
        model = models[role]
        if t["matured"]:
            M.MATURED.labels(symbol, model).inc(t["matured"])
            M.HITS.labels(symbol, model).inc(t["hits"])
        if t["drifts"]:
            M.DRIFTS.labels(symbol, model).inc(t["drifts"])
        for ci, cls in enumerate(CLASSES):
            for bi in np.flatnonzero(t["predicted"][ci]).tolist():
                M.CALIB_PRED.labels(model, cls, BIN_EDGES[bi]).inc(int(t["predicted"][ci, bi]))
                M.CALIB_HIT.labels(model, cls, BIN_EDGES[bi]).inc(int(t["observed"][ci, bi]))


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
