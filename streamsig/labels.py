"""Ternary mid-price labels (down 0 / flat 1 / up 2) and a leakage guard.

Two label families, both computed per symbol on the ``mid`` column:

- ``horizon``: compare the mid ``h`` rows ahead (``unit="rows"``), or the mid at
  the first row whose ``ts_ns`` is at least ``t + h`` seconds (``unit="seconds"``),
  with the mid now.
- ``smoothed``: Zhang, Zohren & Roberts (2019), "DeepLOB: deep convolutional
  neural networks for limit order books", IEEE Trans. Signal Process. 67(11),
  eqs. (3)-(4): the mean of the next ``k`` mids, ``m+ = mean(p[t+1..t+k])``,
  against the mid now (``reference="current"``) or against the mean of the last
  ``k`` mids ``m- = mean(p[t-k+1..t])`` (``reference="past_mean"``; the paper's
  sum over i = 0..k divided by k is read as a k-term mean).

The change is relative, ``(future - ref) / ref``, or in ticks,
``(future - ref) / tick_size``. It is up when it is above ``threshold``, down
when below ``-threshold``, flat otherwise. Means are taken over differences to
the reference, so an unchanged mid gives a change of exactly 0.

A row whose label would read past the end of its symbol's rows (or before its
start, for ``past_mean``) gets label -1; :func:`with_labels` drops such rows.
:func:`label_end_index` gives the last row each label reads, for purging.

>>> import pandas as pd
>>> df = pd.DataFrame({"mid": [10.0, 10.0, 10.5, 10.0, 10.0]})
>>> make_labels(df, LabelConfig(horizon=1)).tolist()
[1, 2, 0, 1, -1]
>>> label_end_index(df, LabelConfig(horizon=2)).tolist()
[2, 3, 4, -1, -1]
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from streamsig.config import Config

DOWN, FLAT, UP = 0, 1, 2
CLASS_NAMES = ("down", "flat", "up")
MISSING = -1


@dataclass(frozen=True)
class LabelConfig(Config):
    """What a label means.

    ``horizon`` is ``h`` in rows or seconds (``kind="horizon"``) or ``k`` in rows
    (``kind="smoothed"``, where ``unit`` must be ``"rows"``). ``threshold`` is the
    dead band (``alpha`` in DeepLOB), relative or in ticks.

    >>> LabelConfig(kind="smoothed", horizon=5, threshold=2e-5).describe()
    'smoothed: mean of next 5 mids vs current mid, relative change beyond 2e-05'
    """

    kind: Literal["horizon", "smoothed"] = "horizon"
    horizon: float = 10
    unit: Literal["rows", "seconds"] = "rows"
    threshold: float = 0.0
    threshold_unit: Literal["relative", "ticks"] = "relative"
    tick_size: float | None = None
    reference: Literal["current", "past_mean"] = "current"
    price_col: str = "mid"

    ignore_keys: ClassVar[tuple[str, ...]] = ("description",)  #: a card writes one beside the fields

    def __post_init__(self) -> None:
        if self.kind not in ("horizon", "smoothed"):
            raise ValueError(f"label kind must be 'horizon' or 'smoothed', got {self.kind!r}")
        if self.unit not in ("rows", "seconds"):
            raise ValueError(f"label unit must be 'rows' or 'seconds', got {self.unit!r}")
        if self.horizon <= 0:
            raise ValueError(f"label horizon must be positive, got {self.horizon}")
        if (self.unit == "rows" or self.kind == "smoothed") and self.horizon != int(self.horizon):
            raise ValueError(f"a horizon in rows must be a whole number, got {self.horizon}")
        if self.kind == "smoothed" and self.unit != "rows":
            raise ValueError("smoothed labels count rows: use unit='rows'")
        if self.reference not in ("current", "past_mean"):
            raise ValueError(f"reference must be 'current' or 'past_mean', got {self.reference!r}")
        if self.reference == "past_mean" and self.kind != "smoothed":
            raise ValueError("reference='past_mean' applies to smoothed labels only")
        if self.threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {self.threshold}")
        if self.threshold_unit not in ("relative", "ticks"):
            raise ValueError(f"threshold_unit must be 'relative' or 'ticks', got {self.threshold_unit!r}")
        if self.threshold_unit == "ticks" and not (self.tick_size and self.tick_size > 0):
            raise ValueError("threshold_unit='ticks' needs a positive tick_size")

    @classmethod
    def coerce(cls, cfg: LabelConfig | dict[str, Any]) -> LabelConfig:
        """Accept a config or its dict form."""
        return cfg if isinstance(cfg, LabelConfig) else cls.from_dict(cfg)

    @property
    def horizon_ns(self) -> int:
        """The horizon in nanoseconds (``unit="seconds"``)."""
        return int(round(self.horizon * 1e9))

    def describe(self) -> str:
        """One line for humans."""
        band = (f"{self.threshold:g} ticks of {self.tick_size:g}" if self.threshold_unit == "ticks"
                else f"relative change beyond {self.threshold:g}")
        if self.kind == "smoothed":
            ref = "current mid" if self.reference == "current" else f"mean of last {int(self.horizon)} mids"
            return f"smoothed: mean of next {int(self.horizon)} mids vs {ref}, {band}"
        h = f"{int(self.horizon)} rows" if self.unit == "rows" else f"{self.horizon:g} s"
        return f"horizon: mid {h} ahead vs current mid, {band}"


def ternary(change: np.ndarray, threshold: float) -> np.ndarray:
    """Map changes to 0/1/2 (NaN -> -1).

    >>> ternary(np.array([-2.0, 0.0, 0.5, 2.0, np.nan]), 0.5).tolist()
    [0, 1, 1, 2, -1]
    """
    change = np.asarray(change, dtype=np.float64)
    out = np.full(change.shape, FLAT, dtype=np.int8)
    out[change > threshold] = UP
    out[change < -threshold] = DOWN
    out[np.isnan(change)] = MISSING
    return out


def horizon_end(n_or_ts: int | np.ndarray, horizon: float, unit: str = "rows") -> np.ndarray:
    """Index of the row each row's horizon label reads, -1 past the end.

    ``unit="rows"``: ``t + h``. ``unit="seconds"``: the first row ``j`` with
    ``ts[j] >= ts[t] + h`` seconds (``n_or_ts`` is then the int64 ``ts_ns`` array).

    >>> horizon_end(4, 2).tolist()
    [2, 3, -1, -1]
    >>> horizon_end(np.array([0, 4, 10, 15]) * 10**8, 1.0, "seconds").tolist()
    [2, 3, -1, -1]
    """
    if unit == "rows":
        n, h = int(n_or_ts), int(horizon)
        end = np.arange(n, dtype=np.int64) + h
    else:
        ts = np.asarray(n_or_ts, dtype=np.int64)
        n = len(ts)
        end = np.searchsorted(ts, ts + int(round(horizon * 1e9)), side="left").astype(np.int64)
    end[end >= n] = MISSING
    return end


def mid_change(diff: Any, ref: Any, cfg: LabelConfig) -> Any:
    """A mid difference in the label's unit: ``diff / ref`` (relative) or ``diff / tick_size``.

    >>> mid_change(0.02, 100.0, LabelConfig(threshold_unit="ticks", tick_size=0.01))
    2.0
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return diff / cfg.tick_size if cfg.threshold_unit == "ticks" else diff / ref


def _forward_mean_diff(p: np.ndarray, k: int) -> np.ndarray:
    """``mean(p[t+1..t+k] - p[t])`` (NaN where it runs past the end)."""
    n = len(p)
    out = np.full(n, np.nan)
    if n > k:
        fut = np.lib.stride_tricks.sliding_window_view(p[1:], k)[: n - k]
        out[: n - k] = np.add.reduce(np.ascontiguousarray(fut - p[: n - k, None]), axis=1) / k
    return out


def _past_mean_diff(p: np.ndarray, k: int) -> np.ndarray:
    """``mean(p[t-k+1..t] - p[t])`` (NaN before k rows exist)."""
    n = len(p)
    out = np.full(n, np.nan)
    if n >= k:
        past = np.lib.stride_tricks.sliding_window_view(p, k)
        out[k - 1:] = np.add.reduce(np.ascontiguousarray(past - p[k - 1:, None]), axis=1) / k
    return out


def _labels_one(p: np.ndarray, ts: np.ndarray | None, cfg: LabelConfig) -> np.ndarray:
    if cfg.kind == "horizon":
        end = horizon_end(ts if cfg.unit == "seconds" else len(p), cfg.horizon, cfg.unit)
        ok = end >= 0
        diff = np.full(len(p), np.nan)
        diff[ok] = p[end[ok]] - p[ok]
        return ternary(mid_change(diff, p, cfg), cfg.threshold)
    k = int(cfg.horizon)
    fwd = _forward_mean_diff(p, k)
    if cfg.reference == "current":
        return ternary(mid_change(fwd, p, cfg), cfg.threshold)
    back = _past_mean_diff(p, k)
    return ternary(mid_change(fwd - back, p + back, cfg), cfg.threshold)


def _end_one(n: int, ts: np.ndarray | None, cfg: LabelConfig) -> np.ndarray:
    if cfg.kind == "horizon":
        return horizon_end(ts if cfg.unit == "seconds" else n, cfg.horizon, cfg.unit)
    end = horizon_end(n, cfg.horizon, "rows")
    if cfg.reference == "past_mean":
        end[: int(cfg.horizon) - 1] = MISSING
    return end


def _by_symbol(df: pd.DataFrame, cfg: LabelConfig, fn: Callable[..., np.ndarray],
               local_index: bool) -> np.ndarray:
    if cfg.unit == "seconds" and "ts_ns" not in df.columns:
        raise ValueError("labels with a horizon in seconds need a ts_ns column")
    p_all = df[cfg.price_col].to_numpy(dtype=np.float64)
    ts_all = df["ts_ns"].to_numpy(dtype=np.int64) if cfg.unit == "seconds" else None
    groups = ([np.arange(len(df))] if "symbol" not in df.columns
              else [np.flatnonzero(m) for m in _symbol_masks(df["symbol"].to_numpy())])
    out = np.full(len(df), MISSING, dtype=np.int64 if local_index else np.int8)
    for idx in groups:
        ts = ts_all[idx] if ts_all is not None else None
        if ts is not None and np.any(np.diff(ts) < 0):
            raise ValueError("ts_ns goes backwards within a symbol: sort the table by time first")
        if local_index:
            e = fn(len(idx), ts, cfg)
            out[idx] = np.where(e >= 0, idx[np.maximum(e, 0)], MISSING)
        else:
            out[idx] = fn(p_all[idx], ts, cfg)
    return out


def _symbol_masks(sym: np.ndarray) -> list[np.ndarray]:
    return [sym == s for s in pd.unique(sym)]


def make_labels(df: pd.DataFrame, cfg: LabelConfig | dict[str, Any]) -> np.ndarray:
    """Labels 0/1/2 for every row of ``df`` (-1 where undefined), per symbol, in row order.

    >>> df = pd.DataFrame({"mid": [100.0, 100.0, 100.02, 99.98, 100.0]})
    >>> make_labels(df, LabelConfig(horizon=1, threshold=1.5, threshold_unit="ticks",
    ...                             tick_size=0.01)).tolist()
    [1, 2, 0, 2, -1]
    """
    return _by_symbol(df, LabelConfig.coerce(cfg), _labels_one, local_index=False)


def label_end_index(df: pd.DataFrame, cfg: LabelConfig | dict[str, Any]) -> np.ndarray:
    """Row position (in ``df``) of the last row each label reads; -1 where undefined.

    Rows of other symbols interleaved in ``df`` are skipped over, so the value is a
    position in ``df`` itself.

    >>> df = pd.DataFrame({"symbol": ["A", "B", "A", "B", "A"], "mid": [1.0] * 5})
    >>> label_end_index(df, LabelConfig(horizon=1)).tolist()
    [2, 3, 4, -1, -1]
    """
    return _by_symbol(df, LabelConfig.coerce(cfg), _end_one, local_index=True)


def with_labels(df: pd.DataFrame, cfg: LabelConfig | dict[str, Any],
                column: str = "label") -> pd.DataFrame:
    """A copy of ``df`` with a ``label`` column, rows without a defined label dropped.

    >>> with_labels(pd.DataFrame({"mid": [1.0, 2.0, 1.0]}), LabelConfig(horizon=1))["label"].tolist()
    [2, 0]
    """
    y = make_labels(df, cfg)
    out = df.assign(**{column: y})
    return out[y >= 0].reset_index(drop=True)


# --------------------------------------------------------------------------- leakage guard

class LeakageError(ValueError):
    """A feature (or label end index) reads rows it must not."""


@dataclass
class LeakageReport:
    """Outcome of :func:`check_no_leakage`.

    ``leaky`` maps a feature to the first row (of the full output) whose value
    changed when later rows were removed; ``label_problems`` lists rows whose
    label reads past what :func:`label_end_index` says.
    """

    cuts: list[int]
    leaky: dict[str, int] = field(default_factory=dict)
    label_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.leaky and not self.label_problems

    def __str__(self) -> str:
        if self.ok:
            return f"no leakage found at cuts {self.cuts}"
        parts = [f"{name} changes at row {row} when later rows are removed"
                 for name, row in sorted(self.leaky.items(), key=lambda kv: kv[1])]
        return "; ".join(parts + self.label_problems)

    def raise_if_leaky(self) -> None:
        """Raise :class:`LeakageError` with a one-line reason unless :attr:`ok`."""
        if not self.ok:
            raise LeakageError(f"leakage: {self}")


def _prefix(data: Any, n: int) -> Any:
    return data.iloc[:n] if isinstance(data, (pd.DataFrame, pd.Series)) else data[:n]


def _same(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        return np.isclose(a.astype(np.float64), b.astype(np.float64), rtol=rtol, atol=atol,
                          equal_nan=True)
    return a == b


def check_no_leakage(
    data: Any,
    features_fn: Callable[[Any], pd.DataFrame],
    *,
    features: Sequence[str] | None = None,
    cuts: Sequence[int] | None = None,
    n_cuts: int = 4,
    key: Sequence[str] = ("symbol", "sequence"),
    label_cfg: LabelConfig | dict[str, Any] | None = None,
    rtol: float = 0.0,
    atol: float = 1e-12,
) -> LeakageReport:
    """Recompute features on prefixes of ``data`` and report any that read ahead.

    ``features_fn(prefix)`` maps the first ``c`` input rows (events array or
    DataFrame; anything sliceable) to a feature DataFrame. A causal feature's
    value at an output row must not change when input rows after it are removed,
    so for each cut ``c`` the prefix output must equal the first rows of the full
    output (aligned by position; the ``key`` columns present must agree). With
    ``label_cfg``, labels recomputed on each prefix must agree with the full ones
    wherever :func:`label_end_index` says the label ends before the cut, and be -1
    elsewhere; otherwise purging by that index would be too short.

    >>> df = pd.DataFrame({"mid": np.cumsum(np.ones(50))})
    >>> honest = lambda d: pd.DataFrame({"mid": d["mid"], "ret_1": d["mid"].diff()})
    >>> check_no_leakage(df, honest, label_cfg=LabelConfig(horizon=2)).ok
    True
    >>> peek = lambda d: pd.DataFrame({"fwd": d["mid"].shift(-1)})
    >>> str(check_no_leakage(df, peek, cuts=[20]))
    'fwd changes at row 19 when later rows are removed'
    """
    full = features_fn(data)
    n_in = len(data)
    names = list(features) if features is not None else [
        c for c in full.columns if c not in key and c != "ts_ns"]
    if cuts is None:
        cuts = sorted({int(c) for c in np.linspace(n_in // 4, n_in - 1, n_cuts)} - {0})
    report = LeakageReport(cuts=list(cuts))
    cfg = LabelConfig.coerce(label_cfg) if label_cfg is not None else None
    if cfg is not None:
        y_full, end_full = make_labels(full, cfg), label_end_index(full, cfg)
    for c in cuts:
        part = features_fn(_prefix(data, c))
        m = len(part)
        if m > len(full):
            report.label_problems.append(f"prefix of {c} rows gave more output rows than the full data")
            continue
        head = full.iloc[:m]
        for k in key:
            if k in part.columns and k in head.columns and not np.array_equal(
                    part[k].to_numpy(), head[k].to_numpy()):
                report.label_problems.append(f"prefix of {c} rows: column {k} does not line up")
                break
        for name in names:
            same = _same(part[name].to_numpy(), head[name].to_numpy(), rtol, atol)
            if not same.all():
                row = int(np.flatnonzero(~same)[0])
                report.leaky[name] = min(row, report.leaky.get(name, row))
        if cfg is not None and m:
            y_part = make_labels(part, cfg)
            inside = (end_full[:m] >= 0) & (end_full[:m] < m)
            want = np.where(inside, y_full[:m], MISSING)
            bad = np.flatnonzero(want != y_part)
            if len(bad):
                report.label_problems.append(
                    f"label of row {int(bad[0])} reads past label_end_index (cut {c})")
    return report
