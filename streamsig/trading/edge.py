"""Cost-aware policy: trade only when the expected mid move pays for crossing the spread.

Per row, from the class probabilities ``p = (p_down, p_flat, p_up)``, the row's
``mid`` and ``spread`` (feature columns) and the per-class mean moves ``mu``
(relative mid change over the label's horizon, mean per true class on the
model's training rows, recorded in its card as ``class_moves``):

* expected move per unit long, in price: ``g = mid * (p . mu)``;
* cost of trading one unit now: ``c = spread / 2 + mid * (fee_bps + slippage_bps) / 1e4``;
* value of holding ``q`` after this row, from position ``pos``:
  ``V(q) = q * g - (|q - pos| + |q|) * c``: the expected move, less the cost of
  getting to ``q`` now and of leaving ``q`` later (at today's cost);
* the target is the ``q`` in ``{-Q, 0, +Q}`` (``Q = max_position``) with the
  largest ``D(q) = V(q) - V(pos) - |q - pos| * mid * margin_bps / 1e4``, if that
  is positive; otherwise the position is held.

So from flat it enters long only when ``g > 2c + margin`` (a round trip's cost),
reverses a long only when ``-g > c + margin`` (and prefers the reversal to
flat when ``-g > 2c + margin``), and leaves a long for flat when ``g < -margin``
(the exit cost is due either way). Rows with a NaN probability, mid or spread
hold the position.

One scalar step serves both paths, as in :mod:`streamsig.trading.policy`:
plain Python per row (:meth:`EdgePolicy.target`) and numba-compiled in
:meth:`EdgePolicy.run`; the two agree exactly.

>>> pol = EdgePolicy(moves=(-1e-3, 0.0, 1e-3), fee_bps=1.0)
>>> # mid 100, spread 0.02: c = 0.01 + 0.01 = 0.02; g = 100 * 0.6e-3 = 0.06 > 2c: long
>>> pol.target((0.1, 0.2, 0.7), mid=100.0, spread=0.02)
1.0
>>> pol.target((0.3, 0.3, 0.4), mid=100.0, spread=0.02)   # g = 0.01 >= 0: hold
1.0
>>> pol.target((0.5, 0.3, 0.2), mid=100.0, spread=0.02)   # -g = 0.03 < 2c, > 0: flat
0.0
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numba as nb
import numpy as np

from streamsig.trading.policy import PolicyConfig, SignalPolicy


def _step_py(e: float, mid: float, spread: float, pos: float, size: float, cost_frac: float,
             margin_frac: float) -> float:
    if not (math.isfinite(e) and math.isfinite(mid) and math.isfinite(spread)) or mid <= 0.0:
        return pos
    g = e * mid
    c = 0.5 * spread + mid * cost_frac
    hold = pos * g - abs(pos) * c
    best, best_d = pos, 0.0
    for q in (-size, 0.0, size):
        if q == pos:
            continue
        d = q * g - (abs(q - pos) + abs(q)) * c - hold - abs(q - pos) * mid * margin_frac
        if d > best_d:
            best, best_d = q, d
    return best


_step = nb.njit(cache=True)(_step_py)


@nb.njit(cache=True)
def _run(exp: np.ndarray, mid: np.ndarray, spread: np.ndarray, pos: float, size: float,
         cost_frac: float, margin_frac: float, out: np.ndarray) -> float:
    for i in range(exp.shape[0]):
        pos = _step(exp[i], mid[i], spread[i], pos, size, cost_frac, margin_frac)
        out[i] = pos
    return pos


class EdgePolicy:
    """Target positions from expected move against trading cost (formula in the module doc).

    ``moves``: mean relative mid move per class (down, flat, up); ``max_position``
    the size ``Q`` in units; ``fee_bps``, ``slippage_bps`` the taker fee and
    slippage per side; ``margin_bps`` the extra expected gain demanded per unit traded.
    """

    needs_book = True  #: run() takes the rows' mid and spread

    def __init__(self, moves: Sequence[float], max_position: float = 1.0, fee_bps: float = 0.0,
                 slippage_bps: float = 0.0, margin_bps: float = 0.0) -> None:
        mu = np.asarray(moves, dtype=np.float64)
        if mu.shape != (3,) or not np.isfinite(mu).all():
            raise ValueError(f"moves must be 3 finite numbers (down, flat, up), got {moves!r}")
        if not max_position > 0.0 or fee_bps < 0 or slippage_bps < 0 or margin_bps < 0:
            raise ValueError("max_position must be > 0; fee, slippage and margin >= 0")
        self.moves = mu
        self.max_position = float(max_position)
        self.cost_frac = (float(fee_bps) + float(slippage_bps)) * 1e-4
        self.margin_frac = float(margin_bps) * 1e-4
        self.position = 0.0

    @classmethod
    def from_card(cls, card: Mapping[str, Any], **kw: Any) -> EdgePolicy:
        """The policy for a model whose card records ``class_moves``."""
        cm = card.get("class_moves")
        if not cm:
            raise ValueError(f"model {card.get('model_id')} has no class_moves in its card "
                             "(trained before the edge policy existed): retrain it, or use the threshold policy")
        return cls(cm["mean_return"], **kw)

    def expected(self, probs: np.ndarray) -> np.ndarray:
        """Expected relative mid move ``p . mu`` per row of ``probs`` (n, 3)."""
        return np.asarray(probs, dtype=np.float64) @ self.moves

    def target(self, probs: Sequence[float], mid: float, spread: float) -> float:
        """Update with one row and return the target position."""
        e = float(probs[0]) * self.moves[0] + float(probs[1]) * self.moves[1] + float(probs[2]) * self.moves[2]
        self.position = _step_py(e, float(mid), float(spread), self.position, self.max_position,
                                 self.cost_frac, self.margin_frac)
        return self.position

    def run(self, probs: np.ndarray, mid: np.ndarray, spread: np.ndarray) -> np.ndarray:
        """Targets for ``(n, 3)`` probabilities and the rows' mid and spread (like :meth:`target` per row)."""
        return self.run_expected(self.expected(probs), mid, spread)

    def run_expected(self, exp: np.ndarray, mid: np.ndarray, spread: np.ndarray) -> np.ndarray:
        """Targets from expected relative moves ``exp`` (n,) directly."""
        exp = np.ascontiguousarray(exp, dtype=np.float64)
        out = np.empty(len(exp), dtype=np.float64)
        self.position = _run(exp, np.ascontiguousarray(mid, dtype=np.float64),
                             np.ascontiguousarray(spread, dtype=np.float64), self.position,
                             self.max_position, self.cost_frac, self.margin_frac, out)
        return out

    def state(self) -> dict[str, float]:
        """Checkpointable state (JSON-safe)."""
        return {"position": self.position}

    def restore(self, state: Mapping[str, float]) -> None:
        """Continue from a :meth:`state` taken earlier (same parameters)."""
        self.position = float(state["position"])


def make_policy(cfg: PolicyConfig = PolicyConfig(), card: Mapping[str, Any] | None = None
                ) -> SignalPolicy | EdgePolicy:
    """A fresh policy for ``cfg.kind``: ``threshold`` (:class:`~streamsig.trading.policy.SignalPolicy`)
    or ``edge`` (:class:`EdgePolicy` with ``cfg``'s size, costs and margin; needs the model ``card``).

    >>> make_policy(PolicyConfig(kind="edge", fee_bps=1.0), {"class_moves": {"mean_return": [-1e-3, 0, 1e-3]}}).cost_frac
    0.0001
    """
    if cfg.kind == "edge":
        if card is None:
            raise ValueError("the edge policy needs a model (its card's class_moves)")
        return EdgePolicy.from_card(card, max_position=cfg.max_position, fee_bps=cfg.fee_bps,
                                    slippage_bps=cfg.slippage_bps, margin_bps=cfg.margin_bps)
    return SignalPolicy(cfg)
