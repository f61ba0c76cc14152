"""The book at any event of a chunk, for the executor, without a kernel call per row.

The backtest computes a chunk's feature rows in one batch (so the model scores
them in one batch), which leaves that :class:`FeatureState` at the end of the
chunk. The executor needs the book *at* each row. A :class:`BookCursor` is a
second ``FeatureState`` fed the same events, advanced only when asked: ``at(i)``
applies the events up to and including ``i`` in one kernel call and returns the
state (it *is* the book view: ``bid_px``, ``bid_sz``, ``ask_px``, ``ask_sz``,
``n_bid``, ``n_ask``). Rows where no order is working never need the book, so
most of the stream is applied in a few large calls.

>>> from streamsig.book import events as E
>>> from streamsig.features import FeatureSpec
>>> ev = E.empty(4)
>>> ev["flags"] = [E.CLEAR | E.SNAPSHOT, E.DEPTH | E.BUY, E.DEPTH | E.SELL | E.EOB, E.DEPTH | E.BUY | E.EOB]
>>> ev["price"] = [0, 99, 101, 100]; ev["size"] = [0, 3.0, 1.0, 2.0]; ev["seq"] = [0, 0, 0, 1]
>>> cur = BookCursor(FeatureSpec(levels=1), tick_size=1.0)
>>> cur.begin(ev)
>>> int(cur.at(2).bid_px[0]), int(cur.at(3).bid_px[0])
(99, 100)
"""
from __future__ import annotations

import numpy as np

from streamsig.features import FeatureSpec, FeatureState


class BookCursor:
    """A lazily advanced replica of the feature state over the current chunk."""

    def __init__(self, spec: FeatureSpec, tick_size: float) -> None:
        self.state = FeatureState(spec, tick_size)
        self._ev: np.ndarray | None = None
        self._pos = 0  # next event of the chunk to apply

    def begin(self, events: np.ndarray) -> None:
        """Start a new chunk (the previous one must have been finished)."""
        self._ev, self._pos = events, 0

    def at(self, i: int) -> FeatureState:
        """The state after event ``i`` of the chunk (``i`` never goes backwards)."""
        if i + 1 < self._pos:
            raise ValueError(f"the cursor is past event {i} (at {self._pos - 1})")
        if i + 1 > self._pos:
            assert self._ev is not None
            self.state.update(self._ev[self._pos:i + 1])
            self._pos = i + 1
        return self.state

    def finish(self) -> None:
        """Apply the rest of the chunk."""
        if self._ev is not None and self._pos < len(self._ev):
            self.at(len(self._ev) - 1)
        self._ev = None
