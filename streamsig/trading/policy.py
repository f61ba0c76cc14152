"""Signal policy: class probabilities in, target position out.

The edge is ``s = p_up - p_down``. The policy keeps a target position and moves
it with hysteresis:

* flat: go long ``unit`` when ``s >= enter``, short ``unit`` when ``s <= -enter``;
* long: go short ``unit`` when ``s <= -enter`` (reversal), flat when ``s < exit``,
  add ``unit`` (up to ``max_position``) when ``s >= enter`` again;
* short: the mirror image (flat when ``s > -exit``).

``unit = max_position`` gives all-in entries; a smaller unit scales in one unit
per confirming event. A position, once changed, is held at least ``min_hold``
events before it may change again (entries from flat are never delayed).
Probabilities with a NaN hold the current target.

One scalar step function serves both paths: run as plain Python per event
(cheaper than a compiled call from Python) and numba-compiled inside the loop of
:meth:`SignalPolicy.run`; the two agree exactly.

>>> pol = SignalPolicy(enter=0.3, exit=0.1)
>>> [pol.target(p) for p in [(0.2, 0.4, 0.4), (0.1, 0.4, 0.5), (0.3, 0.4, 0.3)]]
[0.0, 1.0, 0.0]
"""
from __future__ import annotations

import math
from typing import Sequence

import numba as nb
import numpy as np


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

    Parameters: ``enter`` (> 0) and ``exit`` (<= ``enter``) thresholds on
    ``p_up - p_down``; ``max_position`` and ``unit`` in units (both > 0);
    ``min_hold`` in events (0 or 1: no minimum).
    """

    def __init__(self, enter: float = 0.2, exit: float = 0.0, max_position: float = 1.0,
                 unit: float = 1.0, min_hold: int = 0) -> None:
        if not enter > 0.0 or not exit <= enter:
            raise ValueError(f"need enter > 0 and exit <= enter, got enter={enter} exit={exit}")
        if not (max_position > 0.0 and unit > 0.0) or min_hold < 0:
            raise ValueError("max_position and unit must be > 0, min_hold >= 0")
        self.enter, self.exit = float(enter), float(exit)
        self.max_position, self.unit, self.min_hold = float(max_position), float(unit), int(min_hold)
        self.position = 0.0
        self._held = self.min_hold

    def target(self, probs: Sequence[float]) -> float:
        """Update with one probability triple and return the target position.

        >>> pol = SignalPolicy(enter=0.2, unit=1, max_position=2)
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

        >>> SignalPolicy(enter=0.2).run(np.array([[0.1, 0.5, 0.4], [0.6, 0.3, 0.1]]))
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
