"""Test helpers for the format readers: a dict book, data paths, a LOBSTER writer."""
from __future__ import annotations

import gzip
import heapq
import random
from pathlib import Path

import numpy as np
import pytest

from streamsig.book import events as E

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PLACEHOLDER = 9999999999


def real(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test when it is absent."""
    p = DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p}")
    return p


class DictBook:
    """The simplest possible book: ``{price: size}`` per side."""

    def __init__(self, strict: bool = True) -> None:
        self.bids: dict[int, float] = {}
        self.asks: dict[int, float] = {}
        self.strict = strict  #: deleting a level the book does not hold is an error

    def apply_one(self, flags: int, price: int, size: float) -> None:
        if flags & E.CLEAR:
            self.bids.clear()
            self.asks.clear()
        if flags & E.DEPTH:
            side = self.bids if flags & E.BUY else self.asks
            if size == 0:
                if self.strict:
                    del side[price]
                else:
                    side.pop(price, None)
            else:
                side[price] = size

    def top(self, n: int) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """``(asks best first, bids best first)``, at most ``n`` each."""
        asks = [(p, self.asks[p]) for p in heapq.nsmallest(n, self.asks)]
        bids = [(p, self.bids[p]) for p in heapq.nlargest(n, self.bids)]
        return asks, bids

    def replay(self, ev: np.ndarray):
        """Yield ``(index of the EOB event, event)`` after each batch is applied."""
        for i, (f, p, s) in enumerate(zip(ev["flags"].tolist(), ev["price"].tolist(), ev["size"].tolist())):
            self.apply_one(f, p, s)
            if f & E.EOB:
                yield i


def lobster_row_levels(row: np.ndarray, levels: int, q: int = 100):
    """One LOBSTER orderbook row -> ``(asks, bids)`` lists of (ticks, size)."""
    asks, bids = [], []
    for i in range(levels):
        ap, asz, bp, bsz = row[4 * i: 4 * i + 4]
        if asz > 0:
            asks.append((int(ap) // q, float(asz)))
        if bsz > 0:
            bids.append((int(bp) // q, float(bsz)))
    return asks, bids


def simulate_lobster(n: int, levels: int, seed: int = 0) -> tuple[list[tuple], np.ndarray]:
    """A small random but self-consistent order flow: messages and top-L rows.

    Message tuples are ``(time_str, type, order_id, size, price, direction)``;
    prices are dollars x 10000 on a 0.01 grid (hidden trades may be half-penny).
    """
    rng = random.Random(seed)
    tick = 100
    orders: dict[int, list] = {}
    depth: dict[int, dict[int, int]] = {1: {}, -1: {}}
    msgs, rows = [], []
    ns = 34_200 * 10**9 + rng.randrange(10**9)
    next_id = 1000

    def best(side: int) -> int | None:
        lv = depth[side]
        return (max(lv) if side == 1 else min(lv)) if lv else None

    def add(oid: int, side: int, price: int, size: int) -> None:
        orders[oid] = [side, price, size]
        depth[side][price] = depth[side].get(price, 0) + size

    def reduce(oid: int, size: int) -> None:
        side, price, left = orders[oid]
        depth[side][price] -= size
        if depth[side][price] == 0:
            del depth[side][price]
        if left == size:
            del orders[oid]
        else:
            orders[oid][2] = left - size

    for k in range(n):
        ns += rng.choice([0, 1, 7, 1000, 123_456, 5_000_000])
        r = rng.random()
        if k < 2 * levels or not orders or r < 0.45:
            side = rng.choice([1, -1])
            bb, ba = best(1), best(-1)
            if side == 1:
                ref = ba if ba is not None else (bb + tick if bb is not None else 1_000_000 + tick)
                price = ref - tick * rng.randint(1, levels + 3)
            else:
                ref = bb if bb is not None else (ba - tick if ba is not None else 1_000_000)
                price = ref + tick * rng.randint(1, levels + 3)
            size = rng.choice([1, 5, 10, 100, 250])
            next_id += 1
            add(next_id, side, price, size)
            msg = (1, next_id, size, price, side)
        elif r < 0.55:
            oid = rng.choice(list(orders))
            side, price, left = orders[oid]
            if left > 1:
                cut = rng.randint(1, left - 1)
                reduce(oid, cut)
                msg = (2, oid, cut, price, side)
            else:
                reduce(oid, left)
                msg = (3, oid, left, price, side)
        elif r < 0.78:
            oid = rng.choice(list(orders))
            side, price, left = orders[oid]
            reduce(oid, left)
            msg = (3, oid, left, price, side)
        elif r < 0.93:
            side = rng.choice([1, -1])
            if best(side) is None:
                side = -side
            price = best(side)
            oid = next(o for o, v in orders.items() if v[0] == side and v[1] == price)
            size = rng.randint(1, orders[oid][2])
            reduce(oid, size)
            msg = (4, oid, size, price, side)
        elif r < 0.98:
            bb, ba = best(1), best(-1)
            price = (bb + ba) // 2 if bb is not None and ba is not None else 1_000_050
            msg = (5, 0, rng.randint(1, 50), price, rng.choice([1, -1]))
        else:
            msg = (7, 0, 0, rng.choice([-1, 0, 1]), -1)
        sec, frac = divmod(ns, 10**9)
        digits = f"{frac:09d}".rstrip("0") if rng.random() < 0.3 else f"{frac:09d}"
        msgs.append((f"{sec}.{digits}" if digits else str(sec), *msg))
        asks = sorted(depth[-1].items())[:levels]
        bids = sorted(depth[1].items(), reverse=True)[:levels]
        row = []
        for i in range(levels):
            a = asks[i] if i < len(asks) else (PLACEHOLDER, 0)
            b = bids[i] if i < len(bids) else (-PLACEHOLDER, 0)
            row += [a[0], a[1], b[0], b[1]]
        rows.append(row)
    return msgs, np.array(rows, np.int64)


def write_lobster(folder: Path, msgs: list[tuple], rows: np.ndarray, levels: int,
                  ticker: str = "TEST", gz: bool = False) -> Path:
    """Write a LOBSTER-named pair; returns the message file path."""
    ext = ".csv.gz" if gz else ".csv"
    stem = f"{ticker}_2012-06-21_34200000_57600000"
    mpath = folder / f"{stem}_message_{levels}{ext}"
    opath = folder / f"{stem}_orderbook_{levels}{ext}"
    mtext = "".join(",".join(str(x) for x in m) + "\n" for m in msgs)
    otext = "".join(",".join(str(int(x)) for x in r) + "\n" for r in rows)
    for path, text in ((mpath, mtext), (opath, otext)):
        if gz:
            with gzip.open(path, "wt") as f:
                f.write(text)
        else:
            path.write_text(text)
    return mpath
