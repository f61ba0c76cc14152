"""ONNX export parity with the native models, and the scorers that load the exports."""
from __future__ import annotations

import importlib.util
import json
import os
import pickle
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest

from streamsig.labels import LabelConfig
from streamsig.models import ModelLoadError, Scorer, SequenceScorer, load_scorer, train_model
from streamsig.models.dataset import build_dataset
from streamsig.models.estimators import fit_native, predict_native
from streamsig.models.export import parity, to_onnx
from streamsig.models.synthetic import planted_table
from streamsig.models.walkforward import make_folds

FEATURES = ["spread", "qimb_1", "ofi_1", "ofi_2", "ofi_dw", "ofi_1_sum_10", "ret_10", "noise_1"]
LABEL = LabelConfig(horizon=2)
TINY = {"logreg": None, "rf": {"n_estimators": 30}, "lightgbm": {"n_estimators": 20},
        "lstm": {"window": 6, "hidden": 8, "epochs": 1},
        "transformer": {"window": 6, "d_model": 8, "heads": 2, "epochs": 1}}
_NO_TORCH = pytest.mark.skipif(__import__("importlib").util.find_spec("torch") is None,
                               reason="torch not installed")
TYPES = ["logreg", "rf", "lightgbm", pytest.param("lstm", marks=_NO_TORCH),
         pytest.param("transformer", marks=_NO_TORCH)]


@pytest.fixture(scope="module")
def table():
    return planted_table(600, seed=11, symbols=("A", "B"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, table):
    out = tmp_path_factory.mktemp("models")
    cache = {}

    def get(model_type):
        if model_type not in cache:
            cache[model_type] = train_model(table, FEATURES, LABEL, model_type, seed=3, out_dir=out,
                                            folds=2, params=TINY[model_type])
        return cache[model_type]
    return get


def _last_fold(table, window):
    ds = build_dataset(table, FEATURES, LABEL, window=window)
    return ds, make_folds(ds.pos, ds.end_pos, 2)[-1]


@pytest.mark.parametrize("model_type", TYPES)
def test_onnxruntime_matches_native_on_held_out_rows(trained, table, model_type):
    model_dir = trained(model_type)
    card = json.loads((model_dir / "card.json").read_text())
    assert card["onnx"]["parity_max_abs_diff"] <= 1e-5
    ds, fold = _last_fold(table, card["window"])
    X = ds.inputs()
    # the shipped model is the last fold's: refit it natively (deterministic) and compare
    native = fit_native(model_type, X[fold.train], ds.y[fold.train], 3, card["params"])
    want = predict_native(native, X[fold.test])
    got = load_scorer(model_dir, FEATURES).score_batch(X[fold.test])
    assert got.shape == (len(fold.test), 3)
    assert np.max(np.abs(got - want)) <= 1e-5
    assert np.allclose(got.sum(axis=1), 1, atol=1e-5)


def test_lightgbm_export_keeps_splits_between_adjacent_float32_values():
    # Two feature values one float32 step apart: LightGBM splits between them with a double
    # threshold whose nearest float32 is one of the two values. The export must still
    # send each value down the same branch as the native model.
    rng = np.random.default_rng(0)
    a = np.float32(-2.997152e-4)
    b = np.nextafter(a, np.float32(1))
    x = np.where(rng.random(3000) < 0.5, a, b).astype(np.float32)
    y = np.where(x == a, 0, 2)
    y[rng.random(3000) < 0.2] = 1
    X = np.column_stack([x, rng.normal(size=3000).astype(np.float32)])
    model = fit_native("lightgbm", X, y, seed=0, params={"n_estimators": 5, "min_child_samples": 5})
    probe = np.array([[a, 0.0], [b, 0.0]], dtype=np.float32)
    assert parity(to_onnx(model, "lightgbm", 2), probe, predict_native(model, probe)) <= 1e-5


@pytest.mark.parametrize("model_type", ["lightgbm", "rf", "logreg"])
def test_score_one_is_score_batch_row_by_row(trained, table, model_type):
    scorer = Scorer(trained(model_type), FEATURES)
    X = table[FEATURES].dropna().to_numpy()[:50]
    batch = scorer.score_batch(X)
    assert np.allclose(scorer.score_batch(X, exact=False), batch, atol=1e-6, rtol=0)
    out = np.empty(3, dtype=np.float32)
    for i, row in enumerate(X):
        assert np.array_equal(scorer.score_one(row), batch[i])  # float64 row
        assert np.array_equal(scorer.score_one(row.astype(np.float32), out=out), batch[i])
    first = scorer.score_one(X[0])
    scorer.score_one(X[1])
    assert np.array_equal(first, batch[0])  # a returned array is not overwritten later


def test_nonfinite_rows_score_nan(trained, table):
    scorer = Scorer(trained("lightgbm"))
    row = table[FEATURES].dropna().to_numpy()[0].copy()
    row[2] = np.nan
    assert np.isnan(scorer.score_one(row)).all()
    assert np.isnan(scorer.score_batch(row[None, :])).all()
    with pytest.raises(ValueError, match="takes 8"):
        scorer.score_one(row[:3])


def test_tampered_model_is_refused(trained, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(trained("lightgbm"), bad)
    data = bytearray((bad / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match=r"sha256 \w+ does not match card.json \(\w+\); refusing") as e:
        Scorer(bad)
    assert "\n" not in str(e.value)
    with pytest.raises(ModelLoadError):
        load_scorer(bad)


def test_feature_names_and_order_must_match_the_card(trained):
    with pytest.raises(ModelLoadError, match="feature 0 is 'qimb_1', card has 'spread'"):
        Scorer(trained("lightgbm"), ["qimb_1", "spread", *FEATURES[2:]])
    with pytest.raises(ModelLoadError, match="7 features given"):
        Scorer(trained("lightgbm"), FEATURES[:-1])


def test_scorer_reads_no_pickle(trained, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("unpickling attempted")
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    Scorer(trained("logreg")).score_one(np.zeros(len(FEATURES)))


@pytest.mark.parametrize("model_type", TYPES[3:])
def test_sequence_scorer_streams_like_batch_per_symbol(trained, table, model_type):
    model_dir = trained(model_type)
    scorer = SequenceScorer(model_dir, FEATURES)
    T = scorer.window
    with pytest.raises(ModelLoadError, match="use SequenceScorer"):
        Scorer(model_dir)
    ds = build_dataset(table, FEATURES, LABEL, window=T)
    want = scorer.score_batch(ds.X_seq)
    # replay the table in time order, interleaving symbols, and compare at the dataset rows
    from streamsig.models.dataset import time_ordered
    rows = time_ordered(table)
    streamed = np.full((len(rows), 3), np.nan, dtype=np.float32)
    seen = {"A": 0, "B": 0}
    for i, (sym, vals) in enumerate(zip(rows["symbol"], rows[FEATURES].to_numpy())):
        p = scorer.score_one(vals, sym)
        seen[sym] += 1
        if seen[sym] < T:
            assert np.isnan(p).all()  # warming up
        streamed[i] = p
    assert np.array_equal(streamed[ds.pos], want)  # bit-identical to the offline batch
    # a checkpointed window resumes identically; a NaN row restarts the warm-up
    state = scorer.state_bytes("A")
    probe = rows[FEATURES].to_numpy()[-1]
    expect = scorer.score_one(probe, "A")
    scorer.restore("A", state)
    assert np.array_equal(scorer.score_one(probe, "A"), expect)
    gap = probe.copy()
    gap[0] = np.nan
    assert np.isnan(scorer.score_one(gap, "A")).all()
    for _ in range(T - 1):
        assert np.isnan(scorer.score_one(probe, "A")).all()
    assert np.isfinite(scorer.score_one(probe, "A")).all()


SMALL = {"logreg": None, "rf": {"n_estimators": 5}, "lightgbm": {"n_estimators": 5},
         "lstm": {"window": 5, "hidden": 4, "epochs": 1},
         "transformer": {"window": 5, "d_model": 8, "heads": 2, "epochs": 1}}


def exported(model_type: str) -> bytes:
    """ONNX bytes of ``model_type`` fit with fixed data and seed (also run in subprocesses)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 4)).astype(np.float32)
    y = np.digitize(X[:, 0], [-0.4, 0.4])
    if model_type in ("lstm", "transformer"):
        X = np.stack([np.roll(X, k, axis=0) for k in range(5)], axis=1)
    m = fit_native(model_type, X, y, seed=0, params=SMALL[model_type])
    return to_onnx(m, model_type, 4)


def _fresh_export(model_type: str, hashseed: str) -> bytes:
    root = Path(__file__).resolve().parents[1]
    code = ("import sys\nfrom tests.test_models_onnx import exported\n"
            "sys.stdout.buffer.write(exported(sys.argv[1]))\n")
    r = subprocess.run([sys.executable, "-c", code, model_type], check=False, capture_output=True, cwd=root,
                       timeout=120, env={**os.environ, "PYTHONPATH": str(root), "PYTHONHASHSEED": hashseed})
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    return r.stdout


@pytest.mark.slow
def test_export_bytes_do_not_depend_on_what_ran_before():
    types = [t if isinstance(t, str) else t.values[0] for t in TYPES]
    if importlib.util.find_spec("torch") is None:
        types.remove("lstm")
        types.remove("transformer")
    for t in types:  # convert every type once in this process first
        exported(t)
    with ThreadPoolExecutor(2) as pool:  # each in a fresh process with its own hash seed
        fresh = list(pool.map(_fresh_export, types, [str(i + 1) for i in range(len(types))]))
    for t, other in zip(types, fresh):
        again = exported(t)
        model = onnx.load_from_string(again)
        domains = [o.domain for o in model.opset_import]
        assert domains == sorted(set(domains)), (t, domains)  # one entry per domain, sorted
        assert (model.producer_name, model.producer_version, model.graph.name) == ("streamsig", "", "streamsig")
        assert other == again, t


def test_committed_default_model_is_in_canonical_form():
    from streamsig.models.export import canonical

    data = (Path(__file__).resolve().parents[1] / "models" / "default" / "model.onnx").read_bytes()
    assert canonical(onnx.load_from_string(data)).SerializeToString() == data
