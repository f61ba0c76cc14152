"""The backtest report: one self-contained HTML file (charts inlined as base64 PNG).

Sections: the strategy table (model and baselines, after costs), equity and
drawdown, position, P&L by hour, signal calibration, feature importance (when
the model card has it), per-symbol results and the assumptions. A tiny inline
script records on ``<body data-images-loaded>`` how many charts decoded, so a
headless browser can check the page rendered.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import numpy as np

from streamsig.backtest import charts
from streamsig.backtest.assumptions import assumptions
from streamsig.backtest.result import BacktestResult

#: (summary key, column title, format)
COLUMNS = [("pnl", "P&L", "{:,.2f}"), ("total_return", "return", "{:.4%}"), ("sharpe", "Sharpe", "{:.2f}"),
           ("sortino", "Sortino", "{:.2f}"), ("calmar", "Calmar", "{:.2f}"),
           ("max_drawdown", "max DD", "{:.3%}"), ("max_drawdown_seconds", "DD length (s)", "{:,.0f}"),
           ("var_95", "VaR 95", "{:.4%}"), ("cvar_95", "CVaR 95", "{:.4%}"), ("n_trades", "round trips", "{:,.0f}"),
           ("hit_rate", "hit rate", "{:.1%}"), ("profit_factor", "profit factor", "{:.2f}"),
           ("turnover", "turnover", "{:,.1f}"), ("avg_holding_seconds", "avg hold (s)", "{:,.2f}"),
           ("fees", "fees", "{:,.2f}"), ("costs", "costs paid", "{:,.2f}")]
EDGES = np.linspace(-1.0, 1.0, 11)

_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:12px;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 5px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}tr.primary{font-weight:bold}
img{max-width:100%;display:block;margin:0.5em 0}li{margin:0.3em 0}.note{color:#666;font-size:13px}"""
_SCRIPT = ("<script>window.addEventListener('load',function(){var n=0;for(var i of document.images)"
           "{if(i.complete&&i.naturalWidth>0)n++;}document.body.dataset.imagesLoaded=n;});</script>")


def _fmt(v: Any, f: str) -> str:
    return "–" if v is None else f.format(v)


def strategy_table(res: BacktestResult) -> str:
    """The metrics of every strategy as an HTML table (primary first)."""
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t, _ in COLUMNS)
    body = []
    for s, m in res.summaries().items():
        cls = ' class="primary"' if s == res.primary else ""
        cells = "".join(f"<td>{_fmt(m.get(k), f)}</td>" for k, _, f in COLUMNS)
        body.append(f"<tr{cls}><td>{html.escape(s)}</td>{cells}</tr>")
    return f"<table><tr><th>strategy</th>{head}</tr>{''.join(body)}</table>"


def calibration_data(res: BacktestResult, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bucket of p_up - p_down (``EDGES``): mean forward mid return over ``horizon`` rows (bps) and count.

    Only rows the primary strategy traded on (after the start, two-sided book) with finite probabilities.
    """
    s_all, r_all = [], []
    for sym in res.symbols:
        rec, sig = res.lanes.get((res.primary or "", sym)), res.signals.get(sym)
        if rec is None or sig is None or len(rec.seq) <= horizon:
            continue
        at = np.searchsorted(sig["seq"], rec.seq)
        s = sig["p_up"][at] - sig["p_down"][at]
        fwd = np.full(len(rec.mid), np.nan)
        fwd[:-horizon] = (rec.mid[horizon:] / rec.mid[:-horizon] - 1.0) * 1e4
        ok = np.isfinite(s) & np.isfinite(fwd)
        s_all.append(s[ok])
        r_all.append(fwd[ok])
    s = np.concatenate(s_all) if s_all else np.zeros(0)
    r = np.concatenate(r_all) if r_all else np.zeros(0)
    b = np.clip(np.searchsorted(EDGES, s, side="right") - 1, 0, len(EDGES) - 2)
    counts = np.bincount(b, minlength=len(EDGES) - 1)
    sums = np.bincount(b, weights=r, minlength=len(EDGES) - 1)
    return EDGES, np.divide(sums, counts, out=np.zeros(len(counts)), where=counts > 0), counts


def _horizon(res: BacktestResult) -> int:
    lab = (res.model or {}).get("label") or {}
    if lab.get("unit", "rows") == "rows" and lab.get("horizon"):
        return max(1, int(lab["horizon"]))
    return 10


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def render(res: BacktestResult) -> str:
    """The report as an HTML string."""
    parts = ["<h2>Strategies (after costs)</h2>", strategy_table(res),
             "<h2>Equity and drawdown</h2>", _img(charts.equity(res), "equity and drawdown")]
    primary = res.primary or (res.strategies[0] if res.strategies else None)
    if primary:
        parts += ["<h2>Position</h2>", _img(charts.position(res, primary), "position")]
    parts += ["<h2>P&amp;L by hour</h2>", _img(charts.pnl_by_hour(res), "P&L by hour")]
    sig_ok = any(np.isfinite(a["p_up"]).any() for a in res.signals.values())
    if res.primary and sig_ok:
        h = _horizon(res)
        edges, mean, counts = calibration_data(res, h)
        parts += ["<h2>Signal calibration</h2>", _img(charts.calibration(edges, mean, counts, f"{h} rows"),
                                                      "calibration")]
    imp = (res.model or {}).get("importance")
    if imp:
        names, vals = list(imp), [float(v) for v in imp.values()]
        parts += ["<h2>Feature importance</h2>", _img(charts.importance(names, vals), "feature importance")]
    parts += ["<h2>Per symbol</h2>", _symbol_table(res),
              "<h2>Assumptions</h2><ul>" + "".join(f"<li>{html.escape(a)}</li>" for a in assumptions(res.config))
              + "</ul>"]
    title = f"Backtest: {res.primary or 'baselines'}"
    model = res.model or {}
    sub = (f"model {html.escape(str(model.get('id')))} ({html.escape(str(model.get('type')))})"
           if model else "no model") + " · data: " + html.escape(", ".join(
               f"{k} ({v['label']}, {v['events']:,} events)" for k, v in res.feeds.items()))
    banner = "".join(f"<p class='banner' role='alert'>{html.escape(w)}</p>"
                     for w in res.config.get("warnings") or [])
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}.banner{{background:#fde2e1;border:1px solid #c0392b;padding:.5em;font-weight:bold}}"
            f"</style></head><body data-images-loaded='0'><h1>{html.escape(title)}</h1>"
            f"{banner}<p class='note'>{sub}</p>{''.join(parts)}{_SCRIPT}</body></html>")


def _symbol_table(res: BacktestResult) -> str:
    rows = []
    for (s, sym), r in res.lanes.items():
        pnl = float(r.equity[-1] - r.capital) if len(r.equity) else 0.0
        rows.append(f"<tr><td>{html.escape(s)}</td><td>{html.escape(sym)}</td><td>{pnl:,.2f}</td>"
                    f"<td>{len(r.fills):,}</td><td>{len(r.trips):,}</td><td>{r.fees:,.2f}</td>"
                    f"<td>{'yes' if r.killed else 'no'}</td></tr>")
    return ("<table><tr><th>strategy</th><th>symbol</th><th>P&amp;L</th><th>fills</th><th>round trips</th>"
            f"<th>fees</th><th>killed</th></tr>{''.join(rows)}</table>")


def write_report(res: BacktestResult, path: str | Path) -> Path:
    """Write :func:`render` to ``path``."""
    p = Path(path)
    p.write_text(render(res), encoding="utf-8")
    return p
