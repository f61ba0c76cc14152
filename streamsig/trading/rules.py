"""Rule-based strategies every backtest runs beside the model, on the same events and costs.

- ``flat``: never trades.
- ``buy_and_hold``: long ``size`` from the first row on.
- ``sma``: long ``size`` while the fast simple moving average of the mid (over
  ``fast`` rows) is above the slow one (``slow`` rows), short while below;
  flat until ``slow`` mids exist, unchanged on a tie.
- ``ofi``: long ``size`` when the rolling order-flow sum ``ofi_1_sum_<window>``
  is above ``+threshold``, short below ``-threshold``, otherwise unchanged.
  Without a fixed threshold it is ``k`` times the mean absolute value of that
  sum over the rows seen so far (causal: no future rows).

Each is a :class:`~streamsig.trading.strategies.Strategy`; state carries across
chunks, so targets do not depend on how the stream is chunked.

>>> import numpy as np
>>> from streamsig.features import FeatureSpec
>>> spec = FeatureSpec(levels=1)
>>> rows = np.zeros((6, spec.n_features)); rows[:, 0] = [1, 2, 3, 2, 1, 0]
>>> Sma(fast=1, slow=2).start("X", spec).step(rows, np.arange(6))[1].tolist()
[0.0, 1.0, 1.0, -1.0, -1.0, -1.0]
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from streamsig.features import FeatureSpec


class _Const:
    def __init__(self, value: float) -> None:
        self.value = value

    def step(self, rows: np.ndarray, ts_ns: np.ndarray) -> tuple[None, np.ndarray]:
        return None, np.full(len(rows), self.value)


class Flat:
    """Never trades (the zero line every cost is measured against)."""

    name = "flat"

    def start(self, symbol: str, spec: FeatureSpec) -> _Const:
        return _Const(0.0)


class BuyAndHold:
    """Long ``size`` from the first row to the end."""

    name = "buy_and_hold"

    def __init__(self, size: float = 1.0) -> None:
        self.size = float(size)

    def start(self, symbol: str, spec: FeatureSpec) -> _Const:
        return _Const(self.size)


def _ffill(values: np.ndarray, carry: float) -> np.ndarray:
    """NaNs replaced by the last non-NaN value before them (``carry`` before the first)."""
    ok = ~np.isnan(values)
    last = np.maximum.accumulate(np.where(ok, np.arange(len(values)), -1))
    return np.where(last >= 0, values[np.maximum(last, 0)], carry)


class _SmaTrader:
    def __init__(self, imid: int, fast: int, slow: int, size: float) -> None:
        self.imid, self.fast, self.slow, self.size = imid, fast, slow, size
        self.tail = np.zeros(0)  # the last slow - 1 mids (gaps filled forward)
        self.pos = 0.0

    def step(self, rows: np.ndarray, ts_ns: np.ndarray) -> tuple[None, np.ndarray]:
        n = len(rows)
        carry = self.tail[-1] if len(self.tail) else np.nan
        x = np.concatenate([self.tail, _ffill(rows[:, self.imid], carry)])  # one-sided books: last mid
        out = np.full(n, self.pos)
        m = min(n, len(x) - self.slow + 1)  # rows whose slow window is full
        if m > 0:
            slow = sliding_window_view(x[-(m + self.slow - 1):], self.slow).mean(axis=1)
            fast = sliding_window_view(x[-(m + self.fast - 1):], self.fast).mean(axis=1)
            sig = np.where(fast > slow, self.size, np.where(fast < slow, -self.size, np.nan))
            out[n - m:] = _ffill(sig, self.pos)
            self.pos = float(out[-1])
        self.tail = x[-(self.slow - 1):]
        return None, out


class Sma:
    """Moving-average crossover on the mid, ``fast`` and ``slow`` windows in rows."""

    name = "sma"

    def __init__(self, fast: int = 50, slow: int = 200, size: float = 1.0) -> None:
        if not 1 <= fast < slow:
            raise ValueError(f"need 1 <= fast < slow, got fast={fast} slow={slow}")
        self.fast, self.slow, self.size = int(fast), int(slow), float(size)

    def start(self, symbol: str, spec: FeatureSpec) -> _SmaTrader:
        return _SmaTrader(spec.index("mid"), self.fast, self.slow, self.size)


class _OfiTrader:
    def __init__(self, col: int, threshold: float | None, k: float, size: float) -> None:
        self.col, self.threshold, self.k, self.size = col, threshold, k, size
        self.abs_sum, self.count, self.pos = 0.0, 0, 0.0

    def step(self, rows: np.ndarray, ts_ns: np.ndarray) -> tuple[None, np.ndarray]:
        x = rows[:, self.col]
        ok = np.isfinite(x)
        if self.threshold is None:  # k * mean |x| over rows up to and including this one
            s = self.abs_sum + np.cumsum(np.where(ok, np.abs(x), 0.0))
            c = self.count + np.cumsum(ok)
            thr = self.k * np.divide(s, c, out=np.full(len(x), np.inf), where=c > 0)
            if len(x):
                self.abs_sum, self.count = float(s[-1]), int(c[-1])
        else:
            thr = np.full(len(x), self.threshold)
        sig = np.where(ok & (x > thr), self.size, np.where(ok & (x < -thr), -self.size, np.nan))
        out = _ffill(sig, self.pos)
        if len(out):
            self.pos = float(out[-1])
        return None, out


class OfiRule:
    """Sign of the rolling level-1 OFI sum beyond a threshold (fixed, or ``k`` x running mean |OFI|)."""

    name = "ofi"

    def __init__(self, window: int = 50, threshold: float | None = None, k: float = 2.0,
                 size: float = 1.0) -> None:
        self.window, self.threshold, self.k, self.size = int(window), threshold, float(k), float(size)

    def start(self, symbol: str, spec: FeatureSpec) -> _OfiTrader:
        return _OfiTrader(spec.index(self.column(spec)), self.threshold, self.k, self.size)

    def column(self, spec: FeatureSpec) -> str:
        """``ofi_1_sum_<window>``, or the spec's closest OFI window if it lacks that one."""
        wins = spec.ofi_windows
        if not wins:
            raise ValueError("the feature spec has no rolling OFI windows")
        w = self.window if self.window in wins else min(wins, key=lambda v: (abs(v - self.window), v))
        return f"ofi_1_sum_{w}"


def default_baselines(size: float = 1.0) -> list[Flat | BuyAndHold | Sma | OfiRule]:
    """The four baselines of every report, trading ``size`` units."""
    return [Flat(), BuyAndHold(size), Sma(size=size), OfiRule(size=size)]
