"""Cost of the worker's model metrics (matured-label scoring, score sampling) next to the engine itself.

    python bench/worker_metrics.py [--quick]

Runs one symbol's synthetic events through ``SignalEngine`` in batches and,
per batch, what the worker adds for the model dashboard: ``MaturedScores``,
the tally buffer and the sampled score histogram. Prints one JSON object on its last line.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from streamsig.book.sources import open_feeds
from streamsig.engine import SignalEngine
from streamsig.models.outcomes import MaturedScores
from streamsig.live import health
from streamsig.models.registry import default_model
from streamsig.trading import PolicyConfig
from streamsig.trading.strategies import load_strategy


def run(n_updates: int, batch: int) -> dict[str, float]:
    strat, _, spec = load_strategy(default_model(), "ofi", PolicyConfig())
    feed = open_feeds("synthetic", symbols=["S"], n_updates=n_updates, seed=1)[0]
    ev = feed.read_all()
    eng = SignalEngine("S", spec, feed.tick_size, strat)
    scores, buf, imid = MaturedScores({"horizon": 50}), health.TallyBuffer({"champion": "m"}), spec.index("mid")
    t_eng = t_add = 0.0
    rows = 0
    for lo in range(0, len(ev), batch):
        t0 = time.perf_counter()
        res = eng.on_events(ev[lo:lo + batch])
        t1 = time.perf_counter()
        sig = res.signals
        probs = np.stack([sig["p_down"], sig["p_flat"], sig["p_up"]], axis=1)
        buf.add("S", {"champion": scores.update_many(res.rows[:, imid], sig["ts_ns"], probs)})
        health.observe_scores("m", "S", sig)
        t_eng += t1 - t0
        t_add += time.perf_counter() - t1
        rows += len(sig)
    return {"rows": rows, "engine_ns_per_row": round(t_eng / rows * 1e9), "metrics_ns_per_row": round(t_add / rows * 1e9),
            "metrics_pct_of_engine": round(100 * t_add / t_eng, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer events")
    args = ap.parse_args()
    n = 30_000 if args.quick else 200_000
    out = {f"batch_{b}": run(n, b) for b in (5, 20, 500, 5000)}  # 5-20 rows: a symbol's share of a batch of 1 ms frames
    print(json.dumps(out))


if __name__ == "__main__":
    main()
