"""A small feature table with a planted (or no) relation, for tests, benches and demos.

Per symbol, an order-flow variable ``ofi_1`` (AR(1), phi 0.5) and a queue
imbalance ``qimb_1`` (tanh of an AR(1), phi 0.8) drive the next mid move:
``u = strength * (1.2 * ofi_1 + 0.8 * qimb_1) + logistic noise``; the mid moves
one tick up when ``u > 1``, down when ``u < -1``, else stays. With
``strength=0`` the mid is a random walk that no column predicts.

Columns follow the feature kernel's names: ``ts_ns``, ``sequence``, ``symbol``,
``mid``, ``spread``, ``microprice``, ``qimb_1``, ``ofi_1``, ``ofi_2``,
``ofi_dw``, ``ofi_1_sum_10``, ``ofi_1_sum_50`` (NaN until the window fills),
``ret_10`` (log mid return over 10 rows, NaN before) and ``noise_1``.

>>> df = planted_table(200, seed=1, symbols=("A", "B"))
>>> len(df), sorted(df["symbol"].unique()), bool(df["ts_ns"].is_monotonic_increasing)
(400, ['A', 'B'], True)
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.signal import lfilter


def _ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    return lfilter([1.0], [1.0, -phi], rng.standard_normal(n))


def _one_symbol(rng: np.random.Generator, n: int, strength: float, tick: float,
                start_ns: int, mean_gap_ms: float) -> dict[str, np.ndarray]:
    flow = _ar1(rng, n, 0.5)
    qimb = np.tanh(0.7 * _ar1(rng, n, 0.8))
    u = strength * (1.2 * flow + 0.8 * qimb) + rng.logistic(size=n)
    move = np.where(u > 1.0, 1, np.where(u < -1.0, -1, 0))
    mid = 100.0 + tick * np.concatenate([[0], np.cumsum(move[:-1])])
    spread = tick * np.where(rng.random(n) < 0.2, 2.0, 1.0)
    ofi_2 = 0.5 * flow + rng.standard_normal(n)
    s = pd.Series(flow)
    gaps = rng.exponential(mean_gap_ms * 1e6, n).astype(np.int64) + 1
    return {
        "ts_ns": start_ns + np.cumsum(gaps),
        "sequence": np.arange(1, n + 1, dtype=np.int64),
        "mid": mid,
        "spread": spread,
        "microprice": mid + spread / 2 * qimb,
        "qimb_1": qimb,
        "ofi_1": flow,
        "ofi_2": ofi_2,
        "ofi_dw": (flow + 0.5 * ofi_2) / 1.5,
        "ofi_1_sum_10": s.rolling(10).sum().to_numpy(),
        "ofi_1_sum_50": s.rolling(50).sum().to_numpy(),
        "ret_10": np.log(pd.Series(mid) / pd.Series(mid).shift(10)).to_numpy(),
        "noise_1": rng.standard_normal(n),
    }


def planted_table(n: int = 5000, *, seed: int = 0, strength: float = 1.0,
                  symbols: Sequence[str] = ("SYN",), tick: float = 0.01,
                  start_ns: int = 1_700_000_000_000_000_000,
                  mean_gap_ms: float = 50.0) -> pd.DataFrame:
    """``n`` rows per symbol, merged in time order (see the module doc)."""
    rng = np.random.default_rng(seed)
    parts = []
    for sym in symbols:
        cols = _one_symbol(rng, n, strength, tick, start_ns, mean_gap_ms)
        part = pd.DataFrame(cols)
        part.insert(2, "symbol", sym)
        parts.append(part)
    df = pd.concat(parts, ignore_index=True)
    return df.sort_values("ts_ns", kind="stable").reset_index(drop=True)
