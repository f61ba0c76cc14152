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
    those of them whose label was ``c``; ``hits`` rows whose most likely class was the label.

    >>> t = tally(np.array([[0.05, 0.15, 0.8], [0.6, 0.3, 0.1]]), np.array([2, 2]))
    >>> t["matured"], t["hits"], t["predicted"][2].tolist(), t["observed"][2].tolist()
    (2, 1, [0, 1, 0, 0, 0, 0, 0, 0, 1, 0], [0, 1, 0, 0, 0, 0, 0, 0, 1, 0])
    """
    t = empty_tally()
    # column-wise: numpy's reductions over a 3-wide axis (argmax, all) are slow
    p0, p1, p2 = probs[:, 0], probs[:, 1], probs[:, 2]
    ok = np.isfinite(p0 + p1 + p2) & (y >= 0) & (y <= 2)
    if not ok.all():
        probs, y = probs[ok], y[ok]
        p0, p1, p2 = probs[:, 0], probs[:, 1], probs[:, 2]
    y = y.astype(np.int64)
    if not len(y):
        return t
    pred = np.where(p2 > np.maximum(p0, p1), 2, np.where(p1 > p0, 1, 0))  # argmax, first of ties
    t["matured"] = len(y)
    t["hits"] = int(np.count_nonzero(pred == y))
    bins = (probs * BINS).astype(np.int64)  # probabilities are >= 0; 1.0 goes to the last decile
    np.minimum(bins, BINS - 1, out=bins)
    t["predicted"] = np.bincount((bins + np.arange(3) * BINS).ravel(), minlength=3 * BINS).reshape(3, BINS)
    own = np.where(y == 0, bins[:, 0], np.where(y == 1, bins[:, 1], bins[:, 2]))  # the label's own bin
    t["observed"] = np.bincount(y * BINS + own, minlength=3 * BINS).reshape(3, BINS)
    return t
    t["matured"] = len(y)
    t["hits"] = int(np.count_nonzero(np.argmax(probs, axis=1) == y))
    bins = (probs * BINS).astype(np.int64)  # probabilities are >= 0; 1.0 goes to the last decile
    np.minimum(bins, BINS - 1, out=bins)
    t["predicted"] = np.bincount((bins + np.arange(3) * BINS).ravel(), minlength=3 * BINS).reshape(3, BINS)
    t["observed"] = np.bincount(y * BINS + bins[np.arange(len(y)), y], minlength=3 * BINS).reshape(3, BINS)
    return t


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
