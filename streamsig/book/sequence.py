"""Redelivery by sequence: the one rule every consumer of book events and signals uses.

Delivery is at-least-once, so a frame (or a batch of signal records) may start
with events already applied. :func:`fresh_start` finds where the new ones begin:
the first record whose sequence is above the last one applied. Everything
before it is a redelivery and is dropped; later records are left to the
consumer's own validation (a step back there is an error, not a redelivery).

>>> import numpy as np
>>> fresh_start(np.array([3, 4, 4, 5, 6]), 4)
3
>>> fresh_start(np.array([1, 2]), 2), fresh_start(np.array([7, 8]), -1)
(2, 0)
"""
from __future__ import annotations

import numpy as np


def fresh_start(seq: np.ndarray, last_seq: int) -> int:
    """Index of the first entry of ``seq`` above ``last_seq`` (``len(seq)`` if none is)."""
    fresh = seq > last_seq
    return int(np.argmax(fresh)) if fresh.any() else len(seq)
