"""Backtest throughput: streamsig vs hftbacktest on the same L2 events and the same orders.

Both engines replay one Binance BTCUSDT incremental L2 + trades file (the
shared crypto sample; synthetic events if it is absent) held in memory, with
the fixed strategy of :mod:`streamsig.backtest.hbt` (cross the spread every
``--every`` feature rows, one lot). streamsig runs the full backtest path
(feature kernel, book cursor, executor, portfolio, per-row Python loop) with
one strategy; hftbacktest runs its Rust engine driven by a numba function that
submits the same orders at the same times. Event conversion and numba
compilation are not timed; each engine's best of ``--repeat`` runs counts.

    python bench/backtest.py [--quick] [--synthetic] [--every N] [--repeat R]

Prints one JSON object on its last line (``streamsig_events_per_s``,
``hftbacktest_events_per_s``, ``ratio`` = streamsig / hftbacktest, and the
fill comparison).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from streamsig.backtest.hbt import Cycle, run_hbt, to_hbt_events, unique_batch_times
from streamsig.backtest.runner import run_backtest
from streamsig.book.sources import Feed, open_feeds
from streamsig.features import FeatureSpec

BTC = (Path(__file__).resolve().parents[2] / "shared" / "data" / "crypto" / "tardis_format"
       / "binance-futures_incremental_book_L2_2024-07-18_BTCUSDT.csv.gz")


def load(quick: bool, synthetic: bool) -> tuple[np.ndarray, float, float, float, str]:
    """(events, tick size, order size, lot size, label)."""
    if BTC.exists() and not synthetic:
        f = open_feeds("crypto", BTC)[0]
        ev = f.read_all()
        if quick:
            ev = ev[:150_000]
        return unique_batch_times(ev), f.tick_size, 0.002, 0.001, BTC.name
    n = 30_000 if quick else 200_000
    f = open_feeds("synthetic", n_updates=n, seed=1, symbols=["S"], levels=10)[0]
    return unique_batch_times(f.read_all()), f.tick_size, 1.0, 1.0, f"synthetic {n} updates"


def streamsig_run(ev: np.ndarray, tick: float, spec: FeatureSpec, every: int, size: float):  # noqa: ANN201
    feed = Feed("X", tick, spec.levels, "bench", lambda: iter([ev]), len(ev))
    return run_backtest([feed], spec, strategy=Cycle(every, size), baselines=[])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="150k events, 2 repeats (well under a minute)")
    ap.add_argument("--every", type=int, default=50, help="feature rows between order changes")
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--synthetic", action="store_true", help="synthetic events (one update per feature row)")
    args = ap.parse_args()
    repeat = args.repeat or (2 if args.quick else 3)
    ev, tick, size, lot, label = load(args.quick, args.synthetic)
    spec = FeatureSpec(levels=10, capacity=1024)
    streamsig_run(ev[:2000], tick, spec, args.every, size)  # warm the numba caches

    best_s, res = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = streamsig_run(ev, tick, spec, args.every, size)
        best_s = min(best_s, time.perf_counter() - t0)
    sig, rec = res.signals["X"], res.lanes[("cycle", "X")]
    tgt = sig["target"]
    change = np.flatnonzero(np.diff(tgt, prepend=0.0) != 0.0)
    change = change[change + 1 < len(tgt)]
    times, signed = sig["ts_ns"][change + 1], np.diff(tgt, prepend=0.0)[change]

    hev = to_hbt_events(ev, tick)
    run_hbt(hev[:2000], times[:1], signed[:1], tick, lot, 0.0)  # compile the numba driver
    best_h, h = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        h = run_hbt(hev, times, signed, tick, lot, 0.0)
        best_h = min(best_h, time.perf_counter() - t0)

    n = len(ev)
    diff = np.abs(rec.fills["price"] - h["price"]) if len(rec.fills) == len(times) else np.array([np.inf])
    out = {
        "data": label, "events": n, "feature_rows": int(len(sig)), "orders": int(len(times)),
        "streamsig_seconds": round(best_s, 4), "hftbacktest_seconds": round(best_h, 4),
        "streamsig_events_per_s": round(n / best_s), "hftbacktest_events_per_s": round(n / best_h),
        "ratio": round(best_h / best_s, 4),
        "fills_equal": int((diff <= 1e-9 * np.abs(h["price"]).max()).sum()),
        "pnl_streamsig": round(float(rec.equity[-1] - rec.capital), 6), "pnl_hftbacktest": round(h["pnl"], 6),
    }
    print(f"streamsig   {out['streamsig_events_per_s']:>12,} events/s  ({best_s:.3f} s)")
    print(f"hftbacktest {out['hftbacktest_events_per_s']:>12,} events/s  ({best_h:.3f} s)")
    print(f"fills equal {out['fills_equal']} of {len(times)}; P&L {out['pnl_streamsig']} vs {out['pnl_hftbacktest']}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
