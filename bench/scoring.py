"""Scoring speed of the ONNX scorers, one row at a time and in batches.

    python bench/scoring.py [--quick]

Trains a LightGBM model, an LSTM and a Transformer (default parameters; the
sequence models for one epoch only, since their speed does not depend on how
well they learned) on a
synthetic planted table with :func:`streamsig.models.train_model`, loads them
with the scorers, and times:

- ``lightgbm_single_row_us``: ``Scorer.score_one(row, out=buf)``, mean per call;
- ``lightgbm_batch_rows_per_s``: ``Scorer.score_batch(X)``;
- ``lightgbm_native_batch_rows_per_s``: the same model in LightGBM itself
  (``Booster.predict``, one thread), and the ratio of the two;
- ``lstm_single_row_us``: ``SequenceScorer.score_one(row, symbol, out=buf)``
  after warm-up (includes shifting the symbol's window);
- ``lstm_batch_rows_per_s``: ``SequenceScorer.score_batch(windows)`` (exact:
  window by window), and ``lstm_batch_fast_rows_per_s`` with ``exact=False``;
- ``transformer_single_row_us``, ``transformer_batch_rows_per_s``,
  ``transformer_batch_fast_rows_per_s``: the same for the Transformer.

Everything runs on one thread. Per-row figures are the best mean over blocks of
500 calls, batch figures the best of several repeats, so that bursts of load
from other processes on the machine count as little as possible. The last line
printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamsig.labels import LabelConfig  # noqa: E402
from streamsig.models import Scorer, SequenceScorer, train_model  # noqa: E402
from streamsig.models.card import read_card  # noqa: E402
from streamsig.models.dataset import build_dataset  # noqa: E402
from streamsig.models.estimators import fit_native  # noqa: E402
from streamsig.models.synthetic import planted_table  # noqa: E402
from streamsig.models.walkforward import make_folds  # noqa: E402

FEATURES = ["mid", "spread", "microprice", "qimb_1", "ofi_1", "ofi_2", "ofi_dw",
            "ofi_1_sum_10", "ofi_1_sum_50", "ret_10", "noise_1"]
LABEL = LabelConfig(horizon=5)


def best_seconds(fn: Callable[[], None], repeats: int) -> float:
    """Shortest wall time of ``repeats`` runs of ``fn``."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def per_call(fn: Callable[[np.ndarray], object], rows: np.ndarray, repeats: int,
             block: int = 500) -> float:
    """Best mean seconds per ``fn(row)`` call over blocks of ``block`` rows."""
    best = float("inf")
    for _ in range(repeats):
        for start in range(0, len(rows) - block + 1, block):
            part = rows[start:start + block]
            t = time.perf_counter()
            for r in part:
                fn(r)
            best = min(best, (time.perf_counter() - t) / block)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller data and fewer repeats (< 60 s)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="streamsig-bench-") as tmp:
        print(json.dumps(run(args.quick, Path(tmp))))


def run(quick: bool, out: Path) -> dict[str, float]:
    """Train both models into ``out``, time the scorers, return the figures."""
    n_train, n_rows, n_batch, repeats = (6000, 5000, 20000, 3) if quick else (30000, 50000, 200000, 5)
    df = planted_table(n_train, seed=0)
    lgb_dir = train_model(df, FEATURES, LABEL, "lightgbm", seed=0, out_dir=out, folds=2)
    lstm_dir = train_model(df.iloc[:3000], FEATURES, LABEL, "lstm", seed=0, out_dir=out, folds=2,
                           params={"epochs": 1})
    trf_dir = train_model(df.iloc[:3000], FEATURES, LABEL, "transformer", seed=0, out_dir=out, folds=2,
                          params={"epochs": 1})

    # LightGBM: the shipped model is the last fold's; refit it natively for the comparison
    card = read_card(lgb_dir)
    ds = build_dataset(df, FEATURES, LABEL)
    last = make_folds(ds.pos, ds.end_pos, 2)[-1]
    native = fit_native("lightgbm", ds.X[last.train], ds.y[last.train], 0, card["params"]).booster_
    X = ds.X[np.arange(n_batch) % len(ds)]
    rows = X[:n_rows].astype(np.float64)  # a live feature row arrives as float64
    scorer = Scorer(lgb_dir, FEATURES)
    buf = np.empty(3, dtype=np.float32)

    single = per_call(lambda r: scorer.score_one(r, out=buf), rows, repeats)
    batch = n_batch / best_seconds(lambda: scorer.score_batch(X), repeats)
    nat = n_batch / best_seconds(lambda: native.predict(X, num_threads=1), repeats)

    seqs = {}
    for name, folder in (("lstm", lstm_dir), ("transformer", trf_dir)):
        seq = SequenceScorer(folder, FEATURES)
        dsl = build_dataset(df, FEATURES, LABEL, window=seq.window)
        W = dsl.X_seq[np.arange(n_rows) % len(dsl)]
        for r in rows[: seq.window]:
            seq.score_one(r, "SYN", out=buf)
        seqs[f"{name}_single_row_us"] = round(per_call(lambda r: seq.score_one(r, "SYN", out=buf), rows,
                                                       repeats) * 1e6, 2)
        seqs[f"{name}_batch_rows_per_s"] = round(n_rows / best_seconds(lambda: seq.score_batch(W), repeats))
        seqs[f"{name}_batch_fast_rows_per_s"] = round(n_rows / best_seconds(
            lambda: seq.score_batch(W, exact=False), repeats))

    print(f"lightgbm: {card['params']['n_estimators']} rounds x 3 classes, "
          f"{card['params']['num_leaves']} leaves, {len(FEATURES)} features; "
          f"lstm: window {seq.window}, hidden {read_card(lstm_dir)['params']['hidden']}; "
          f"transformer: d_model {read_card(trf_dir)['params']['d_model']}, "
          f"{read_card(trf_dir)['params']['layers']} layer(s), {read_card(trf_dir)['params']['heads']} heads")
    return {
        "lightgbm_single_row_us": round(single * 1e6, 2),
        "lightgbm_batch_rows_per_s": round(batch),
        "lightgbm_native_batch_rows_per_s": round(nat),
        "batch_ratio_vs_native": round(batch / nat, 3),
        **seqs,
    }


if __name__ == "__main__":
    main()
