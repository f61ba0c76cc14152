"""Walk-forward, out-of-sample, after-cost results of every model under both policies, and
macro-F1 on the smoothed label, on the real samples in ``../shared/data``.

    python bench/results_table.py [--quick] [--datasets amzn_l5,aapl_l1,btc_l2,eth_l2]
        [--models logreg,lightgbm,lstm,transformer] [--doc docs/backtest.md] [--jobs N]

**Trading.** Per data set, the feature rows (all symbols, time order) are cut
into ``folds`` blocks of equal row count (:func:`streamsig.backtest.walkforward.fold_bounds`).
For each model type a model is trained on block k alone with
:func:`streamsig.models.train_model` (label: mid ``HORIZON`` rows ahead,
threshold 0; its own evaluation on 2 inner folds; shipped model refit on the
whole block, ``final="all"``, so the card's class moves come from the whole
block) and it trades block k+1
(:class:`~streamsig.trading.strategies.ScheduledModelStrategy`). Every model
trades under the threshold policy (enter 0.2, exit 0) and under the edge policy
(:mod:`streamsig.trading.edge`, margin 0, the run's fee), beside the flat, buy
and hold, SMA 50/200 and OFI baselines, all in ONE replay with the same market
orders, 1 book update of latency and the same fee, over blocks 1..K-1.

**Classification.** On the last ``CLS_ROWS`` feature rows of each data set, each
model type is trained with ``train_model`` on the smoothed label (mean of the
next k mids against the current mid, threshold 0, k in ``KS`` rows = events)
with 3 expanding purged walk-forward folds; the pooled out-of-sample macro-F1
is reported beside the card's majority, persistence and OFI baselines.
Sequence models train 1 epoch there (3 in the trading runs).

``--quick`` runs the ETHUSDT sample only, k = 5, sequence models 1 epoch (under a minute).
The full run rewrites the part of ``--doc`` between the ``results-table``
markers. The last line printed is one JSON object with every number.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from models_table import restamp  # noqa: E402

from streamsig.backtest.runner import run_backtest  # noqa: E402
from streamsig.backtest.walkforward import default_features, fold_bounds  # noqa: E402
from streamsig.book.sources import open_feeds  # noqa: E402
from streamsig.features import FeatureSpec  # noqa: E402
from streamsig.features.table import feature_frame  # noqa: E402
from streamsig.labels import LabelConfig  # noqa: E402
from streamsig.models import load_scorer, train_model  # noqa: E402
from streamsig.models.baselines import BASELINES  # noqa: E402
from streamsig.models.estimators import SEQUENCE_TYPES  # noqa: E402
from streamsig.trading import ExecConfig, PolicyConfig  # noqa: E402
from streamsig.trading.rules import default_baselines  # noqa: E402
from streamsig.trading.strategies import ScheduledModelStrategy  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
LOB = DATA / "lobster"
TARDIS = DATA / "crypto" / "tardis_format"

#: name -> (source, path, walk-forward folds, taker fee bps, size, description)
DATASETS: dict[str, tuple[str, Path, int, float, float, str]] = {
    "amzn_l5": ("lobster", LOB / "AMZN_2012-06-21_34200000_57600000_message_5.csv.gz", 4, 0.1, 1.0,
                "LOBSTER AMZN 2012-06-21, 5 levels, full day"),
    "aapl_l1": ("lobster", LOB / "AAPL_2012-06-21_34200000_57600000_message_1.csv.gz", 4, 0.1, 1.0,
                "LOBSTER AAPL 2012-06-21, 1 level, full day"),
    "btc_l2": ("crypto", TARDIS / "binance-futures_incremental_book_L2_2024-07-18_BTCUSDT.csv.gz", 2, 2.0, 0.01,
               "Binance BTCUSDT perp, incremental L2 + trades, ~8 min"),
    "eth_l2": ("crypto", TARDIS / "binance-futures_incremental_book_L2_2024-07-18_ETHUSDT.csv.gz", 2, 2.0, 0.1,
               "Binance ETHUSDT perp, incremental L2 + trades, ~8 min"),
}
MODELS = ("logreg", "lightgbm", "lstm", "transformer")
POLICIES = ("threshold", "edge")
BASELINE_NAMES = ("flat", "buy_and_hold", "sma", "ofi")
HORIZON = 50
KS = (1, 2, 3, 5, 10)
CLS_ROWS = 20_000
SEED = 0
MARKERS = ("<!-- results-table:start (bench/results_table.py writes this part) -->",
           "<!-- results-table:end -->")


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load(name: str) -> tuple[list[Any], FeatureSpec, Any]:
    """(feeds, spec, time-ordered feature table)."""
    source, path = DATASETS[name][:2]
    feeds = open_feeds(source, path)
    spec = FeatureSpec(levels=min(10, feeds[0].levels))
    df = feature_frame(feeds, spec)
    restamp(df)
    df = df.iloc[np.argsort(df["ts_ns"].to_numpy(), kind="stable")].reset_index(drop=True)
    df.attrs["source"] = ", ".join(f.label for f in feeds)
    return feeds, spec, df


def trading(name: str, models: list[str], seq_epochs: int, out: Path) -> dict[str, Any]:
    """One data set's walk-forward replay: every model x policy beside the baselines."""
    t0 = time.perf_counter()
    source, path, folds, fee, size, desc = DATASETS[name]
    feeds, spec, df = load(name)
    feats = default_features(spec)
    ts = df["ts_ns"].to_numpy()
    starts = fold_bounds(ts, folds)
    edges = [int(ts[0]), *starts.tolist()]
    strategies, train_s = [], {}
    for mt in models:
        t1 = time.perf_counter()
        scorers = []
        for k in range(folds - 1):
            part = df[(ts >= edges[k]) & (ts < edges[k + 1])].reset_index(drop=True)
            part.attrs["source"] = f"{name} block {k}"
            params = {"epochs": seq_epochs} if mt in SEQUENCE_TYPES else None
            md = train_model(part, feats, {"horizon": HORIZON}, mt, seed=SEED, out_dir=out / name, folds=2,
                             final="all", params=params)
            scorers.append(load_scorer(md))
        train_s[mt] = round(time.perf_counter() - t1, 1)
        say(f"{name}: trained {mt} x {folds - 1} in {train_s[mt]} s")
        for pol in POLICIES:
            cfg = PolicyConfig(kind=pol, enter=0.2, exit=0.0, max_position=size, fee_bps=fee)
            strategies.append(ScheduledModelStrategy(starts.tolist(), scorers, cfg, name=f"{mt}/{pol}"))
    t1 = time.perf_counter()
    res = run_backtest(feeds, spec, baselines=[*strategies, *default_baselines(size)],
                       exec_cfg=ExecConfig(fee_bps=fee, signal_latency_events=1, max_position=size),
                       policy_cfg=PolicyConfig(max_position=size), start_ns=int(starts[0]))
    replay_s = round(time.perf_counter() - t1, 1)
    rows = {}
    for s, m in res.summaries().items():
        rows[s] = {"pnl": m["pnl"], "gross": (m["pnl"] or 0.0) + (m["costs"] or 0.0), "trades": m["n_trades"],
                   "fees": m["fees"], "spread_cost": m["spread_cost"], "hit_rate": m["hit_rate"]}
    say(f"{name}: replay of {len(res.strategies)} strategies in {replay_s} s")
    return {"dataset": name, "description": desc, "rows": len(df), "folds": folds, "fee_bps": fee,
            "size": size, "features": feats, "traded_rows": int((ts >= starts[0]).sum()),
            "strategies": rows, "train_seconds": train_s, "replay_seconds": replay_s,
            "seconds": round(time.perf_counter() - t0, 1)}


def classification(name: str, models: list[str], ks: list[int], cls_rows: int, out: Path) -> dict[str, Any]:
    """Macro-F1 of every model and the card baselines on the smoothed label, k in ``ks``."""
    t0 = time.perf_counter()
    _, spec, df = load(name)
    feats = default_features(spec)
    df = df.iloc[-cls_rows:].reset_index(drop=True)
    res: dict[str, Any] = {"dataset": name, "rows": len(df), "f1": {}, "baselines": {}, "flat_share": {}}
    for k in ks:
        cfg = LabelConfig(kind="smoothed", horizon=k, threshold=0.0)
        for mt in models:
            params = {"epochs": 1} if mt in SEQUENCE_TYPES else None
            md = train_model(df, feats, cfg, mt, seed=SEED, out_dir=out / f"cls-{name}", folds=3, params=params)
            card = json.loads((md / "card.json").read_text())
            res["f1"].setdefault(mt, {})[k] = card["metrics"]["overall"]["macro_f1"]
            if mt not in SEQUENCE_TYPES or k not in res["baselines"]:
                res["baselines"][k] = {b: card["baselines"][b]["overall"]["macro_f1"] for b in BASELINES}
                cc = card["metrics"]["overall"]["class_counts"]
                res["flat_share"][k] = cc["flat"] / max(1, sum(cc.values()))
        say(f"{name}: smoothed k={k}: " + ", ".join(f"{m} {res['f1'][m][k]:.3f}" for m in models))
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


def _n(x: float | None, d: int = 2) -> str:
    return "–" if x is None else f"{x:,.{d}f}"


def trading_markdown(runs: list[dict[str, Any]]) -> str:
    out = ["| data | strategy | net P&L | gross P&L | round trips | fees paid | hit rate |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for r in runs:
        first = True
        for s, m in r["strategies"].items():
            label = (f"**{r['dataset']}** ({r['folds']} blocks, {r['fee_bps']:g} bps, size {r['size']:g})"
                     if first else "")
            first = False
            out.append(f"| {label} | {s} | {_n(m['pnl'])} | {_n(m['gross'])} | {int(m['trades']):,} | "
                       f"{_n(m['fees'])} | {_n(m['hit_rate'], 3) if m['trades'] else '–'} |")
    return "\n".join(out)


def verdict_markdown(runs: list[dict[str, Any]], models: list[str]) -> str:
    """Per data set and model: does edge beat threshold, and every baseline, net of costs?"""
    out = ["| data | model | edge net | threshold net | edge > threshold | best baseline (net) | edge > every baseline |",
           "|---|---|---:|---:|---|---|---|"]
    for r in runs:
        st = r["strategies"]
        best = max(BASELINE_NAMES, key=lambda b: st[b]["pnl"])
        for mt in models:
            e, t = st[f"{mt}/edge"]["pnl"], st[f"{mt}/threshold"]["pnl"]
            out.append(f"| {r['dataset']} | {mt} | {_n(e)} | {_n(t)} | {'yes' if e > t else 'no'} | "
                       f"{best} ({_n(st[best]['pnl'])}) | {'yes' if e > st[best]['pnl'] else 'no'} |")
    return "\n".join(out)


def classification_markdown(runs: list[dict[str, Any]], models: list[str], ks: list[int]) -> str:
    head = "| data | predictor |" + "".join(f" k={k} |" for k in ks)
    out = [head, "|---|---|" + "---:|" * len(ks)]
    for r in runs:
        label = f"**{r['dataset']}** (last {r['rows']:,} rows)"
        for i, mt in enumerate(models):
            out.append(f"| {label if i == 0 else ''} | {mt} |" + "".join(
                f" {r['f1'][mt][k]:.3f} |" for k in ks))
        for b in BASELINES:
            out.append(f"| | {b} (baseline) |" + "".join(f" {r['baselines'][k][b]:.3f} |" for k in ks))
        out.append("| | flat share of test rows |" + "".join(f" {r['flat_share'][k]:.1%} |" for k in ks))
    return "\n".join(out)


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def write_doc(doc: Path, text: str) -> None:
    """Replace the part of ``doc`` between :data:`MARKERS` (append it if absent)."""
    body = doc.read_text() if doc.exists() else ""
    block = f"{MARKERS[0]}\n{text}\n{MARKERS[1]}"
    if MARKERS[0] in body and MARKERS[1] in body:
        a, b = body.index(MARKERS[0]), body.index(MARKERS[1]) + len(MARKERS[1])
        body = body[:a] + block + body[b:]
    else:
        body = body.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(body)


def _job(kind: str, *args: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="streamsig-results-") as tmp:
        return (trading if kind == "trade" else classification)(*args, Path(tmp))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="ETHUSDT only, k = 5, sequence models 1 epoch")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--ks", default=",".join(map(str, KS)))
    ap.add_argument("--cls-rows", type=int, default=CLS_ROWS, help="rows of the classification runs")
    ap.add_argument("--seq-epochs", type=int, default=3, help="epochs of the sequence models in the trading runs")
    ap.add_argument("--doc", type=Path, default=None, help="markdown file to update (full run: docs/backtest.md)")
    ap.add_argument("--jobs", type=int, default=1, help="data sets in parallel (each single-threaded)")
    args = ap.parse_args()
    if args.quick:
        args.datasets, args.ks, args.seq_epochs, args.cls_rows = "eth_l2", "5", 1, 8000
    elif args.doc is None:
        args.doc = ROOT / "docs" / "backtest.md"
    names = [d for d in args.datasets.split(",") if d]
    models = [m for m in args.models.split(",") if m]
    ks = [int(k) for k in args.ks.split(",") if k]
    t0 = time.perf_counter()
    jobs = [("trade", d, models, args.seq_epochs) for d in names] + \
           [("cls", d, models, ks, args.cls_rows) for d in names]
    if args.jobs > 1:
        import multiprocessing as mp
        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("fork")) as pool:
            results = list(pool.map(_job, *zip(*[(j[0], *j[1:]) for j in jobs])))
    else:
        results = [_job(*j) for j in jobs]
    trade = [r for r in results if "strategies" in r]
    cls = [r for r in results if "f1" in r]
    seconds = round(time.perf_counter() - t0, 1)
    cmd = " ".join(["python", "bench/results_table.py", *sys.argv[1:]])
    text = "\n\n".join([
        f"Command: `{cmd}` ({seconds:.0f} s on {os.cpu_count()} shared cores, commit "
        f"{(git_commit() or '?')[:10]}).",
        "**Trading, walk-forward, out of sample, after costs** (quote currency; gross = net + fees + "
        "spread paid against the mid; round trips flat to flat; hit rate = share of round trips with "
        "positive net P&L):", trading_markdown(trade),
        "**Edge policy against the threshold policy and the best baseline, net of costs:**",
        verdict_markdown(trade, models),
        "**Classification, smoothed label** (mean of the next k mids vs the current mid, threshold 0, "
        "k in events; 3 expanding purged folds, pooled out-of-sample macro-F1):",
        classification_markdown(cls, models, ks)])
    print(text)
    if args.doc is not None:
        write_doc(args.doc, text)
        say(f"wrote {args.doc}")
    print(json.dumps({"bench": "results_table", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      "git_commit": git_commit(), "command": cmd, "horizon": HORIZON, "seed": SEED,
                      "trading": trade, "classification": cls, "seconds": seconds,
                      "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "jobs": args.jobs}},
                     default=str))


if __name__ == "__main__":
    main()
