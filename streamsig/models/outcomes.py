"""A model's live predictions scored against their labels as the labels mature, batch by batch.

For ``kind="horizon"`` labels with the current mid as reference (h rows, or the
first row at least h seconds later), a row's label is known once the row that
completes it has arrived; until then the row waits (at most h rows, or h
seconds of rows). Labels are computed as :func:`streamsig.labels.make_labels`
computes them offline. Each batch is one numpy pass: cheap enough for the
worker's hot path, unlike the online challenger, which learns row by row.

Waiting rows are not checkpointed: after a restart they are never scored.

>>> import numpy as np
>>> m = MaturedScores({"horizon": 2})
>>> p = np.array([[0.1, 0.1, 0.8]] * 4)       # always "up"
>>> t = m.update_many(np.array([1.0, 1.0, 1.1, 1.2]), np.arange(4), p)
>>> t["matured"], t["hits"], m.waiting       # rows 0 and 1 matured: both went up
(2, 2, 2)
"""
from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

from streamsig.labels import LabelConfig, mid_change, ternary

BINS = 10  #: probability deciles of the calibration counts


def empty_tally() -> dict[str, Any]:
    """Counts of matured predictions (see :func:`tally`), all zero."""
    return {"matured": 0, "hits": 0, "drifts": 0, "predicted": np.zeros((3, BINS), np.int64),
            "observed": np.zeros((3, BINS), np.int64)}


def tally(probs: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Score (n, 3) down/flat/up probabilities against labels ``y`` (0, 1, 2; others skipped).

    ``predicted[c, b]`` counts rows whose p_c fell in decile ``b``; ``observed[c, b]``
    those of them whose label was ``c``; ``hits`` rows whose most likely class was the label
    (the first of tied ones). Rows with a non-finite probability are skipped too.

    >>> t = tally(np.array([[0.05, 0.15, 0.8], [0.6, 0.3, 0.1]]), np.array([2, 2]))
    >>> t["matured"], t["hits"], t["predicted"][2].tolist(), t["observed"][2].tolist()
    (2, 1, [0, 1, 0, 0, 0, 0, 0, 0, 1, 0], [0, 1, 0, 0, 0, 0, 0, 0, 1, 0])
    """
    t = empty_tally()
    if len(y):
        t["matured"], t["hits"] = _tally_into(np.ascontiguousarray(probs, np.float64),
                                              np.ascontiguousarray(y, np.int64), t["predicted"], t["observed"])
    return t


@nb.njit(cache=True)
def _tally_into(probs: np.ndarray, y: np.ndarray, predicted: np.ndarray, observed: np.ndarray) -> tuple[int, int]:
    """Add the rows of :func:`tally` to ``predicted`` and ``observed``; return (matured, hits).

    One pass in compiled code: the worker tallies every batch of every symbol, mostly a few rows,
    where a dozen numpy calls cost far more than the rows."""
    matured = hits = 0
    for i in range(len(y)):
        c = y[i]
        p0, p1, p2 = probs[i, 0], probs[i, 1], probs[i, 2]
        if c < 0 or c > 2 or not np.isfinite(p0 + p1 + p2):
            continue
        matured += 1
        pred = 2 if p2 > max(p0, p1) else (1 if p1 > p0 else 0)
        if pred == c:
            hits += 1
        for k in range(3):
            b = min(max(int(probs[i, k] * BINS), 0), BINS - 1)  # 1.0 goes to the last decile
            predicted[k, b] += 1
            if k == c:
                observed[k, b] += 1
    return matured, hits


class MaturedScores:
    """One symbol's predictions, scored as their labels mature (see the module doc)."""

    def __init__(self, label_cfg: LabelConfig | dict[str, Any]) -> None:
        self.label = LabelConfig.coerce(label_cfg)
        self.supported = self.label.kind == "horizon" and self.label.reference == "current"
        self._mid = np.zeros(0)
        self._ts = np.zeros(0, np.int64)
        self._p = np.zeros((0, 3))

    @property
    def waiting(self) -> int:
        """Rows whose label has not matured yet."""
        return len(self._mid)

    def update_many(self, mids: np.ndarray, ts_ns: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
        """Add a batch of rows (mid, exchange time, probabilities); return the tally of the rows that matured."""
        if not self.supported or not len(mids):
            return empty_tally()
        mid = np.concatenate([self._mid, np.asarray(mids, np.float64)])
        ts = np.concatenate([self._ts, np.asarray(ts_ns, np.int64)])
        p = np.concatenate([self._p, np.asarray(probs, np.float64)])
        cfg = self.label
        if cfg.unit == "seconds":
            j = np.searchsorted(ts, ts + cfg.horizon_ns, side="left")
        else:
            j = np.arange(len(mid)) + int(cfg.horizon)
        done = int(np.count_nonzero(j < len(mid)))  # j only grows with the row, so the matured rows lead
        if done:
            ref = mid[:done]
            y = ternary(mid_change(mid[j[:done]] - ref, ref, cfg), cfg.threshold)
            out = tally(p[:done], y)
        else:
            out = empty_tally()
        self._mid, self._ts, self._p = mid[done:], ts[done:], p[done:]
        return out
