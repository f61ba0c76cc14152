"""An independent, plain numpy/pandas statement of the feature formulas (tests only).

It keeps the book in Python dicts, records the top L levels at every consistent
state, then computes each feature column-wise. Nothing here is shared with
``streamsig.features``; only the names come from the spec.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from streamsig.book import events as E
from streamsig.features.spec import FeatureSpec, _fmt_seconds


def book_states(events: np.ndarray, levels: int, capacity: int | None = None, counts: dict | None = None):
    """Top-L arrays at every EOB where both sides exist, plus trades seen so far.

    Stream rules, stated independently of the kernel: nothing is trusted before
    the first CLEAR; a batch that ends crossed or locked writes no row and
    drops everything up to the next CLEAR. A side holds at most ``capacity``
    levels (a new level beyond a full side is ignored; a better one pushes
    the worst out). Deleting a level the side does not hold changes nothing;
    ``counts`` (if given) gets ``benign`` (such deletes, except beyond a full
    side; the event closing a crossed batch reports the cross instead) and ``crossed``.
    """
    bids: dict[int, float] = {}
    asks: dict[int, float] = {}
    rows_b, rows_bq, rows_a, rows_aq, ts, seq, after_clear, ntrades = [], [], [], [], [], [], [], []
    trades: list[tuple[float, float]] = []
    fresh, resync = True, True
    counts = counts if counts is not None else {}
    counts.setdefault("benign", 0)
    counts.setdefault("crossed", 0)
    for ev in events:
        f = int(ev["flags"])
        if f & E.CLEAR:
            bids.clear(); asks.clear(); fresh = True; resync = False
        if resync:
            continue
        benign = False
        if f & E.DEPTH:
            is_bid = bool(f & E.BUY)
            side = bids if is_bid else asks
            p, q = int(ev["price"]), float(ev["size"])
            worst = (min(side) if is_bid else max(side)) if side else None
            full = capacity is not None and len(side) >= capacity
            beyond = full and worst is not None and ((p < worst) if is_bid else (p > worst))
            if q == 0:
                if p in side:
                    side.pop(p)
                elif not beyond:
                    counts["benign"] += 1
                    benign = True
            elif p in side:
                side[p] = q
            elif not beyond:
                if full:
                    side.pop(worst)
                side[p] = q
        if f & E.TRADE:
            trades.append((int(ev["price"]), float(ev["size"])))
        if f & E.EOB and bids and asks:
            if max(bids) >= min(asks):
                counts["crossed"] += 1
                counts["benign"] -= benign
                resync = True
                continue
            bp = sorted(bids, reverse=True)[:levels]
            ap = sorted(asks)[:levels]
            pad = lambda xs: xs + [0] * (levels - len(xs))  # noqa: E731
            rows_b.append(pad(bp)); rows_a.append(pad(ap))
            rows_bq.append(pad([bids[p] for p in bp])); rows_aq.append(pad([asks[p] for p in ap]))
            ts.append(int(ev["exch_ts"])); seq.append(int(ev["seq"]))
            after_clear.append(fresh); fresh = False
            ntrades.append(len(trades))
    arr = lambda x, t: np.array(x, dtype=t).reshape(len(x), levels)  # noqa: E731
    return (arr(rows_b, np.int64), arr(rows_bq, float), arr(rows_a, np.int64), arr(rows_aq, float),
            np.array(ts, np.int64), np.array(seq, np.int64), np.array(after_clear, bool), np.array(ntrades, np.int64),
            trades)


def reference_features(events: np.ndarray, spec: FeatureSpec, tick: float, counts: dict | None = None
                       ) -> pd.DataFrame:
    L = spec.levels
    bp, bq, ap, aq, ts, seq, fresh, ntr, trades = book_states(events, L, spec.book_capacity, counts)
    out: dict[str, np.ndarray] = {}
    b1, a1 = bp[:, 0] * tick, ap[:, 0] * tick
    qb, qa = bq[:, 0], aq[:, 0]
    mid = (a1 + b1) / 2
    spread = a1 - b1
    out["mid"] = mid
    out["spread"] = spread
    out["spread_ticks"] = (ap[:, 0] - bp[:, 0]).astype(float)
    out["spread_rel"] = spread / mid
    out["microprice"] = (a1 * qb + b1 * qa) / (qb + qa)
    nb_ = spec.imb_buckets
    table = spec.default_table().reshape(2, nb_)
    ib = np.minimum((qb / (qb + qa) * nb_).astype(int), nb_ - 1)
    sb = np.where(ap[:, 0] - bp[:, 0] <= 1, 0, 1)
    out["microprice_adj"] = mid + spread * table[sb, ib]
    out["qimb_1"] = (qb - qa) / (qb + qa)
    for k in spec.depth_ks:
        db, da = bq[:, :k].sum(1), aq[:, :k].sum(1)
        out[f"depth_bid_{k}"], out[f"depth_ask_{k}"] = db, da
        out[f"depth_imb_{k}"] = np.where(db + da > 0, (db - da) / np.where(db + da > 0, db + da, 1), 0.0)
    # OFI (Cont et al. 2014; Xu et al. 2019), missing level = same price, size 0
    pbp, pbq = np.roll(bp, 1, 0), np.roll(bq, 1, 0)
    pap, paq = np.roll(ap, 1, 0), np.roll(aq, 1, 0)
    miss_b = (bq == 0) | (pbq == 0)
    miss_a = (aq == 0) | (paq == 0)
    eb = np.where(miss_b, bq - pbq, (bp >= pbp) * bq - (bp <= pbp) * pbq)
    ea = np.where(miss_a, aq - paq, (ap <= pap) * aq - (ap >= pap) * paq)
    ofi = eb - ea
    ofi[fresh] = 0.0
    w = 1.0 / np.arange(1, L + 1)
    ofi_dw = ofi @ (w / w.sum())
    for m in range(L):
        out[f"ofi_{m + 1}"] = ofi[:, m]
    out["ofi_dw"] = ofi_dw
    for win in spec.ofi_windows:
        out[f"ofi_1_sum_{win}"] = pd.Series(ofi[:, 0]).rolling(win, min_periods=1).sum().to_numpy()
        out[f"ofi_dw_sum_{win}"] = pd.Series(ofi_dw).rolling(win, min_periods=1).sum().to_numpy()
    for k in spec.depth_ks:
        for nm, p, q in (("bid", bp, bq), ("ask", ap, aq)):
            den = q[:, :k].sum(1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[f"vwap_{nm}_{k}"] = np.where(den > 0, (p[:, :k] * tick * q[:, :k]).sum(1) / den, np.nan)
    n = spec.trade_window
    tv = np.full(len(mid), np.nan)
    for i, c in enumerate(ntr):
        if c:
            last = trades[max(0, c - n):c]
            v = sum(s for _, s in last)
            tv[i] = sum(p * tick * s for p, s in last) / v if v > 0 else np.nan
    out[f"trade_vwap_{n}"] = tv
    lm = pd.Series(np.log(mid))
    for h in spec.ret_rows:
        out[f"ret_{h}"] = lm.diff(h).to_numpy()
    r2 = lm.diff() ** 2
    for h in spec.rv_rows:
        out[f"rv_{h}"] = np.sqrt(r2.rolling(h).sum().to_numpy())
    r2c = np.concatenate([[0.0], r2.to_numpy()[1:]])
    for s in spec.time_windows:
        j = np.searchsorted(ts, ts - s * 1e9, side="right") - 1
        ok = j >= 0
        jj = np.where(ok, j, 0)
        ret = np.where(ok, lm.to_numpy() - lm.to_numpy()[jj], np.nan)
        rv = np.array([np.sqrt(r2c[a + 1:i + 1].sum()) if o else np.nan
                       for i, (a, o) in enumerate(zip(jj, ok))])
        out[f"ret_{_fmt_seconds(s)}"], out[f"rv_{_fmt_seconds(s)}"] = ret, rv
    df = pd.DataFrame({name: out[name] for name in spec.names})
    df.insert(0, "sequence", seq)
    df.insert(0, "ts_ns", ts)
    return df


def random_events(seed: int, n_batches: int, levels: int = 5, trade_p: float = 0.2) -> np.ndarray:
    """Random valid level updates (never crossed) with trades, as EOB batches."""
    rng = np.random.default_rng(seed)
    bids = {1000 - i: float(rng.integers(1, 20)) for i in range(levels + 2)}
    asks = {1002 + i: float(rng.integers(1, 20)) for i in range(levels + 2)}
    evs = [(E.CLEAR | E.SNAPSHOT, 0, 0.0)]
    evs += [(E.DEPTH | E.BUY | E.SNAPSHOT, p, q) for p, q in bids.items()]
    evs += [(E.DEPTH | E.SELL | E.SNAPSHOT, p, q) for p, q in asks.items()]
    batches = [evs]
    for _ in range(n_batches):
        batch = []
        for _ in range(int(rng.integers(1, 4))):
            side_bid = rng.random() < 0.5
            book = bids if side_bid else asks
            best_other = min(asks) if side_bid else max(bids)
            best = max(bids) if side_bid else min(asks)
            off = int(rng.integers(-1, levels + 2))
            p = best - off if side_bid else best + off
            if (side_bid and p >= best_other) or (not side_bid and p <= best_other):
                continue
            u = rng.random()
            if p in book and (u < 0.3) and len(book) > 1:
                q = 0.0
            else:
                q = float(rng.integers(1, 50)) * (0.5 if rng.random() < 0.3 else 1.0)
            if q == 0.0:
                book.pop(p)
            else:
                book[p] = q
            batch.append((E.DEPTH | (E.BUY if side_bid else E.SELL), p, q))
        if rng.random() < trade_p:
            batch.append((E.TRADE | (E.BUY if rng.random() < 0.5 else E.SELL),
                          int(min(asks) if rng.random() < 0.5 else max(bids)), float(rng.integers(1, 10))))
        if not batch:
            continue
        batches.append(batch)
    n = sum(len(b) for b in batches)
    ev = E.empty(n)
    i, t = 0, 1_000_000_000
    for s, batch in enumerate(batches):
        t += int(rng.exponential(2e8))
        for j, (f, p, q) in enumerate(batch):
            ev[i] = (f | (E.EOB if j == len(batch) - 1 else 0), -1, t, t, s, p, q, 0, 0.0)
            i += 1
    return ev
