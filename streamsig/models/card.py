"""The model card: ``card.json`` beside ``model.onnx``, and the hashes it records.

The card says what the model is (id, type, features in input order, label
definition), what it was trained and tested on (data source and sha256, time
range, folds), how well it did (metrics per fold and overall, baselines on
the same folds), how to reproduce it (seed, parameters, library versions) and
which bytes it is (sha256 of ``model.onnx``, checked by the scorer). The
model id is the model type and the first 12 hex digits of that sha256, so an
id names one exact file: a swapped ``model.onnx`` cannot keep an old id, even
with the card's sha256 edited to match.
Cards written by ``train`` also record each symbol's instrument (tick and how
it was found, contract, fees) under ``instruments``. Times are ns since the
epoch (LOBSTER times include the date from the file name), so a backtest can
tell with :func:`training_overlap` whether it replays data the model saw.

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


def card_instruments(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The instruments a card records (``instruments``: symbol -> Instrument fields), or {}."""
    return dict(card.get("instruments") or {})


def training_range(card: dict[str, Any]) -> tuple[int, int] | None:
    """``(first, last)`` ns of the data the model was trained and tuned on, if the card records it."""
    r = (card.get("data") or {}).get("time_range_ns")
    return (int(r[0]), int(r[1])) if r and len(r) == 2 else None


def training_overlap(card: dict[str, Any], ranges: dict[str, tuple[int, int]]) -> str | None:
    """A one-line warning when any ``symbol -> (first, last ns)`` range overlaps the card's training data.

    Only symbols the card was trained on count (all, if it lists none).

    >>> card = {"model_id": "m", "data": {"time_range_ns": [0, 10**9], "symbols": ["A"]}}
    >>> training_overlap(card, {"A": (5 * 10**8, 2 * 10**9), "B": (0, 1)})
    'model m was trained on this data: A overlaps its training range 1970-01-01T00:00:00 to 1970-01-01T00:00:01; figures are in-sample'
    >>> training_overlap(card, {"A": (2 * 10**9, 3 * 10**9)}) is None
    True
    """
    tr = training_range(card)
    if tr is None:
        return None
    syms = set((card.get("data") or {}).get("symbols") or [])
    hits = []
    for sym, (a, b) in ranges.items():
        if syms and sym not in syms:
            continue
        lo, hi = max(a, tr[0]), min(b, tr[1])
        if lo <= hi:
            hits.append(sym)
    if not hits:
        return None
    fmt = lambda ns: pd.Timestamp(int(ns), unit="ns").strftime("%Y-%m-%dT%H:%M:%S")  # noqa: E731
    return (f"model {card.get('model_id')} was trained on this data: {', '.join(hits)} "
            f"overlap{'s' if len(hits) == 1 else ''} its training range {fmt(tr[0])} to {fmt(tr[1])}; "
            "figures are in-sample")
