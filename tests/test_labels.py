"""Labels on hand-worked examples, label end indices, and the leakage guard."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from streamsig.labels import (LabelConfig, LeakageError, check_no_leakage, label_end_index,
                              make_labels, with_labels)
from streamsig.models.synthetic import planted_table

MIDS = [100.0, 100.01, 100.01, 100.0, 99.98, 99.98, 100.02]


def frame(mids=MIDS, ts_s=None, symbols=None) -> pd.DataFrame:
    df = pd.DataFrame({"mid": mids})
    if ts_s is not None:
        df["ts_ns"] = (np.asarray(ts_s) * 1e9).astype(np.int64)
    if symbols is not None:
        df["symbol"] = symbols
    return df


def test_horizon_rows_relative_threshold():
    # changes over 1 row: +0.01, 0, -0.01, -0.02, 0, +0.04 (relative ~1e-4 per tick)
    assert make_labels(frame(), LabelConfig(horizon=1)).tolist() == [2, 1, 0, 0, 1, 2, -1]
    # a dead band of 1.5e-4 keeps one-tick moves flat
    assert make_labels(frame(), LabelConfig(horizon=1, threshold=1.5e-4)).tolist() == [1, 1, 1, 0, 1, 2, -1]
    # two rows ahead: 100.01-100, 100-100.01, 99.98-100.01, 99.98-100, 100.02-99.98
    assert make_labels(frame(), LabelConfig(horizon=2)).tolist() == [2, 0, 0, 0, 2, -1, -1]


def test_horizon_ticks():
    cfg = LabelConfig(horizon=2, threshold=1.5, threshold_unit="ticks", tick_size=0.01)
    # moves in ticks: +1, -1, -3, -2, +4
    assert make_labels(frame(), cfg).tolist() == [1, 1, 0, 0, 2, -1, -1]


def test_horizon_seconds_uses_first_row_at_or_after_t_plus_h():
    ts = [0.0, 0.3, 0.9, 1.0, 1.6, 2.5, 2.6]
    cfg = LabelConfig(horizon=1.0, unit="seconds")
    # row 0 -> first ts >= 1.0 is row 3 (100.0 vs 100.0 -> flat); row 1 -> ts >= 1.3 is row 4;
    # row 2 -> ts >= 1.9 is row 5; row 3 -> ts >= 2.0 is row 5; row 4 -> ts >= 2.6 is row 6
    assert label_end_index(frame(ts_s=ts), cfg).tolist() == [3, 4, 5, 5, 6, -1, -1]
    assert make_labels(frame(ts_s=ts), cfg).tolist() == [1, 0, 0, 0, 2, -1, -1]


def test_smoothed_current_and_past_mean():
    mids = [10.0, 10.0, 10.2, 10.4, 10.0, 9.8, 9.8]
    df = frame(mids)
    cur = LabelConfig(kind="smoothed", horizon=2, threshold=0.015)
    # mean of next 2 vs now: 10.1 (+1%: inside the band), 10.3 (+3%), 10.2 (0), 9.9, 9.8, -, -
    assert make_labels(df, cur).tolist() == [1, 2, 1, 0, 0, -1, -1]
    past = LabelConfig(kind="smoothed", horizon=2, threshold=0.015, reference="past_mean")
    # m- = mean(p[t-1..t]); row 0 has no past; row 1: 10.3 vs 10.0; row 2: 10.2 vs 10.1 (flat);
    # row 3: 9.9 vs 10.3; row 4: 9.8 vs 10.2
    assert make_labels(df, past).tolist() == [-1, 2, 1, 0, 0, -1, -1]
    assert label_end_index(df, past).tolist() == [-1, 3, 4, 5, 6, -1, -1]


def test_unchanged_mid_is_exactly_flat_with_zero_threshold():
    df = frame([0.1] * 12)  # 0.1 + 0.1 + 0.1 != 0.3: means must not drift off zero
    for cfg in (LabelConfig(horizon=3), LabelConfig(kind="smoothed", horizon=7),
                LabelConfig(kind="smoothed", horizon=3, reference="past_mean")):
        y = make_labels(df, cfg)
        assert set(y[y >= 0].tolist()) == {1}


def test_per_symbol_labels_and_end_index_skip_other_symbols():
    df = frame([1.0, 5.0, 2.0, 4.0, 1.0, 6.0], symbols=["A", "B"] * 3)
    cfg = LabelConfig(horizon=1)
    assert make_labels(df, cfg).tolist() == [2, 0, 0, 2, -1, -1]
    assert label_end_index(df, cfg).tolist() == [2, 3, 4, 5, -1, -1]


def test_with_labels_drops_rows_past_the_end():
    out = with_labels(frame(), LabelConfig(horizon=2))
    assert len(out) == len(MIDS) - 2 and out["label"].tolist() == [2, 0, 0, 0, 2]


def test_bad_configs_are_refused():
    with pytest.raises(ValueError):
        LabelConfig(horizon=1.5)
    with pytest.raises(ValueError):
        LabelConfig(kind="smoothed", unit="seconds")
    with pytest.raises(ValueError):
        LabelConfig(threshold_unit="ticks")
    assert LabelConfig.from_dict(LabelConfig(horizon=3).to_dict()) == LabelConfig(horizon=3)


# --- leakage guard ----------------------------------------------------------------------


def honest_features(df: pd.DataFrame) -> pd.DataFrame:
    mid = df["mid"]
    return pd.DataFrame({
        "ts_ns": df["ts_ns"], "sequence": df["sequence"], "mid": mid, "ofi_1": df["ofi_1"],
        "ret_10": np.log(mid / mid.shift(10)),
        "ofi_1_sum_20": df["ofi_1"].rolling(20).sum(),
    })


def leaky_features(df: pd.DataFrame) -> pd.DataFrame:
    out = honest_features(df)
    out["fut_ret_5"] = np.log(df["mid"].shift(-5) / df["mid"])  # the planted leak
    return out


def centred_features(df: pd.DataFrame) -> pd.DataFrame:
    out = honest_features(df)
    out["ofi_centred_mean"] = df["ofi_1"].rolling(9, center=True).mean()  # a subtler leak
    return out


def test_guard_passes_honest_features_and_label_ends():
    df = planted_table(400, seed=2)
    for cfg in (LabelConfig(horizon=5), LabelConfig(horizon=0.5, unit="seconds"),
                LabelConfig(kind="smoothed", horizon=4, reference="past_mean")):
        report = check_no_leakage(df, honest_features, label_cfg=cfg)
        assert report.ok, str(report)
        report.raise_if_leaky()


def test_guard_fails_a_planted_future_return():
    df = planted_table(400, seed=2)
    report = check_no_leakage(df, leaky_features)
    assert not report.ok
    assert list(report.leaky) == ["fut_ret_5"]
    with pytest.raises(LeakageError, match="fut_ret_5"):
        report.raise_if_leaky()
    assert list(check_no_leakage(df, centred_features).leaky) == ["ofi_centred_mean"]


def test_guard_works_on_non_dataframe_input():
    # a structured array standing in for raw events; the feature function is generic
    ev = np.zeros(200, dtype=[("seq", "i8"), ("px", "f8")])
    ev["seq"] = np.arange(200)
    ev["px"] = 100 + np.cumsum(np.random.default_rng(0).choice([-0.01, 0, 0.01], 200))

    def fn(e: np.ndarray) -> pd.DataFrame:
        mid = pd.Series(e["px"])
        return pd.DataFrame({"sequence": e["seq"], "mid": mid, "ma_5": mid.rolling(5).mean()})

    assert check_no_leakage(ev, fn, label_cfg=LabelConfig(horizon=3)).ok
    assert not check_no_leakage(ev, lambda e: fn(e).assign(nxt=lambda d: d["mid"].shift(-1))).ok


def test_guard_flags_labels_that_change_inside_their_window():
    # A price column that reads the future (running max of what is still to come) makes
    # labels whose window ended before the cut change with the cut: purging by
    # label_end_index would then be too short, and the guard says so.
    df = planted_table(300, seed=4)
    future_max = lambda d: honest_features(d).assign(mid=d["mid"][::-1].cummax()[::-1])  # noqa: E731
    bad = check_no_leakage(df, future_max, cuts=[100, 200], features=["ofi_1"],
                           label_cfg=LabelConfig(horizon=3))
    assert bad.label_problems and not bad.leaky
    assert "reads past label_end_index" in str(bad)
