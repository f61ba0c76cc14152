"""Three reference predictors, fit and scored on the same folds as a model.

- ``majority``: always the most frequent training class.
- ``persistence``: the label of the last move already realised at that row
  (the last earlier row of the symbol whose label window has ended); flat
  when none has.
- ``ofi_rule``: up when a rolling order-flow sum is above ``+c``, down below
  ``-c``, flat between; the column (any ``ofi_1_sum_*``, else ``ofi_1``) and
  ``c`` (a quantile of its absolute value) are chosen on the training rows by
  macro-F1.

Each gives a hard call. Its probabilities are the training frequencies of
each outcome given that call (add-one smoothed), so Brier and log loss stay
finite and comparable with a model's.

>>> ofi_columns(["mid", "ofi_1", "ofi_1_sum_50", "ofi_1_sum_10"])
['ofi_1_sum_10', 'ofi_1_sum_50']
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from streamsig.labels import FLAT
from streamsig.models.dataset import Dataset
from streamsig.models.scores import macro_f1
from streamsig.models.walkforward import Fold, WalkForward, walk_forward

_QUANTILES = np.linspace(0.0, 0.95, 20)


def ofi_columns(columns: Iterable[str]) -> list[str]:
    """The rolling ``ofi_1`` sums in a table (by window), or ``['ofi_1']``, or ``[]``."""
    cols = list(columns)
    sums = sorted((c for c in cols if re.fullmatch(r"ofi_1_sum_\d+", c)),
                  key=lambda c: int(c.rsplit("_", 1)[1]))
    return sums or (["ofi_1"] if "ofi_1" in cols else [])


def _calibration(y: np.ndarray, pred: np.ndarray) -> list[list[float]]:
    cm = np.bincount(3 * pred + y, minlength=9).reshape(3, 3) + 1.0
    return (cm / cm.sum(axis=1, keepdims=True)).tolist()


def _rule(s: np.ndarray, c: float) -> np.ndarray:
    pred = np.full(len(s), FLAT, dtype=np.int64)
    pred[s > c] = 2
    pred[s < -c] = 0
    return pred


def _call(name: str, ds: Dataset, rows: np.ndarray, state: dict[str, Any]) -> np.ndarray:
    if name == "majority":
        return np.full(len(rows), state["class"], dtype=np.int64)
    if name == "persistence":
        p = ds.persistence[rows].astype(np.int64)
        return np.where(p < 0, FLAT, p)
    if state.get("column") is None:
        return np.full(len(rows), FLAT, dtype=np.int64)
    return _rule(ds.extra[state["column"]][rows], state["threshold"])


def _fit_ofi(ds: Dataset, rows: np.ndarray) -> dict[str, Any]:
    y = ds.y[rows]
    best: dict[str, Any] = {"column": None, "threshold": None, "train_macro_f1": -1.0}
    for col in ofi_columns(ds.extra):
        s = ds.extra[col][rows]
        finite = s[np.isfinite(s)]
        if not len(finite):
            continue
        for c in np.unique(np.quantile(np.abs(finite), _QUANTILES)):
            f1 = macro_f1(y, _rule(s, float(c)))
            if f1 > best["train_macro_f1"]:
                best = {"column": col, "threshold": float(c), "train_macro_f1": f1}
    return best


def fit_baseline(name: str, ds: Dataset, rows: np.ndarray) -> dict[str, Any]:
    """Fit baseline ``name`` on dataset ``rows``; the state is JSON-able (stored in the card)."""
    if name == "majority":
        state: dict[str, Any] = {"class": int(np.argmax(np.bincount(ds.y[rows], minlength=3)))}
    elif name == "persistence":
        state = {}
    elif name == "ofi_rule":
        state = _fit_ofi(ds, rows)
    else:
        raise ValueError(f"unknown baseline {name!r}")
    state["calibration"] = _calibration(ds.y[rows], _call(name, ds, rows, state))
    return state


def predict_baseline(name: str, ds: Dataset, rows: np.ndarray,
                     state: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(proba, pred)`` of a fitted baseline on dataset ``rows``."""
    pred = _call(name, ds, rows, state)
    return np.asarray(state["calibration"])[pred], pred


BASELINES = ("majority", "persistence", "ofi_rule")


def run_baselines(ds: Dataset, folds: list[Fold],
                  on_fold: Callable[[int, int], None] | None = None) -> dict[str, WalkForward]:
    """Every baseline over the same folds."""
    def runner(name: str) -> Callable[[Fold], tuple[np.ndarray, np.ndarray]]:
        return lambda f: predict_baseline(name, ds, f.test, fit_baseline(name, ds, f.train))
    return {name: walk_forward(ds.y, folds, runner(name), on_fold) for name in BASELINES}
