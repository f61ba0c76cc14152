"""Walk-forward folds in time order with purging, and per-fold evaluation.

Dataset rows (time-ordered, see :mod:`streamsig.models.dataset`) are laid out as

    [initial train][test 0][embargo][test 1][embargo] ... [test K-1]

the last test block ending at the last row. Fold ``k`` tests on block ``k`` and
trains on the rows before it (``expanding``: all of them; ``rolling``: the last
``train_size``), *purged*: a training row is dropped unless the last row its
label reads (``end_pos``) lies more than ``gap`` table rows before the first test
row, so no training label overlaps the test period and train and test are at
least one label horizon apart. The *embargo* skips rows after each test block
before the next one starts (they still join later training sets), so
consecutive test blocks do not share label windows. Nothing is shuffled.

>>> pos = np.arange(100); end = pos + 3
>>> folds = make_folds(pos, end, FoldSpec(n_folds=3, embargo=2))
>>> [(int(f.train[0]), int(f.train[-1]), int(f.test[0]), int(f.test[-1])) for f in folds]
[(0, 20, 24, 47), (0, 46, 50, 73), (0, 72, 76, 99)]
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from streamsig.config import Config
from streamsig.models.scores import classification_metrics


@dataclass(frozen=True)
class FoldSpec(Config):
    """How to cut folds. ``test_size`` defaults to an equal share of ``n_folds + 1`` blocks;
    ``train_size`` (rolling only) defaults to the initial train block."""

    n_folds: int = 5
    scheme: Literal["expanding", "rolling"] = "expanding"
    test_size: int | None = None
    train_size: int | None = None
    gap: int = 0
    embargo: int = 0

    def __post_init__(self) -> None:
        if self.n_folds < 1:
            raise ValueError(f"n_folds must be >= 1, got {self.n_folds}")
        if self.scheme not in ("expanding", "rolling"):
            raise ValueError(f"scheme must be 'expanding' or 'rolling', got {self.scheme!r}")
        if self.gap < 0 or self.embargo < 0:
            raise ValueError("gap and embargo must be >= 0")

    @classmethod
    def coerce(cls, spec: FoldSpec | dict[str, Any] | int) -> FoldSpec:
        """Accept a spec, its dict form, or a number of folds."""
        if isinstance(spec, FoldSpec):
            return spec
        return cls(n_folds=spec) if isinstance(spec, int) else cls.from_dict(spec)


@dataclass(frozen=True)
class Fold:
    """Row indices (into the dataset) to train and test on; ``purged`` training rows dropped."""

    index: int
    train: np.ndarray
    test: np.ndarray
    purged: int


def make_folds(pos: np.ndarray, end_pos: np.ndarray, spec: FoldSpec | dict | int = 5) -> list[Fold]:
    """Cut walk-forward folds over rows with table positions ``pos`` and label ends ``end_pos``."""
    spec = FoldSpec.coerce(spec)
    pos, end_pos = np.asarray(pos), np.asarray(end_pos)
    n, k = len(pos), spec.n_folds
    if np.any(np.diff(pos) <= 0):
        raise ValueError("rows must be in time order")
    size = spec.test_size or (n - spec.embargo * (k - 1)) // (k + 1)
    first = n - k * size - (k - 1) * spec.embargo
    if size < 1 or first < 1:
        raise ValueError(f"{n} rows are too few for {k} folds of {size} test rows")
    window = spec.train_size or first
    folds = []
    for i in range(k):
        s = first + i * (size + spec.embargo)
        lo = 0 if spec.scheme == "expanding" else max(0, s - window)
        cand = np.arange(lo, s)
        keep = end_pos[cand] < pos[s] - spec.gap
        train = cand[keep]
        if len(train) == 0:
            raise ValueError(f"fold {i}: no training rows left after purging")
        folds.append(Fold(i, train, np.arange(s, s + size), int((~keep).sum())))
    return folds


def fold_summary(fold: Fold, pos: np.ndarray, ts_ns: np.ndarray) -> dict[str, Any]:
    """JSON-able description of a fold (for the model card)."""
    tr, te = fold.train, fold.test
    return {
        "index": fold.index,
        "train_rows": int(len(tr)), "test_rows": int(len(te)), "purged_rows": fold.purged,
        "train_pos": [int(pos[tr[0]]), int(pos[tr[-1]])],
        "test_pos": [int(pos[te[0]]), int(pos[te[-1]])],
        "train_ts_ns": [int(ts_ns[tr[0]]), int(ts_ns[tr[-1]])],
        "test_ts_ns": [int(ts_ns[te[0]]), int(ts_ns[te[-1]])],
    }


@dataclass
class WalkForward:
    """Out-of-sample predictions and metrics of one predictor over folds."""

    fold_metrics: list[dict[str, Any]]
    rows: np.ndarray  #: dataset rows predicted, fold after fold
    proba: np.ndarray  #: (len(rows), 3)
    pred: np.ndarray
    overall: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return {"folds": self.fold_metrics, "overall": self.overall}


FitPredict = Callable[[Fold], "tuple[np.ndarray, np.ndarray | None]"]


def walk_forward(y: np.ndarray, folds: list[Fold], fit_predict: FitPredict,
                 on_fold: Callable[[int, int], None] | None = None) -> WalkForward:
    """Run ``fit_predict(fold) -> (proba, pred or None)`` on every fold and score it."""
    rows, probas, preds, per_fold = [], [], [], []
    for f in folds:
        proba, pred = fit_predict(f)
        proba = np.asarray(proba, dtype=np.float64)
        pred = np.argmax(proba, axis=1) if pred is None else np.asarray(pred)
        per_fold.append(classification_metrics(y[f.test], proba, pred))
        rows.append(f.test); probas.append(proba); preds.append(pred)
        if on_fold:
            on_fold(f.index + 1, len(folds))
    r, p, d = np.concatenate(rows), np.concatenate(probas), np.concatenate(preds)
    return WalkForward(per_fold, r, p, d, classification_metrics(y[r], p, d))


def compare(model: WalkForward, other: WalkForward, metric: str = "macro_f1",
            t_min: float = 2.0) -> dict[str, Any]:
    """Paired comparison over folds: ``beats`` when the mean gain is positive and its
    t statistic (mean / standard error of the per-fold differences) is >= ``t_min``.

    With one fold there is no standard error and ``beats`` is just a positive gain;
    when every fold gains the same (zero spread) ``t`` is reported as +-1e9.
    """
    d = np.array([a[metric] - b[metric] for a, b in zip(model.fold_metrics, other.fold_metrics)])
    mean = float(d.mean())
    if len(d) < 2:
        return {"metric": metric, "mean_gain": mean, "t": None, "beats": mean > 0}
    se = float(d.std(ddof=1)) / math.sqrt(len(d))
    t = mean / se if se > 0 else (math.copysign(math.inf, mean) if mean else 0.0)
    return {"metric": metric, "mean_gain": mean,
            "t": t if math.isfinite(t) else (1e9 if t > 0 else -1e9),
            "beats": bool(mean > 0 and t >= t_min)}
