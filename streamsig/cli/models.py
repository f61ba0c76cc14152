"""CLI commands for models: ``train``, ``evaluate``, ``models list``."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from streamsig.cli.options import (Columns, Data, Instruments, Levels, Seed, Source, Symbols, TickSize,
                                   Updates, console, feature_spec, open_data, progress)
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
        updates: Updates = None, seed: Seed = None, tick_size: TickSize = None, columns: Columns = None,
        instruments: Instruments = None,
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

        feeds = open_data(source, data, levels, symbols, updates, seed, tick_size, columns, instruments)
        spec = feature_spec(levels or feeds[0].levels, spec_file)
        feats = [f.strip() for f in features.split(",")] if features else [
            f for f in DEFAULT_FEATURES if f in spec.names]
        for f in feats:
            spec.index(f)  # one-line error for an unknown name
        df = _frame(feeds, spec, "features")
        check_train_ranges(df, horizon, horizon_unit, folds)
        cfg = LabelConfig(kind=label, horizon=horizon, unit=horizon_unit, threshold=threshold)
        with progress() as prog:
            tasks: dict[str, int] = {}

            def say(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = prog.add_task(stage, total=total, rate="")
                prog.update(tasks[stage], completed=done, total=total)

            path = train_model(df, feats, cfg, model_type, seed=model_seed, out_dir=out, folds=folds,
                               trials=trials, progress=say, name=name,
                               extra={"feature_spec": spec.to_dict(), "instruments": df.attrs.get("instruments")})
        card = json.loads((path / "card.json").read_text())
        show_metrics(card)
        if mlflow:
            log_mlflow(mlflow, path, card)
        Console().print(f"model {card['model_id']} written to {path}")

    @app.command()
    def evaluate(
        model: Annotated[Path, typer.Option("--model", help="Model folder (model.onnx + card.json).")],
        source: Source = "synthetic", data: Data = None, levels: Levels = None, symbols: Symbols = None,
        updates: Updates = None, seed: Seed = None, tick_size: TickSize = None, columns: Columns = None,
        instruments: Instruments = None,
        report: Annotated[Optional[Path], typer.Option("--report", help="HTML report path.")] = None,
    ) -> None:
        """Score new data with a saved model; metrics beside the baselines, and an HTML report."""
        from streamsig.models import evaluate_model
        from streamsig.models.card import card_feature_spec, read_card

        card = read_card(model)
        spec = card_feature_spec(card)
        feeds = open_data(source, data, levels, symbols, updates, seed, tick_size, columns, instruments)
        spec = spec or feature_spec(levels or feeds[0].levels)
        for line in check_levels(card["features"], spec, min(f.levels for f in feeds), model):
            console.print(f"[yellow]warning:[/] {line}", highlight=False)
        df = _frame(feeds, spec, "features")
        check_computable(df, card["features"], model)
        res = evaluate_model(model, df, report_path=report)
        t = Table("", "macro-F1", "accuracy", "log loss", title=f"{res['model_id']} on {res['labelled_rows']:,} rows")
        rows = [("model", res["metrics"])] + list(res["baselines"].items())
        for nm, m in rows:
            t.add_row(nm, f"{m.get('macro_f1', float('nan')):.4f}", f"{m.get('accuracy', float('nan')):.4f}",
                      f"{m.get('log_loss', float('nan')):.4f}")
        Console().print(t)
        Console().print(f"report: {res['report']}")

    @models_app.command("list")
    def list_cmd(root: Annotated[Path, typer.Option("--root", help="Registry folder.")] = Path("models")) -> None:
        """Folders, types, dates, training symbols, label and headline metric of the models under --root."""
        from streamsig.models import list_models

        Console(width=80 if not Console().is_terminal else None).print(models_table(list_models(root)))

    app.add_typer(models_app, name="models")


def _short_label(cfg: dict) -> str:
    """``h50 rows`` / ``h5s`` / ``mean20 rows`` (+ ``>thr``) for a card's label config."""
    kind = "mean" if cfg.get("kind") == "smoothed" else "h"
    unit = " rows" if cfg.get("unit", "rows") == "rows" else "s"
    thr = cfg.get("threshold") or 0
    return f"{kind}{cfg.get('horizon', 0):g}{unit}" + (f" >{thr:g}" if thr else "")


def models_table(models: list[dict]) -> Table:
    """The ``models list`` table: seven columns that fit 80 terminal columns (long cells are cut with ...)."""
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name, width in (("model", 22), ("type", 8), ("created", 10), ("trained on", 14), ("label", 10),
                        ("F1", 6), ("ok", 3)):
        t.add_column(name, max_width=width, no_wrap=True, overflow="ellipsis")
    for m in models:
        if "error" in m:
            t.add_row(Path(m["path"]).name, "", "", "", m["error"], "", "no")
            continue
        f1 = m.get("macro_f1")
        t.add_row(Path(m["path"]).name, m["model_type"], str(m["created"])[:10], ",".join(m.get("symbols") or []),
                  _short_label(m.get("label_cfg") or {}), "" if f1 is None else f"{f1:.3f}",
                  "yes" if m.get("verified") else "NO")
    return t


_LEVEL_RE = re.compile(r"^(?:depth_bid|depth_ask|depth_imb|vwap_bid|vwap_ask|ofi)_(\d+)$")


def levels_needed(feature: str, spec_levels: int) -> tuple[int, bool]:
    """``(levels per side a feature reads, exact)``: ``depth_imb_5`` needs 5; ``ofi_dw`` weighs all of the
    spec's levels and is approximate (not wrong) with fewer; others need 1."""
    m = _LEVEL_RE.match(feature)
    if m:
        return int(m.group(1)), True
    if feature.startswith("ofi_dw"):
        return spec_levels, False
    return 1, True


def check_levels(features: list[str], spec, data_levels: int, model: Path) -> list[str]:  # noqa: ANN001
    """Refuse (DataError) a model feature that needs more levels than the data has; warn when the card's
    spec has more levels than the data (features over all levels then see fewer)."""
    need = {f: levels_needed(f, spec.levels) for f in features}
    missing = [f for f, (k, exact) in need.items() if exact and k > data_levels]
    if missing:
        raise DataError(model, None, f"the model needs {', '.join(missing)} ({max(need[f][0] for f in missing)} "
                        f"levels per side) but the data has {data_levels}; these cannot be computed")
    if data_levels >= spec.levels:
        return []
    approx = [f for f, (k, exact) in need.items() if not exact and k > data_levels]
    return [f"the data has {data_levels} levels per side, the card's features {spec.levels}"
            + (f"; {', '.join(approx)} will be computed from {data_levels} levels" if approx else "")]


def check_computable(df, features: list[str], model: Path) -> None:  # noqa: ANN001 - pandas edge
    """Refuse a model feature with no finite value in the table (e.g. a trade VWAP on data without trades)."""
    import numpy as np

    dead = [f for f in features if f in df.columns and not np.isfinite(df[f].to_numpy(float)).any()]
    if len(df) and dead:
        why = " (the data has no trades)" if any(f.startswith("trade_") for f in dead) else ""
        raise DataError(model, None, f"feature {', '.join(dead)} cannot be computed from this data{why}: "
                        "no finite value in any row")


MIN_FOLD_ROWS = 30  #: fewest feature rows a walk-forward test block may hold


def check_train_ranges(df, horizon: float, unit: str, folds: int) -> None:  # noqa: ANN001 - pandas edge
    """One-line errors for a ``--horizon`` not shorter than the data and ``--folds`` the rows cannot fill.

    Each of the ``folds`` test blocks (plus the first training block) must hold
    at least ``max(MIN_FOLD_ROWS, horizon rows)`` rows.
    """
    if not horizon > 0:
        raise DataError("--horizon", None, f"must be > 0, got {horizon:g}")
    if df.empty:
        raise DataError("--data", None, "no feature rows to train on")
    sizes = df.groupby("symbol", observed=True).size()
    sym, shortest = str(sizes.idxmin()), int(sizes.min())
    if unit == "rows" and horizon >= shortest:
        raise DataError("--horizon", None, f"{horizon:g} rows is not shorter than the data ({shortest:,} feature "
                        f"rows for {sym}); pass a smaller --horizon")
    if unit == "seconds":
        ts = df.groupby("symbol", observed=True)["ts_ns"].agg(["min", "max"])
        span = (ts["max"] - ts["min"]) / 1e9
        if horizon >= float(span.min()):
            raise DataError("--horizon", None, f"{horizon:g} s is not shorter than the data ({float(span.min()):.1f} s "
                            f"for {span.idxmin()}); pass a smaller --horizon")
    need = max(MIN_FOLD_ROWS, int(horizon) if unit == "rows" else 0)
    n = len(df)
    if n // (folds + 1) < need:
        most = max(0, n // need - 1)
        raise DataError("--folds", None, f"{folds} folds are too many for {n:,} feature rows: each block would hold "
                        f"{n // (folds + 1):,} rows (at most {most} folds of >= {need} rows)")


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
