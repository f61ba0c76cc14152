"""Feature names, their parameters and the state layout of the feature kernel.

``FeatureSpec`` is the registry: given levels and windows it names every column
the kernel writes, in order. Names are stable (they are Parquet column names
and the model card's feature list). A selection (``select``) picks a subset for
a model; the kernel always computes the full row.

Formulas (the kernel in :mod:`streamsig.features.kernel` is the one implementation):

- ``mid`` = (a1 + b1) / 2; ``spread`` = a1 - b1 (price units); ``spread_ticks``;
  ``spread_rel`` = spread / mid.
- ``microprice`` = (a1*qb1 + b1*qa1) / (qb1 + qa1) (size-weighted mid).
- ``microprice_adj`` = mid + spread * G[S, I]: Stoikov (2018), "The micro-price: a
  high-frequency estimator of future prices", Quant. Finance 18(12). G is a table
  over imbalance buckets I = qb1/(qb1+qa1) and spread buckets S (1 tick, wider);
  the default table is G = I_centre - 1/2 (the first-order micro-price); a
  table estimated elsewhere can be given as ``FeatureSpec.microprice_table``
  (streamsig ships no estimator for it).
- ``qimb_1`` = (qb1 - qa1) / (qb1 + qa1).
- ``depth_bid_k`` / ``depth_ask_k`` = sum of sizes over the best k levels;
  ``depth_imb_k`` = (Db - Da) / (Db + Da); ``vwap_bid_k`` / ``vwap_ask_k`` =
  size-weighted price of the best k levels.
- ``ofi_m`` (m = 1..L): order flow imbalance at level m between consecutive
  consistent book states, Cont, Kukanov & Stoikov (2014), "The price impact of
  order book events", J. Fin. Econometrics 12(1); multi-level form of Xu, Gould
  & Howison (2019), "Multi-level order-flow imbalance in a limit order book":
  e = 1{b>=b'} qb - 1{b<=b'} qb' - 1{a<=a'} qa + 1{a>=a'} qa' (primes: previous
  state). A level missing in either state counts as the same price with size 0.
  The first state after a CLEAR has OFI 0.
- ``ofi_dw`` = sum_m w_m ofi_m with w_m = (1/m) / sum_j (1/j) (depth-weighted).
- ``ofi_1_sum_w`` / ``ofi_dw_sum_w``: sums over the last w book states.
- ``trade_vwap_n``: VWAP of the last n trades (NaN before the first trade).
- ``ret_h``: log mid return over h book states; ``rv_h``: sqrt of the sum of the
  last h squared one-state log returns (NaN until h returns exist).
- ``ret_<s>s`` / ``rv_<s>s``: the same over the last s seconds of exchange time,
  measured from the last state at or before t - s (NaN until one exists). The
  time ring holds ``time_capacity`` states; a window that spans more states
  than that gives NaN.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamsig.config import Config

# Integer state slots (istate); book and ring arrays follow at layout offsets.
I_NBID, I_NASK, I_LAST_SEQ, I_LAST_EOB_SEQ, I_RESYNC, I_HAVE_PREV, I_ROWS, I_TRADES, I_THEAD = range(9)
I_FIXED = 9
# Float scalar slots (fstate).
F_CUM_R2, F_TRADE_PXSZ, F_TRADE_SZ, F_LAST_LM = range(4)
F_FIXED = 4


def _fmt_seconds(s: float) -> str:
    return f"{int(s)}s" if float(s).is_integer() else f"{int(round(s * 1000))}ms"


@dataclass(frozen=True)
class FeatureSpec(Config):
    """Which features the kernel computes and with which windows.

    >>> spec = FeatureSpec(levels=2, depth_ks=(1, 2), ofi_windows=(5,), ret_rows=(1,),
    ...                    rv_rows=(5,), time_windows=(1.0,), trade_window=10)
    >>> spec.names[:7]
    ['mid', 'spread', 'spread_ticks', 'spread_rel', 'microprice', 'microprice_adj', 'qimb_1']
    >>> spec.index("ofi_2"), spec.n_features
    (14, 27)
    >>> FeatureSpec.from_dict(FeatureSpec(levels=3).to_dict()) == FeatureSpec(levels=3)
    True
    """

    levels: int = 10
    depth_ks: tuple[int, ...] = (1, 5, 10)
    ofi_windows: tuple[int, ...] = (10, 50, 100)
    ret_rows: tuple[int, ...] = (1, 10, 50, 100)
    rv_rows: tuple[int, ...] = (10, 50, 100)
    time_windows: tuple[float, ...] = (1.0, 10.0)
    trade_window: int = 50
    capacity: int = 0  #: book levels held per side; 0 means max(4*levels, 64)
    time_capacity: int = 16384
    imb_buckets: int = 10
    microprice_table: tuple[float, ...] | None = None  #: 2*imb_buckets values, row-major (S, I)
    names: list[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.levels < 1:
            raise ValueError(f"levels must be >= 1, got {self.levels}")
        ks = tuple(sorted({k for k in self.depth_ks if 1 <= k <= self.levels} | {self.levels}))
        object.__setattr__(self, "depth_ks", ks)
        for nm, ws in (("ofi_windows", self.ofi_windows), ("ret_rows", self.ret_rows),
                       ("rv_rows", self.rv_rows)):
            if any(w < 1 for w in ws):
                raise ValueError(f"{nm} must be >= 1, got {ws}")
        if self.microprice_table is not None and len(self.microprice_table) != 2 * self.imb_buckets:
            raise ValueError(f"microprice_table needs {2 * self.imb_buckets} values")
        object.__setattr__(self, "names", self._names())

    def _names(self) -> list[str]:
        n = ["mid", "spread", "spread_ticks", "spread_rel", "microprice", "microprice_adj", "qimb_1"]
        for k in self.depth_ks:
            n += [f"depth_bid_{k}", f"depth_ask_{k}", f"depth_imb_{k}"]
        n += [f"ofi_{m}" for m in range(1, self.levels + 1)] + ["ofi_dw"]
        for w in self.ofi_windows:
            n += [f"ofi_1_sum_{w}", f"ofi_dw_sum_{w}"]
        for k in self.depth_ks:
            n += [f"vwap_bid_{k}", f"vwap_ask_{k}"]
        n += [f"trade_vwap_{self.trade_window}"]
        n += [f"ret_{h}" for h in self.ret_rows] + [f"rv_{h}" for h in self.rv_rows]
        for s in self.time_windows:
            n += [f"ret_{_fmt_seconds(s)}", f"rv_{_fmt_seconds(s)}"]
        return n

    @property
    def n_features(self) -> int:
        return len(self.names)

    @property
    def book_capacity(self) -> int:
        return self.capacity or max(4 * self.levels, 64)

    def index(self, name: str) -> int:
        """Column index of a feature name (ValueError names the unknown feature)."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f"unknown feature {name!r}") from None

    def select(self, names: list[str]) -> np.ndarray:
        """Column indices for a list of feature names, in that order."""
        return np.array([self.index(n) for n in names], dtype=np.int64)

    def default_table(self) -> np.ndarray:
        """G = I_centre - 1/2 for both spread buckets (first-order micro-price)."""
        b = self.imb_buckets
        centre = (np.arange(b) + 0.5) / b - 0.5
        return np.concatenate([centre, centre])

    # ---- kernel parameters and state layout -------------------------------------------
    def kernel_params(self) -> tuple[np.ndarray, np.ndarray]:
        """(ipar, fpar) arrays describing windows and the state layout to the kernel."""
        L, cap, tc = self.levels, self.book_capacity, _pow2(self.time_capacity)
        ks, ow, rr, vr = self.depth_ks, self.ofi_windows, self.ret_rows, self.rv_rows
        tw = self.time_windows
        # ring sizes are powers of two (index with a mask), at least the longest window
        wmax = _pow2(max(ow) if ow else 1)
        hmax = _pow2(max(list(rr) + list(vr) + [1]) + 1)
        trw = _pow2(self.trade_window)
        # int layout
        off = I_FIXED
        o_tptr = off; off += len(tw)
        o_bpx = off; off += cap
        o_apx = off; off += cap
        o_pbpx = off; off += L
        o_papx = off; off += L
        o_tts = off; off += tc
        n_int = off
        # float layout
        off = F_FIXED
        o_bsz = off; off += cap
        o_asz = off; off += cap
        o_pbsz = off; off += L
        o_pasz = off; off += L
        o_ofi = off; off += 2 * wmax
        o_ofisum = off; off += 2 * len(ow)
        o_lm = off; off += hmax
        o_r2 = off; off += hmax
        o_r2sum = off; off += len(vr)
        o_trd = off; off += 2 * trw
        o_tlm = off; off += tc
        o_tr2 = off; off += tc
        n_float = off
        head = [L, cap, tc, wmax, hmax, self.trade_window, trw, self.imb_buckets, self.n_features,
                n_int, n_float, o_tptr, o_bpx, o_apx, o_pbpx, o_papx, o_tts,
                o_bsz, o_asz, o_pbsz, o_pasz, o_ofi, o_ofisum, o_lm, o_r2, o_r2sum, o_trd, o_tlm, o_tr2,
                len(ks), len(ow), len(rr), len(vr), len(tw)]
        ipar = np.array(head + list(ks) + list(ow) + list(rr) + list(vr), dtype=np.int64)
        table = (np.asarray(self.microprice_table, np.float64) if self.microprice_table is not None
                 else self.default_table())
        w = 1.0 / np.arange(1, L + 1)
        fpar = np.concatenate([np.array([0.0]), np.array(tw, np.float64) * 1e9, table, w / w.sum()])
        return ipar, fpar


# ipar header positions (kept in sync with kernel_params)
(P_L, P_CAP, P_TC, P_WMAX, P_HMAX, P_TRADEW, P_TRADER, P_IMBB, P_NF, P_NINT, P_NFLOAT, P_OTPTR, P_OBPX, P_OAPX,
 P_OPBPX, P_OPAPX, P_OTTS, P_OBSZ, P_OASZ, P_OPBSZ, P_OPASZ, P_OOFI, P_OOFISUM, P_OLM, P_OR2,
 P_OR2SUM, P_OTRD, P_OTLM, P_OTR2, P_NKS, P_NOW, P_NRR, P_NVR, P_NTW) = range(34)
P_HEAD = 34


def _pow2(n: int) -> int:
    """Smallest power of two >= n."""
    return 1 << max(0, int(n) - 1).bit_length()


#: scale-free book features a model is trained on unless told otherwise (those a spec computes:
#: :func:`default_features`); the committed default model uses exactly these
DEFAULT_FEATURES = ("spread_ticks", "qimb_1", "depth_imb_1", "depth_imb_5", "ofi_1", "ofi_dw",
                    "ofi_1_sum_10", "ofi_1_sum_50", "ofi_1_sum_100", "ofi_dw_sum_50",
                    "ret_1", "ret_10", "ret_50", "rv_50")


def default_features(spec: FeatureSpec) -> list[str]:
    """:data:`DEFAULT_FEATURES` that ``spec`` computes, in that order."""
    return [f for f in DEFAULT_FEATURES if f in spec.names]
