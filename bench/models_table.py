"""Walk-forward out-of-sample metrics of every model type and baseline, per data set and horizon.

    python bench/models_table.py [--quick] [--models logreg,rf,lightgbm,lstm,transformer]
        [--horizons 10,50,100] [--datasets synthetic,amzn_l5,...] [--updates 50000]
        [--lstm-epochs N] [--lstm-max-rows N] [--jobs N]

For each data set the feature table is computed once (``FeatureSpec(levels=min(10,
file levels))``, the ``train`` CLI's default feature list restricted to the
features that spec has). Then every model type is trained at every horizon with
:func:`streamsig.models.train_model` exactly as ``streamsig train`` does it:
label ``horizon`` in rows, threshold 0 (any mid change counts), 5 expanding
purged walk-forward folds, model seed 0, default parameters. The three
baselines (majority, persistence, ofi_rule) come from the same call, fit and
scored on the same folds. Each run writes into a temporary folder that is
removed afterwards.

Reported per predictor (pooled over the 5 test blocks, i.e. out of sample):
macro-F1 over down/flat/up and AUC-PR (average precision) of the up and down
classes. A model's macro-F1 is marked ``*`` when it beats all three baselines
in the card's paired fold comparison (mean per-fold gain > 0 and t >= 2).

A progress line per run goes to stderr; stdout gets markdown tables and, on
its last line, one JSON object with every number. ``--quick`` (synthetic,
lightgbm, horizon 50) runs in well under a minute.

Data sets (paths relative to the repository's parent folder, ``../shared/data``):

- ``synthetic``: the default scenario (producers/synthetic.toml, 3 symbols),
  ``--updates`` updates per symbol;
- ``amzn_l5``: LOBSTER AMZN 2012-06-21, 5 levels, full day;
- ``aapl_l1``: LOBSTER AAPL 2012-06-21, 1 level, full day;
- ``btc_snap10`` / ``eth_snap10``: Binance USD-M futures, Tardis ``book_snapshot_10``
  (trades beside it merged), ~8 minutes;
- ``btc_l2`` / ``eth_l2``: the same capture as Tardis ``incremental_book_L2``.

Where a symbol's feature rows go back in time (one row of ``eth_l2``: the first
diff after the REST snapshot is stamped 5 ms before it), the row's timestamp is
raised to the previous row's so that training accepts the table; the tables
say so. Per data set the tables also give a few facts about how the mid moves
(see :func:`mid_dynamics`), which is what the persistence baseline bets on.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamsig.book.sources import open_feeds  # noqa: E402
from streamsig.features import FeatureSpec  # noqa: E402
from streamsig.features.table import feature_frame  # noqa: E402
from streamsig.labels import LabelConfig  # noqa: E402
from streamsig.models import train_model  # noqa: E402
from streamsig.models.baselines import BASELINES  # noqa: E402
from streamsig.cli.models import DEFAULT_FEATURES  # noqa: E402
from streamsig.models.estimators import DEFAULT_PARAMS, MODEL_TYPES, SEQUENCE_TYPES  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
LOB = DATA / "lobster"
TARDIS = DATA / "crypto" / "tardis_format"

#: name -> (source, path or None, description)
DATASETS: dict[str, tuple[str, Path | None, str]] = {
    "synthetic": ("synthetic", None, "synthetic default scenario (3 symbols, planted OFI signal)"),
    "amzn_l5": ("lobster", LOB / "AMZN_2012-06-21_34200000_57600000_message_5.csv.gz",
                "LOBSTER AMZN 2012-06-21, 5 levels, 09:30-16:00"),
    "aapl_l1": ("lobster", LOB / "AAPL_2012-06-21_34200000_57600000_message_1.csv.gz",
                "LOBSTER AAPL 2012-06-21, 1 level, 09:30-16:00"),
    "btc_snap10": ("crypto", TARDIS / "binance-futures_book_snapshot_10_2024-07-18_BTCUSDT.csv.gz",
                   "Binance BTCUSDT perp, book_snapshot_10 + trades, ~8 min"),
    "eth_snap10": ("crypto", TARDIS / "binance-futures_book_snapshot_10_2024-07-18_ETHUSDT.csv.gz",
                   "Binance ETHUSDT perp, book_snapshot_10 + trades, ~8 min"),
    "btc_l2": ("crypto", TARDIS / "binance-futures_incremental_book_L2_2024-07-18_BTCUSDT.csv.gz",
               "Binance BTCUSDT perp, incremental_book_L2 + trades, ~8 min"),
    "eth_l2": ("crypto", TARDIS / "binance-futures_incremental_book_L2_2024-07-18_ETHUSDT.csv.gz",
               "Binance ETHUSDT perp, incremental_book_L2 + trades, ~8 min"),
}
FOLDS = 5
SEED = 0

#: feature tables by data set; filled before worker processes fork, so they inherit them
_FRAMES: dict[str, Any] = {}


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_frame(name: str, updates: int) -> tuple[Any, list[str], dict[str, Any]]:
    """(feature table, feature names, facts about the data set)."""
    source, path, desc = DATASETS[name]
    t0 = time.perf_counter()
    feeds = open_feeds(source, path, n_updates=updates if source == "synthetic" else None)
    levels = min(10, feeds[0].levels)
    spec = FeatureSpec(levels=levels)
    df = feature_frame(feeds, spec)
    df.attrs["source"] = ", ".join(f.label for f in feeds)
    restamped = restamp(df)
    feats = [f for f in DEFAULT_FEATURES if f in spec.names]
    info = {"description": desc + (f", {updates:,} updates per symbol" if source == "synthetic" else ""),
            "source": source, "path": str(path.relative_to(ROOT.parent)) if path else None,
            "symbols": [f.symbol for f in feeds], "file_levels": feeds[0].levels, "spec_levels": levels,
            "tick_size": feeds[0].tick_size, "rows": len(df), "features": feats,
            "feature_spec": spec.to_dict(), "restamped": restamped, "mid_dynamics": mid_dynamics(df),
            "feature_seconds": round(time.perf_counter() - t0, 2)}
    return df, feats, info


def restamp(df: Any) -> dict[str, Any] | None:
    """Make each symbol's ``ts_ns`` non-decreasing (running maximum), in place.

    Training refuses a symbol whose rows go back in time. In the ETHUSDT
    incremental_book_L2 file the first diff after the REST snapshot carries an
    exchange time 5 ms before the snapshot's; its row is stamped with the
    snapshot's time instead. Rows and their order are unchanged; what was moved
    is returned (None when nothing was).
    """
    import numpy as np

    ts = df["ts_ns"].to_numpy(dtype=np.int64).copy()
    sym = df["symbol"].to_numpy()
    moved, shift = 0, 0
    for s in dict.fromkeys(sym):
        idx = np.flatnonzero(sym == s)
        fixed = np.maximum.accumulate(ts[idx])
        moved += int((fixed != ts[idx]).sum())
        shift = max(shift, int((fixed - ts[idx]).max()))
        ts[idx] = fixed
    if not moved:
        return None
    df["ts_ns"] = ts
    return {"rows": moved, "max_shift_ms": shift / 1e6}


def mid_dynamics(df: Any, horizons: tuple[int, ...] = (10, 50, 100)) -> dict[str, Any]:
    """How the mid moves, per symbol, pooled: changes per row, how often one mid move
    reverses the previous one, and how the sign of the mid change over the last ``h``
    rows relates to the sign over the next ``h`` rows (what persistence bets on)."""
    import numpy as np

    n = changes = rev_n = rev = 0
    pairs: dict[int, list[np.ndarray]] = {h: [] for h in horizons}
    for _, g in df.groupby("symbol", sort=False):
        m = g["mid"].to_numpy(dtype=np.float64)
        d = np.diff(m)
        nz = d[np.isfinite(d) & (d != 0)]
        n, changes = n + len(d), changes + len(nz)
        rev_n, rev = rev_n + max(len(nz) - 1, 0), rev + int((np.sign(nz[1:]) != np.sign(nz[:-1])).sum())
        for h in horizons:
            if len(m) > 2 * h:
                past, fut = np.sign(m[h:-h] - m[:-2 * h]), np.sign(m[2 * h:] - m[h:-h])
                ok = np.isfinite(past) & np.isfinite(fut)
                pairs[h].append(np.stack([past[ok], fut[ok]]))
    out: dict[str, Any] = {"mid_changes_per_row": changes / n if n else None,
                           "move_reversal_share": rev / rev_n if rev_n else None}
    for h, ps in pairs.items():
        if not ps:
            continue
        past, fut = np.concatenate(ps, axis=1)
        both = (past != 0) & (fut != 0)
        out[f"h{h}_sign_corr"] = float(np.corrcoef(past, fut)[0, 1])
        out[f"h{h}_same_sign_share"] = float(np.mean(past[both] == fut[both])) if both.any() else None
    return out


def one_run(dataset: str, feats: list[str], horizon: int, model_type: str,
            params: dict[str, Any] | None, max_rows: int | None) -> dict[str, Any]:
    """Train one model on one data set and horizon; the card's headline numbers."""
    df = _FRAMES[dataset]
    note = None
    if max_rows and len(df) > max_rows:
        df = df.iloc[-max_rows:].copy()  # the most recent rows; baselines run on the same rows
        note = f"last {max_rows:,} of {len(_FRAMES[dataset]):,} rows"
    cfg = LabelConfig(kind="horizon", horizon=horizon, unit="rows", threshold=0.0)
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="streamsig-models-table-") as tmp:
            path = train_model(df, feats, cfg, model_type, seed=SEED, out_dir=tmp, folds=FOLDS, params=params,
                               extra={"bench": "models_table"})
            card = json.loads((path / "card.json").read_text())
    except Exception as exc:  # noqa: BLE001 - one failed run must not lose the others
        return {"dataset": dataset, "horizon": horizon, "model": model_type, "error": f"{type(exc).__name__}: {exc}",
                "seconds": round(time.perf_counter() - t0, 1)}
    return {
        "dataset": dataset, "horizon": horizon, "model": model_type,
        "seconds": round(time.perf_counter() - t0, 1),
        "params": card["params"], "subsample": note,
        "labelled_rows": card["data"]["labelled_rows"],
        "test_rows": card["metrics"]["overall"]["n"],
        "test_class_counts": card["metrics"]["overall"]["class_counts"],
        "model_metrics": headline(card["metrics"]),
        "baselines": {b: headline(card["baselines"][b]) for b in BASELINES},
        "vs_baselines": {b: {k: card["vs_baselines"][b][k] for k in ("mean_gain", "t", "beats")}
                         for b in BASELINES},
        "library_versions": card.get("library_versions"),
    }


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    o = summary["overall"]
    return {"macro_f1": o["macro_f1"], "auc_pr_up": o["auc_pr"].get("up"), "auc_pr_down": o["auc_pr"].get("down"),
            "accuracy": o["accuracy"], "log_loss": o["log_loss"],
            "pred_counts": dict(zip(("down", "flat", "up"), (int(sum(c)) for c in zip(*o["confusion"])))),
            "fold_macro_f1": [f["macro_f1"] for f in summary["folds"]]}


def _f(x: float | None, d: int = 4) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{d}f}"


def markdown(datasets: dict[str, dict[str, Any]], runs: list[dict[str, Any]], models: list[str],
             horizons: list[int]) -> str:
    """Per data set: predictors by rows, horizons by column groups; then a summary table."""
    by = {(r["dataset"], r["horizon"], r["model"]): r for r in runs}
    out: list[str] = []
    summary = ["| data set | h | best model: macro-F1 | best baseline: macro-F1 "
               "| models beating all 3 baselines (t≥2) |", "|---|---:|---|---|---|"]
    for ds, info in datasets.items():
        out.append(f"### {ds}: {info['description']}\n")
        out.append(f"{info['rows']:,} feature rows, symbols {', '.join(info['symbols'])}, "
                   f"{info['spec_levels']} level(s) used, {len(info['features'])} features: "
                   f"{', '.join(info['features'])}. "
                   + mid_line(info["mid_dynamics"], horizons)
                   + (f" Timestamps of {info['restamped']['rows']} row(s) raised by at most "
                      f"{info['restamped']['max_shift_ms']:g} ms so each symbol's rows are in time order."
                      if info.get("restamped") else "") + "\n")
        head = "| predictor |" + "".join(f" h={h} macro-F1 | h={h} AP up | h={h} AP down |" for h in horizons)
        out += [head, "|---|" + "---:|" * (3 * len(horizons))]
        # baseline rows come from a window-1 model's run (all window-1 runs share rows and folds)
        ref: dict[int, dict[str, Any]] = {}
        for h in horizons:
            ok = [by[(ds, h, m)] for m in models if (ds, h, m) in by and "error" not in by[(ds, h, m)]]
            flat = [r for r in ok if r["model"] not in SEQUENCE_TYPES and not r["subsample"]]
            ref[h] = (flat or ok or [None])[0]
        for m in models:
            cells = []
            for h in horizons:
                r = by.get((ds, h, m))
                if r is None:
                    cells += ["", "", ""]
                elif "error" in r:
                    cells += ["error", "", ""]
                else:
                    mm = r["model_metrics"]
                    star = "*" if all(v["beats"] for v in r["vs_baselines"].values()) else ""
                    cells += [_f(mm["macro_f1"]) + star, _f(mm["auc_pr_up"]), _f(mm["auc_pr_down"])]
            out.append(f"| {m} | " + " | ".join(cells) + " |")
        for b in BASELINES:
            cells = []
            for h in horizons:
                r = ref[h]
                bm = r["baselines"][b] if r else None
                cells += [_f(bm["macro_f1"]), _f(bm["auc_pr_up"]), _f(bm["auc_pr_down"])] if bm else ["", "", ""]
            out.append(f"| {b} (baseline) | " + " | ".join(cells) + " |")
        cells = []
        for h in horizons:
            r = ref[h]
            if not r:
                cells += ["", "", ""]
                continue
            cc, n = r["test_class_counts"], r["test_rows"]
            cells += [f"n={n:,}, flat {cc['flat'] / n:.1%}", f"{cc['up'] / n:.1%}", f"{cc['down'] / n:.1%}"]
        out.append("| test rows; class share (= no-skill AP) | " + " | ".join(cells) + " |")
        notes = []
        for h in horizons:
            r0 = ref[h]
            for m in models:
                r = by.get((ds, h, m))
                if not r or "error" in r:
                    if r:
                        notes.append(f"h={h} {m}: {r['error']}")
                    continue
                if r["subsample"]:
                    notes.append(f"h={h} {m}: trained and scored on the {r['subsample']}")
                if r0 and r is not r0:
                    d = max(abs(r["baselines"][b]["macro_f1"] - r0["baselines"][b]["macro_f1"]) for b in BASELINES)
                    if d > 5e-4:
                        notes.append(f"h={h} {m}: its own rows give baseline macro-F1 up to {d:.4f} away "
                                     "from the rows shown (its * uses its own rows)")
        if notes:
            out.append("\nNotes: " + "; ".join(notes) + ".")
        out.append("")
        for h in horizons:
            rs = [by[(ds, h, m)] for m in models if (ds, h, m) in by and "error" not in by[(ds, h, m)]]
            if not rs or not ref[h]:
                continue
            best = max(rs, key=lambda r: r["model_metrics"]["macro_f1"])
            bb = max(BASELINES, key=lambda b: ref[h]["baselines"][b]["macro_f1"])
            beat = [r["model"] for r in rs if all(v["beats"] for v in r["vs_baselines"].values())]
            summary.append(f"| {ds} | {h} | {best['model']}: {_f(best['model_metrics']['macro_f1'])} | "
                           f"{bb}: {_f(ref[h]['baselines'][bb]['macro_f1'])} | {', '.join(beat) or 'none'} |")
    return "\n".join(["## Summary\n", *summary, "", "## Per data set\n", *out])


def mid_line(md: dict[str, Any], horizons: list[int]) -> str:
    """One sentence on the mid's dynamics."""
    parts = [f"h={h}: {md[f'h{h}_sign_corr']:+.3f} / {_f(md.get(f'h{h}_same_sign_share'), 3)}"
             for h in horizons if f"h{h}_sign_corr" in md]
    return (f"Mid moves on {_f(md['mid_changes_per_row'], 3)} of rows; a mid move reverses the previous one "
            f"{_f(md['move_reversal_share'], 3)} of the time; sign of the last h rows' mid change vs the next "
            f"h rows' (correlation / same-sign share when both moved): " + ", ".join(parts) + ".")


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="synthetic, lightgbm, horizon 50 only (< 60 s)")
    ap.add_argument("--models", default=",".join(MODEL_TYPES))
    ap.add_argument("--horizons", default="10,50,100")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--updates", type=int, default=50_000, help="synthetic updates per symbol")
    ap.add_argument("--lstm-epochs", type=int, default=None,
                    help="override the sequence models' (lstm, transformer) epochs (default: their default)")
    ap.add_argument("--lstm-max-rows", type=int, default=None,
                    help="train and score the sequence models on the last N feature rows of larger data sets")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel (each one single-threaded)")
    args = ap.parse_args()
    if args.quick:
        args.models, args.horizons, args.datasets = "lightgbm", "50", "synthetic"
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    horizons = [int(h) for h in args.horizons.split(",") if h.strip()]
    names = [d.strip() for d in args.datasets.split(",") if d.strip()]
    for m in models:
        if m not in MODEL_TYPES:
            ap.error(f"unknown model {m!r} (choose from {', '.join(MODEL_TYPES)})")
    for d in names:
        if d not in DATASETS:
            ap.error(f"unknown data set {d!r} (choose from {', '.join(DATASETS)})")
    t_start = time.perf_counter()

    infos: dict[str, dict[str, Any]] = {}
    feats: dict[str, list[str]] = {}
    for d in names:
        _FRAMES[d], feats[d], infos[d] = load_frame(d, args.updates)
        say(f"features {d}: {infos[d]['rows']:,} rows in {infos[d]['feature_seconds']} s")

    lstm_params = {"epochs": args.lstm_epochs} if args.lstm_epochs else None
    seq = SEQUENCE_TYPES
    jobs = [(d, feats[d], h, m, lstm_params if m in seq else None, args.lstm_max_rows if m in seq else None)
            for d in names for h in horizons for m in models]
    # slowest first, so parallel workers finish together
    cost = {"lstm": 4, "transformer": 4, "rf": 3, "lightgbm": 1, "logreg": 1}
    order = sorted(range(len(jobs)), key=lambda i: -cost[jobs[i][3]] * infos[jobs[i][0]]["rows"])
    runs: list[dict[str, Any]] = []

    def done(r: dict[str, Any]) -> None:
        runs.append(r)
        if "error" in r:
            msg = f"ERROR {r['error']}"
        else:
            mm = r["model_metrics"]
            msg = (f"macro-F1 {mm['macro_f1']:.4f}, AP up {_f(mm['auc_pr_up'])}, AP down {_f(mm['auc_pr_down'])}"
                   + (f" ({r['subsample']})" if r["subsample"] else ""))
        say(f"[{len(runs)}/{len(jobs)}] {r['dataset']} h={r['horizon']} {r['model']}: {msg}  {r['seconds']} s")

    if args.jobs > 1:
        import multiprocessing as mp
        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("fork")) as pool:
            futs = [pool.submit(one_run, *jobs[i]) for i in order]
            for f in as_completed(futs):
                done(f.result())
    else:
        for i in order:
            done(one_run(*jobs[i]))

    key = {(d, h, m): i for i, (d, _, h, m, _, _) in enumerate(jobs)}
    runs.sort(key=lambda r: key[(r["dataset"], r["horizon"], r["model"])])
    print(markdown(infos, runs, models, horizons))
    versions = next((r["library_versions"] for r in runs if r.get("library_versions")), None)
    for r in runs:
        r.pop("library_versions", None)
    print(json.dumps({
        "bench": "models_table",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "command": " ".join(["python", "bench/models_table.py", *sys.argv[1:]]),
        "label": "horizon in rows, threshold 0 (relative), per symbol",
        "folds": f"{FOLDS} expanding purged walk-forward folds", "seed": SEED,
        "default_params": {m: DEFAULT_PARAMS[m] for m in models}, "lstm_overrides": {
            "epochs": args.lstm_epochs, "max_rows": args.lstm_max_rows},
        "datasets": infos, "runs": runs,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "jobs": args.jobs},
        "library_versions": versions,
        "seconds": round(time.perf_counter() - t_start, 1),
    }, default=str))


if __name__ == "__main__":
    main()
