"""The model card: ``card.json`` beside ``model.onnx``, and the hashes it records.

The card says what the model is (id, type, features in input order, label
definition), what it was trained and tested on (data source and sha256, time
range, folds), how well it did (metrics per fold and overall, baselines on
the same folds), how to reproduce it (seed, parameters, library versions) and
which bytes it is (sha256 of ``model.onnx``, checked by the scorer). The
model id is the model type and the first 12 hex digits of that sha256, so an
id names one exact file: a swapped ``model.onnx`` cannot keep an old id, even
with the card's sha256 edited to match.

>>> sha256_bytes(b"abc")[:16]
'ba7816bf8f01cfea'
>>> model_id_for("lightgbm", b"abc")
'lightgbm-ba7816bf8f01'
>>> to_jsonable({"a": float("nan"), "b": np.int64(3), "c": (1.5,)})
{'a': None, 'b': 3, 'c': [1.5]}
"""
from __future__ import annotations

import hashlib
import json
import math
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CARD_FILE = "card.json"
MODEL_FILE = "model.onnx"
CARD_VERSION = 1
REQUIRED = ("card_version", "model_id", "model_type", "created", "features", "window",
            "label", "data", "onnx")
_LIBRARIES = ("numpy", "pandas", "scikit-learn", "lightgbm", "onnx", "onnxruntime", "skl2onnx",
              "onnxmltools", "optuna", "torch", "river")


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def model_id_for(model_type: str, onnx_bytes: bytes) -> str:
    """The id of the model whose ONNX file is ``onnx_bytes``."""
    return f"{model_type}-{sha256_bytes(onnx_bytes)[:12]}"


def table_sha256(df: pd.DataFrame) -> str:
    """sha256 over a table's column names, dtypes and values, in column and row order.

    Numeric columns contribute their raw little-endian bytes, text columns their
    UTF-8 values separated by NUL, so equal tables hash equal across pandas versions.

    >>> a = pd.DataFrame({"x": [1.0, 2.0], "s": ["A", "B"]})
    >>> table_sha256(a) == table_sha256(a.copy()), table_sha256(a) == table_sha256(a[::-1])
    (True, False)
    """
    h = hashlib.sha256()
    for name in df.columns:
        col = df[name]
        arr = col.to_numpy()
        h.update(f"{name}\x00{col.dtype}\x00".encode())
        if arr.dtype.kind in "biufcmM":
            h.update(np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes())
        else:
            h.update("\x00".join(map(str, arr.tolist())).encode())
        h.update(b"\x01")
    return h.hexdigest()


def library_versions() -> dict[str, str | None]:
    """Versions of Python and the libraries that train, convert and score models."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for lib in _LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = None
    return out


def to_jsonable(obj: Any) -> Any:
    """numpy scalars/arrays to Python, tuples to lists, NaN/inf to None (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_card(model_dir: Path | str, card: dict[str, Any]) -> Path:
    """Write ``card.json`` (strict JSON, keys in the given order)."""
    path = Path(model_dir) / CARD_FILE
    path.write_text(json.dumps(to_jsonable(card), indent=1, allow_nan=False) + "\n")
    return path


def read_card(model_dir: Path | str) -> dict[str, Any]:
    """Read and minimally validate ``card.json``; a one-line ValueError if it is unusable."""
    path = Path(model_dir) / CARD_FILE
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no model card") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
    missing = [k for k in REQUIRED if k not in card]
    if missing:
        raise ValueError(f"{path}: card lacks {missing}")
    if card["card_version"] != CARD_VERSION:
        raise ValueError(f"{path}: card version {card['card_version']} is not {CARD_VERSION}")
    return card


def card_feature_spec(card: dict[str, Any]):  # noqa: ANN201 - FeatureSpec | None
    """The feature spec a card records (``feature_spec``), or None for a card without one."""
    from streamsig.features import FeatureSpec

    fs = card.get("feature_spec")
    return FeatureSpec.from_dict(fs) if fs else None
