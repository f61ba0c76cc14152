"""The worker's per-symbol join of a batch's frames, against a frame-by-frame reference."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from streamsig.book.events import EOB, EVENT_DTYPE
from streamsig.book.sequence import fresh_start
from streamsig.live.worker import fresh_events


def reference(frames: list, last_closed: int) -> tuple[np.ndarray, int]:
    """Frame by frame: drop the leading events at or below the last closed update, then close the frame's."""
    parts, skipped = [], 0
    for f in frames:
        e = f.events
        k = fresh_start(e["seq"], last_closed)
        skipped += k
        if k < len(e):
            parts.append(e[k:])
            eob = np.flatnonzero(e["flags"][k:] & EOB)
            if len(eob):
                last_closed = max(last_closed, int(e["seq"][k + eob[-1]]))
    return (np.concatenate(parts) if parts else np.zeros(0, EVENT_DTYPE)), skipped


def test_fresh_events_equals_the_frame_by_frame_reference_on_redelivered_and_split_updates() -> None:
    rng = np.random.default_rng(3)
    overlaps = 0
    for _ in range(5000):
        n = int(rng.integers(1, 30))
        seqs = np.sort(rng.integers(0, 15, n))
        ev = np.zeros(n, EVENT_DTYPE)
        ev["seq"], ev["price"] = seqs, rng.integers(1, 10**6, n)
        ends = np.r_[seqs[1:] != seqs[:-1], True]  # an update's last event, its end mark sometimes missing
        ev["flags"] = np.where(ends & (rng.random(n) < 0.9), EOB, 0)
        frames = []
        for _ in range(int(rng.integers(1, 6))):  # slices of the stream, overlapping like redeliveries
            a = int(rng.integers(0, n))
            e = ev[a:int(rng.integers(a + 1, n + 1))].copy()
            e.flags.writeable = False
            frames.append(SimpleNamespace(events=e, first_seq=int(e["seq"][0])))
        if rng.random() < 0.5:
            frames.sort(key=lambda f: f.first_seq)
        last_closed = int(rng.integers(-1, 10))
        got, skipped = fresh_events(frames, last_closed)
        want, want_skipped = reference(frames, last_closed)
        assert (skipped, got.dtype, got.tobytes()) == (want_skipped, want.dtype, want.tobytes())
        overlaps += want_skipped > 0
    assert overlaps > 1000  # the slow path ran often
