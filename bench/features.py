"""Book updates/s of the feature kernel: per-event API, batch path, and a pandas version.

Both sides are timed the same way: one untimed warm-up run, then the best of
``--repeat`` runs. The batch figure reuses one output buffer (as the chunked
Parquet writer does); the figure with a fresh output array per call, page faults
included, is printed beside it. The pandas version computes every feature the
kernel computes, column-wise (shift, rolling sums, cumulative sums,
``searchsorted`` for the time windows; no row loops, no ``rolling().apply``),
from the per-state top-of-book table and the trade list, which it is given
ready-made (book reconstruction is not timed for it: that needs a row loop).
Every pandas column is checked against the kernel's before a figure is printed.

    python bench/features.py [--quick] [--events N] [--repeat N]

Prints one JSON object on its last line.
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numba as nb
import numpy as np
import pandas as pd

from streamsig.book import events as E
from streamsig.book.book import set_level
from streamsig.book.synthetic import SyntheticConfig, generate_symbol
from streamsig.features import FeatureSpec, FeatureState, compute_features
from streamsig.features.spec import _fmt_seconds


@nb.njit(cache=True)
def _top_table(ev, accepted, is_row, L, bp, bq, ap, aq, ntr, fresh):
    """Top ``L`` levels, trades so far and "first state since a CLEAR" at each kernel row."""
    cap = 256
    bpx = np.zeros(cap, np.int64); bsz = np.zeros(cap); apx = np.zeros(cap, np.int64); asz = np.zeros(cap)
    nb_ = 0; na = 0; r = 0; trades = 0; cleared = True
    for k in range(ev.shape[0]):
        f = ev[k]["flags"]
        if accepted[k]:
            if f & E.CLEAR:
                nb_ = 0; na = 0; cleared = True
            if f & E.DEPTH:
                if f & E.BUY:
                    nb_, _ = set_level(bpx, bsz, nb_, ev[k]["price"], ev[k]["size"], True)
                else:
                    na, _ = set_level(apx, asz, na, ev[k]["price"], ev[k]["size"], False)
            if f & E.TRADE:
                trades += 1
        if is_row[k]:
            for m in range(L):
                bp[r, m] = bpx[m] if m < nb_ else 0; bq[r, m] = bsz[m] if m < nb_ else 0.0
                ap[r, m] = apx[m] if m < na else 0; aq[r, m] = asz[m] if m < na else 0.0
            ntr[r] = trades; fresh[r] = cleared; cleared = False
            r += 1
    return r


def pandas_features(bp: np.ndarray, bq: np.ndarray, ap: np.ndarray, aq: np.ndarray, ts: np.ndarray,
                    fresh: np.ndarray, ntr: np.ndarray, trade_px: np.ndarray, trade_sz: np.ndarray,
                    spec: FeatureSpec, tick: float) -> pd.DataFrame:
    """Every kernel feature, column-wise in pandas/numpy, from top-L arrays (the baseline compared).

    ``bp``/``ap`` are integer tick prices (0 with size 0 for a missing level),
    ``fresh`` marks the first state after a CLEAR (its OFI is 0), ``ntr`` the
    number of trades before each state, ``trade_px``/``trade_sz`` every trade.
    """
    L = spec.levels
    B = pd.DataFrame(bp * tick); BQ = pd.DataFrame(bq); A = pd.DataFrame(ap * tick); AQ = pd.DataFrame(aq)
    f = {}
    f["mid"] = mid = (A[0] + B[0]) / 2
    f["spread"] = spread = A[0] - B[0]
    f["spread_ticks"] = spread_ticks = pd.Series(ap[:, 0] - bp[:, 0], dtype=np.float64)
    f["spread_rel"] = spread / mid
    q = BQ[0] + AQ[0]
    f["microprice"] = (A[0] * BQ[0] + B[0] * AQ[0]) / q
    nimb = spec.imb_buckets
    table = (np.asarray(spec.microprice_table, np.float64) if spec.microprice_table is not None
             else spec.default_table())
    ib = np.minimum((BQ[0] / q * nimb).astype(np.int64), nimb - 1)
    f["microprice_adj"] = mid + spread * table[(spread_ticks > 1).astype(np.int64) * nimb + ib]
    f["qimb_1"] = (BQ[0] - AQ[0]) / q
    for k in spec.depth_ks:
        db, da = BQ.iloc[:, :k].sum(axis=1), AQ.iloc[:, :k].sum(axis=1)
        f[f"depth_bid_{k}"], f[f"depth_ask_{k}"] = db, da
        f[f"depth_imb_{k}"] = ((db - da) / (db + da)).where(db + da > 0, 0.0)
        f[f"vwap_bid_{k}"] = (B.iloc[:, :k] * BQ.iloc[:, :k]).sum(axis=1) / db
        f[f"vwap_ask_{k}"] = (A.iloc[:, :k] * AQ.iloc[:, :k]).sum(axis=1) / da
    # OFI against the previous state; a level missing in either state keeps its price
    Bi, Ai = pd.DataFrame(bp), pd.DataFrame(ap)
    Bs, BQs, As, AQs = Bi.shift(), BQ.shift(), Ai.shift(), AQ.shift()
    mb, ma = (BQ == 0) | (BQs == 0), (AQ == 0) | (AQs == 0)
    ofi = (((Bi >= Bs) | mb) * BQ - ((Bi <= Bs) | mb) * BQs
           - ((Ai <= As) | ma) * AQ + ((Ai >= As) | ma) * AQs)
    ofi[fresh] = 0.0
    w = 1.0 / np.arange(1, L + 1)
    for m in range(L):
        f[f"ofi_{m + 1}"] = ofi[m]
    f["ofi_dw"] = ofi @ (w / w.sum())
    for win in spec.ofi_windows:
        f[f"ofi_1_sum_{win}"] = f["ofi_1"].rolling(win, min_periods=1).sum()
        f[f"ofi_dw_sum_{win}"] = f["ofi_dw"].rolling(win, min_periods=1).sum()
    # VWAP of the last n trades (fewer before n trades exist)
    n = spec.trade_window
    cpx = np.concatenate([[0.0], np.cumsum(trade_px * tick * trade_sz)])
    csz = np.concatenate([[0.0], np.cumsum(trade_sz)])
    lo = np.maximum(ntr - n, 0)
    vol = csz[ntr] - csz[lo]
    vwap = np.full(len(ntr), np.nan)
    np.divide(cpx[ntr] - cpx[lo], vol, out=vwap, where=(ntr > 0) & (vol > 0))
    f[f"trade_vwap_{n}"] = pd.Series(vwap)
    lm = np.log(mid)
    r2 = lm.diff() ** 2
    for h in spec.ret_rows:
        f[f"ret_{h}"] = lm.diff(h)
    for h in spec.rv_rows:
        f[f"rv_{h}"] = np.sqrt(r2.rolling(h).sum())
    # time windows: from the last state at or before t - s, within the kernel's time ring
    cum = r2.fillna(0.0).cumsum().to_numpy()
    lmv = lm.to_numpy()
    i = np.arange(len(ts))
    tc = 1 << max(0, spec.time_capacity - 1).bit_length()
    for s in spec.time_windows:
        j = np.searchsorted(ts, ts - s * 1e9, side="right") - 1
        ok = (j >= 0) & (j > i - tc)
        jj = np.where(ok, j, 0)
        v = cum - cum[jj]
        f[f"ret_{_fmt_seconds(s)}"] = pd.Series(np.where(ok, lmv - lmv[jj], np.nan))
        f[f"rv_{_fmt_seconds(s)}"] = pd.Series(np.where(ok, np.sqrt(np.maximum(v, 0.0)), np.nan))
    return pd.DataFrame(f)


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Seconds of the fastest of ``repeat`` calls of ``fn`` after one untimed warm-up call."""
    fn()
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def check_columns(pdf: pd.DataFrame, values: np.ndarray, names: list[str]) -> float:
    """Assert every pandas column equals the kernel's (NaN where it is NaN) to 1e-9 of the
    column's largest magnitude; return the largest such difference.

    Realised volatilities are compared squared: both sides keep a running sum of
    squared returns, whose rounding (about 1e-20 where the true sum is 0) the
    square root would magnify into a relative error far above the sums' own.
    """
    assert sorted(pdf.columns) == sorted(names), set(pdf.columns) ^ set(names)
    worst = 0.0
    for j, name in enumerate(names):
        got, want = pdf[name].to_numpy(np.float64), values[:, j]
        if name.startswith("rv_"):
            got, want = got ** 2, want ** 2
        assert np.array_equal(np.isnan(got), np.isnan(want)), f"{name}: NaN at different rows"
        finite = ~np.isnan(want)
        if not finite.any():
            continue
        scale = max(float(np.max(np.abs(want[finite]))), 1e-300)
        err = float(np.max(np.abs(got[finite] - want[finite]))) / scale
        assert err <= 1e-9, f"{name}: pandas differs from the kernel by {err:.2e} of its scale"
        worst = max(worst, err)
    return worst


def main() -> None:
    ap_ = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap_.add_argument("--quick", action="store_true", help="smaller run, under 60 s")
    ap_.add_argument("--events", type=int, default=None, help="synthetic updates (default 1M, quick 200k)")
    ap_.add_argument("--repeat", type=int, default=3, help="timed runs per figure (best is kept)")
    args = ap_.parse_args()
    n_updates = args.events or (200_000 if args.quick else 1_000_000)
    spec = FeatureSpec(levels=10)
    tick = 0.01
    ev = generate_symbol(SyntheticConfig(levels=10, n_updates=n_updates, seed=1), 0)
    n = len(ev)
    compute_features(ev[:1000], spec, tick)  # compile / load cache
    tab = compute_features(ev, spec, tick)
    alloc_rate = n / best_of(lambda: compute_features(ev, spec, tick), args.repeat)
    buf = np.empty((len(ev), spec.n_features))  # steady state of a chunked job: the buffer is reused
    batch_rate = n / best_of(lambda: compute_features(ev, spec, tick, out=buf), args.repeat)
    m = n if not args.quick else min(n, 200_000)

    def per_event() -> None:
        st = FeatureState(spec, tick)
        for k in range(m):
            st.on_event(ev[k:k + 1])
    per_event_rate = m / best_of(per_event, args.repeat)

    # the pandas side gets the kernel's accepted events and row positions, ready-made
    _, row_ev, reasons = FeatureState(spec, tick).update(ev)
    is_row = np.zeros(n, np.bool_)
    is_row[row_ev] = True
    accepted = reasons == 0
    L, rows = spec.levels, len(row_ev)
    bp = np.zeros((rows, L), np.int64); bq = np.zeros((rows, L)); ap = np.zeros((rows, L), np.int64)
    aq = np.zeros((rows, L)); ntr = np.zeros(rows, np.int64); fresh = np.zeros(rows, np.bool_)
    r = _top_table(ev, accepted, is_row, L, bp, bq, ap, aq, ntr, fresh)
    assert r == rows == len(tab.values)
    ts = ev["exch_ts"][row_ev]
    trades = ev[accepted & ((ev["flags"] & E.TRADE) != 0)]
    trade_px, trade_sz = trades["price"].astype(np.float64), trades["size"].astype(np.float64)

    def pandas_run() -> pd.DataFrame:
        return pandas_features(bp, bq, ap, aq, ts, fresh, ntr, trade_px, trade_sz, spec, tick)
    pandas_rate = n / best_of(pandas_run, args.repeat)
    worst = check_columns(pandas_run(), tab.values, spec.names)
    out = {
        "events": n, "rows": len(tab.values), "features": spec.n_features, "levels": L,
        "repeat": args.repeat,
        "per_event_updates_per_s": round(per_event_rate),
        "vectorised_updates_per_s": round(batch_rate),
        "vectorised_fresh_output_updates_per_s": round(alloc_rate),
        "pandas_updates_per_s": round(pandas_rate),
        "ratio_vs_pandas": round(batch_rate / pandas_rate, 2),
        "pandas_columns_checked": spec.n_features,
        "pandas_max_rel_diff": float(f"{worst:.3g}"),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
