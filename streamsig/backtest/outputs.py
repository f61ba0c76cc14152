"""A backtest's folder: ``summary.json``, Parquet tables and ``report.html``.

``summary.json`` is byte-identical for the same inputs: keys sorted, floats
rounded to 10 significant digits, NaN and infinities as null, and nothing that
varies between runs (no wall-clock times, no absolute paths; data files appear
by name). The default run id is a hash of that summary's configuration, so
the same inputs land in the same folder.

Files: ``summary.json``; ``trades.parquet`` (closed round trips per strategy
and symbol); ``fills.parquet`` (every execution); ``equity.parquet`` (per
strategy, one row per feature row: symbol, time, mid, position, the symbol's
equity and the account's); ``signals.parquet`` (the primary strategy's
probabilities and targets, one row per feature row); ``report.html``.

>>> rounded({"b": 1 / 3, "a": [float("nan"), 2]})
{'b': 0.3333333333, 'a': [None, 2]}
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from streamsig.backtest.result import BacktestResult

SUMMARY_VERSION = 1


def rounded(obj: Any, digits: int = 10) -> Any:
    """JSON-safe copy: floats to ``digits`` significant digits, non-finite to None, numpy to Python."""
    if isinstance(obj, dict):
        return {str(k): rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [rounded(v, digits) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}") if math.isfinite(obj) else None
    return obj


def summary_dict(res: BacktestResult) -> dict[str, Any]:
    """The content of ``summary.json`` (before rounding)."""
    per_symbol = {s: {k[1]: {"pnl": float(r.equity[-1] - r.capital) if len(r.equity) else 0.0,
                             "fills": int(len(r.fills)), "round_trips": int(len(r.trips)),
                             "end_position": float(r.position[-1]) if len(r.position) else 0.0,
                             "killed": r.killed}
                      for k, r in res.lanes.items() if k[0] == s} for s in res.strategies}
    return {"version": SUMMARY_VERSION, "config": res.config, "model": res.model, "primary": res.primary,
            "strategies": res.strategies, "feeds": res.feeds, "metrics": res.summaries(),
            "per_symbol": per_symbol}


def summary_json(res: BacktestResult) -> str:
    """``summary.json`` text: sorted keys, rounded floats, a final newline."""
    return json.dumps(rounded(summary_dict(res)), sort_keys=True, indent=1, allow_nan=False) + "\n"


def run_id(res: BacktestResult) -> str:
    """``<primary>-<10 hex>``: a hash of the configuration, data names and model."""
    key = rounded({"config": res.config, "model": res.model, "feeds": {k: v["label"] for k, v in res.feeds.items()},
                   "strategies": res.strategies})
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    return f"{res.primary or 'baselines'}-{h}"


def write_outputs(res: BacktestResult, out: str | Path, run: str | None = None, report: bool = True,
                  extra: dict[str, Any] | None = None) -> Path:
    """Write the run folder ``out/<run>`` (default run id: :func:`run_id`) and return it.

    ``extra`` (e.g. walk-forward folds) is added to the summary and the report.
    """
    folder = Path(out) / (run or run_id(res))
    folder.mkdir(parents=True, exist_ok=True)
    if extra:
        res.config = {**res.config, **extra}
    (folder / "summary.json").write_text(summary_json(res))
    res.trades_frame().to_parquet(folder / "trades.parquet", index=False)
    res.fills_frame().to_parquet(folder / "fills.parquet", index=False)
    res.equity_frame().to_parquet(folder / "equity.parquet", index=False)
    res.signals_frame().to_parquet(folder / "signals.parquet", index=False)
    if report:
        from streamsig.backtest.report import write_report

        write_report(res, folder / "report.html")
    return folder
