"""What a backtest trades: feature rows in, target positions out.

A :class:`Strategy` is a recipe with a ``name``; ``start(symbol, spec)`` gives a
fresh per-symbol :class:`Trader` whose ``step(rows, ts_ns)`` maps a chunk of
feature rows (in stream order, full rows as :class:`FeatureSpec` names them) to
``(probs, targets)``: class probabilities ``(n, 3)`` (down, flat, up) or None
for rules without a model, and target positions ``(n,)`` in units. State
carries over from chunk to chunk, so any chunking gives the same targets. A
trader with more state than its policy (a sequence model's window) also has
``state()`` / ``restore()``, which the engine checkpoint uses.

:class:`ModelStrategy` is the live signal path, offline: the model scorer on the
model's feature columns, then the policy (:class:`~streamsig.trading.SignalPolicy`
or the cost-aware :class:`~streamsig.trading.edge.EdgePolicy`).
:class:`SequenceStrategy` does the same for a sequence model over each symbol's
last ``window`` rows; :func:`model_strategy` picks the one a scorer needs.

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
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from streamsig.errors import DataError
from streamsig.features import FeatureSpec
from streamsig.trading.edge import make_policy
from streamsig.trading.policy import PolicyConfig


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
    """What the backtest needs from a model scorer (sequence scorers also have ``window``)."""

    features: Sequence[str]

    def score_batch(self, X: np.ndarray) -> np.ndarray:
        ...


def model_inputs(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The scorer's input: the model's columns, in its order, as float32 (the ONNX input type)."""
    return np.ascontiguousarray(rows[:, cols], dtype=np.float32)


def run_policy(policy: Any, probs: np.ndarray, rows: np.ndarray, book: tuple[int, int]) -> np.ndarray:
    """Targets from ``policy``: a cost-aware policy also gets the rows' mid and spread (columns ``book``)."""
    if getattr(policy, "needs_book", False):
        return policy.run(probs, rows[:, book[0]], rows[:, book[1]])
    return policy.run(probs)


def _book_cols(spec: FeatureSpec) -> tuple[int, int]:
    return spec.index("mid"), spec.index("spread")


def _model_cols(scorer: ScorerLike, spec: FeatureSpec) -> np.ndarray:
    missing = [f for f in scorer.features if f not in spec.names]
    if missing:
        raise ValueError(f"the feature spec lacks model features {missing}: "
                         "pass the spec the model was trained with")
    return spec.select(list(scorer.features))


class _ModelTrader:
    def __init__(self, scorer: ScorerLike, cols: np.ndarray, policy: Any, book: tuple[int, int]) -> None:
        self.scorer, self.cols, self.policy, self.book = scorer, cols, policy, book

    def probs(self, rows: np.ndarray, sel: np.ndarray | None = None) -> np.ndarray:
        """(n, 3) probabilities of ``rows`` (or of ``rows[sel]``)."""
        x = model_inputs(rows if sel is None else rows[sel], self.cols)
        if len(x) == 0:
            return np.zeros((0, 3))
        return np.asarray(self.scorer.score_batch(x), dtype=np.float64)

    def step(self, rows: np.ndarray, ts_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(rows) == 0:
            return np.zeros((0, 3)), np.zeros(0)
        probs = self.probs(rows)
        return probs, run_policy(self.policy, probs, rows, self.book)


class ModelStrategy:
    """Scorer -> policy, batch-scored per chunk (identical to per-row scoring).

    ``policy`` is the :class:`~streamsig.trading.policy.PolicyConfig`; its
    ``kind`` picks the policy (:func:`~streamsig.trading.edge.make_policy`; the
    edge policy takes the class moves from the scorer's card).
    ``name`` defaults to ``"model"``.
    """

    def __init__(self, scorer: ScorerLike, policy: PolicyConfig = PolicyConfig(),
                 name: str = "model") -> None:
        self.scorer, self.policy, self.name = scorer, policy, name

    def start(self, symbol: str, spec: FeatureSpec) -> _ModelTrader:
        return _ModelTrader(self.scorer, _model_cols(self.scorer, spec),
                            make_policy(self.policy, getattr(self.scorer, "card", None)), _book_cols(spec))


class _SequenceTrader(_ModelTrader):
    """A model trader that keeps the last ``window - 1`` model input rows of its symbol."""

    def __init__(self, scorer: ScorerLike, cols: np.ndarray, policy: Any, book: tuple[int, int]) -> None:
        super().__init__(scorer, cols, policy, book)
        self.window = int(scorer.window)  # type: ignore[attr-defined]
        self.tail = np.full((self.window - 1, len(cols)), np.nan, dtype=np.float32)

    def probs(self, rows: np.ndarray, sel: np.ndarray | None = None) -> np.ndarray:
        """Push ``rows`` into the window; probabilities of every row (or of ``rows[sel]``):
        NaN until the row's window holds ``window`` finite rows."""
        T, x = self.window, model_inputs(rows, self.cols)
        n = len(x)
        full = np.concatenate([self.tail, x])
        self.tail = full[len(full) - (T - 1):].copy()
        bad = np.concatenate([[0], np.cumsum(~np.isfinite(full).all(axis=1))])
        ok = bad[T:] - bad[:n] == 0  # window i is full[i:i + T]
        if sel is not None:
            ok &= sel
        out = np.full((n, 3), np.nan)
        if ok.any():
            wins = np.lib.stride_tricks.sliding_window_view(full, T, axis=0).transpose(0, 2, 1)
            out[ok] = self.scorer.score_batch(wins[ok])
        return out if sel is None else out[sel]

    def state(self) -> dict[str, Any]:
        """The policy's state and the window tail (a float32 array): plain arrays and numbers."""
        return {"policy": self.policy.state(), "window": self.tail.copy()}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state` output (same model)."""
        tail = np.asarray(state["window"], dtype=np.float32)
        if tail.shape != self.tail.shape:
            raise ValueError(f"window state has shape {tail.shape}, model needs {self.tail.shape}")
        self.tail = tail.copy()
        self.policy.restore(state["policy"])


class SequenceStrategy(ModelStrategy):
    """A sequence model (:class:`~streamsig.models.SequenceScorer`) -> policy.

    Each symbol's trader keeps the last ``window - 1`` rows itself, so a chunk's
    rows are scored as the windows they end (``score_batch``, bit-identical to
    ``SequenceScorer.score_one`` row by row); rows whose window is not yet full
    of finite rows (warm-up, after a NaN row) get NaN probabilities and the
    policy holds. The window is part of the trader's ``state()``.
    """

    def start(self, symbol: str, spec: FeatureSpec) -> _SequenceTrader:
        return _SequenceTrader(self.scorer, _model_cols(self.scorer, spec),
                               make_policy(self.policy, getattr(self.scorer, "card", None)), _book_cols(spec))


def is_sequence(scorer: Any) -> bool:
    """True for a scorer over windows of rows."""
    return int(getattr(scorer, "window", 1)) > 1


def model_strategy(scorer: ScorerLike, policy: PolicyConfig = PolicyConfig(),
                   name: str = "model") -> ModelStrategy:
    """:class:`SequenceStrategy` for a sequence scorer, else :class:`ModelStrategy`."""
    return (SequenceStrategy if is_sequence(scorer) else ModelStrategy)(scorer, policy, name)


class _ScheduledTrader:
    def __init__(self, starts: np.ndarray, traders: list[_ModelTrader], policy: Any,
                 book: tuple[int, int]) -> None:
        self.starts, self.traders, self.policy, self.book = starts, traders, policy, book
        self.moves = [np.asarray(t.scorer.card["class_moves"]["mean_return"], dtype=np.float64)
                      for t in traders] if getattr(policy, "needs_book", False) else None

    def step(self, rows: np.ndarray, ts_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs = np.full((len(rows), 3), np.nan)
        exp = np.full(len(rows), np.nan)
        which = np.searchsorted(self.starts, ts_ns, side="right") - 1  # -1: before the first model
        for k, tr in enumerate(self.traders):
            sel = which == k
            if sel.any() or isinstance(tr, _SequenceTrader):  # a window sees every row
                probs[sel] = tr.probs(rows, sel)
                if self.moves is not None:
                    exp[sel] = probs[sel] @ self.moves[k]
        if self.moves is not None:
            return probs, self.policy.run_expected(exp, rows[:, self.book[0]], rows[:, self.book[1]])
        return probs, self.policy.run(probs)


class ScheduledModelStrategy:
    """Model ``k`` scores the rows from ``starts[k]`` (ns) on; rows before ``starts[0]`` get NaN
    probabilities (the policy holds flat). One policy per symbol runs across the switches
    (the edge policy with each row's model's class moves). Sequence models see every row
    in their windows. This is how walk-forward trades each fold with the model of the fold before.
    """

    def __init__(self, starts: Sequence[int], scorers: Sequence[ScorerLike],
                 policy: PolicyConfig = PolicyConfig(), name: str = "model") -> None:
        if len(starts) != len(scorers) or list(starts) != sorted(starts):
            raise ValueError("need one scorer per start time, starts ascending")
        self.starts = np.asarray(starts, dtype=np.int64)
        self.scorers, self.policy, self.name = list(scorers), policy, name

    def start(self, symbol: str, spec: FeatureSpec) -> _ScheduledTrader:
        # the models only score: one policy per symbol runs across the switches
        scoring = replace(self.policy, kind="threshold")
        traders = [model_strategy(s, scoring).start(symbol, spec) for s in self.scorers]
        card = getattr(self.scorers[0], "card", None) if self.scorers else None
        return _ScheduledTrader(self.starts, traders, make_policy(self.policy, card), _book_cols(spec))


def load_strategy(model: Path | None, strategy: str, policy: PolicyConfig) -> tuple[Any, str, Any]:
    """(strategy, model id, FeatureSpec or None) for a model folder or a named rule.

    A model folder gets :func:`model_strategy` (a sequence model, card window > 1,
    :class:`SequenceStrategy`). A rule trades ``policy.max_position`` units (its
    full size, like the baselines).
    """
    from streamsig.trading.rules import OfiRule, Sma

    if model is not None:
        from streamsig.models.scorer import load_scorer

        if not (model / "card.json").exists():
            raise DataError(model, None, "not a model folder (no card.json)")
        from streamsig.models.card import card_feature_spec

        scorer = load_scorer(model)
        return model_strategy(scorer, policy), scorer.model_id, card_feature_spec(scorer.card)
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
