"""Throughput of the synthetic book generator.

Usage: ``python bench/synthetic.py [--quick]``. Prints one line per measurement
and, on the last line, one JSON object with ``synthetic_events_per_s`` (median
over repeats of ``generate`` on a 3-symbol config, compilation excluded).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamsig.book.synthetic import SyntheticConfig, generate, iter_chunks  # noqa: E402


def _time(fn) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = fn()
    return time.perf_counter() - t0, n


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, finishes in seconds")
    args = ap.parse_args(argv)
    n_updates, repeats = (200_000, 3) if args.quick else (2_000_000, 5)
    cfg = SyntheticConfig(symbols=("SYNA", "SYNB", "SYNC"), n_updates=n_updates, seed=1)

    t_compile, _ = _time(lambda: len(generate(SyntheticConfig(n_updates=100))["SYN0"]))
    print(f"warm-up (compile or cache load): {t_compile:.2f} s")

    rates = []
    for i in range(repeats):
        dt, n = _time(lambda: sum(len(ev) for ev in generate(cfg).values()))
        rates.append(n / dt)
        print(f"generate run {i}: {n} events ({3 * n_updates} updates) in {dt:.3f} s"
              f" = {n / dt / 1e6:.2f} M events/s")
    dt, n = _time(lambda: sum(len(ev) for _, ev in iter_chunks(cfg, chunk_updates=10_000)))
    print(f"iter_chunks(10k updates): {n} events in {dt:.3f} s = {n / dt / 1e6:.2f} M events/s")

    result = {
        "synthetic_events_per_s": round(statistics.median(rates)),
        "synthetic_events_per_s_best": round(max(rates)),
        "synthetic_chunked_events_per_s": round(n / dt),
        "events_per_update": round(n / (3 * n_updates), 3),
        "quick": bool(args.quick),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
