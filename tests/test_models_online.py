"""The online challenger learns each row only once its label has matured."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from streamsig.labels import LabelConfig, make_labels
from streamsig.models.dataset import time_ordered
from streamsig.models.online import OnlineChallenger
from streamsig.models.synthetic import planted_table


def record_learning(ch: OnlineChallenger) -> dict[int, int]:
    """Wrap the river model so each learned row's id (feature ``idx``) and label are kept."""
    learned: dict[int, int] = {}
    real = ch.model.learn_one

    def learn_one(x, y):
        learned[int(x["idx"])] = y
        real(x, y)
    ch.model.learn_one = learn_one
    return learned


def test_a_row_is_learned_when_row_t_plus_h_arrives_never_before():
    ch = OnlineChallenger(["idx"], LabelConfig(horizon=3))
    learned = record_learning(ch)
    for r in range(10):
        ch.process_one(np.array([float(r)]), mid=100.0 + r % 2)
        assert sorted(learned) == list(range(max(0, r - 2)))  # rows t <= r - 3
        assert ch.pending() == min(r + 1, 3)


def test_seconds_horizon_waits_for_the_first_row_at_or_after_t_plus_h():
    ch = OnlineChallenger(["idx"], LabelConfig(horizon=1.0, unit="seconds"))
    learned = record_learning(ch)
    ts = [0.0, 0.4, 0.99, 1.0, 1.5, 3.0]
    got = []
    for i, t in enumerate(ts):
        ch.process_one(np.array([float(i)]), mid=10.0 + i, ts_ns=int(t * 1e9))
        got.append(sorted(learned))
    assert got == [[], [], [], [0], [0, 1], [0, 1, 2, 3, 4]]


@pytest.mark.parametrize("cfg", [
    LabelConfig(horizon=4),
    LabelConfig(horizon=0.3, unit="seconds", threshold=1e-5),
    LabelConfig(horizon=2, threshold=0.5, threshold_unit="ticks", tick_size=0.01),
    LabelConfig(kind="smoothed", horizon=5),
    LabelConfig(kind="smoothed", horizon=12, reference="past_mean", threshold=2e-5),
])
def test_learned_labels_are_the_offline_labels_per_symbol(cfg):
    df = time_ordered(planted_table(250, seed=4, symbols=("A", "B")))
    ch = OnlineChallenger(["idx"], cfg)
    learned = record_learning(ch)
    for i, (sym, mid, ts) in enumerate(zip(df["symbol"], df["mid"], df["ts_ns"])):
        ch.process_one(np.array([float(i)]), mid=mid, ts_ns=ts, symbol=sym)
    y = make_labels(df, cfg)
    assert learned == {i: int(v) for i, v in enumerate(y) if v >= 0}
    assert ch.learned == len(learned) and ch.pending() == int((y < 0).sum()) - (
        int(cfg.horizon) - 1) * 2 * (cfg.reference == "past_mean")


def test_learns_the_relation_and_flags_drift_when_it_flips():
    features = ["qimb_1", "ofi_1", "ofi_2"]
    a = planted_table(1500, seed=1, strength=2.0)
    b = planted_table(1500, seed=2, strength=-2.0)  # the same flow now moves the mid the other way
    b["ts_ns"] += a["ts_ns"].iloc[-1]
    b["mid"] += a["mid"].iloc[-1] - b["mid"].iloc[0]
    df = pd.concat([a, b], ignore_index=True)
    y = make_labels(df, LabelConfig(horizon=1))
    ch = OnlineChallenger(features, LabelConfig(horizon=1), lr=0.05)
    assert np.isnan(ch.predict_proba_one(df[features].to_numpy()[0])).all()  # nothing learned yet
    hits = []
    for i, (row, mid) in enumerate(zip(df[features].to_numpy(), df["mid"])):
        p = ch.process_one(row, mid=mid)
        if i >= 300 and i < 1500:
            hits.append(p.argmax() == y[i])
    assert np.mean(hits) > 0.6  # chance is about 0.4
    assert ch.drifts and all(1500 < d < 1900 for d in ch.drifts[:1])
    assert not [d for d in ch.drifts if d < 1500]


def test_checkpoint_resumes_identically():
    df = planted_table(400, seed=8)
    rows, mids, ts = df[["ofi_1", "qimb_1"]].to_numpy(), df["mid"].to_numpy(), df["ts_ns"].to_numpy()
    ch = OnlineChallenger(["ofi_1", "qimb_1"], LabelConfig(horizon=5))
    for i in range(200):
        ch.process_one(rows[i], mid=mids[i], ts_ns=ts[i])
    copy = OnlineChallenger.from_bytes(ch.state_bytes())
    assert copy.pending() == ch.pending() == 5
    for i in range(200, 400):
        assert np.array_equal(ch.process_one(rows[i], mid=mids[i], ts_ns=ts[i]),
                              copy.process_one(rows[i], mid=mids[i], ts_ns=ts[i]))
    assert copy.learned == ch.learned == 395
    with pytest.raises(ValueError, match="not an online challenger checkpoint"):
        OnlineChallenger.from_bytes(b"\x80\x04junk")


def test_matured_labels_watch_the_champion_for_drift_and_score_the_challenger():
    df = planted_table(600, seed=4)
    feats = ["ofi_1", "qimb_1"]
    y = make_labels(df, LabelConfig(horizon=3))
    ch = OnlineChallenger(feats, LabelConfig(horizon=3))
    eye = np.eye(3) * 0.98 + 0.01  # a sure champion: 0.98 on one class
    drifts_at_half = None
    for i, (row, mid) in enumerate(zip(df[feats].to_numpy(), df["mid"])):
        right = int(y[i]) if y[i] >= 0 else 1
        champ = eye[right] if i < 300 else eye[(right + 1) % 3]  # right, then always wrong
        ch.process_one(row, mid=mid, champion=champ)
        if i == 299 + 3:  # rows 0..299 have matured: no error, no alarm
            drifts_at_half = ch.champion_drifts
    assert drifts_at_half == 0 and ch.champion_drifts >= 1
    t = ch.take_tally()
    assert t["champion"]["drifts"] == ch.champion_drifts and t["champion"]["matured"] == 0
    ours = t["challenger"]
    # the challenger predicts nothing before its first learned row; afterwards every learned row is scored
    assert 0 < ours["matured"] <= ch.learned and ours["predicted"].sum() == 3 * ours["matured"]
    assert ours["observed"].sum() == ours["matured"] and ours["drifts"] == len(ch.drifts)
    assert ch.take_tally()["challenger"]["matured"] == 0  # handed out once


class _Shell:
    """Pickles to a call of ``os.system``: what a crafted checkpoint would carry."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):  # type: ignore[no-untyped-def]
        import os

        return (os.system, (self.cmd,))


def test_a_crafted_checkpoint_cannot_run_code(tmp_path):
    import pickle

    from streamsig.models.online import _MAGIC

    flag = tmp_path / "ran"
    evil = _MAGIC + pickle.dumps({"features": ["x"], "model": _Shell(f"touch {flag}")})
    with pytest.raises(ValueError, match="posix.system|os.system"):
        OnlineChallenger.from_bytes(evil)
    assert not flag.exists()


def test_every_kind_of_challenger_checkpoint_reads_back():
    """Smoothed labels, champion scores and drift detectors: all within the classes a checkpoint may hold."""
    df = planted_table(300, seed=3)
    rows, mids = df[["ofi_1", "qimb_1"]].to_numpy(), df["mid"].to_numpy()
    for cfg in (LabelConfig(horizon=4, kind="smoothed"), LabelConfig(horizon=3)):
        ch = OnlineChallenger(["ofi_1", "qimb_1"], cfg, reset_on_drift=True)
        for i in range(200):
            ch.process_one(rows[i], mid=mids[i], symbol="AB"[i % 2], champion=np.array([0.2, 0.5, 0.3]))
        copy = OnlineChallenger.from_bytes(ch.state_bytes())
        for i in range(200, 300):
            assert np.array_equal(ch.process_one(rows[i], mid=mids[i], symbol="A"),
                                  copy.process_one(rows[i], mid=mids[i], symbol="A"))
        assert repr(copy.take_tally()) == repr(ch.take_tally())
