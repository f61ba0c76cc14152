"""A live trader restored from its checkpoint (through the checkpoint format) trades on exactly as before."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from streamsig.book import events as E
from streamsig.book.sources import open_feeds
from streamsig.engine import SignalEngine
from streamsig.features import FeatureSpec
from streamsig.live.checkpoint import decode_checkpoint, encode_checkpoint
from streamsig.live.trader import LiveTrader
from streamsig.trading import ExecConfig
from streamsig.trading.executor import fill_to_dict
from streamsig.trading.rules import default_baselines
from streamsig.wire.signals import decode_signals, encode_signals

SPEC = FeatureSpec(levels=10)


def _parts(n_parts: int) -> tuple[float, list[tuple[np.ndarray, Any]]]:
    """Book chunks and their signal frames; each frame answers the chunk *before* its own, so a
    trader always holds buffered book events and signal records between drains."""
    feed = open_feeds("synthetic", symbols=["S"], n_updates=3000, seed=11)[0]
    ev = feed.read_all()
    eng = SignalEngine("S", SPEC, feed.tick_size, default_baselines(1.0)[2])
    cuts = np.linspace(0, len(ev), n_parts + 1).astype(int)
    out, prev = [], None
    for a, b in zip(cuts[:-1], cuts[1:]):
        part = ev[a:b]
        res = eng.on_events(part)
        out.append((part, prev))
        prev = decode_signals(encode_signals("S", "sma", res.signals, 1, 2, eng.last_seq))
    out.append((E.empty(0), prev))
    return feed.tick_size, out


def _run(tr: LiveTrader, parts: list, fills: list) -> None:
    for part, sf in parts:
        tr.on_book(part)
        if sf is not None:
            tr.on_signals(sf)
        fills.extend(fill_to_dict(f) for f in tr.drain())


@pytest.mark.parametrize("passive", [False, True])
def test_restored_trader_matches_the_uninterrupted_one(passive: bool) -> None:
    tick, parts = _parts(12)
    ex = ExecConfig(fee_bps=1.0, signal_latency_events=5, passive=passive)
    ref = LiveTrader("S", tick, ex, book_capacity=SPEC.book_capacity)
    ref_fills: list = []
    _run(ref, parts, ref_fills)
    assert len(ref_fills) > 4

    for k in (1, 5, 9):
        tr = LiveTrader("S", tick, ex, book_capacity=SPEC.book_capacity)
        fills: list = []
        _run(tr, parts[:k], fills)
        blob = encode_checkpoint("trader", "S", 1, tr.checkpoint())
        back = LiveTrader("S", tick, ex, book_capacity=SPEC.book_capacity)
        back.restore(decode_checkpoint(blob, "S", "trader").state)
        assert back._events  # the buffered book events survived
        again = encode_checkpoint("trader", "S", 1, back.checkpoint())
        assert again == blob  # the restored state is the saved state, field for field
        _run(back, parts[k:], fills)
        assert fills == ref_fills
        assert back.pnl() == ref.pnl()
        assert back.traded_seq == ref.traded_seq and back.desyncs == ref.desyncs
        assert np.array_equal(back.cursor.bid_px, ref.cursor.bid_px)


def test_a_checkpoint_of_another_book_capacity_is_refused() -> None:
    tick, parts = _parts(3)
    tr = LiveTrader("S", tick, ExecConfig(), book_capacity=SPEC.book_capacity)
    _run(tr, parts[:1], [])
    state = decode_checkpoint(encode_checkpoint("trader", "S", 1, tr.checkpoint()), "S", "trader").state
    with pytest.raises(ValueError, match="capacity"):
        LiveTrader("S", tick, ExecConfig(), book_capacity=SPEC.book_capacity * 2).restore(state)
