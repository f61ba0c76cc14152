"""Training, evaluation and the registry from the command line; the committed default model."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.test_cli import run_cli

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "models" / "default"


def test_train_evaluate_list(tmp_path: Path) -> None:
    out = tmp_path / "models"
    r = run_cli("train", "--updates", "6000", "--symbols", "SYNA,SYNB", "--folds", "3", "--out", str(out),
                "--name", "small")
    assert r.returncode == 0, r.stderr
    card = json.loads((out / "small" / "card.json").read_text())
    assert card["feature_spec"]["levels"] == 10 and card["model_type"] == "lightgbm"
    assert card["onnx"]["sha256"] == hashlib.sha256((out / "small" / "model.onnx").read_bytes()).hexdigest()
    assert len(card["folds"]["folds"]) == 3 and (out / "small" / "report.html").stat().st_size > 10_000
    r = run_cli("evaluate", "--model", str(out / "small"), "--updates", "3000", "--seed", "99",
                "--report", str(tmp_path / "eval.html"))
    assert r.returncode == 0, r.stderr
    assert "macro-F1" in r.stdout and (tmp_path / "eval.html").exists()
    r = run_cli("models", "list", "--root", str(out))
    assert r.returncode == 0 and "lightgbm" in r.stdout and "yes" in r.stdout


def test_unknown_feature_is_one_line(tmp_path: Path) -> None:
    r = run_cli("train", "--updates", "2000", "--features", "qimb_1,nope", "--out", str(tmp_path))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "nope" in r.stderr


def test_committed_default_model_is_intact() -> None:
    from streamsig.models import Scorer

    card = json.loads((DEFAULT / "card.json").read_text())
    assert card["onnx"]["sha256"] == hashlib.sha256((DEFAULT / "model.onnx").read_bytes()).hexdigest()
    sc = Scorer(DEFAULT)
    assert sc.features == card["features"] and card["feature_spec"]["levels"] == 10
    # on its own synthetic data, the default model beats every baseline out of sample
    f1 = card["metrics"]["overall"]["macro_f1"]
    assert all(f1 > b["overall"]["macro_f1"] for b in card["baselines"].values())


@pytest.mark.slow
def test_default_model_is_reproducible_from_its_card(tmp_path: Path) -> None:
    """``streamsig train --name default`` with defaults rebuilds the committed model byte for byte."""
    card = json.loads((DEFAULT / "card.json").read_text())
    r = run_cli("train", "--out", str(tmp_path), "--name", "again", "--horizon", str(card["label"]["horizon"]),
                "--model-seed", str(card["seed"]))
    assert r.returncode == 0, r.stderr
    again = json.loads((tmp_path / "again" / "card.json").read_text())
    assert again["model_id"] == card["model_id"]
    assert again["onnx"]["sha256"] == card["onnx"]["sha256"]
    assert again["metrics"] == card["metrics"]
    assert again["class_moves"] == card["class_moves"]  # what the edge policy reads


@pytest.mark.slow
@pytest.mark.skipif(__import__("importlib").util.find_spec("torch") is None, reason="torch not installed")
def test_train_a_transformer_from_the_command_line(tmp_path: Path) -> None:
    r = run_cli("train", "--model", "transformer", "--updates", "1500", "--symbols", "SYNA", "--folds", "2",
                "--horizon", "20", "--out", str(tmp_path), "--name", "trf")
    assert r.returncode == 0, r.stderr
    card = json.loads((tmp_path / "trf" / "card.json").read_text())
    assert card["model_type"] == "transformer" and card["window"] == 16
    assert card["onnx"]["input_shape"] == [None, 16, len(card["features"])]
    assert card["onnx"]["parity_max_abs_diff"] <= 1e-5
    down, flat, up = card["class_moves"]["mean_return"]
    assert down < 0 < up
