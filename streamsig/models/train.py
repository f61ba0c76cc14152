"""Train a model on a feature table: walk-forward, baselines, ONNX, card, report.

The shipped model is the one fit on the last fold's training rows
(``final="last_fold"``, the default): its test block was never used to fit or
tune it, so the card's last-fold metrics are an out-of-sample estimate of the
very model in ``model.onnx``. ``final="all"`` refits on every labelled row
instead (more recent data, no held-out estimate of that exact model); the card
says which. With ``trials > 0`` Optuna tunes on every fold but the last.

The model id is derived from what determines the model (data hash, features,
label, type, parameters, seed, folds, tuning, final), so retraining the same
thing writes the same folder.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from streamsig.labels import LabelConfig
from streamsig.models.baselines import BASELINES, fit_baseline, ofi_columns, run_baselines
from streamsig.models.card import (CARD_VERSION, MODEL_FILE, library_versions, model_id_for, sha256_bytes,
                                   table_sha256, write_card)
from streamsig.models.dataset import build_dataset, time_ordered
from streamsig.models.estimators import (SEQUENCE_TYPES, fit_native, native_importance, permutation_importance,
                                         predict_native, resolve_params)
from streamsig.models.export import INPUT_NAME, OUTPUT_NAME, parity, to_onnx
from streamsig.models.report import training_report, write_html
from streamsig.models.walkforward import FoldSpec, compare, fold_summary, make_folds, walk_forward

#: largest |onnxruntime - native| probability accepted at export
PARITY_TOL = 1e-5
REPORT_FILE = "report.html"

Progress = Callable[[str, int, int], None]


def _iso(ns: int) -> str:
    return pd.Timestamp(int(ns), unit="ns", tz="UTC").isoformat()


def train_model(df: pd.DataFrame, features: Sequence[str], label_cfg: LabelConfig | dict[str, Any],
                model_type: str, seed: int = 0, out_dir: Path | str = "models",
                folds: FoldSpec | dict[str, Any] | int = 5, trials: int = 0,
                progress: Progress | None = None, *, params: dict[str, Any] | None = None,
                final: str = "last_fold", source: str | None = None, name: str | None = None,
                extra: dict[str, Any] | None = None) -> Path:
    """Train ``model_type`` on ``df`` and write ``out_dir/<model-id>/`` (model.onnx, card.json,
    report.html); returns that folder.

    ``progress(stage, done, total)`` is called with stages ``tune``, ``folds``,
    ``baselines``, ``export``. ``source`` names the data in the card (default
    ``df.attrs["source"]``). ``params`` override the model's defaults
    (:data:`streamsig.models.estimators.DEFAULT_PARAMS`; ``window`` for sequence models).
    ``name`` is the folder name (default: the model id); ``extra`` adds card fields
    (e.g. the feature spec the live stream must run).
    """
    if final not in ("last_fold", "all"):
        raise ValueError(f"final must be 'last_fold' or 'all', got {final!r}")
    say = progress or (lambda stage, done, total: None)
    cfg, spec = LabelConfig.coerce(label_cfg), FoldSpec.coerce(folds)
    p = resolve_params(model_type, params)
    window = int(p.get("window", 1))
    if model_type in SEQUENCE_TYPES and window < 2:
        raise ValueError(f"{model_type} window must be >= 2, got {window}")
    features = list(features)
    ds = build_dataset(df, features, cfg, window=window, extra_cols=ofi_columns(df.columns))
    fold_list = make_folds(ds.pos, ds.end_pos, spec)
    X = ds.inputs()

    tuning = None
    if trials > 0:
        from streamsig.models.tuning import tune
        t = tune(model_type, ds, fold_list[:-1], seed, trials, p, on_trial=lambda i, n: say("tune", i, n))
        p, tuning = t["best_params"], t["summary"]

    fitted: dict[str, Any] = {}

    def fit_predict(f: Any) -> tuple[np.ndarray, None]:
        fitted["model"] = fit_native(model_type, X[f.train], ds.y[f.train], seed, p)
        return predict_native(fitted["model"], X[f.test]), None

    wf = walk_forward(ds.y, fold_list, fit_predict, on_fold=lambda i, n: say("folds", i, n))
    base = run_baselines(ds, fold_list)
    say("baselines", 1, 1)

    last = fold_list[-1]
    if final == "last_fold":
        model, final_rows = fitted["model"], last.train
        final_desc = (f"fit on the training rows of fold {last.index} (the last); its test block "
                      "is out of sample for this model")
    else:
        final_rows = np.arange(len(ds))
        model = fit_native(model_type, X, ds.y, seed, p)
        final_desc = "refit on all labelled rows; fold metrics describe the fold models"
    onnx_bytes = to_onnx(model, model_type, len(features))
    diff = parity(onnx_bytes, X[last.test], predict_native(model, X[last.test]))
    if diff > PARITY_TOL:
        raise RuntimeError(f"ONNX export of {model_type} differs from the native model by {diff:.2e}")
    say("export", 1, 1)

    importance = native_importance(model, model_type, features)
    if importance is None:
        importance = permutation_importance(model, X[last.test], ds.y[last.test], features, seed)
    data_sha = table_sha256(df)
    model_id = model_id_for(model_type, onnx_bytes)
    symbols = sorted({str(s) for s in ds.symbol})
    card: dict[str, Any] = {
        "card_version": CARD_VERSION,
        "model_id": model_id,
        "model_type": model_type,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "features": features,
        "window": window,
        "classes": ["down", "flat", "up"],
        "label": {**cfg.to_dict(), "description": cfg.describe()},
        "data": {"source": source or df.attrs.get("source") or "in-memory DataFrame",
                 "sha256": data_sha, "sha256_of": "table bytes (streamsig.models.card.table_sha256)",
                 "rows": len(df), "labelled_rows": len(ds), "symbols": symbols,
                 "time_range_ns": [int(ds.ts_ns[0]), int(ds.ts_ns[-1])],
                 "time_range": [_iso(ds.ts_ns[0]), _iso(ds.ts_ns[-1])]},
        "folds": {"spec": spec.to_dict(),
                  "folds": [fold_summary(f, ds.pos, ds.ts_ns) for f in fold_list]},
        "metrics": wf.summary(),
        "baselines": {name: b.summary() for name, b in base.items()},
        "vs_baselines": {name: compare(wf, b) for name, b in base.items()},
        "final_model": {"fit_on": final, "description": final_desc, "train_rows": int(len(final_rows)),
                        "train_ts_ns": [int(ds.ts_ns[final_rows[0]]), int(ds.ts_ns[final_rows[-1]])]},
        "baseline_state": {name: fit_baseline(name, ds, final_rows) for name in BASELINES},
        "class_moves": class_moves(df, cfg, ds, final_rows),
        "params": p,
        "seed": seed,
        "tuning": tuning,
        "feature_importance": importance,
        "onnx": {"file": MODEL_FILE, "sha256": sha256_bytes(onnx_bytes), "input": INPUT_NAME,
                 "input_shape": [None, window, len(features)] if window > 1 else [None, len(features)],
                 "input_dtype": "float32", "output": OUTPUT_NAME,
                 "parity_max_abs_diff": diff},
        "library_versions": library_versions(),
        **(extra or {}),
    }
    return _write(Path(out_dir), name or model_id, onnx_bytes, card,
                  training_report(card, ds.y[wf.rows], wf.proba))


def class_moves(df: pd.DataFrame, cfg: LabelConfig, ds: Any, rows: np.ndarray) -> dict[str, Any]:
    """Mean relative mid move from a row to the label's last row, per true class, over ``rows``
    of ``ds`` (the shipped model's training rows): what the edge policy expects per class."""
    mid = time_ordered(df)[cfg.price_col].to_numpy(dtype=np.float64)
    move = mid[ds.end_pos[rows]] / mid[ds.pos[rows]] - 1.0
    y = ds.y[rows]
    ok = np.isfinite(move)
    means = [float(move[ok & (y == k)].mean()) if (ok & (y == k)).any() else 0.0 for k in range(3)]
    return {"mean_return": means, "rows": [int((ok & (y == k)).sum()) for k in range(3)],
            "of": "mid at the label's last row / mid - 1, mean per true class on the shipped model's "
                  "training rows"}


def _write(out_dir: Path, model_id: str, onnx_bytes: bytes, card: dict[str, Any], report: str) -> Path:
    final_dir = out_dir / model_id
    tmp = out_dir / f".{model_id}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / MODEL_FILE).write_bytes(onnx_bytes)
    write_card(tmp, card)
    write_html(tmp / REPORT_FILE, report)
    shutil.rmtree(final_dir, ignore_errors=True)
    os.replace(tmp, final_dir)
    return final_dir
