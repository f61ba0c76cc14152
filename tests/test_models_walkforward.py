"""Walk-forward folds, metrics and baselines."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from streamsig.labels import LabelConfig
from streamsig.models.baselines import fit_baseline, predict_baseline, run_baselines
from streamsig.models.dataset import build_dataset
from streamsig.models.scores import classification_metrics
from streamsig.models.synthetic import planted_table
from streamsig.models.walkforward import FoldSpec, compare, make_folds, walk_forward


@pytest.mark.parametrize("cfg", [LabelConfig(horizon=7), LabelConfig(horizon=0.4, unit="seconds"),
                                 LabelConfig(kind="smoothed", horizon=5)])
@pytest.mark.parametrize("spec", [FoldSpec(n_folds=4), FoldSpec(n_folds=3, scheme="rolling", embargo=9, gap=2)])
def test_folds_are_time_ordered_and_purged(cfg, spec):
    ds = build_dataset(planted_table(700, seed=1, symbols=("A", "B")), ["ofi_1"], cfg)
    folds = make_folds(ds.pos, ds.end_pos, spec)
    assert len(folds) == spec.n_folds
    prev_test_end = -1
    for f in folds:
        assert np.all(np.diff(f.train) > 0) and np.all(np.diff(f.test) > 0)  # never shuffled
        first_test = ds.pos[f.test[0]]
        # every training label ends before the test block starts (plus the gap) ...
        assert ds.end_pos[f.train].max() < first_test - spec.gap
        # ... so the train/test distance covers the label horizon
        assert ds.ts_ns[f.train].max() < ds.ts_ns[f.test[0]]
        assert f.test[0] > prev_test_end + spec.embargo  # embargo between test blocks
        prev_test_end = f.test[-1]
        assert f.purged > 0
    assert folds[-1].test[-1] == len(ds) - 1
    if spec.scheme == "rolling":
        assert folds[-1].train[0] > 0


def test_purge_gap_in_rows_is_at_least_the_horizon():
    pos = np.arange(500)
    folds = make_folds(pos, pos + 10, FoldSpec(n_folds=4))
    for f in folds:
        assert f.test[0] - f.train[-1] > 10
        assert f.purged == 10


def test_too_few_rows_is_a_clear_error():
    with pytest.raises(ValueError, match="too few"):
        make_folds(np.arange(5), np.arange(5) + 1, FoldSpec(n_folds=10))


def test_metrics_on_a_hand_example():
    y = np.array([0, 0, 1, 1, 2, 2])
    proba = np.array([[.8, .1, .1], [.4, .5, .1], [.1, .8, .1], [.2, .7, .1], [.1, .1, .8], [.5, .2, .3]])
    m = classification_metrics(y, proba)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["precision"] == pytest.approx({"down": 0.5, "flat": 2 / 3, "up": 1.0})
    assert m["recall"] == pytest.approx({"down": 0.5, "flat": 1.0, "up": 0.5})
    assert m["macro_f1"] == pytest.approx(np.mean([0.5, 0.8, 2 / 3]))
    onehot = np.eye(3)[y]
    assert m["brier"] == pytest.approx(np.mean(((proba - onehot) ** 2).sum(1)))
    assert m["log_loss"] == pytest.approx(-np.mean(np.log(proba[np.arange(6), y])))
    assert sum(b["n"] for b in m["calibration"]) == 6
    assert m["auc_pr"]["up"] == pytest.approx(1.0)


def test_persistence_is_the_last_realised_label():
    df = pd.DataFrame({"mid": [1.0, 2.0, 2.0, 1.0, 3.0, 3.0], "x": np.arange(6.0)})
    ds = build_dataset(df, ["x"], LabelConfig(horizon=2))
    # labels: [2, 0, 2, 2, -, -]; the label of row t is realised at row t+2
    assert ds.y.tolist() == [2, 0, 2, 2]
    assert ds.persistence.tolist() == [-1, -1, 2, 0]
    proba, pred = predict_baseline("persistence", ds, np.arange(4), fit_baseline("persistence", ds, np.arange(4)))
    assert pred.tolist() == [1, 1, 2, 0]
    assert np.allclose(proba.sum(1), 1)


def test_ofi_rule_fits_column_and_threshold_on_train():
    df = planted_table(3000, seed=5)
    ds = build_dataset(df, ["ofi_1"], LabelConfig(horizon=1), extra_cols=["ofi_1_sum_10", "ofi_1_sum_50"])
    rows = np.arange(2000)
    state = fit_baseline("ofi_rule", ds, rows)
    assert state["column"] in ("ofi_1_sum_10", "ofi_1_sum_50") and state["threshold"] >= 0
    _, pred = predict_baseline("ofi_rule", ds, rows, state)
    s = ds.extra[state["column"]][rows]
    assert np.all(pred[s > state["threshold"]] == 2) and np.all(pred[s < -state["threshold"]] == 0)


def test_baselines_run_on_the_same_folds_and_compare():
    ds = build_dataset(planted_table(2000, seed=6), ["ofi_1", "qimb_1"], LabelConfig(horizon=1),
                       extra_cols=["ofi_1_sum_10"])
    folds = make_folds(ds.pos, ds.end_pos, 4)
    base = run_baselines(ds, folds)
    assert set(base) == {"majority", "persistence", "ofi_rule"}
    for b in base.values():
        assert np.array_equal(b.rows, np.concatenate([f.test for f in folds]))
    # an oracle beats every baseline; a baseline does not beat itself
    oracle = walk_forward(ds.y, folds, lambda f: (np.eye(3)[ds.y[f.test]], None))
    assert all(compare(oracle, b)["beats"] for b in base.values())
    assert not compare(base["majority"], base["majority"])["beats"]
