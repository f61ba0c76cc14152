"""Hyperparameter search with Optuna on the walk-forward objective.

The objective is the mean log loss (a proper scoring rule, smoother than F1)
over the folds it is given; :func:`streamsig.models.train.train_model` passes
every fold but the last, so the last test block stays unseen until the final
evaluation. The sampler is TPE with a fixed seed and trials run one at a time,
so the same seed and data give the same search.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from streamsig.models.dataset import Dataset
from streamsig.models.estimators import fit_native, predict_native
from streamsig.models.scores import classification_metrics
from streamsig.models.walkforward import Fold


def suggest(model_type: str, trial: Any) -> dict[str, Any]:
    """One point of ``model_type``'s search space."""
    if model_type == "logreg":
        return {"C": trial.suggest_float("C", 1e-3, 10.0, log=True)}
    if model_type == "rf":
        return {"n_estimators": trial.suggest_int("n_estimators", 30, 200, step=10),
                "max_depth": trial.suggest_int("max_depth", 3, 12),
                "min_samples_leaf": trial.suggest_int("min_samples_leaf", 5, 200, log=True),
                "max_features": trial.suggest_categorical("max_features", ["sqrt", 0.5, 1.0])}
    if model_type == "lightgbm":
        return {"n_estimators": trial.suggest_int("n_estimators", 10, 200, step=10),
                "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
                "num_leaves": trial.suggest_int("num_leaves", 4, 63, log=True),
                "min_child_samples": trial.suggest_int("min_child_samples", 5, 200, log=True),
                "subsample": trial.suggest_float("subsample", 0.5, 1.0),
                "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
                "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True)}
    if model_type == "lstm":
        return {"hidden": trial.suggest_categorical("hidden", [8, 16, 32]),
                "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
                "epochs": trial.suggest_int("epochs", 1, 5)}
    if model_type == "transformer":
        return {"d_model": trial.suggest_categorical("d_model", [8, 16, 32]),
                "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
                "epochs": trial.suggest_int("epochs", 1, 5)}
    raise ValueError(f"no search space for {model_type!r}")


def tune(model_type: str, ds: Dataset, folds: list[Fold], seed: int, trials: int,
         base_params: dict[str, Any] | None = None,
         on_trial: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run ``trials`` TPE trials; returns best params (merged over ``base_params``) and a summary."""
    import optuna

    if not folds:
        raise ValueError("tuning needs folds before the final one: use n_folds >= 2")
    X = ds.inputs()

    def objective(trial: optuna.Trial) -> float:
        params = {**(base_params or {}), **suggest(model_type, trial)}
        losses = []
        for f in folds:
            model = fit_native(model_type, X[f.train], ds.y[f.train], seed, params)
            losses.append(classification_metrics(ds.y[f.test], predict_native(model, X[f.test]))["log_loss"])
        return float(np.mean(losses))

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
        callbacks = [lambda s, t: on_trial(t.number + 1, trials)] if on_trial else []
        study.optimize(objective, n_trials=trials, n_jobs=1, callbacks=callbacks)
    finally:
        optuna.logging.set_verbosity(level)
    return {"best_params": {**(base_params or {}), **study.best_params},
            "summary": {"trials": trials, "sampler": "TPE", "seed": seed,
                        "objective": "mean log loss over folds",
                        "folds": [f.index for f in folds], "best_value": study.best_value}}
