"""A model id names one exact ONNX file: a swapped file cannot load under the old id."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from streamsig.models import ModelLoadError, Scorer
from streamsig.models.card import model_id_for, sha256_bytes
from streamsig.models.registry import default_model

from tests.test_models_onnx import FEATURES, LABEL, TINY  # noqa: F401 - shared tiny settings


def test_default_card_id_names_its_onnx_bytes() -> None:
    folder = Path(default_model())
    card = json.loads((folder / "card.json").read_text())
    data = (folder / "model.onnx").read_bytes()
    assert card["model_id"] == model_id_for(card["model_type"], data)
    assert Scorer(folder).model_id == card["model_id"]


def test_swapped_onnx_with_edited_sha_cannot_keep_the_old_id(tmp_path: Path) -> None:
    from streamsig.models import train_model
    from streamsig.models.synthetic import planted_table

    other = train_model(planted_table(400, seed=5, symbols=("A",)), FEATURES, LABEL, "logreg", seed=1,
                        out_dir=tmp_path / "m", folds=2, params=TINY["logreg"])
    bad = tmp_path / "bad"
    shutil.copytree(default_model(), bad)
    swapped = (other / "model.onnx").read_bytes()
    (bad / "model.onnx").write_bytes(swapped)
    card = json.loads((bad / "card.json").read_text())
    card["onnx"]["sha256"] = sha256_bytes(swapped)  # the attacker edits the hash to match
    (bad / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="does not name these bytes") as e:
        Scorer(bad)
    assert card["model_id"] in str(e.value) and "\n" not in str(e.value)
    assert Scorer(other).model_id == model_id_for("logreg", swapped)  # an honest card loads
