"""train_model end to end: card, report, determinism, tuning, baselines, evaluate, list."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamsig.labels import LabelConfig
from streamsig.models import Scorer, evaluate_model, list_models, load_scorer, train_model
from streamsig.models.card import sha256_bytes, table_sha256
from streamsig.models.dataset import build_dataset
from streamsig.models.synthetic import planted_table
from streamsig.models.walkforward import make_folds

FEATURES = ["spread", "qimb_1", "ofi_1", "ofi_2", "ofi_dw", "ofi_1_sum_10", "ret_10", "noise_1"]
LABEL = LabelConfig(horizon=1)
SMALL = {"n_estimators": 20}


def card_of(model_dir) -> dict:
    return json.loads((model_dir / "card.json").read_text())


@pytest.fixture(scope="module")
def planted():
    df = planted_table(3000, seed=21)
    df.attrs["source"] = "synthetic planted_table(3000, seed=21)"
    return df


@pytest.fixture(scope="module")
def lgbm(tmp_path_factory, planted):
    return train_model(planted, FEATURES, LABEL, "lightgbm", seed=7,
                       out_dir=tmp_path_factory.mktemp("m"), folds=5, params=SMALL)


def test_card_states_what_the_model_is(lgbm, planted):
    card = card_of(lgbm)
    assert card["model_id"] == lgbm.name and card["model_type"] == "lightgbm"
    assert card["features"] == FEATURES and card["window"] == 1
    assert LabelConfig.from_dict(card["label"]) == LABEL and card["label"]["description"]
    assert card["onnx"]["sha256"] == sha256_bytes((lgbm / "model.onnx").read_bytes())
    assert card["onnx"]["input_dtype"] == "float32" and card["onnx"]["input_shape"] == [None, 8]
    data = card["data"]
    assert data["sha256"] == table_sha256(planted) and data["source"].startswith("synthetic")
    assert data["time_range_ns"][0] < data["time_range_ns"][1] and data["symbols"] == ["SYN"]
    assert len(card["folds"]["folds"]) == 5 == len(card["metrics"]["folds"])
    for key in ("accuracy", "macro_f1", "precision", "recall", "auc_pr", "brier", "log_loss", "calibration"):
        assert key in card["metrics"]["overall"]
    assert set(card["baselines"]) == {"majority", "persistence", "ofi_rule"}
    assert all(len(b["folds"]) == 5 for b in card["baselines"].values())
    last = card["folds"]["folds"][-1]
    assert card["final_model"]["fit_on"] == "last_fold"
    assert card["final_model"]["train_rows"] == last["train_rows"]
    assert card["final_model"]["train_ts_ns"][1] < last["test_ts_ns"][0]
    assert card["seed"] == 7 and card["params"]["n_estimators"] == 20
    assert card["library_versions"]["lightgbm"] and card["library_versions"]["onnxruntime"]
    assert abs(sum(card["feature_importance"].values()) - 1) < 1e-9


def test_report_is_self_contained(lgbm):
    html = (lgbm / "report.html").read_text()
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 3  # confusion, calibration, importance
    assert not re.search(r'(src|href)="(?!data:)', html)
    assert "ofi_rule macro-F1" in html and "overall" in html


def test_same_seed_and_data_give_identical_models(lgbm, planted, tmp_path):
    again = train_model(planted, FEATURES, LABEL, "lightgbm", seed=7, out_dir=tmp_path, folds=5, params=SMALL)
    a, b = card_of(lgbm), card_of(again)
    assert a["model_id"] == b["model_id"]
    for key in ("metrics", "baselines", "vs_baselines", "folds", "onnx", "feature_importance"):
        assert a[key] == b[key], key
    X = planted[FEATURES].dropna().to_numpy()
    assert np.array_equal(Scorer(lgbm).score_batch(X), Scorer(again).score_batch(X))
    other = train_model(planted, FEATURES, LABEL, "lightgbm", seed=8, out_dir=tmp_path, folds=5,
                        params={**SMALL, "subsample": 0.7})
    assert other.name != lgbm.name


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
@pytest.mark.parametrize("model_type,params", [("lstm", {"window": 4, "hidden": 8, "epochs": 2}),
                                               ("transformer", {"window": 4, "d_model": 8, "epochs": 2})])
def test_sequence_training_is_deterministic(tmp_path, model_type, params):
    df = planted_table(300, seed=2)
    runs = [train_model(df, FEATURES, LABEL, model_type, seed=1, out_dir=tmp_path / str(i), folds=2,
                        params=params) for i in range(2)]
    assert card_of(runs[0])["metrics"] == card_of(runs[1])["metrics"]
    assert (runs[0] / "model.onnx").read_bytes() == (runs[1] / "model.onnx").read_bytes()
    ds = build_dataset(df, FEATURES, LABEL, window=4)
    p0, p1 = (load_scorer(r).score_batch(ds.X_seq) for r in runs)
    assert np.array_equal(p0, p1)
    other = train_model(df, FEATURES, LABEL, model_type, seed=2, out_dir=tmp_path / "2", folds=2, params=params)
    assert (other / "model.onnx").read_bytes() != (runs[0] / "model.onnx").read_bytes()


def _beats(model_dir) -> dict[str, bool]:
    return {name: c["beats"] for name, c in card_of(model_dir)["vs_baselines"].items()}


def test_lightgbm_beats_baselines_only_when_there_is_something_to_learn(lgbm, tmp_path):
    assert _beats(lgbm) == {"majority": True, "persistence": True, "ofi_rule": True}
    noise = planted_table(3000, seed=21, strength=0.0)
    beats = _beats(train_model(noise, FEATURES, LABEL, "lightgbm", seed=7, out_dir=tmp_path,
                               folds=5, params=SMALL))
    assert not all(beats.values())
    assert not beats["persistence"] and not beats["ofi_rule"]


def test_tuning_never_sees_the_last_test_fold(planted, tmp_path, monkeypatch):
    import streamsig.models.tuning as tuning

    ds = build_dataset(planted, FEATURES, LABEL)
    held_out = {row.tobytes() for row in ds.X[make_folds(ds.pos, ds.end_pos, 3)[-1].test[0]:]}
    seen = []
    real_fit, real_predict = tuning.fit_native, tuning.predict_native

    def fit(model_type, X, y, seed, params):
        seen.extend(row.tobytes() for row in X)
        return real_fit(model_type, X, y, seed, params)

    def predict(model, X):
        seen.extend(row.tobytes() for row in X)
        return real_predict(model, X)

    monkeypatch.setattr(tuning, "fit_native", fit)
    monkeypatch.setattr(tuning, "predict_native", predict)
    out = train_model(planted, FEATURES, LABEL, "lightgbm", seed=0, out_dir=tmp_path, folds=3, trials=3)
    card = card_of(out)
    assert card["tuning"]["folds"] == [0, 1] and card["tuning"]["trials"] == 3
    assert seen and held_out.isdisjoint(seen)
    assert {"num_leaves", "learning_rate"} <= set(card["params"])
    again = card_of(train_model(planted, FEATURES, LABEL, "lightgbm", seed=0, out_dir=tmp_path / "again",
                                folds=3, trials=3))
    assert again["params"] == card["params"] and again["metrics"] == card["metrics"]  # seeded search


def test_final_all_refits_on_every_row_and_progress_is_reported(planted, tmp_path):
    calls = []
    card = card_of(train_model(planted, FEATURES, LABEL, "logreg", seed=0, out_dir=tmp_path,
                               folds=3, final="all", progress=lambda *a: calls.append(a)))
    assert card["final_model"]["fit_on"] == "all"
    assert card["final_model"]["train_rows"] == card["data"]["labelled_rows"]
    assert calls == [("folds", 1, 3), ("folds", 2, 3), ("folds", 3, 3), ("baselines", 1, 1), ("export", 1, 1)]


def test_models_train_without_torch(tmp_path):
    code = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('torch blocked')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from streamsig.models import train_model, load_scorer\n"
        "from streamsig.models.synthetic import planted_table\n"
        f"d = train_model(planted_table(800), {FEATURES!r}, {{'horizon': 1}}, 'logreg', out_dir={str(tmp_path)!r}, folds=2)\n"
        "load_scorer(d)\n"
        "try:\n    train_model(planted_table(800), ['ofi_1'], {'horizon': 1}, 'lstm', out_dir='x', folds=2)\n"
        "except ImportError as e:\n    print(e)\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                         env={**os.environ, "PYTHONPATH": str(root)}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "lstm models need torch" in out.stdout


def test_evaluate_scores_new_data_through_the_scorer(lgbm, tmp_path):
    fresh = planted_table(1500, seed=99)
    res = evaluate_model(lgbm, fresh, report_path=tmp_path / "eval.html")
    ds = build_dataset(fresh, FEATURES, LABEL)
    assert res["labelled_rows"] == len(ds) and res["metrics"]["n"] == len(ds)
    assert res["data_sha256"] == table_sha256(fresh)
    pred = Scorer(lgbm).score_batch(ds.X).argmax(axis=1)
    assert res["metrics"]["accuracy"] == pytest.approx(np.mean(pred == ds.y))
    assert res["metrics"]["macro_f1"] > max(b["macro_f1"] for b in res["baselines"].values())
    assert "data:image/png;base64," in (tmp_path / "eval.html").read_text()


def test_list_models_reads_cards_and_checks_hashes(lgbm, tmp_path):
    import shutil
    shutil.copytree(lgbm, tmp_path / lgbm.name)
    (tmp_path / "junk").mkdir()
    listed = list_models(tmp_path)
    assert [m["model_id"] for m in listed] == [lgbm.name] and listed[0]["verified"]
    (tmp_path / lgbm.name / "model.onnx").write_bytes(b"not a model")
    assert list_models(tmp_path)[0]["verified"] is False
