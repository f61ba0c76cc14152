"""Models: training with walk-forward evaluation, ONNX export, scoring, model cards.

Names are imported on first use, so ``import streamsig.models`` pulls in neither
the training libraries nor torch (needed only for ``lstm`` and ``transformer`` models)::

    from streamsig.models import train_model, Scorer
    model_dir = train_model(df, features, {"horizon": 10}, "lightgbm", seed=0, out_dir="models")
    scorer = Scorer(model_dir, features)
    proba = scorer.score_one(row)          # (3,) down/flat/up
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "train_model": "streamsig.models.train",
    "evaluate_model": "streamsig.models.evaluate",
    "list_models": "streamsig.models.registry",
    "Scorer": "streamsig.models.scorer",
    "SequenceScorer": "streamsig.models.scorer",
    "load_scorer": "streamsig.models.scorer",
    "ModelLoadError": "streamsig.models.scorer",
    "FoldSpec": "streamsig.models.walkforward",
    "OnlineChallenger": "streamsig.models.online",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'streamsig.models' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
