"""Score new data with a saved model (through its ONNX scorer) against the card's baselines."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from streamsig.labels import LabelConfig
from streamsig.models.baselines import predict_baseline
from streamsig.models.card import table_sha256
from streamsig.models.dataset import build_dataset
from streamsig.models.scores import classification_metrics
from streamsig.models.report import evaluation_report, write_html
from streamsig.models.scorer import load_scorer


def evaluate_model(model_dir: Path | str, df: pd.DataFrame, *,
                   report_path: Path | str | None = None) -> dict[str, Any]:
    """Metrics of the model in ``model_dir`` on ``df`` (labelled as its card says), beside the
    baselines as fitted at training time; writes an HTML report (default
    ``<model_dir>/evaluations/<data sha256[:12]>.html``) and returns its path under ``report``."""
    scorer = load_scorer(model_dir)
    card = scorer.card
    states = card["baseline_state"]
    ofi_col = states["ofi_rule"].get("column")
    ds = build_dataset(df, card["features"], LabelConfig.from_dict(card["label"]),
                       window=card["window"], extra_cols=[ofi_col] if ofi_col in df.columns else [])
    if len(ds) == 0:
        raise ValueError("no row of the table has a label and finite features")
    proba = scorer.score_batch(ds.inputs()).astype(np.float64)
    rows = np.arange(len(ds))
    baselines = {}
    for name, state in states.items():
        if name == "ofi_rule" and ofi_col not in ds.extra:
            state = {**state, "column": None}
        baselines[name] = classification_metrics(ds.y, *predict_baseline(name, ds, rows, state))
    data_sha = table_sha256(df)
    result: dict[str, Any] = {
        "model_id": card["model_id"], "data_sha256": data_sha, "rows": len(df),
        "labelled_rows": len(ds), "time_range_ns": [int(ds.ts_ns[0]), int(ds.ts_ns[-1])],
        "metrics": classification_metrics(ds.y, proba), "baselines": baselines,
    }
    path = Path(report_path) if report_path else Path(model_dir) / "evaluations" / f"{data_sha[:12]}.html"
    result["report"] = str(write_html(path, evaluation_report(result, ds.y, proba)))
    return result
