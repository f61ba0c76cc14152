"""Per-symbol feature state: the live (per event, or per batch of frames) and batch drivers.

Both drivers call the same compiled kernel (:func:`streamsig.features.kernel.run`);
the batch path is just one call over the whole event array.

>>> from streamsig.book import events as E
>>> ev = E.empty(3)
>>> ev["flags"] = [E.CLEAR | E.SNAPSHOT, E.DEPTH | E.BUY | E.SNAPSHOT, E.DEPTH | E.SELL | E.SNAPSHOT | E.EOB]
>>> ev["price"] = [0, 9999, 10001]
>>> ev["size"] = [0, 3.0, 1.0]
>>> st = FeatureState(FeatureSpec(levels=1), tick_size=0.01)
>>> rows, idx, reasons = st.update(ev)
>>> float(rows[0, st.spec.index("mid")]), float(rows[0, st.spec.index("qimb_1")])
(100.0, 0.5)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamsig.book import events as E
from streamsig.features import kernel as K
from streamsig.features import spec as S
from streamsig.features.spec import FeatureSpec


def _entry_point():  # noqa: ANN202
    """The compiled kernel for writable C-contiguous event arrays, without type dispatch.

    Calling a numba dispatcher costs ~2 µs of argument typing for eight arrays;
    the compiled entry point of the one signature the live path uses costs ~0.7 µs.
    """
    ev = E.empty(1)
    spec = FeatureSpec(levels=1)
    ipar, fpar = spec.kernel_params()
    args = (ev, np.zeros(int(ipar[S.P_NINT]), np.int64), np.zeros(int(ipar[S.P_NFLOAT])), ipar, fpar,
            np.empty((1, spec.n_features)), np.empty(1, np.int64), np.empty(1, np.uint8))
    K.run(*args)
    sig = tuple(K.run.typeof_pyval(a) for a in args)
    return K.run.overloads[sig].entry_point


_FAST_RUN = None


def _run(ev: np.ndarray, *args: np.ndarray) -> int:
    global _FAST_RUN
    if ev.flags.c_contiguous and ev.flags.writeable and ev.dtype == E.EVENT_DTYPE:
        if _FAST_RUN is None:
            _FAST_RUN = _entry_point()
        return _FAST_RUN(ev, *args)
    return K.run(ev, *args)


class FeatureState:
    """Book + rolling feature state of one symbol, as two flat arrays.

    ``update(events)`` applies a frame and returns its feature rows;
    ``on_event(event)`` is the one-event form the live path may call;
    ``to_bytes()`` / ``load_bytes()`` checkpoint everything (book included).
    """

    def __init__(self, spec: FeatureSpec, tick_size: float) -> None:
        self.spec, self.tick_size = spec, float(tick_size)
        self.ipar, self.fpar = spec.kernel_params()
        self.fpar[0] = self.tick_size
        self.istate = np.zeros(int(self.ipar[S.P_NINT]), np.int64)
        self.fstate = np.zeros(int(self.ipar[S.P_NFLOAT]), np.float64)
        self.istate[S.I_LAST_SEQ] = -1
        self.istate[S.I_LAST_EOB_SEQ] = -1
        self.istate[S.I_RESYNC] = 1  # nothing trusted before the first snapshot
        nf = spec.n_features
        self._row = np.empty((1, nf), np.float64)
        self._one_idx = np.empty(1, np.int64)
        self._one_reason = np.empty(1, np.uint8)

    # ---- drivers --------------------------------------------------------------------
    def update(self, events: np.ndarray, out: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Apply events; returns ``(rows[n, F], event_index[n], reasons[len(events)])``.

        With ``out`` (float64, F columns, at least one row per end-of-batch
        event) the rows are written there and returned as a view of it: a
        reused buffer saves the page faults of a fresh allocation per chunk.
        """
        n_eob = int(np.count_nonzero(events["flags"] & E.EOB))
        if out is None or len(out) < n_eob:
            out = np.empty((n_eob, self.spec.n_features), np.float64)
        idx = np.empty(n_eob, np.int64)
        reasons = np.zeros(len(events), np.uint8)
        n = _run(events, self.istate, self.fstate, self.ipar, self.fpar, out, idx, reasons)
        return out[:n], idx[:n], reasons

    def on_event(self, event: np.ndarray) -> tuple[np.ndarray | None, int]:
        """Apply one event (a length-1 array); returns ``(row or None, reason)``.

        The row is a view of an internal buffer, valid until the next call.
        """
        n = _run(event, self.istate, self.fstate, self.ipar, self.fpar,
                 self._row, self._one_idx, self._one_reason)
        return (self._row[0] if n else None), int(self._one_reason[0])

    # ---- views ----------------------------------------------------------------------
    @property
    def n_bid(self) -> int:
        return int(self.istate[S.I_NBID])

    @property
    def n_ask(self) -> int:
        return int(self.istate[S.I_NASK])

    def _side(self, po: int, so: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        cap = int(self.ipar[S.P_CAP])
        a, b = int(self.ipar[po]), int(self.ipar[so])
        return self.istate[a:a + cap], self.fstate[b:b + cap]

    @property
    def bid_px(self) -> np.ndarray:
        return self._side(S.P_OBPX, S.P_OBSZ, self.n_bid)[0]

    @property
    def bid_sz(self) -> np.ndarray:
        return self._side(S.P_OBPX, S.P_OBSZ, self.n_bid)[1]

    @property
    def ask_px(self) -> np.ndarray:
        return self._side(S.P_OAPX, S.P_OASZ, self.n_ask)[0]

    @property
    def ask_sz(self) -> np.ndarray:
        return self._side(S.P_OAPX, S.P_OASZ, self.n_ask)[1]

    @property
    def last_seq(self) -> int:
        """Sequence of the last closed batch (-1 before any)."""
        return int(self.istate[S.I_LAST_EOB_SEQ])

    @property
    def needs_snapshot(self) -> bool:
        return bool(self.istate[S.I_RESYNC])

    # ---- checkpoints ----------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The whole state (book, rings, sequence) as bytes."""
        return self.istate.tobytes() + self.fstate.tobytes()

    def load_bytes(self, data: bytes) -> None:
        """Restore a state written by :meth:`to_bytes` for the same spec."""
        ni = self.istate.nbytes
        if len(data) != ni + self.fstate.nbytes:
            raise ValueError("checkpoint does not match this feature spec")
        self.istate[:] = np.frombuffer(data[:ni], np.int64)
        self.fstate[:] = np.frombuffer(data[ni:], np.float64)


@dataclass
class FeatureTable:
    """Feature rows of one symbol with their event keys."""

    names: list[str]
    values: np.ndarray  # (n, F) float64
    ts_ns: np.ndarray
    sequence: np.ndarray
    symbol: str
    rejects: np.ndarray  # reason counts, indexed by Reason

    def to_pandas(self):  # noqa: ANN201 - pandas at the edge
        import pandas as pd

        df = pd.DataFrame(self.values, columns=self.names)
        df.insert(0, "symbol", self.symbol)
        df.insert(0, "sequence", self.sequence)
        df.insert(0, "ts_ns", self.ts_ns)
        return df


def compute_features(events: np.ndarray, spec: FeatureSpec, tick_size: float,
                     symbol: str = "", state: FeatureState | None = None,
                     out: np.ndarray | None = None) -> FeatureTable:
    """Batch path: run the kernel once over ``events`` (optionally continuing ``state``;
    ``out`` as in :meth:`FeatureState.update`)."""
    st = state or FeatureState(spec, tick_size)
    rows, idx, reasons = st.update(events, out)
    counts = np.bincount(reasons, minlength=len(E.Reason))
    return FeatureTable(spec.names, rows, events["exch_ts"][idx], events["seq"][idx], symbol, counts)
