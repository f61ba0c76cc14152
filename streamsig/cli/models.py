"""CLI commands for models: ``train``, ``evaluate``, ``models list``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from streamsig.cli.options import Data, Levels, Seed, Source, Symbols, Updates, feature_spec, open_data, progress
from streamsig.errors import DataError

from streamsig.features import DEFAULT_FEATURES

models_app = typer.Typer(help="Inspect trained models.", no_args_is_help=True)


def _frame(feeds, spec, label: str):  # noqa: ANN001, ANN202
    from streamsig.features.table import feature_frame

    with progress() as prog:
        task = prog.add_task(label, total=None, rate="")
        df = feature_frame(feeds, spec, lambda n: prog.update(task, advance=n, rate=""))
    df.attrs["source"] = ", ".join(f.label for f in feeds)
    return df


def register(app: typer.Typer) -> None:
    """Add ``train``, ``evaluate`` and ``models`` to ``app``."""

    @app.command()
    def train(
        source: Source = "synthetic", data: Data = None, levels: Levels = None, symbols: Symbols = None,
        updates: Updates = None, seed: Seed = None,
        model_type: Annotated[str, typer.Option("--model-type", "--model", help="logreg | rf | lightgbm | lstm | transformer")] = "lightgbm",
        horizon: Annotated[float, typer.Option("--horizon", help="Label horizon (rows, or seconds with --horizon-unit seconds).")] = 50,
        horizon_unit: Annotated[str, typer.Option("--horizon-unit", help="rows | seconds")] = "rows",
        threshold: Annotated[float, typer.Option("--threshold", help="Relative mid change that counts as up/down.")] = 0.0,
        label: Annotated[str, typer.Option("--label", help="horizon (mid at t+h) | smoothed (mean of next h mids).")] = "horizon",
        features: Annotated[Optional[str], typer.Option("--features", help="Comma-separated feature names (default: a scale-free set).")] = None,
        folds: Annotated[int, typer.Option("--folds", min=2, help="Walk-forward folds (expanding, purged).")] = 5,
        trials: Annotated[int, typer.Option("--trials", min=0, help="Optuna trials on the walk-forward objective.")] = 0,
        model_seed: Annotated[int, typer.Option("--model-seed", help="Seed of the model and the search.")] = 0,
        out: Annotated[Path, typer.Option("--out", help="Registry folder.")] = Path("models"),
        name: Annotated[Optional[str], typer.Option("--name", help="Folder name (default: the model id).")] = None,
        spec_file: Annotated[Optional[Path], typer.Option("--spec", help="TOML of FeatureSpec fields.")] = None,
        mlflow: Annotated[Optional[str], typer.Option("--mlflow", help="MLflow tracking URI (needs the mlflow extra).")] = None,
    ) -> None:
        """Train a model with walk-forward evaluation; write model.onnx, card.json and report.html."""
        from streamsig.labels import LabelConfig
        from streamsig.models import train_model

        feeds = open_data(source, data, levels, symbols, updates, seed)
        spec = feature_spec(levels or feeds[0].levels, spec_file)
        feats = [f.strip() for f in features.split(",")] if features else [
            f for f in DEFAULT_FEATURES if f in spec.names]
        for f in feats:
            spec.index(f)  # one-line error for an unknown name
        df = _frame(feeds, spec, "features")
        cfg = LabelConfig(kind=label, horizon=horizon, unit=horizon_unit, threshold=threshold)
        with progress() as prog:
            tasks: dict[str, int] = {}

            def say(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = prog.add_task(stage, total=total, rate="")
                prog.update(tasks[stage], completed=done, total=total)

            path = train_model(df, feats, cfg, model_type, seed=model_seed, out_dir=out, folds=folds,
                               trials=trials, progress=say, name=name,
                               extra={"feature_spec": spec.to_dict()})
        card = json.loads((path / "card.json").read_text())
        show_metrics(card)
        if mlflow:
            log_mlflow(mlflow, path, card)
        Console().print(f"model {card['model_id']} written to {path}")

    @app.command()
    def evaluate(
        model: Annotated[Path, typer.Option("--model", help="Model folder (model.onnx + card.json).")],
        source: Source = "synthetic", data: Data = None, levels: Levels = None, symbols: Symbols = None,
        updates: Updates = None, seed: Seed = None,
        report: Annotated[Optional[Path], typer.Option("--report", help="HTML report path.")] = None,
    ) -> None:
        """Score new data with a saved model; metrics beside the baselines, and an HTML report."""
        from streamsig.models import evaluate_model
        from streamsig.models.card import card_feature_spec, read_card

        spec = card_feature_spec(read_card(model))
        feeds = open_data(source, data, levels, symbols, updates, seed)
        spec = spec or feature_spec(levels or feeds[0].levels)
        res = evaluate_model(model, _frame(feeds, spec, "features"), report_path=report)
        t = Table("", "macro-F1", "accuracy", "log loss", title=f"{res['model_id']} on {res['labelled_rows']:,} rows")
        rows = [("model", res["metrics"])] + list(res["baselines"].items())
        for nm, m in rows:
            t.add_row(nm, f"{m.get('macro_f1', float('nan')):.4f}", f"{m.get('accuracy', float('nan')):.4f}",
                      f"{m.get('log_loss', float('nan')):.4f}")
        Console().print(t)
        Console().print(f"report: {res['report']}")

    @models_app.command("list")
    def list_cmd(root: Annotated[Path, typer.Option("--root", help="Registry folder.")] = Path("models")) -> None:
        """Ids, dates, data, label and headline metrics of the models under --root."""
        from streamsig.models import list_models

        t = Table("model", "type", "created", "data", "label", "macro-F1", "verified")
        for m in list_models(root):
            if "error" in m:
                t.add_row(m["path"], "", "", "", m["error"], "", "no")
                continue
            f1 = m.get("macro_f1")
            t.add_row(Path(m["path"]).name + ("" if Path(m["path"]).name == m["model_id"] else f" ({m['model_id']})"),
                      m["model_type"], m["created"], str(m.get("data_sha256") or "")[:12], str(m.get("label", "")),
                      "" if f1 is None else f"{f1:.4f}", "yes" if m.get("verified") else "NO")
        Console().print(t)

    app.add_typer(models_app, name="models")


def show_metrics(card: dict) -> None:
    """Walk-forward macro-F1 / AUC-PR of the model and its baselines."""
    t = Table("", "macro-F1", "AUC-PR up", "AUC-PR down", title=f"walk-forward, {card['label']['description']}")
    rows = [("model", card["metrics"]["overall"])] + [(k, v["overall"]) for k, v in card["baselines"].items()]
    for nm, m in rows:
        ap = m.get("auc_pr") or {}
        t.add_row(nm, _f(m.get("macro_f1")), _f(ap.get("up")), _f(ap.get("down")))
    Console().print(t)


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def log_mlflow(uri: str, path: Path, card: dict) -> None:
    """Log params, overall metrics, the card and the ONNX file to MLflow."""
    try:
        import mlflow
    except ImportError:
        raise DataError("--mlflow", None, "needs the mlflow extra: pip install -e '.[mlflow]'") from None
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_name=card["model_id"]):
        mlflow.log_params({k: v for k, v in card.get("params", {}).items() if isinstance(v, (int, float, str))})
        mlflow.log_metrics({k: v for k, v in card["metrics"]["overall"].items() if isinstance(v, float)})
        mlflow.log_artifact(str(path / "card.json"))
        mlflow.log_artifact(str(path / "model.onnx"))
