"""Feature table -> model inputs: time-ordered rows with a label and finite features.

The table is put in time order (stable on ``ts_ns``; each symbol's rows must
already be in time order). Positions (``pos``, ``end_pos``) count rows of that
time-ordered table, so a label whose last read row is before a test block's
first row cannot see it, whatever the symbol interleaving.

Model inputs are float32: the ONNX models take float32, so training, offline
scoring and the live scorer all see the same rounded values.

>>> from streamsig.labels import LabelConfig
>>> from streamsig.models.synthetic import planted_table
>>> ds = build_dataset(planted_table(300), ["ofi_1", "qimb_1"], LabelConfig(horizon=2))
>>> ds.X.dtype, ds.X.shape, int(ds.y.max()) <= 2, bool((ds.end_pos > ds.pos).all())
(dtype('float32'), (298, 2), True, True)
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from streamsig.labels import LabelConfig, label_end_index, make_labels


@dataclass
class Dataset:
    """Labelled rows in time order. ``X_seq`` holds each row's last ``window`` rows."""

    features: list[str]
    X: np.ndarray  #: (n, F) float32
    y: np.ndarray  #: (n,) int64 in {0, 1, 2}
    pos: np.ndarray  #: (n,) position in the time-ordered table
    end_pos: np.ndarray  #: (n,) position of the last row the label reads
    ts_ns: np.ndarray  #: (n,) int64 (row order when the table has no ts_ns)
    symbol: np.ndarray  #: (n,) object
    persistence: np.ndarray  #: (n,) label of the last move realised by that row, -1 if none
    extra: dict[str, np.ndarray] = field(default_factory=dict)  #: float64 side columns
    window: int = 1
    X_seq: np.ndarray | None = None  #: (n, window, F) float32 when window > 1

    def __len__(self) -> int:
        return len(self.y)

    def inputs(self) -> np.ndarray:
        """What the model takes: ``X_seq`` for sequence models, else ``X``."""
        return self.X_seq if self.window > 1 else self.X


def time_ordered(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` in time order (stable on ``ts_ns``), index reset.

    Raises ValueError when a symbol's rows are not already in time order.
    """
    if "ts_ns" not in df.columns:
        return df.reset_index(drop=True)
    sym = df["symbol"].to_numpy() if "symbol" in df.columns else np.zeros(len(df))
    ts = df["ts_ns"].to_numpy(dtype=np.int64)
    for s in pd.unique(sym):
        t = ts[sym == s]
        if len(t) > 1 and (np.diff(t) < 0).any():
            raise ValueError(f"rows of symbol {s!r} are not in time order")
    order = np.argsort(ts, kind="stable")
    return df.iloc[order].reset_index(drop=True)


def _groups(table: pd.DataFrame) -> list[np.ndarray]:
    if "symbol" not in table.columns:
        return [np.arange(len(table))]
    sym = table["symbol"].to_numpy()
    return [np.flatnonzero(sym == s) for s in pd.unique(sym)]


def _persistence(y: np.ndarray, end: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    out = np.full(len(y), -1, dtype=np.int8)
    for idx in groups:
        ok = (y[idx] >= 0) & (end[idx] >= 0)
        e, lab = end[idx][ok], y[idx][ok]
        order = np.argsort(e, kind="stable")
        e, lab = e[order], lab[order]
        k = np.searchsorted(e, idx, side="right") - 1
        out[idx] = np.where(k >= 0, lab[np.maximum(k, 0)], -1)
    return out


def build_dataset(df: pd.DataFrame, features: Sequence[str],
                  label_cfg: LabelConfig | dict, *, window: int = 1,
                  extra_cols: Sequence[str] = ()) -> Dataset:
    """Label ``df``, keep rows with a label and ``window`` finite feature rows of their symbol."""
    cfg = LabelConfig.coerce(label_cfg)
    features = list(features)
    missing = [c for c in [*features, cfg.price_col, *extra_cols] if c not in df.columns]
    if missing:
        raise ValueError(f"feature table lacks column(s) {missing}")
    if len(set(features)) != len(features):
        raise ValueError("feature names repeat")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    table = time_ordered(df)
    n = len(table)
    y = make_labels(table, cfg).astype(np.int64)
    end = label_end_index(table, cfg)
    F = table[features].to_numpy(dtype=np.float64).astype(np.float32)
    finite = np.isfinite(F).all(axis=1)
    groups = _groups(table)
    win_ok = np.zeros(n, dtype=bool)
    win_idx = np.zeros((n, window), dtype=np.int64)
    for idx in groups:
        bad = np.concatenate([[0], np.cumsum(~finite[idx])])
        local = np.arange(len(idx))
        start = local - window + 1
        win_ok[idx] = (start >= 0) & (bad[local + 1] - bad[np.maximum(start, 0)] == 0)
        win_idx[idx] = idx[np.clip(start[:, None] + np.arange(window), 0, None)]
    keep = np.flatnonzero((y >= 0) & win_ok)
    ts = (table["ts_ns"].to_numpy(dtype=np.int64) if "ts_ns" in table.columns
          else np.arange(n, dtype=np.int64))
    sym = (table["symbol"].to_numpy(dtype=object) if "symbol" in table.columns
           else np.full(n, "", dtype=object))
    return Dataset(
        features=features,
        X=F[keep],
        y=y[keep],
        pos=keep.astype(np.int64),
        end_pos=end[keep],
        ts_ns=ts[keep],
        symbol=sym[keep],
        persistence=_persistence(y, end, groups)[keep],
        extra={c: table[c].to_numpy(dtype=np.float64)[keep] for c in extra_cols},
        window=window,
        X_seq=F[win_idx[keep]] if window > 1 else None,
    )
