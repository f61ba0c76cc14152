"""Classification metrics for ternary probability forecasts.

``pred`` defaults to the argmax of ``proba``; baselines pass their own hard
calls. Brier is the multiclass form: mean over rows of the squared distance
between ``proba`` and the one-hot outcome (0 perfect, 2 worst). Calibration
bins group rows by the probability given to the predicted class and compare
it with how often that class occurred.

>>> y = np.array([0, 1, 2, 2])
>>> p = np.eye(3)[[0, 1, 2, 1]] * 0.8 + 0.2 / 3
>>> m = classification_metrics(y, p)
>>> m["accuracy"], round(m["macro_f1"], 4), m["recall"]["up"]
(0.75, 0.7778, 0.5)
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, precision_recall_fscore_support

from streamsig.labels import CLASS_NAMES

LABELS = [0, 1, 2]


def _nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    """Macro-F1 over the three classes (a class never seen nor predicted scores 0).

    >>> macro_f1(np.array([0, 1, 2]), np.array([0, 1, 1]))
    0.5555555555555555
    """
    cm = np.bincount(3 * np.asarray(y) + np.asarray(pred), minlength=9).reshape(3, 3).astype(np.float64)
    denom = cm.sum(axis=0) + cm.sum(axis=1)
    return float(np.divide(2 * np.diag(cm), denom, out=np.zeros(3), where=denom > 0).mean())


def calibration_bins(y: np.ndarray, proba: np.ndarray, pred: np.ndarray,
                     n_bins: int = 10) -> list[dict[str, float | int | None]]:
    """Confidence (probability of ``pred``) vs hit rate, in ``n_bins`` equal-width bins."""
    conf = proba[np.arange(len(y)), pred]
    hit = (pred == y).astype(np.float64)
    which = np.clip((conf * n_bins).astype(int), 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        m = which == b
        k = int(m.sum())
        bins.append({"lo": b / n_bins, "hi": (b + 1) / n_bins, "n": k,
                     "confidence": float(conf[m].mean()) if k else None,
                     "hit_rate": float(hit[m].mean()) if k else None})
    return bins


def classification_metrics(y: np.ndarray, proba: np.ndarray, pred: np.ndarray | None = None,
                           *, n_bins: int = 10) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/AUC-PR, Brier, log loss, calibration.

    AUC-PR is average precision of each class against the rest (None where the
    class does not occur). Log loss clips probabilities at 1e-15.
    """
    y = np.asarray(y, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    pred = np.argmax(proba, axis=1) if pred is None else np.asarray(pred, dtype=np.int64)
    prec, rec, _, support = precision_recall_fscore_support(
        y, pred, labels=LABELS, zero_division=0)
    onehot = np.eye(3)[y]
    clipped = np.clip(proba, 1e-15, 1.0)
    clipped /= clipped.sum(axis=1, keepdims=True)
    auc_pr = {}
    for k, name in enumerate(CLASS_NAMES):
        auc_pr[name] = (_nan_to_none(average_precision_score(onehot[:, k], proba[:, k]))
                        if support[k] else None)
    return {
        "n": int(len(y)),
        "accuracy": float(np.mean(pred == y)),
        "macro_f1": macro_f1(y, pred),
        "precision": {n: float(v) for n, v in zip(CLASS_NAMES, prec)},
        "recall": {n: float(v) for n, v in zip(CLASS_NAMES, rec)},
        "auc_pr": auc_pr,
        "brier": float(np.mean(np.sum((proba - onehot) ** 2, axis=1))),
        "log_loss": float(-np.mean(np.log(clipped[np.arange(len(y)), y]))),
        "class_counts": {n: int(v) for n, v in zip(CLASS_NAMES, support)},
        "confusion": confusion_matrix(y, pred, labels=LABELS).tolist(),
        "calibration": calibration_bins(y, proba, pred, n_bins),
    }
