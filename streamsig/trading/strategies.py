"""What a backtest trades: feature rows in, target positions out.

A :class:`Strategy` is a recipe with a ``name``; ``start(symbol, spec)`` gives a
fresh per-symbol :class:`Trader` whose ``step(rows, ts_ns)`` maps a chunk of
feature rows (in stream order, full rows as :class:`FeatureSpec` names them) to
``(probs, targets)``: class probabilities ``(n, 3)`` (down, flat, up) or None
for rules without a model, and target positions ``(n,)`` in units. State
carries over from chunk to chunk, so any chunking gives the same targets.

:class:`ModelStrategy` is the live signal path, offline: the model scorer on the
model's feature columns, then :class:`~streamsig.trading.SignalPolicy`.

>>> import numpy as np
>>> from streamsig.features import FeatureSpec
>>> class Half:                                   # a toy scorer: up when qimb_1 > 0
...     features = ["qimb_1"]
...     def score_batch(self, X):
...         up = (X[:, 0] > 0).astype(np.float64)
...         return np.column_stack([1 - up, np.zeros(len(X)), up])
>>> spec = FeatureSpec(levels=1)
>>> rows = np.zeros((3, spec.n_features)); rows[:, spec.index("qimb_1")] = [0.5, -0.5, 0.5]
>>> probs, targets = ModelStrategy(Half()).start("X", spec).step(rows, np.arange(3))
>>> targets.tolist()
[1.0, -1.0, 1.0]
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from streamsig.errors import DataError
from streamsig.features import FeatureSpec
from streamsig.trading.policy import PolicyConfig, SignalPolicy


class Trader(Protocol):
    """Per-symbol strategy state."""

    def step(self, rows: np.ndarray, ts_ns: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """Probabilities (or None) and target positions for a chunk of feature rows."""
        ...


class Strategy(Protocol):
    """A named recipe for per-symbol traders."""

    name: str

    def start(self, symbol: str, spec: FeatureSpec) -> Trader:
        """A fresh trader for ``symbol``."""
        ...


class ScorerLike(Protocol):
    """What the backtest needs from a model scorer."""

    features: Sequence[str]

    def score_batch(self, X: np.ndarray) -> np.ndarray:
        ...


def model_inputs(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The scorer's input: the model's columns, in its order, as float32 (the ONNX input type)."""
    return np.ascontiguousarray(rows[:, cols], dtype=np.float32)


class _ModelTrader:
    def __init__(self, scorer: ScorerLike, cols: np.ndarray, policy: SignalPolicy) -> None:
        self.scorer, self.cols, self.policy = scorer, cols, policy

    def step(self, rows: np.ndarray, ts_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(rows) == 0:
            return np.zeros((0, 3)), np.zeros(0)
        probs = np.asarray(self.scorer.score_batch(model_inputs(rows, self.cols)), dtype=np.float64)
        return probs, self.policy.run(probs)


class ModelStrategy:
    """Scorer -> SignalPolicy, batch-scored per chunk (identical to per-row scoring).

    ``policy`` is the :class:`~streamsig.trading.policy.PolicyConfig`;
    ``name`` defaults to ``"model"``.
    """

    def __init__(self, scorer: ScorerLike, policy: PolicyConfig = PolicyConfig(),
                 name: str = "model") -> None:
        self.scorer, self.policy, self.name = scorer, policy, name

    def start(self, symbol: str, spec: FeatureSpec) -> _ModelTrader:
        missing = [f for f in self.scorer.features if f not in spec.names]
        if missing:
            raise ValueError(f"the feature spec lacks model features {missing}: "
                             "pass the spec the model was trained with")
        return _ModelTrader(self.scorer, spec.select(list(self.scorer.features)), SignalPolicy(self.policy))


class _ScheduledTrader:
    def __init__(self, starts: np.ndarray, traders: list[_ModelTrader], policy: SignalPolicy) -> None:
        self.starts, self.traders, self.policy = starts, traders, policy

    def step(self, rows: np.ndarray, ts_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs = np.full((len(rows), 3), np.nan)
        which = np.searchsorted(self.starts, ts_ns, side="right") - 1  # -1: before the first model
        for k, tr in enumerate(self.traders):
            sel = which == k
            if sel.any():
                probs[sel] = tr.scorer.score_batch(model_inputs(rows[sel], tr.cols))
        return probs, self.policy.run(probs)


class ScheduledModelStrategy:
    """Model ``k`` scores the rows from ``starts[k]`` (ns) on; rows before ``starts[0]`` get NaN
    probabilities (the policy holds flat). One policy per symbol runs across the switches.
    This is how walk-forward trades each fold with the model of the fold before.
    """

    def __init__(self, starts: Sequence[int], scorers: Sequence[ScorerLike],
                 policy: PolicyConfig = PolicyConfig(), name: str = "model") -> None:
        if len(starts) != len(scorers) or list(starts) != sorted(starts):
            raise ValueError("need one scorer per start time, starts ascending")
        self.starts = np.asarray(starts, dtype=np.int64)
        self.scorers, self.policy, self.name = list(scorers), policy, name

    def start(self, symbol: str, spec: FeatureSpec) -> _ScheduledTrader:
        traders = [ModelStrategy(s, self.policy).start(symbol, spec) for s in self.scorers]
        return _ScheduledTrader(self.starts, traders, SignalPolicy(self.policy))


def load_strategy(model: Path | None, strategy: str, policy: PolicyConfig) -> tuple[Any, str, Any]:
    """(strategy, model id, FeatureSpec or None) for a model folder or a named rule.

    A rule trades ``policy.max_position`` units (its full size, like the baselines).
    """
    from streamsig.trading.rules import OfiRule, Sma

    if model is not None:
        from streamsig.models.scorer import Scorer

        if not (model / "card.json").exists():
            raise DataError(model, None, "not a model folder (no card.json)")
        from streamsig.models.card import card_feature_spec

        scorer = Scorer(model)
        return ModelStrategy(scorer, policy), scorer.model_id, card_feature_spec(scorer.card)
    size = float(policy.max_position)
    rules = {"ofi": OfiRule(size=size), "sma": Sma(size=size)}
    if strategy not in rules:
        raise DataError(strategy, None, f"unknown strategy (choose one of {', '.join(rules)} or pass --model)")
    return rules[strategy], strategy, None


def online_factory(model: Path | None, spec: Any) -> Any:
    """A callable making a fresh online challenger on the champion's features and label."""
    from streamsig.models import OnlineChallenger
    from streamsig.features import DEFAULT_FEATURES

    if model is not None:
        card = json.loads((model / "card.json").read_text())
        feats, label = card["features"], {k: v for k, v in card["label"].items() if k != "description"}
    else:
        feats, label = [f for f in DEFAULT_FEATURES if f in spec.names], {"horizon": 50}
    return lambda: OnlineChallenger(feats, label)
