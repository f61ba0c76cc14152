"""The cost-aware edge policy: its formula by hand, both paths equal, state, and the card's moves."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamsig.labels import LabelConfig
from streamsig.models import train_model
from streamsig.models.dataset import build_dataset, time_ordered
from streamsig.models.synthetic import planted_table
from streamsig.trading.edge import EdgePolicy, make_policy
from streamsig.trading.policy import PolicyConfig, SignalPolicy

MU = (-2e-4, 1e-5, 3e-4)


def test_fee_and_slippage_count_in_the_cost():
    # p_up = 1: g = 100 * 3e-4 = 0.03 per unit. Spread 0.02 alone: c = 0.01, 2c = 0.02 < g: long.
    assert EdgePolicy(MU).target((0.0, 0.0, 1.0), 100.0, 0.02) == 1.0
    # with fee 1 bp + slippage 0.5 bp: c = 0.01 + 0.015 = 0.025, 2c = 0.05 > g: stay flat
    assert EdgePolicy(MU, fee_bps=1.0, slippage_bps=0.5).target((0.0, 0.0, 1.0), 100.0, 0.02) == 0.0
    # and a wider spread alone does the same: c = 0.02, 2c = 0.04 > g
    assert EdgePolicy(MU).target((0.0, 0.0, 1.0), 100.0, 0.04) == 0.0


def test_the_decision_table_by_hand():
    pol = EdgePolicy((-1e-3, 0.0, 1e-3), max_position=2.0, fee_bps=1.0, margin_bps=1.0)
    mid, spread = 100.0, 0.02  # c = 0.01 + 0.01 = 0.02 per unit; margin 0.01 per unit traded
    # flat -> long needs g > 2c + margin = 0.05: g = 100 * 1e-3 * (p_up - p_down)
    assert pol.target((0.0, 0.55, 0.45), mid, spread) == 0.0  # g = 0.045
    assert pol.target((0.0, 0.45, 0.55), mid, spread) == 2.0  # g = 0.055, all in
    # long -> flat needs g < -margin = -0.01; long -> short needs -g > c + margin = 0.03, and beats flat
    # when -g > 2c + margin = 0.05
    assert pol.target((0.05, 0.95, 0.0), mid, spread) == 2.0   # g = -0.005: hold
    assert pol.target((0.2, 0.8, 0.0), mid, spread) == 0.0     # g = -0.02: flat
    pol.restore({"position": 2.0})
    assert pol.target((0.45, 0.55, 0.0), mid, spread) == 0.0   # g = -0.045: reversal pays, flat pays more
    pol.restore({"position": 2.0})
    assert pol.target((0.6, 0.4, 0.0), mid, spread) == -2.0    # g = -0.06: reverse
    # NaN probabilities, mid or spread hold
    for p, m, s in [((np.nan, 0.0, 1.0), mid, spread), ((0.0, 0.0, 1.0), np.nan, spread),
                    ((0.0, 0.0, 1.0), mid, np.nan)]:
        assert pol.target(p, m, s) == -2.0


def test_a_positive_expected_move_never_closes_a_long():
    pol = EdgePolicy(MU)
    pol.restore({"position": 1.0})
    assert pol.target((0.0, 1.0, 0.0), 100.0, 5.0) == 1.0  # g = 100 * 1e-5 > 0: keep, however wide the spread


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 3.0), st.floats(0.0, 2.0))
def test_run_equals_target_row_by_row(seed, fee, margin):
    rng = np.random.default_rng(seed)
    n = 200
    probs = rng.dirichlet([1, 1, 1], size=n)
    probs[rng.random(n) < 0.05, 1] = np.nan
    mid = 100 + np.cumsum(rng.normal(0, 0.01, n))
    spread = rng.choice([0.01, 0.02, 0.05], n)
    mu = (-5e-4, 0.0, 6e-4)
    a, b = EdgePolicy(mu, fee_bps=fee, margin_bps=margin), EdgePolicy(mu, fee_bps=fee, margin_bps=margin)
    got = np.concatenate([a.run(probs[:77], mid[:77], spread[:77]), a.run(probs[77:], mid[77:], spread[77:])])
    want = [b.target(p, m, s) for p, m, s in zip(probs, mid, spread)]
    assert got.tolist() == want
    assert a.state() == b.state()


def test_make_policy_picks_the_kind_and_ignores_the_other_kinds_settings():
    cfg = PolicyConfig(enter=0.3, exit=0.1, max_position=2.0, fee_bps=1.0, margin_bps=0.5)
    thr = make_policy(cfg)
    assert isinstance(thr, SignalPolicy) and (thr.enter, thr.max_position) == (0.3, 2.0)
    edge = make_policy(replace(cfg, kind="edge"), {"model_id": "m", "class_moves": {"mean_return": MU}})
    assert isinstance(edge, EdgePolicy) and edge.max_position == 2.0
    assert edge.cost_frac == pytest.approx(1e-4) and edge.margin_frac == pytest.approx(5e-5)
    with pytest.raises(ValueError, match="needs a model"):
        make_policy(PolicyConfig(kind="edge"))
    with pytest.raises(ValueError, match="retrain"):
        make_policy(PolicyConfig(kind="edge"), {"model_id": "old"})
    with pytest.raises(ValueError, match="policy must be one of"):
        PolicyConfig(kind="kelly")
    with pytest.raises(ValueError, match="policy must be one of"):
        PolicyConfig.from_dict({"kind": "kelly"})


def test_card_records_the_mean_move_per_class_on_the_training_rows(tmp_path):
    df = planted_table(1500, seed=3)
    feats, label = ["ofi_1", "qimb_1"], LabelConfig(horizon=5)
    path = train_model(df, feats, label, "logreg", seed=0, out_dir=tmp_path, folds=2)
    card = json.loads((path / "card.json").read_text())
    cm = card["class_moves"]
    ds = build_dataset(df, feats, label)
    n_train = card["final_model"]["train_rows"]
    mid = time_ordered(df)["mid"].to_numpy()
    rows = np.arange(n_train)  # the last fold's training rows are the first n_train (expanding folds)
    assert card["final_model"]["train_ts_ns"][1] == int(ds.ts_ns[n_train - 1])
    move = mid[ds.end_pos[rows]] / mid[ds.pos[rows]] - 1
    for k in range(3):
        assert cm["mean_return"][k] == pytest.approx(move[ds.y[rows] == k].mean(), rel=1e-12)
        assert cm["rows"][k] == int((ds.y[rows] == k).sum())
    down, flat, up = cm["mean_return"]
    assert down < 0 < up and flat == 0.0  # threshold 0: a flat label means no move
