"""Signal policy: class probabilities in, target position out.

The edge is ``s = p_up - p_down``. The policy keeps a target position and moves
it with hysteresis:

* flat: go long ``unit`` when ``s >= enter``, short ``unit`` when ``s <= -enter``;
* long: go short ``unit`` when ``s <= -enter`` (reversal), flat when ``s < exit``,
  add ``unit`` (up to ``max_position``) when ``s >= enter`` again;
* short: the mirror image (flat when ``s > -exit``).

``unit`` defaults to ``max_position``: entries and reversals go all-in; a
smaller unit scales in one unit per confirming event. A position, once changed, is held at least ``min_hold``
events before it may change again (entries from flat are never delayed).
Probabilities with a NaN hold the current target.

One scalar step function serves both paths: run as plain Python per event
(cheaper than a compiled call from Python) and numba-compiled inside the loop of
:meth:`SignalPolicy.run`; the two agree exactly.

>>> pol = SignalPolicy(PolicyConfig(enter=0.3, exit=0.1))
>>> [pol.target(p) for p in [(0.2, 0.4, 0.4), (0.1, 0.4, 0.5), (0.3, 0.4, 0.3)]]
[0.0, 1.0, 0.0]
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numba as nb
import numpy as np

from streamsig.config import Config

POLICY_KINDS = ("threshold", "edge")  #: the values of :attr:`PolicyConfig.kind`


@dataclass(frozen=True)
class PolicyConfig(Config):
    """Settings of the policy a model strategy runs (the ``--policy``, ``--enter/--exit/--max-position/--unit/
    --min-hold`` and ``--margin-bps`` options; ``--fee-bps``/``--slippage-bps`` give the edge policy's costs).

    ``kind`` picks the policy (:func:`~streamsig.trading.edge.make_policy`):
    ``threshold`` (:class:`SignalPolicy`, needs no model card; the default of this
    class) or ``edge`` (:class:`~streamsig.trading.edge.EdgePolicy`, the model
    card's class moves against the trading cost; the commands' default,
    ``streamsig.cli.options.POLICY``).

    Threshold policy: ``enter`` (> 0) and ``exit`` (<= ``enter``) are thresholds on
    ``p_up - p_down``; ``unit`` is the size of one step (None: ``max_position``,
    i.e. all-in); ``min_hold`` is in events (0 or 1: no minimum). Edge policy:
    ``fee_bps`` and ``slippage_bps`` are the taker fee and slippage per side it
    expects to pay (the commands set them from the same options as the
    executor's), ``margin_bps`` the extra expected gain it demands per unit traded.
    Both: ``max_position`` is the largest position in units.

    >>> PolicyConfig(max_position=2.0).step
    2.0
    >>> PolicyConfig.from_dict({"enter": 0.3, "unit": 0.5}).to_dict()  # doctest: +NORMALIZE_WHITESPACE
    {'kind': 'threshold', 'enter': 0.3, 'exit': 0.0, 'max_position': 1.0, 'unit': 0.5, 'min_hold': 0,
     'fee_bps': 0.0, 'slippage_bps': 0.0, 'margin_bps': 0.0}
    """

    kind: str = "threshold"
    enter: float = 0.2
    exit: float = 0.0
    max_position: float = 1.0
    unit: float | None = None
    min_hold: int = 0
    fee_bps: float = 0.0
    slippage_bps: float = 0.0
    margin_bps: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in POLICY_KINDS:
            raise ValueError(f"policy must be one of {', '.join(POLICY_KINDS)}, got {self.kind!r}")
        if not self.enter > 0.0 or not self.exit <= self.enter:
            raise ValueError(f"need enter > 0 and exit <= enter, got enter={self.enter} exit={self.exit}")
        if not self.max_position > 0.0 or not (self.unit is None or self.unit > 0.0) or self.min_hold < 0:
            raise ValueError("max_position and unit must be > 0, min_hold >= 0")
        if self.fee_bps < 0 or self.slippage_bps < 0 or self.margin_bps < 0:
            raise ValueError("fee_bps, slippage_bps and margin_bps must be >= 0")

    @property
    def step(self) -> float:
        """The units one entry or confirming event adds: ``unit``, by default ``max_position``."""
        return float(self.max_position if self.unit is None else self.unit)


def _step_py(s: float, pos: float, held: int, enter: float, exit_: float,
          unit: float, max_pos: float, min_hold: int) -> tuple[float, int]:
    held += 1
    if math.isnan(s) or (pos != 0.0 and held < min_hold):
        return pos, held
    new = pos
    if pos > 0.0:
        if s <= -enter:
            new = -min(unit, max_pos)
        elif s < exit_:
            new = 0.0
        elif s >= enter:
            new = min(pos + unit, max_pos)
    elif pos < 0.0:
        if s >= enter:
            new = min(unit, max_pos)
        elif s > -exit_:
            new = 0.0
        elif s <= -enter:
            new = max(pos - unit, -max_pos)
    else:
        if s >= enter:
            new = min(unit, max_pos)
        elif s <= -enter:
            new = -min(unit, max_pos)
    if new != pos:
        held = 0
    return new, held


_step = nb.njit(cache=True)(_step_py)


@nb.njit(cache=True)
def _run(probs: np.ndarray, pos: float, held: int, enter: float, exit_: float,
         unit: float, max_pos: float, min_hold: int, out: np.ndarray) -> tuple[float, int]:
    for i in range(probs.shape[0]):
        s = probs[i, 2] - probs[i, 0]
        pos, held = _step(s, pos, held, enter, exit_, unit, max_pos, min_hold)
        out[i] = pos
    return pos, held


class SignalPolicy:
    """Maps ``(p_down, p_flat, p_up)`` to a target position in units.

    Its settings are a :class:`PolicyConfig` (see there).
    """

    def __init__(self, config: PolicyConfig = PolicyConfig()) -> None:
        self.config = config
        self.enter, self.exit = float(config.enter), float(config.exit)
        self.max_position, self.unit, self.min_hold = float(config.max_position), config.step, int(config.min_hold)
        self.position = 0.0
        self._held = self.min_hold

    def target(self, probs: Sequence[float]) -> float:
        """Update with one probability triple and return the target position.

        >>> pol = SignalPolicy(PolicyConfig(enter=0.2, unit=1, max_position=2))
        >>> pol.target((0.1, 0.5, 0.4)), pol.target((0.1, 0.5, 0.4)), pol.target((0.1, 0.5, 0.4))
        (1.0, 2.0, 2.0)
        """
        s = float(probs[2]) - float(probs[0])
        self.position, self._held = _step_py(s, self.position, self._held, self.enter, self.exit,
                                          self.unit, self.max_position, self.min_hold)
        return self.position

    def run(self, probs: np.ndarray) -> np.ndarray:
        """Targets for an ``(n, 3)`` array, continuing from (and updating) the state.

        Identical to calling :meth:`target` row by row.

        >>> SignalPolicy(PolicyConfig(enter=0.2)).run(np.array([[0.1, 0.5, 0.4], [0.6, 0.3, 0.1]]))
        array([ 1., -1.])
        """
        p = np.ascontiguousarray(probs, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != 3:
            raise ValueError(f"probs must have shape (n, 3), got {p.shape}")
        out = np.empty(p.shape[0], dtype=np.float64)
        self.position, self._held = _run(p, self.position, self._held, self.enter, self.exit,
                                         self.unit, self.max_position, self.min_hold, out)
        return out

    def state(self) -> dict[str, float | int]:
        """Checkpointable state (JSON-safe)."""
        return {"position": self.position, "held": self._held}

    def restore(self, state: dict[str, float | int]) -> None:
        """Continue from a :meth:`state` taken earlier (same parameters)."""
        self.position = float(state["position"])
        self._held = int(state["held"])
