"""The live trader's P&L record says where the book stood at the last row it traded."""
from __future__ import annotations

import numpy as np

import pytest

from streamsig.book.sources import open_feeds
from streamsig.engine import SignalEngine
from streamsig.features import FeatureSpec, FeatureState
from streamsig.live.trader import LiveTrader
from streamsig.trading import ExecConfig
from streamsig.trading.rules import default_baselines
from streamsig.wire.signals import decode_signals, encode_signals


def test_pnl_record_carries_mid_and_microprice_of_the_last_traded_row() -> None:
    spec = FeatureSpec(levels=10)
    feed = open_feeds("synthetic", symbols=["S"], n_updates=400, seed=5)[0]
    ev = feed.read_all()
    eng = SignalEngine("S", spec, feed.tick_size, default_baselines(1.0)[1])
    tr = LiveTrader("S", feed.tick_size, ExecConfig(fee_bps=1.0), book_capacity=spec.book_capacity)
    assert "mid" not in tr.pnl()  # nothing traded yet
    half = len(ev) // 2
    for part in (ev[:half], ev[half:]):
        out = eng.on_events(part)
        tr.on_book(part)
        tr.on_signals(decode_signals(encode_signals("S", "ofi", out.signals, 1, 2, eng.last_seq)))
        tr.drain()
    rows, idx, _ = FeatureState(spec, feed.tick_size).update(ev)
    rec = tr.pnl()
    assert rec["seq"] == int(ev["seq"][idx[-1]]) and rec["exch_ts_ns"] == int(ev["exch_ts"][idx[-1]])
    assert rec["mid"] == round(float(rows[-1, spec.index("mid")]), 8)
    # from the signal record's touch: the kernel's value, as rounded in the record
    assert rec["microprice"] == pytest.approx(float(rows[-1, spec.index("microprice")]), abs=1e-8)
    assert np.isfinite(rec["microprice"]) and rec["microprice"] != rec["mid"]
