"""The native (training-side) models: fit, predict probabilities, importance.

``logreg`` is a standardising pipeline around multinomial logistic regression,
``rf`` a random forest, ``lightgbm`` a multiclass gradient-boosted tree model,
``lstm`` an LSTM and ``transformer`` a small causal Transformer encoder over the
last ``window`` feature rows (:mod:`.lstm`, :mod:`.transformer`; they need
torch, imported only when asked for). Every model is seeded and single-threaded,
so the same seed and data give the same predictions.

>>> X = np.random.default_rng(0).normal(size=(300, 2)).astype(np.float32)
>>> y = np.digitize(X[:, 0], [-0.4, 0.4])
>>> m = fit_native("logreg", X, y, seed=0)
>>> predict_native(m, X[:2]).shape
(2, 3)
"""
from __future__ import annotations

from typing import Any

import numpy as np

MODEL_TYPES = ("logreg", "rf", "lightgbm", "lstm", "transformer")
#: models over the last ``window`` rows (input (n, window, F))
SEQUENCE_TYPES = ("lstm", "transformer")

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "logreg": {"C": 1.0},
    "rf": {"n_estimators": 100, "max_depth": 8, "min_samples_leaf": 20, "max_features": "sqrt"},
    "lightgbm": {"n_estimators": 40, "learning_rate": 0.1, "num_leaves": 15,
                 "min_child_samples": 20, "subsample": 1.0, "colsample_bytree": 1.0,
                 "reg_lambda": 0.0},
    "lstm": {"window": 16, "hidden": 16, "epochs": 3, "lr": 3e-3, "batch_size": 64},
    "transformer": {"window": 16, "d_model": 16, "heads": 2, "layers": 1, "epochs": 3, "lr": 3e-3,
                    "batch_size": 64},
}


def resolve_params(model_type: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults for ``model_type`` overridden by ``params``; unknown names are an error."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
    out = dict(DEFAULT_PARAMS[model_type])
    unknown = set(params or {}) - set(out)
    if unknown:
        raise ValueError(f"unknown {model_type} parameter(s): {sorted(unknown)}")
    out.update(params or {})
    return out


def fit_native(model_type: str, X: np.ndarray, y: np.ndarray, seed: int,
               params: dict[str, Any] | None = None) -> Any:
    """Fit a model on float32 ``X`` ((n, F), or (n, window, F) for sequence models) and labels 0/1/2."""
    p = resolve_params(model_type, params)
    missing = sorted(set(range(3)) - set(np.unique(y).tolist()))
    if missing:
        raise ValueError(f"training labels lack class(es) {missing}: use more data or a smaller threshold")
    if model_type == "logreg":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        model = make_pipeline(StandardScaler(),
                              LogisticRegression(C=p["C"], max_iter=2000, random_state=seed))
    elif model_type == "rf":
        from sklearn.ensemble import RandomForestClassifier
        model = RandomForestClassifier(random_state=seed, n_jobs=1, **p)
    elif model_type == "lightgbm":
        import lightgbm as lgb
        model = lgb.LGBMClassifier(
            objective="multiclass", random_state=seed, n_jobs=1, deterministic=True,
            force_row_wise=True, verbose=-1, subsample_freq=1 if p["subsample"] < 1 else 0, **p)
    elif model_type == "lstm":
        from streamsig.models.lstm import LstmClassifier
        p.pop("window")
        return LstmClassifier(seed=seed, **p).fit(X, y)
    else:
        from streamsig.models.transformer import TransformerClassifier
        p.pop("window")
        return TransformerClassifier(seed=seed, **p).fit(X, y)
    return model.fit(X, y)


def predict_native(model: Any, X: np.ndarray) -> np.ndarray:
    """Class probabilities, (n, 3) float64, columns down/flat/up."""
    return np.asarray(model.predict_proba(X), dtype=np.float64)


def native_importance(model: Any, model_type: str, features: list[str]) -> dict[str, float] | None:
    """Built-in importance normalised to sum 1: |coefficient| (on standardised inputs)
    averaged over classes, impurity decrease, or LightGBM gain; None for sequence models."""
    if model_type == "logreg":
        raw = np.abs(model[-1].coef_).mean(axis=0)
    elif model_type == "rf":
        raw = model.feature_importances_
    elif model_type == "lightgbm":
        raw = model.booster_.feature_importance(importance_type="gain")
    else:
        return None
    raw = np.asarray(raw, dtype=np.float64)
    total = raw.sum()
    return {f: float(v / total if total > 0 else 0.0) for f, v in zip(features, raw)}


def permutation_importance(model: Any, X: np.ndarray, y: np.ndarray, features: list[str],
                           seed: int) -> dict[str, float]:
    """Rise in log loss when one feature is shuffled across rows (all window steps
    together for sequence inputs), clipped at 0 and normalised to sum 1."""
    rng = np.random.default_rng(seed)
    idx = np.arange(len(y))

    def loss(Xp: np.ndarray) -> float:
        return float(-np.mean(np.log(np.clip(predict_native(model, Xp)[idx, y], 1e-15, 1.0))))

    base = loss(X)
    rise = []
    for j in range(len(features)):
        Xp = X.copy()
        Xp[..., j] = X[rng.permutation(len(X))][..., j]
        rise.append(max(loss(Xp) - base, 0.0))
    total = sum(rise)
    return {f: (r / total if total > 0 else 0.0) for f, r in zip(features, rise)}
