"""What one traded thing is: tick, lot, contract type and fees, and how its tick was found.

Every reader returns an :class:`Instrument` with its feed; the executor, the
portfolio, the feature table and the model card read prices, notionals and fees
through it.

Tick size, in order of precedence:

1. ``--tick-size`` (``tick_from="given"``);
2. a per-symbol TOML table (``--instruments file.toml``, ``tick_from="table"``);
3. inference from the data (``tick_from="inferred ..."``): the largest grid all
   prices lie on, i.e. the GCD of the integer price values at the file's
   decimal scale, taken over a sample (the first chunk of rows) with the
   prices parsed as exact decimals, never from the number of printed decimals
   (Binance spot prints ``"61837.64000000"`` on a 0.01 grid). The reader then
   checks every later price against that grid: an off-grid price later is a
   :class:`~streamsig.errors.DataError` naming the file and line and asking
   for ``--tick-size`` (the tick is not refined mid-stream, because events
   already emitted are in units of the first tick).

The shipped table :data:`KNOWN` (common Binance markets) supplies contract
type, multiplier and fees, and a tick only where inference is not possible;
inference works without it.

>>> infer_tick(["61837.64000000", "61837.65000000", "61838.00000000"])[0]
0.01
>>> inst = Instrument("BTCUSD_PERP", venue="binance-delivery", tick_size=0.1, contract="inverse",
...                   multiplier=100.0, quote="USD", settle="BTC")
>>> round(inst.notional(2, 50_000.0), 6)   # 2 contracts of 100 USD at 50,000 USD/BTC, in BTC
0.004
"""
from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np

from streamsig.errors import DataError

CONTRACTS = ("linear", "inverse")


@dataclass(frozen=True)
class Instrument:
    """One symbol on one venue.

    ``contract`` is ``linear`` (a unit is worth ``multiplier`` units of the
    base, valued in ``quote``: spot, USDⓈ-M futures, equities) or ``inverse``
    (a contract is worth ``multiplier`` units of ``quote``, e.g. 100 USD, and
    P&L settles in the coin ``settle``: Binance COIN-M). Fees are basis points
    of notional (None: unknown). ``tick_from`` says how the tick was found.
    """

    symbol: str
    venue: str = ""
    market: str = ""  #: spot | usdm | coinm | equity | "" (unknown)
    tick_size: float = 0.01
    lot_size: float | None = None
    contract: str = "linear"
    multiplier: float = 1.0
    quote: str = ""
    settle: str = ""
    taker_fee_bps: float | None = None
    maker_fee_bps: float | None = None
    tick_from: str = "default"

    def __post_init__(self) -> None:
        if self.contract not in CONTRACTS:
            raise ValueError(f"{self.symbol}: contract must be linear or inverse, got {self.contract!r}")
        if not (self.tick_size > 0 and math.isfinite(self.tick_size)):
            raise ValueError(f"{self.symbol}: tick size must be > 0, got {self.tick_size}")
        if not self.multiplier > 0:
            raise ValueError(f"{self.symbol}: multiplier must be > 0, got {self.multiplier}")

    @property
    def inverse(self) -> bool:
        return self.contract == "inverse"

    @property
    def currency(self) -> str:
        """The currency P&L, fees and equity are reported in."""
        return self.settle or self.quote

    def value(self, price: float) -> float:
        """The value of one long unit at ``price`` up to a constant, in :attr:`currency`.

        P&L of ``q`` units from ``a`` to ``b`` is ``q * (value(b) - value(a))``:
        ``multiplier * price`` for linear, ``-multiplier / price`` for inverse,
        so a long inverse position earns ``q * m * (1/entry - 1/exit)``.
        """
        return -self.multiplier / price if self.inverse else self.multiplier * price

    def notional(self, qty: float, price: float) -> float:
        """Notional of ``qty`` (> 0) units at ``price`` in :attr:`currency` (fees are bps of this)."""
        return qty * self.multiplier / price if self.inverse else qty * self.multiplier * price

    def to_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


#: Common Binance markets (exchange rules and VIP 0 fees as published by Binance).
#: Keys are ``(venue, symbol)``; ``tick_size`` here is used only when given nowhere else
#: and the data cannot be read for it.
KNOWN: dict[tuple[str, str], dict[str, object]] = {
    ("binance-futures", "BTCUSDT"): dict(market="usdm", tick_size=0.1, lot_size=0.001, quote="USDT",
                                         settle="USDT", taker_fee_bps=5.0, maker_fee_bps=2.0),
    ("binance-futures", "ETHUSDT"): dict(market="usdm", tick_size=0.01, lot_size=0.001, quote="USDT",
                                         settle="USDT", taker_fee_bps=5.0, maker_fee_bps=2.0),
    ("binance-delivery", "BTCUSD_PERP"): dict(market="coinm", tick_size=0.1, lot_size=1.0, contract="inverse",
                                              multiplier=100.0, quote="USD", settle="BTC",
                                              taker_fee_bps=5.0, maker_fee_bps=2.0),
    ("binance-delivery", "ETHUSD_PERP"): dict(market="coinm", tick_size=0.01, lot_size=1.0, contract="inverse",
                                              multiplier=10.0, quote="USD", settle="ETH",
                                              taker_fee_bps=5.0, maker_fee_bps=2.0),
    ("binance", "BTCUSDT"): dict(market="spot", tick_size=0.01, lot_size=0.00001, quote="USDT", settle="USDT",
                                 taker_fee_bps=10.0, maker_fee_bps=10.0),
    ("binance", "ETHUSDT"): dict(market="spot", tick_size=0.01, lot_size=0.0001, quote="USDT", settle="USDT",
                                 taker_fee_bps=10.0, maker_fee_bps=10.0),
}
_MARKET_FEES = {"usdm": (5.0, 2.0), "coinm": (5.0, 2.0), "spot": (10.0, 10.0)}
_VENUE_MARKET = {"binance-futures": "usdm", "binance-delivery": "coinm", "binance": "spot",
                 "lobster": "equity"}
_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "BTC", "ETH", "USD")


def describe_contract(symbol: str, venue: str = "") -> dict[str, object]:
    """Contract fields for ``symbol`` on ``venue``: from :data:`KNOWN`, else from Binance's naming.

    ``*USD_PERP`` / ``*USD_<date>`` (COIN-M) is inverse with 100 USD contracts
    for BTC and 10 USD for others; anything else is linear.

    >>> d = describe_contract("SOLUSD_PERP")
    >>> d["contract"], d["multiplier"], d["settle"]
    ('inverse', 10.0, 'SOL')
    >>> describe_contract("ETHUSDT", "binance-futures")["taker_fee_bps"]
    5.0
    """
    sym = symbol.upper()
    known = KNOWN.get((venue, sym))
    if known is not None:
        return {"contract": "linear", "multiplier": 1.0, **known}
    market = _VENUE_MARKET.get(venue, "")
    head, _, tail = sym.partition("_")
    if head.endswith("USD") and tail and (tail == "PERP" or tail.isdigit()):
        coin = head[:-3]
        out: dict[str, object] = dict(market="coinm", contract="inverse", quote="USD", settle=coin,
                                      multiplier=100.0 if coin == "BTC" else 10.0, lot_size=1.0)
    else:
        quote = next((q for q in _QUOTES if sym.endswith(q) and len(sym) > len(q)), "")
        out = dict(market=market, contract="linear", quote=quote, settle=quote)
    fees = _MARKET_FEES.get(str(out.get("market") or market))
    if fees:
        out["taker_fee_bps"], out["maker_fee_bps"] = fees
    return out


def default_fee_bps(instrument: Instrument | None, fallback: float | None = None) -> float | None:
    """The taker fee to charge when none is given: the instrument's where known, else ``fallback``
    (the shared default fee; None if that is not given either).

    >>> default_fee_bps(Instrument("X", taker_fee_bps=5.0), 1.0), default_fee_bps(None, 1.0)
    (5.0, 1.0)
    """
    if instrument is not None and instrument.taker_fee_bps is not None:
        return float(instrument.taker_fee_bps)
    return None if fallback is None else float(fallback)


def load_table(path: str | Path) -> dict[str, dict[str, object]]:
    """A TOML table of instruments: ``[SYMBOL]`` sections holding :class:`Instrument` fields.

    Unknown keys and unreadable files raise a one-line :class:`DataError`.
    """
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DataError(p, None, f"cannot read instruments table: {exc}") from None
    names = {f.name for f in fields(Instrument)} - {"symbol", "tick_from"}
    out: dict[str, dict[str, object]] = {}
    for sym, d in raw.items():
        if not isinstance(d, dict):
            raise DataError(p, None, f"{sym}: expected a [{sym}] table of instrument fields")
        extra = sorted(set(d) - names)
        if extra:
            raise DataError(p, None, f"[{sym}]: unknown instrument field {extra[0]!r} (known: {', '.join(sorted(names))})")
        out[sym] = dict(d)
    return out


def _decimal_text(v: object) -> str | None:
    if isinstance(v, str):
        s = v.strip()
    elif isinstance(v, Decimal):
        s = str(v)
    elif isinstance(v, (int, np.integer)):
        s = str(int(v))
    else:
        f = float(v)  # type: ignore[arg-type]
        if not math.isfinite(f):
            return None
        s = np.format_float_positional(f, trim="-")  # shortest text that round-trips
    return s or None


def infer_tick(prices: Iterable[object]) -> tuple[float, int]:
    """``(tick, distinct prices used)``: the largest grid every positive price lies on.

    Prices are parsed as exact decimals (floats via their shortest round-trip
    text); the tick is ``gcd(integer values at the finest decimal scale) /
    10**scale``. Raises ValueError when there is no positive price.

    >>> infer_tick(["61800.20", "61800.30", "61801.00"])   # printed with 2 decimals, 0.1 grid
    (0.1, 3)
    >>> infer_tick([3424.98, 3425.0, 3425.37])[0], infer_tick(["7", "21"])[0]
    (0.01, 7.0)
    """
    import pandas as pd

    decs: list[Decimal] = []
    ser = prices if isinstance(prices, pd.Series) else pd.Series(list(prices), dtype=object)
    for v in pd.unique(ser.dropna()):
        s = _decimal_text(v)
        if s is None:
            continue
        try:
            d = Decimal(s)
        except InvalidOperation:
            continue
        if d.is_finite() and d > 0:
            decs.append(d.normalize())
    if not decs:
        raise ValueError("no positive prices to infer a tick from")
    scale = max(0, max(-int(d.as_tuple().exponent) for d in decs))
    g = 0
    for d in decs:
        g = math.gcd(g, int(d.scaleb(scale)))
        if g == 1:
            break
    return float(Decimal(g).scaleb(-scale)), len(decs)


def resolve(symbol: str, venue: str = "", *, tick_size: float | None = None,
            table: Mapping[str, Mapping[str, object]] | None = None,
            sample: Iterable[object] | None = None, default_tick: float | None = None,
            where: object = "") -> Instrument:
    """Build the instrument of ``symbol``: ``tick_size`` > ``table`` > inference from ``sample``.

    Contract, multiplier and fees come from ``table`` if it has them, else
    from :func:`describe_contract`. ``default_tick`` is the last resort (for
    sources with no prices to read, e.g. an empty file).
    """
    fields_: dict[str, object] = dict(describe_contract(symbol, venue))
    row = dict((table or {}).get(symbol, {}))
    known_tick = fields_.pop("tick_size", None)
    fields_.update({k: v for k, v in row.items() if k != "tick_size"})
    if tick_size is not None:
        tick, how = float(tick_size), "given (--tick-size)"
    elif "tick_size" in row:
        tick, how = float(row["tick_size"]), "instruments table"  # type: ignore[arg-type]
    else:
        try:
            tick, n = infer_tick(sample or [])
            how = f"inferred: GCD of {n:,} distinct prices in the first rows"
        except ValueError:
            if known_tick is not None:
                tick, how = float(known_tick), "known-instrument table (no prices to infer from)"  # type: ignore[arg-type]
            elif default_tick is not None:
                tick, how = float(default_tick), "default (no prices to infer from)"
            else:
                raise DataError(where or symbol, None, "no prices to infer the tick from; pass --tick-size") from None
    try:
        return Instrument(symbol=symbol, venue=venue, tick_size=tick, tick_from=how, **fields_)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise DataError(where or symbol, None, str(exc)) from None


def with_tick(inst: Instrument, tick_size: float, how: str) -> Instrument:
    """A copy of ``inst`` with another tick and its provenance."""
    return replace(inst, tick_size=float(tick_size), tick_from=how)
