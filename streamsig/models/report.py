"""Self-contained HTML reports (figures inlined as base64 PNG, no outside resources).

A training report shows the card's facts, the per-fold metrics of the model
beside the baselines', the comparison with each baseline, and, over the pooled
out-of-sample predictions, a confusion matrix and calibration curves, plus the
feature importance. An evaluation report shows the same for new data.
Figures are drawn with matplotlib's object API (no pyplot, no global backend).
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from streamsig.labels import CLASS_NAMES

_CSS = ("body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;"
        "text-align:right}th{background:#eee}td.l,th.l{text-align:left}img{margin:0.5em}")


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight", metadata={"Software": None})
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def confusion_figure(cm: list[list[int]] | np.ndarray) -> str:
    """Confusion matrix (rows true, columns predicted) as an ``<img>`` tag."""
    cm = np.asarray(cm)
    fig = Figure(figsize=(3.6, 3.2))
    ax = fig.add_subplot()
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center",
                color="white" if v > cm.max() / 2 else "black")
    ax.set_xticks(range(3), CLASS_NAMES)
    ax.set_yticks(range(3), CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion (out of sample)")
    return _png(fig)


def calibration_figure(y: np.ndarray, proba: np.ndarray, n_bins: int = 10) -> str:
    """Reliability curve per class (predicted probability vs observed frequency)."""
    fig = Figure(figsize=(4, 3.6))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    for k, name in enumerate(CLASS_NAMES):
        p = proba[:, k]
        which = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
        xs, ys = [], []
        for b in range(n_bins):
            m = which == b
            if m.sum() >= 5:
                xs.append(p[m].mean())
                ys.append((y[m] == k).mean())
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title("calibration (out of sample)")
    ax.legend()
    return _png(fig)


def importance_figure(importance: dict[str, float] | None, top: int = 20) -> str:
    """Horizontal bars of the ``top`` most important features."""
    if not importance:
        return "<p>No feature importance for this model type.</p>"
    items = sorted(importance.items(), key=lambda kv: kv[1], reverse=True)[:top][::-1]
    fig = Figure(figsize=(5, 0.25 * len(items) + 1))
    ax = fig.add_subplot()
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set_title("feature importance")
    return _png(fig)


def _f(x: Any) -> str:
    return "–" if x is None else f"{x:.4f}" if isinstance(x, float) else html.escape(str(x))


def metrics_table(model: dict[str, Any], baselines: dict[str, dict[str, Any]]) -> str:
    """Per-fold (and overall) macro-F1, accuracy, log loss and Brier of the model beside
    each baseline's macro-F1. ``model`` and each baseline are ``{"folds": [...], "overall": {...}}``."""
    names = list(baselines)
    head = ("<tr><th class=l>fold</th><th>n</th><th>macro-F1</th><th>accuracy</th><th>log loss</th>"
            "<th>Brier</th>" + "".join(f"<th>{html.escape(b)} macro-F1</th>" for b in names) + "</tr>")
    rows = []
    labelled = [(str(i), m, [baselines[b]["folds"][i] for b in names])
                for i, m in enumerate(model["folds"])]
    labelled.append(("overall", model["overall"], [baselines[b]["overall"] for b in names]))
    for label, m, bs in labelled:
        rows.append(f"<tr><td class=l>{label}</td><td>{m['n']}</td><td>{_f(m['macro_f1'])}</td>"
                    f"<td>{_f(m['accuracy'])}</td><td>{_f(m['log_loss'])}</td><td>{_f(m['brier'])}</td>"
                    + "".join(f"<td>{_f(b['macro_f1'])}</td>" for b in bs) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _facts(pairs: list[tuple[str, Any]]) -> str:
    return "<table>" + "".join(f"<tr><th class=l>{html.escape(k)}</th><td class=l>{_f(v)}</td></tr>"
                               for k, v in pairs) + "</table>"


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n")


def training_report(card: dict[str, Any], y_oos: np.ndarray, proba_oos: np.ndarray) -> str:
    """HTML for a freshly trained model."""
    vs = "".join(f"<tr><td class=l>{html.escape(b)}</td><td>{_f(c['mean_gain'])}</td>"
                 f"<td>{_f(c['t'])}</td><td class=l>{'yes' if c['beats'] else 'no'}</td></tr>"
                 for b, c in card["vs_baselines"].items())
    body = (_facts([("model id", card["model_id"]), ("type", card["model_type"]),
                    ("created", card["created"]), ("label", card["label"]["description"]),
                    ("features", len(card["features"])), ("data source", card["data"]["source"]),
                    ("data sha256", card["data"]["sha256"]), ("rows", card["data"]["rows"]),
                    ("final model", card["final_model"]["description"]),
                    ("model.onnx sha256", card["onnx"]["sha256"])])
            + "<h2>Walk-forward, out of sample</h2>" + metrics_table(card["metrics"], card["baselines"])
            + "<h2>Against baselines (paired over folds)</h2><table><tr><th class=l>baseline</th>"
            "<th>mean macro-F1 gain</th><th>t</th><th class=l>beats</th></tr>" + vs + "</table>"
            + confusion_figure(card["metrics"]["overall"]["confusion"])
            + calibration_figure(y_oos, proba_oos)
            + importance_figure(card.get("feature_importance")))
    return _page(f"Model {card['model_id']}", body)


def evaluation_report(result: dict[str, Any], y: np.ndarray, proba: np.ndarray) -> str:
    """HTML for a saved model scored on new data (``result`` from ``evaluate_model``)."""
    m = result["metrics"]
    base = "".join(f"<tr><td class=l>{html.escape(b)}</td><td>{_f(v['macro_f1'])}</td>"
                   f"<td>{_f(v['accuracy'])}</td><td>{_f(v['log_loss'])}</td></tr>"
                   for b, v in result["baselines"].items())
    body = (_facts([("model id", result["model_id"]), ("data sha256", result["data_sha256"]),
                    ("rows scored", m["n"])])
            + "<table><tr><th class=l>predictor</th><th>macro-F1</th><th>accuracy</th><th>log loss</th></tr>"
            f"<tr><td class=l>model</td><td>{_f(m['macro_f1'])}</td><td>{_f(m['accuracy'])}</td>"
            f"<td>{_f(m['log_loss'])}</td></tr>{base}</table>"
            + confusion_figure(m["confusion"]) + calibration_figure(y, proba))
    return _page(f"Evaluation of {result['model_id']}", body)


def write_html(path: Path | str, text: str) -> Path:
    """Write ``text`` to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
