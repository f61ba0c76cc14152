"""Walk-forward backtest: train on fold k, trade fold k+1, stitch the out-of-sample curve.

The feature rows of all feeds, in time order, are cut into ``folds`` blocks of
equal row count; block boundaries are exchange times, so a boundary applies to
every symbol at once. For k = 0..K-2 a model is trained on block k alone with
:func:`streamsig.models.train_model` (its defaults, the given label), and it
scores the rows of block k+1. One replay then trades blocks 1..K-1 with those
models (:class:`~streamsig.trading.strategies.ScheduledModelStrategy`); the
baselines trade the same span. Earlier rows only warm up features. Each model's
labels are computed inside its own block, so no label reads a row it trades.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamsig.backtest.result import BacktestResult
from streamsig.backtest.runner import run_backtest
from streamsig.trading.policy import PolicyConfig
from streamsig.trading.strategies import ScheduledModelStrategy
from streamsig.book.sources import Feed
from streamsig.features import FeatureSpec, default_features

def fold_bounds(ts_ns: np.ndarray, folds: int) -> np.ndarray:
    """Start times of blocks 1..K-1 for time-ordered ``ts_ns`` cut into ``folds`` equal row counts.

    >>> fold_bounds(np.arange(100) * 10, 4).tolist()
    [250, 500, 750]
    """
    if folds < 2:
        raise ValueError(f"walk-forward needs at least 2 folds, got {folds}")
    n = len(ts_ns)
    cuts = [int(ts_ns[n * k // folds]) for k in range(1, folds)]
    if n < 2 * folds or len(set(cuts)) != len(cuts) or cuts[0] <= int(ts_ns[0]):
        raise ValueError(f"{n} rows are too few (or too many share a timestamp) for {folds} folds")
    return np.array(cuts, dtype=np.int64)


def walk_forward_backtest(feeds: Sequence[Feed], spec: FeatureSpec, folds: int = 4,
                          label: dict[str, Any] | None = None, model_type: str = "lightgbm",
                          features: Sequence[str] | None = None, seed: int = 0,
                          models_dir: str | Path = "models", policy_cfg: PolicyConfig = PolicyConfig(),
                          train_folds: int | None = None, params: dict[str, Any] | None = None,
                          on_stage: Callable[[str, int, int], None] | None = None,
                          **run_kw: Any) -> BacktestResult:
    """Train ``folds - 1`` models and trade each on the next block (see module doc).

    ``label`` is a :class:`~streamsig.labels.LabelConfig` dict (default horizon 10
    rows); models are written under ``models_dir``; ``train_folds`` overrides
    ``train_model``'s own walk-forward folds inside each block (for short samples), ``params`` the
    model's parameters (its defaults otherwise; sequence models trade through their windows). ``on_stage(stage, done,
    total)`` reports ``features``, ``train`` and ``trade``; other keyword arguments
    go to :func:`run_backtest`. The result's ``config["walk_forward"]`` lists the
    folds, their start times and model ids.
    """
    from streamsig.features.table import feature_frame
    from streamsig.models import load_scorer, train_model

    say = on_stage or (lambda stage, done, total: None)
    label = dict(label or {"horizon": 10})
    feats = list(features or default_features(spec))
    say("features", 0, 1)
    df = feature_frame(list(feeds), spec)
    df = df.iloc[np.argsort(df["ts_ns"].to_numpy(), kind="stable")].reset_index(drop=True)
    say("features", 1, 1)
    starts = fold_bounds(df["ts_ns"].to_numpy(), folds)
    edges = [None, *starts.tolist()]
    scorers, ids = [], []
    for k in range(folds - 1):
        say("train", k, folds - 1)
        ts = df["ts_ns"].to_numpy()
        sel = (ts >= edges[k] if edges[k] is not None else np.ones(len(ts), bool)) & (ts < edges[k + 1])
        part = df[sel].reset_index(drop=True)
        part.attrs["source"] = f"walk-forward block {k}"
        more: dict[str, Any] = {} if train_folds is None else {"folds": train_folds}
        if params:
            more["params"] = params
        md = train_model(part, feats, label, model_type, seed=seed, out_dir=models_dir, **more)
        scorers.append(load_scorer(md))
        ids.append(md.name)
    say("train", folds - 1, folds - 1)
    strat = ScheduledModelStrategy(starts.tolist(), scorers, policy_cfg)
    say("trade", 0, 1)
    res = run_backtest(feeds, spec, strategy=strat, policy_cfg=policy_cfg, start_ns=int(starts[0]), **run_kw)
    say("trade", 1, 1)
    res.model = {"id": "walk-forward", "type": model_type, "features": feats, "label": label,
                 "importance": _mean_importance(scorers), "fold_models": ids}
    res.config["walk_forward"] = {"folds": folds, "starts_ns": starts.tolist(), "models": ids,
                                  "model_type": model_type, "features": feats, "label": label, "seed": seed,
                                  "train_folds": train_folds}
    return res


def _mean_importance(scorers: Sequence[Any]) -> dict[str, float] | None:
    imps = [s.card.get("feature_importance") for s in scorers]
    if not imps or any(not i for i in imps):
        return None
    return {f: float(np.mean([i.get(f, 0.0) for i in imps])) for f in imps[0]}
