"""The kernel equals the independent reference on real order books."""
from __future__ import annotations

import numpy as np
import pytest

from streamsig.book.sources import open_feeds
from streamsig.features import FeatureSpec, FeatureState, compute_features
from tests._data import AAPL10, AMZN5, BTC_SNAP, need
from tests.reference_features import reference_features
from tests.test_features_kernel import assert_frames_close

pytestmark = pytest.mark.realdata


@pytest.mark.parametrize("path,levels,limit", [(AAPL10, 10, None), (AMZN5, 5, 120_000), (BTC_SNAP, 10, 60_000)])
def test_kernel_equals_reference_on_real_books(path, levels: int, limit: int | None) -> None:
    source = "crypto" if "binance" in path.name else "lobster"
    feed = open_feeds(source, need(path), levels=levels)[0]
    ev = feed.read_all()
    if limit:
        ev = ev[:limit]
        ev = ev[: np.flatnonzero(ev["flags"] & 32)[-1] + 1]  # end on a batch
    spec = FeatureSpec(levels=levels)
    tab = compute_features(ev, spec, feed.tick_size)
    ref = reference_features(ev, spec, feed.tick_size)
    assert len(tab.values) == len(ref) > 500
    np.testing.assert_array_equal(tab.sequence, ref["sequence"].to_numpy())
    assert_frames_close(tab.values, ref, spec.names)
    assert tab.rejects[1:].sum() == 0


def test_lobster_rows_are_message_rows() -> None:
    """One feature row per message, keyed by its 0-based row in the file."""
    feed = open_feeds("lobster", need(AAPL10))[0]
    tab = compute_features(feed.read_all(), FeatureSpec(levels=10), feed.tick_size)
    assert tab.sequence.tolist() == list(range(999))
    # row 0 of the orderbook file: ask 585.94 / bid 585.33 (AAPL, 2012-06-21 09:30)
    assert tab.values[0, 0] == pytest.approx((5859400 + 5853300) / 2 / 10000)


def test_live_frames_equal_batch_on_lobster() -> None:
    feed = open_feeds("lobster", need(AAPL10))[0]
    ev = feed.read_all()
    spec = FeatureSpec(levels=10)
    batch = compute_features(ev, spec, feed.tick_size).values
    st = FeatureState(spec, feed.tick_size)
    rows = [st.update(ev[i:i + 64])[0] for i in range(0, len(ev), 64)]
    np.testing.assert_array_equal(np.concatenate(rows), batch)


def test_leakage_guard_passes_the_kernel_and_fails_a_planted_leak() -> None:
    """The guard re-runs the real feature pipeline on prefixes of the real events."""
    from streamsig.labels import LabelConfig, check_no_leakage

    feed = open_feeds("lobster", need(AAPL10))[0]
    ev = feed.read_all()
    spec = FeatureSpec(levels=10)

    def kernel_features(e: np.ndarray):
        return compute_features(e, spec, feed.tick_size, "AAPL").to_pandas()

    def leaky(e: np.ndarray):
        df = kernel_features(e)
        df["next_mid_move"] = np.sign(df["mid"].shift(-10) - df["mid"])  # reads 10 rows ahead
        return df

    assert check_no_leakage(ev, kernel_features, label_cfg=LabelConfig(horizon=10)).ok
    report = check_no_leakage(ev, leaky, label_cfg=LabelConfig(horizon=10))
    assert list(report.leaky) == ["next_mid_move"]
