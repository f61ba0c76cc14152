"""Book updates/s of the feature kernel: per-event API, batch path, and a pandas version.

The batch figure reuses one output buffer (as the chunked Parquet writer does); the
figure with a fresh output array per call, page faults included, is printed beside it.
The pandas version computes the same feature families column-wise (shift, rolling,
time-based rolling; no row loops) from the per-state top-of-book table, which it is
given ready-made (book reconstruction is not timed for it: that needs a row loop).

    python bench/features.py [--quick] [--events N]

Prints one JSON object on its last line.
"""
from __future__ import annotations

import argparse
import json
import time

import numba as nb
import numpy as np
import pandas as pd

from streamsig.book import events as E
from streamsig.book.book import set_level
from streamsig.book.synthetic import SyntheticConfig, generate_symbol
from streamsig.features import FeatureSpec, FeatureState, compute_features


@nb.njit(cache=True)
def _top_table(ev, L, bp, bq, ap, aq, ts, tpx, tsz):
    cap = 64
    bpx = np.zeros(cap, np.int64); bsz = np.zeros(cap); apx = np.zeros(cap, np.int64); asz = np.zeros(cap)
    nb_ = 0; na = 0; r = 0; cpx = 0.0; csz = 0.0
    for k in range(ev.shape[0]):
        f = ev[k]["flags"]
        if f & E.CLEAR:
            nb_ = 0; na = 0
        if f & E.DEPTH:
            if f & E.BUY:
                nb_, _ = set_level(bpx, bsz, nb_, ev[k]["price"], ev[k]["size"], True)
            else:
                na, _ = set_level(apx, asz, na, ev[k]["price"], ev[k]["size"], False)
        if f & E.TRADE:
            cpx += ev[k]["price"] * ev[k]["size"]; csz += ev[k]["size"]
        if f & E.EOB:
            for m in range(L):
                bp[r, m] = bpx[m] if m < nb_ else 0; bq[r, m] = bsz[m] if m < nb_ else 0.0
                ap[r, m] = apx[m] if m < na else 0; aq[r, m] = asz[m] if m < na else 0.0
            ts[r] = ev[k]["exch_ts"]; tpx[r] = cpx; tsz[r] = csz
            r += 1
    return r


def pandas_features(bp, bq, ap, aq, ts, tpx, tsz, spec: FeatureSpec, tick: float) -> pd.DataFrame:
    """Column-wise pandas features from top-L arrays (the baseline being compared)."""
    L = spec.levels
    B = pd.DataFrame(bp * tick); BQ = pd.DataFrame(bq); A = pd.DataFrame(ap * tick); AQ = pd.DataFrame(aq)
    f = pd.DataFrame(index=B.index)
    f["mid"] = (A[0] + B[0]) / 2
    f["spread"] = A[0] - B[0]
    f["spread_ticks"] = f["spread"] / tick
    f["spread_rel"] = f["spread"] / f["mid"]
    f["microprice"] = (A[0] * BQ[0] + B[0] * AQ[0]) / (BQ[0] + AQ[0])
    f["qimb_1"] = (BQ[0] - AQ[0]) / (BQ[0] + AQ[0])
    for k in spec.depth_ks:
        db, da = BQ.iloc[:, :k].sum(axis=1), AQ.iloc[:, :k].sum(axis=1)
        f[f"depth_bid_{k}"], f[f"depth_ask_{k}"] = db, da
        f[f"depth_imb_{k}"] = (db - da) / (db + da)
        f[f"vwap_bid_{k}"] = (B.iloc[:, :k] * BQ.iloc[:, :k]).sum(axis=1) / db
        f[f"vwap_ask_{k}"] = (A.iloc[:, :k] * AQ.iloc[:, :k]).sum(axis=1) / da
    Bs, BQs, As, AQs = B.shift(), BQ.shift(), A.shift(), AQ.shift()
    ofi = ((B >= Bs) * BQ - (B <= Bs) * BQs - (A <= As) * AQ + (A >= As) * AQs).fillna(0.0)
    w = 1.0 / np.arange(1, L + 1)
    for m in range(L):
        f[f"ofi_{m + 1}"] = ofi[m]
    f["ofi_dw"] = ofi @ (w / w.sum())
    for win in spec.ofi_windows:
        f[f"ofi_1_sum_{win}"] = f["ofi_1"].rolling(win, min_periods=1).sum()
        f[f"ofi_dw_sum_{win}"] = f["ofi_dw"].rolling(win, min_periods=1).sum()
    n = spec.trade_window
    f[f"trade_vwap_{n}"] = (pd.Series(tpx).diff(n) / pd.Series(tsz).diff(n)) * tick
    lm = np.log(f["mid"])
    r2 = lm.diff() ** 2
    for h in spec.ret_rows:
        f[f"ret_{h}"] = lm.diff(h)
    for h in spec.rv_rows:
        f[f"rv_{h}"] = np.sqrt(r2.rolling(h).sum())
    tsi = pd.to_datetime(ts)
    for s in spec.time_windows:
        r = pd.Series(r2.to_numpy(), index=tsi).rolling(f"{int(s * 1000)}ms").sum()
        f[f"rv_{int(s)}s"] = np.sqrt(r.to_numpy())
        first = pd.Series(lm.to_numpy(), index=tsi).rolling(f"{int(s * 1000)}ms").apply(lambda x: x[0], raw=True)
        f[f"ret_{int(s)}s"] = lm.to_numpy() - first.to_numpy()
    return f


def main() -> None:
    ap_ = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap_.add_argument("--quick", action="store_true", help="smaller run, under 60 s")
    ap_.add_argument("--events", type=int, default=None, help="synthetic updates (default 1M, quick 200k)")
    args = ap_.parse_args()
    n_updates = args.events or (200_000 if args.quick else 1_000_000)
    spec = FeatureSpec(levels=10)
    ev = generate_symbol(SyntheticConfig(levels=10, n_updates=n_updates, seed=1), 0)
    n = len(ev)
    compute_features(ev[:1000], spec, 0.01)  # compile / load cache
    best = np.inf
    for _ in range(3):
        t = time.perf_counter()
        tab = compute_features(ev, spec, 0.01)
        best = min(best, time.perf_counter() - t)
    alloc_rate = n / best
    buf = np.empty((len(ev), spec.n_features))  # steady state of a chunked job: the buffer is reused
    best = np.inf
    for _ in range(3):
        t = time.perf_counter()
        compute_features(ev, spec, 0.01, out=buf)
        best = min(best, time.perf_counter() - t)
    batch_rate = n / best
    m = n if not args.quick else min(n, 200_000)
    st = FeatureState(spec, 0.01)
    st.on_event(ev[:1])
    st = FeatureState(spec, 0.01)
    t = time.perf_counter()
    for k in range(m):
        st.on_event(ev[k:k + 1])
    per_event_rate = m / (time.perf_counter() - t)
    L = spec.levels
    rows = int(np.count_nonzero(ev["flags"] & E.EOB))
    bp = np.zeros((rows, L), np.int64); bq = np.zeros((rows, L)); ap = np.zeros((rows, L), np.int64)
    aq = np.zeros((rows, L)); ts = np.zeros(rows, np.int64); tpx = np.zeros(rows); tsz = np.zeros(rows)
    r = _top_table(ev, L, bp, bq, ap, aq, ts, tpx, tsz)
    t = time.perf_counter()
    pdf = pandas_features(bp[:r], bq[:r], ap[:r], aq[:r], ts[:r], tpx[:r], tsz[:r], spec, 0.01)
    pandas_rate = n / (time.perf_counter() - t)
    np.testing.assert_allclose(pdf["mid"].to_numpy(), tab.values[:, 0], rtol=1e-12)
    out = {
        "events": n, "rows": len(tab.values), "features": spec.n_features, "levels": L,
        "per_event_updates_per_s": round(per_event_rate),
        "vectorised_updates_per_s": round(batch_rate),
        "vectorised_fresh_output_updates_per_s": round(alloc_rate),
        "pandas_updates_per_s": round(pandas_rate),
        "ratio_vs_pandas": round(batch_rate / pandas_rate, 2),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
