"""How long a full garbage collection stops a worker, before and after its heap is settled.

    python bench/gc_pause.py [--quick]

In this process: the worker's and server's imports, the default model loaded and one engine run
(kernels compiled, session opened), then three timed full collections (``gc.collect()``); then
``streamsig.heap.settle()`` (what the long-running commands do at startup) and three more. A
full collection is what CPython runs now and then in a long-lived process (see streamsig/heap.py);
its time is how long the event loop stands still. The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import time


def full_collect_ms(rounds: int = 3) -> float:
    """The median time of ``rounds`` full collections, in ms."""
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        gc.collect()
        out.append((time.perf_counter() - t) * 1e3)
    return round(statistics.median(out), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the same (it takes a few seconds)")
    ap.parse_args()
    import streamsig.live.worker  # noqa: F401 - what the worker process imports
    import streamsig.serve.ws  # noqa: F401 - and the server
    from streamsig.book.sources import open_feeds
    from streamsig.engine import SignalEngine
    from streamsig.heap import settle
    from streamsig.models.registry import default_model
    from streamsig.trading.policy import PolicyConfig
    from streamsig.trading.strategies import load_strategy

    strat, _, spec = load_strategy(default_model(), "ofi", PolicyConfig())
    feed = open_feeds("synthetic", symbols=["S"], n_updates=2_000, seed=1)[0]
    SignalEngine("S", spec, feed.tick_size, strat).on_events(feed.read_all())
    gc.collect()
    tracked = len(gc.get_objects())
    before = full_collect_ms()
    settle()
    after = full_collect_ms()
    print(f"objects tracked {tracked:,}; a full collection: {before:.1f} ms, after settle() {after:.2f} ms")
    print(json.dumps({"tracked_objects": tracked, "full_collect_ms": before, "settled_full_collect_ms": after,
                      "frozen_objects": gc.get_freeze_count()}))


if __name__ == "__main__":
    main()
