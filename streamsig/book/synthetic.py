"""Seeded synthetic limit-order-book streams in the shared ``EVENT_DTYPE`` layout.

Model
-----
Each symbol has a book of ``L = levels`` price levels per side on a dense tick
grid: bids at ``bb, bb-1, ..., bb-L+1`` and asks at ``ba, ba+1, ..., ba+L-1``,
every level holding a positive whole number of lots. The stream is the top-``L``
view of a deeper book: a level pushed beyond ``L`` is deleted (size 0) and a
level pulled into view is refilled with two fresh orders (``2 * order_size``
lots on average).

Order flow is a Poisson (zero-intelligence) model in the spirit of Cont, Stoikov &
Talreja (2010), "A stochastic model for order book dynamics", Oper. Res. 58(3).
Independent exponential clocks compete (competing risks); the first to ring
decides the next atomic update:

* ``limit_rate`` per level and side: a limit order of geometric size (mean
  ``order_size`` lots) joins level ``i``;
* ``cancel_rate`` per level and side: ``1 + Binomial(size - 2,
  cancel_fraction)`` lots of level ``i`` are cancelled (the level survives), so
  queues shrink in proportion to their size, as with CST's per-order cancels;
* ``market_rate`` per side: a market order trades at the best level (its
  geometric size conditioned to leave at least one lot).

The rates are relative weights: the time between updates is exponential with
mean ``mean_interarrival_ns`` (total intensity ``2*market_rate + 2*L*(limit_rate
+ cancel_rate)`` rescaled to that mean). ``local_ts`` is ``exch_ts`` plus an
exponential latency (mean ``latency_ns``), never decreasing.

Price moves. With base probability ``vol`` a best-level market order sweeps the
whole level (and with ``multi_level_prob`` each further level, then possibly
part of the next one) and a best-level cancel removes the whole level; with
base probability ``improve_prob``, when the spread is at least 2 ticks, a
best-level limit order improves the quote by one tick instead of joining the
queue (a new level of two orders). The spread never exceeds ``max_spread``
ticks, so the book is never crossed or locked. Moves that raise the mid (ask
swept or emptied, bid improved) have their base probability times ``1 + b``,
their mirror images times ``1 - b``, where the bias is

    b = tanh(ofi_impact * z + m),

``m`` the mid mode (``random_walk``: 0; ``trend``: ``drift``; ``mean_revert``:
``kappa * (anchor - mid)`` in ticks, a discrete Ornstein-Uhlenbeck pull to the
start price), and ``z`` the planted order-flow signal: an exponentially decayed
average (half-life ``ofi_halflife`` updates, scaled to unit variance) of the
signed flow of past updates, +1 for a bid add, ask cancel or market buy and -1
for an ask add, bid cancel or market sell. ``b`` only changes *which* price
moves happen, never the flow, so the relation runs from flow to future mid and
not back.

Whether a level empties is drawn with a fixed probability, not from its queue
size: queue sizes carry no price information. Hence with ``ofi_impact = 0`` and
``mid_mode = "random_walk"`` the mid is a martingale: future mid moves are
independent of past flow. (A state where a cancel or market order cannot act
because the level holds one lot turns that update into an add of the same
flow sign on the other side.) In ``mean_revert`` mode future moves depend on
the current mid, and therefore on the flow that moved it. Prices are kept at 1
tick or more: down moves that would push the deepest bid below 1 tick are
skipped.

Stream layout. Update 0 of each symbol is ``CLEAR|SNAPSHOT`` followed by the
``2L`` snapshot levels. Every update's first event is the order-book message
itself (a ``TRADE`` for market orders, else the ``DEPTH`` change of the level it
acts on); the rest are the book changes it causes. All events of an update share
``seq`` (0, 1, 2, ...) and timestamps; the last carries ``EOB``. ``level`` is
informational: the level's 0-based position when the update began (after it
for levels coming into view, ``L`` for a level leaving it, -1 for ``CLEAR``).
``order_id`` and ``aux`` are 0: the stream is level-based.

Randomness is xoshiro256** (Blackman & Vigna 2018, "Scrambled linear
pseudorandom number generators") seeded per symbol from
``numpy.random.SeedSequence(seed, spawn_key=(symbol_index,))``, so the same
config gives byte-identical arrays and symbols get independent streams.

>>> cfg = SyntheticConfig(n_updates=50, levels=3)
>>> ev = generate_symbol(cfg, 0)
>>> describe_flags(int(ev["flags"][0])), int(ev["seq"][-1])
('CLEAR|SNAPSHOT', 49)
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit

from streamsig.book.events import (
    BUY, CLEAR, DEPTH, EOB, EVENT_DTYPE, SELL, SNAPSHOT, TRADE,
)
from streamsig.book.events import describe_flags  # noqa: F401 - used by the doctest
from streamsig.config import Config

__all__ = [
    "MID_MODES", "SyntheticConfig", "generate", "generate_symbol", "iter_chunks", "iter_symbol",
    "load_scenario",
]

MID_MODES = ("random_walk", "mean_revert", "trend")


@dataclass(frozen=True)
class SyntheticConfig(Config):
    """Parameters of the synthetic book generator (see the module docstring)."""

    symbols: tuple[str, ...] = ("SYN0",)
    levels: int = 10  #: visible price levels per side
    tick_size: float = 0.01
    start_price: float = 100.0  #: initial mid; also the mean-reversion anchor
    n_updates: int = 100_000  #: atomic updates per symbol, the snapshot included
    mean_interarrival_ns: int = 1_000_000  #: mean time between updates
    latency_ns: int = 50_000  #: mean exch_ts -> local_ts latency
    start_ns: int = 1_704_067_200_000_000_000  #: exch_ts of the snapshot (2024-01-01 UTC)
    limit_rate: float = 1.0  #: limit-order intensity per level and side
    cancel_rate: float = 0.9  #: cancel intensity per level and side
    cancel_fraction: float = 0.2  #: share of a level's lots one cancel withdraws (binomial)
    market_rate: float = 0.5  #: market-order intensity per side
    order_size: float = 5.0  #: mean order size in lots (geometric, >= 1)
    vol: float = 0.15  #: chance a best-level market order / cancel empties the level, <= 0.5
    improve_prob: float = 0.5  #: chance a best-level limit order improves a 2+ tick spread, <= 0.5
    multi_level_prob: float = 0.1  #: chance a sweeping market order clears one more level
    max_spread: int = 4  #: widest allowed spread in ticks
    mid_mode: str = "random_walk"  #: "random_walk" | "mean_revert" | "trend"
    kappa: float = 0.05  #: mean_revert pull per tick of distance from the anchor
    drift: float = 0.0  #: trend bias added to tanh's argument (> 0: up)
    ofi_impact: float = 0.0  #: planted flow -> future mid strength; 0 = no relation
    ofi_halflife: float = 50.0  #: half-life of the planted flow average, in updates
    seed: int = 0

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> None:
            raise ValueError(f"{name}: {why}, got {getattr(self, name)!r}")

        if not self.symbols or not all(isinstance(s, str) and s for s in self.symbols):
            bad("symbols", "must be a non-empty list of non-empty strings")
        if len(set(self.symbols)) != len(self.symbols):
            bad("symbols", "must be unique")
        for name in ("levels", "n_updates", "mean_interarrival_ns", "max_spread"):
            if getattr(self, name) < 1:
                bad(name, "must be >= 1")
        for name in ("latency_ns", "seed", "limit_rate", "cancel_rate", "market_rate",
                     "kappa", "ofi_impact"):
            if not getattr(self, name) >= 0:
                bad(name, "must be >= 0")
        if self.limit_rate + self.cancel_rate + self.market_rate <= 0:
            bad("limit_rate", "limit_rate + cancel_rate + market_rate must be > 0")
        if not self.tick_size > 0:
            bad("tick_size", "must be > 0")
        if not self.start_price / self.tick_size >= self.levels + 2:
            bad("start_price", f"must be at least {self.levels + 2} ticks")
        if not self.order_size >= 1:
            bad("order_size", "must be >= 1 lot")
        for name in ("vol", "improve_prob"):
            if not 0 <= getattr(self, name) <= 0.5:
                bad(name, "must be in [0, 0.5]")
        if not 0 < self.cancel_fraction < 1:
            bad("cancel_fraction", "must be in (0, 1)")
        if not 0 <= self.multi_level_prob < 1:
            bad("multi_level_prob", "must be in [0, 1)")
        if self.mid_mode not in MID_MODES:
            bad("mid_mode", f"must be one of {', '.join(MID_MODES)}")
        if not math.isfinite(self.drift):
            bad("drift", "must be finite")
        if not self.ofi_halflife > 0:
            bad("ofi_halflife", "must be > 0")


# ---------------------------------------------------------------------------
# compiled core

_U11 = np.uint64(11)
_U17 = np.uint64(17)
_U7 = np.uint64(7)
_U57 = np.uint64(57)
_U45 = np.uint64(45)
_U19 = np.uint64(19)
_U5 = np.uint64(5)
_U9 = np.uint64(9)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53

# state slots
_BB, _BA, _SEQ, _TEXCH, _TLOCAL = 0, 1, 2, 3, 4
# float parameter slots
(_P_LIMIT, _P_CANCEL, _P_MARKET, _P_VOL, _P_KAPPA, _P_DRIFT, _P_IMPACT, _P_ALPHA,
 _P_EMA_SD, _P_LAMBDA_SIZE, _P_MULTI, _P_DT, _P_LAT, _P_ANCHOR, _P_CANCEL_LOG,
 _P_IMPROVE) = range(16)
# int parameter slots
_P_LEVELS, _P_MAXSPREAD, _P_MODE = 0, 1, 2


@njit(cache=True, inline="always")
def _next_u64(s: np.ndarray) -> np.uint64:
    x = s[1] * _U5
    result = ((x << _U7) | (x >> _U57)) * _U9
    t = s[1] << _U17
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= t
    s[3] = (s[3] << _U45) | (s[3] >> _U19)
    return result


@njit(cache=True, inline="always")
def _uniform(s: np.ndarray) -> float:
    return float(_next_u64(s) >> _U11) * _INV53


@njit(cache=True, inline="always")
def _expo(s: np.ndarray) -> float:
    return -math.log(1.0 - _uniform(s))


@njit(cache=True, inline="always")
def _lots(s: np.ndarray, lam: float) -> float:
    # 1 + geometric; lam = log(1 + 1/(mean - 1)) gives the requested mean, lam <= 0 -> 1 lot
    if lam <= 0.0:
        return 1.0
    return 1.0 + math.floor(_expo(s) / lam)


@njit(cache=True, inline="always")
def _new_level(s: np.ndarray, lam: float) -> float:
    # a level that appears holds two orders
    return _lots(s, lam) + _lots(s, lam)


@njit(cache=True, inline="always")
def _lots_upto(s: np.ndarray, lam: float, cap: float) -> float:
    # the same geometric size, conditioned on being <= cap (cap >= 1), by inversion
    if lam <= 0.0:
        return 1.0
    e = -math.log(1.0 - _uniform(s) * -math.expm1(-lam * cap))
    return min(cap, 1.0 + math.floor(e / lam))


@njit(cache=True, inline="always")
def _binomial(s: np.ndarray, n: int, neg_log_q: float) -> int:
    # successes in n trials with failure probability q = exp(-neg_log_q), by
    # jumping over geometric runs of failures (Devroye 1986, waiting-time method)
    k = 0
    pos = 0
    while True:
        pos += 1 + int(math.floor(_expo(s) / neg_log_q))
        if pos > n:
            return k
        k += 1


@njit(cache=True, inline="always")
def _emit(out, k, flags, level, seq, t_exch, t_local, price, size):
    out[k]["flags"] = flags
    out[k]["level"] = level
    out[k]["exch_ts"] = t_exch
    out[k]["local_ts"] = t_local
    out[k]["seq"] = seq
    out[k]["price"] = price
    out[k]["size"] = size
    return k + 1


@njit(cache=True)
def _run(out, st, fst, bid, ask, rng, pf, pi, n_max):  # noqa: C901 - one hot loop
    """Generate up to ``n_max`` updates into ``out``; returns (events, updates)."""
    L = pi[_P_LEVELS]
    max_spread = pi[_P_MAXSPREAD]
    mode = pi[_P_MODE]
    lim, canc, mkt = pf[_P_LIMIT], pf[_P_CANCEL], pf[_P_MARKET]
    vol = pf[_P_VOL]
    lam_size = pf[_P_LAMBDA_SIZE]
    total = 2.0 * mkt + 2.0 * L * (lim + canc)
    max_ev = max(2 * L + 1, 3 * min(max_spread, L) + 2) + 2
    cap = out.shape[0]
    k = 0
    done = 0
    while done < n_max and k + max_ev <= cap:
        seq = st[_SEQ]
        if seq == 0:
            # initial snapshot: CLEAR then every level, mid at the anchor
            t_exch = st[_TEXCH]
            t_local = t_exch + np.int64(pf[_P_LAT] * _expo(rng))
            st[_TLOCAL] = t_local
            k = _emit(out, k, CLEAR | SNAPSHOT, -1, seq, t_exch, t_local, 0, 0.0)
            for j in range(L):
                bid[j] = _new_level(rng, lam_size)
                k = _emit(out, k, DEPTH | SNAPSHOT | BUY, j, seq, t_exch, t_local,
                          st[_BB] - j, bid[j])
            for j in range(L):
                ask[j] = _new_level(rng, lam_size)
                k = _emit(out, k, DEPTH | SNAPSHOT | SELL, j, seq, t_exch, t_local,
                          st[_BA] + j, ask[j])
            out[k - 1]["flags"] |= EOB
            st[_SEQ] = seq + 1
            done += 1
            continue

        t_exch = st[_TEXCH] + np.int64(pf[_P_DT] * _expo(rng))
        t_local = max(st[_TLOCAL], t_exch + np.int64(pf[_P_LAT] * _expo(rng)))
        st[_TEXCH] = t_exch
        st[_TLOCAL] = t_local
        bb = st[_BB]
        ba = st[_BA]
        spread = ba - bb
        up_room = max_spread - spread
        down_room = min(up_room, bb - (L - 1) - 1)  # keep the deepest bid >= 1 tick

        # bias of price moves: planted flow signal + mid mode
        arg = pf[_P_IMPACT] * fst[0] / pf[_P_EMA_SD]
        if mode == 1:
            arg += pf[_P_KAPPA] * (pf[_P_ANCHOR] - 0.5 * (bb + ba))
        elif mode == 2:
            arg += pf[_P_DRIFT]
        b = math.tanh(arg)
        p_up = vol * (1.0 + b)
        p_down = vol * (1.0 - b)

        # competing risks: pick the clock that rings first
        r = _uniform(rng) * total
        if r < 2.0 * mkt:
            kind = 0  # market
            is_buy = r < mkt
            lvl = 0
        else:
            r -= 2.0 * mkt
            if r < 2.0 * L * lim or canc <= 0.0:
                kind = 1  # limit add
                rate = lim
            else:
                r -= 2.0 * L * lim
                kind = 2  # cancel
                rate = canc
            is_buy = r < L * rate
            if not is_buy:
                r -= L * rate
            lvl = min(max(int(r / rate), 0), L - 1) if rate > 0.0 else 0
        u = _uniform(rng)

        # a market order or cancel that cannot act (one lot, no move) becomes an
        # add with the same flow sign on the other side
        if kind == 0:
            q = ask[0] if is_buy else bid[0]
            moves = u < (p_up if is_buy else p_down) and (up_room if is_buy else down_room) >= 1
            if not moves and q < 2.0:
                kind = 1
                is_buy = not is_buy
                lvl = 0
                u = 1.0  # plain add, never an improvement
        elif kind == 2:
            q = bid[lvl] if is_buy else ask[lvl]
            moves = (lvl == 0 and u < (p_down if is_buy else p_up)
                     and (down_room if is_buy else up_room) >= 1)
            if not moves and q < 2.0:
                kind = 1
                is_buy = not is_buy
                u = 1.0
        # flow sign: +1 bid add / ask cancel / market buy, -1 the mirror images
        sign = 1.0 if is_buy else -1.0
        if kind == 2:
            sign = -sign

        if kind == 0:
            side_flag = SELL if is_buy else BUY  # the book side that is hit
            aggr = BUY if is_buy else SELL
            book = ask if is_buy else bid
            best = ba if is_buy else bb
            step = 1 if is_buy else -1
            room = up_room if is_buy else down_room
            if u < (p_up if is_buy else p_down) and room >= 1:
                nmax = min(room, L)
                n = 1
                while n < nmax and _uniform(rng) < pf[_P_MULTI]:
                    n += 1
                for j in range(n):
                    px = best + step * j
                    k = _emit(out, k, TRADE | aggr, j, seq, t_exch, t_local, px, book[j])
                    k = _emit(out, k, DEPTH | side_flag, j, seq, t_exch, t_local, px, 0.0)
                if n < L:
                    qn = book[n]
                    part = _lots_upto(rng, lam_size, qn) - 1.0  # 0 .. qn-1 lots
                    if part > 0:
                        px = best + step * n
                        k = _emit(out, k, TRADE | aggr, n, seq, t_exch, t_local, px, part)
                        k = _emit(out, k, DEPTH | side_flag, n, seq, t_exch, t_local, px,
                                  qn - part)
                        book[n] = qn - part
                for j in range(L - n):
                    book[j] = book[j + n]
                best += step * n
                for j in range(L - n, L):
                    book[j] = _new_level(rng, lam_size)
                    k = _emit(out, k, DEPTH | side_flag, j, seq, t_exch, t_local,
                              best + step * j, book[j])
                if is_buy:
                    st[_BA] = best
                else:
                    st[_BB] = best
            else:
                q = book[0]
                part = _lots_upto(rng, lam_size, q - 1.0)
                k = _emit(out, k, TRADE | aggr, 0, seq, t_exch, t_local, best, part)
                k = _emit(out, k, DEPTH | side_flag, 0, seq, t_exch, t_local, best, q - part)
                book[0] = q - part
        elif kind == 1:
            side_flag = BUY if is_buy else SELL
            book = bid if is_buy else ask
            best = bb if is_buy else ba
            step = -1 if is_buy else 1  # direction away from the spread
            p_imp = pf[_P_IMPROVE] * ((1.0 + b) if is_buy else (1.0 - b))
            if lvl == 0 and spread >= 2 and u < p_imp:
                # improve the quote by one tick; the deepest level leaves the view
                size = _new_level(rng, lam_size)
                k = _emit(out, k, DEPTH | side_flag, 0, seq, t_exch, t_local, best - step, size)
                k = _emit(out, k, DEPTH | side_flag, L, seq, t_exch, t_local,
                          best + step * (L - 1), 0.0)
                for j in range(L - 1, 0, -1):
                    book[j] = book[j - 1]
                book[0] = size
                if is_buy:
                    st[_BB] = bb + 1
                else:
                    st[_BA] = ba - 1
            else:
                book[lvl] += _lots(rng, lam_size)
                k = _emit(out, k, DEPTH | side_flag, lvl, seq, t_exch, t_local,
                          best + step * lvl, book[lvl])
        else:
            side_flag = BUY if is_buy else SELL
            book = bid if is_buy else ask
            best = bb if is_buy else ba
            step = -1 if is_buy else 1
            room = down_room if is_buy else up_room
            if lvl == 0 and u < (p_down if is_buy else p_up) and room >= 1:
                # the whole best level is cancelled; the next level becomes best
                k = _emit(out, k, DEPTH | side_flag, 0, seq, t_exch, t_local, best, 0.0)
                for j in range(L - 1):
                    book[j] = book[j + 1]
                best += step
                book[L - 1] = _new_level(rng, lam_size)
                k = _emit(out, k, DEPTH | side_flag, L - 1, seq, t_exch, t_local,
                          best + step * (L - 1), book[L - 1])
                if is_buy:
                    st[_BB] = best
                else:
                    st[_BA] = best
            else:
                q = book[lvl]
                # 1 .. q-1 lots: binomial thinning of the q-2 lots beyond the bounds
                part = 1.0 + _binomial(rng, int(q) - 2, pf[_P_CANCEL_LOG])
                book[lvl] = q - part
                k = _emit(out, k, DEPTH | side_flag, lvl, seq, t_exch, t_local,
                          best + step * lvl, book[lvl])

        out[k - 1]["flags"] |= EOB
        fst[0] += pf[_P_ALPHA] * (sign - fst[0])
        st[_SEQ] = seq + 1
        done += 1
    return k, done


# ---------------------------------------------------------------------------
# python side


class _SymbolState:
    """Everything needed to resume one symbol's stream."""

    def __init__(self, cfg: SyntheticConfig, symbol_index: int) -> None:
        L = cfg.levels
        anchor = int(round(cfg.start_price / cfg.tick_size))
        half = min(2, cfg.max_spread)
        self.st = np.zeros(5, dtype=np.int64)
        self.st[_BB] = anchor - half // 2
        self.st[_BA] = self.st[_BB] + half
        self.st[_TEXCH] = cfg.start_ns
        self.fst = np.zeros(1, dtype=np.float64)
        self.bid = np.zeros(L, dtype=np.float64)
        self.ask = np.zeros(L, dtype=np.float64)
        ss = np.random.SeedSequence(cfg.seed, spawn_key=(symbol_index,))
        self.rng = ss.generate_state(4, np.uint64)
        if not self.rng.any():  # pragma: no cover - xoshiro needs a non-zero state
            self.rng[0] = 1
        alpha = 1.0 - 0.5 ** (1.0 / cfg.ofi_halflife)

        def lam(mean: float) -> float:
            return math.log1p(1.0 / (mean - 1.0)) if mean > 1.0 else 0.0

        pf = np.zeros(16, dtype=np.float64)
        pf[_P_LIMIT], pf[_P_CANCEL] = cfg.limit_rate, cfg.cancel_rate
        pf[_P_MARKET] = cfg.market_rate
        pf[_P_VOL], pf[_P_KAPPA], pf[_P_DRIFT] = cfg.vol, cfg.kappa, cfg.drift
        pf[_P_IMPACT], pf[_P_ALPHA] = cfg.ofi_impact, alpha
        pf[_P_EMA_SD] = math.sqrt(alpha / (2.0 - alpha))  # sd of the average of iid +-1
        pf[_P_LAMBDA_SIZE] = lam(cfg.order_size)
        pf[_P_MULTI] = cfg.multi_level_prob
        pf[_P_DT], pf[_P_LAT] = float(cfg.mean_interarrival_ns), float(cfg.latency_ns)
        pf[_P_ANCHOR] = float(anchor)
        pf[_P_CANCEL_LOG] = -math.log1p(-cfg.cancel_fraction)
        pf[_P_IMPROVE] = cfg.improve_prob
        self.pf = pf
        self.pi = np.array([L, cfg.max_spread, MID_MODES.index(cfg.mid_mode)], dtype=np.int64)
        self.max_ev = max(2 * L + 1, 3 * min(cfg.max_spread, L) + 2) + 2

    def take(self, n_updates: int) -> np.ndarray:
        """The next ``n_updates`` updates as one event array."""
        pieces = []
        while n_updates > 0:
            out = np.zeros(int(n_updates * 1.5) + self.max_ev, dtype=EVENT_DTYPE)
            k, done = _run(out, self.st, self.fst, self.bid, self.ask, self.rng,
                           self.pf, self.pi, n_updates)
            pieces.append(out[:k])
            n_updates -= done
        if len(pieces) == 1:
            return pieces[0]
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=EVENT_DTYPE)


def generate_symbol(cfg: SyntheticConfig, symbol_index: int) -> np.ndarray:
    """All ``cfg.n_updates`` updates of symbol ``cfg.symbols[symbol_index]``."""
    if not 0 <= symbol_index < len(cfg.symbols):
        raise IndexError(f"symbol_index {symbol_index} out of range"
                         f" for {len(cfg.symbols)} symbols")
    return _SymbolState(cfg, symbol_index).take(cfg.n_updates)


def iter_symbol(cfg: SyntheticConfig, symbol_index: int, chunk_updates: int = 100_000) -> Iterator[np.ndarray]:
    """One symbol's updates in chunks of ``chunk_updates`` (concatenated: ``generate_symbol``)."""
    state = _SymbolState(cfg, symbol_index)
    for start in range(0, cfg.n_updates, chunk_updates):
        yield state.take(min(chunk_updates, cfg.n_updates - start))


def generate(cfg: SyntheticConfig) -> dict[str, np.ndarray]:
    """Every symbol's full event array, keyed by symbol name."""
    return {sym: generate_symbol(cfg, i) for i, sym in enumerate(cfg.symbols)}


def iter_chunks(
    cfg: SyntheticConfig, chunk_updates: int = 10_000
) -> Iterator[tuple[str, np.ndarray]]:
    """Stream ``(symbol, events)`` chunks of ``chunk_updates`` updates, round-robin.

    Concatenating one symbol's chunks gives exactly ``generate_symbol``'s array;
    chunks never split an update. Memory stays O(chunk) for any ``n_updates``.
    """
    if chunk_updates < 1:
        raise ValueError(f"chunk_updates: must be >= 1, got {chunk_updates}")
    states = [_SymbolState(cfg, i) for i in range(len(cfg.symbols))]
    for start in range(0, cfg.n_updates, chunk_updates):
        n = min(chunk_updates, cfg.n_updates - start)
        for sym, state in zip(cfg.symbols, states):
            yield sym, state.take(n)


# ---------------------------------------------------------------------------
# scenario files

def load_scenario(path: str | Path) -> SyntheticConfig:
    """Read a TOML scenario whose top-level keys are ``SyntheticConfig`` fields.

    Unknown keys, wrong types and invalid values raise :class:`~streamsig.errors.DataError` with
    one line naming the key (and its line when it can be found); this is
    :meth:`SyntheticConfig.load <streamsig.config.Config.load>`.
    """
    return SyntheticConfig.load(path)
