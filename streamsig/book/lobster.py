"""LOBSTER message + orderbook file pairs, streamed as book events.

A LOBSTER pair is a message file (``Time,Type,OrderID,Size,Price,Direction``)
and an orderbook file whose row *k* is the top-L book after message *k*
(``AskPrice1,AskSize1,BidPrice1,BidSize1,...``; empty levels hold the
placeholder prices ``+-9999999999`` with size 0; prices are dollars x 10000).

Each message becomes one atomic batch (all events share ``seq`` = the message's
0-based row, the last carries ``EOB``):

* ``DEPTH`` events from diffing orderbook rows *k-1* and *k* per side: a price
  that left the top L gets size 0, a new or resized price its absolute size.
  Deletions come before insertions. The first message starts with
  ``CLEAR|SNAPSHOT`` and sets all of row 0 (``DEPTH|SNAPSHOT``).
* ``TRADE`` for executions (type 4 visible, 5 hidden; aggressor = the opposite
  of ``Direction``) and cross trades (type 6, no aggressor side).
* ``HALT`` for type 7, with ``price`` holding LOBSTER's code (-1 halt, 0
  quoting, 1 resume).
* A message that changes nothing visible and is no trade or halt still yields
  one event with only ``EOB`` and its side (``BUY`` for Direction 1).

``exch_ts = local_ts`` = ns since the epoch: the date in the file name
(``AMZN_2012-06-21_...``, taken as UTC midnight, as LOBSTER's times count from
midnight of that trading day) plus the Time column, ns after midnight parsed
from the decimal string (digits past the 9th are rounded half up on the 10th).
A file name without a date keeps times after midnight. ``order_id`` = OrderID,
``aux`` = the message type. Prices are ticks of ``tick_size`` dollars: given,
or inferred as the GCD of the visible book prices of the first chunk (see
:mod:`streamsig.book.instrument`); hidden or cross trades between ticks
(midpoint prints) are rounded half up and counted in
:attr:`LobsterStats.off_grid_trades`; off-grid order or book prices are errors.

Chunked reading is :mod:`streamsig.book.csvchunks`; level diffing and row
checks are :mod:`streamsig.book.levels` (both shared with the crypto readers).
"""
from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numba as nb
import numpy as np

from streamsig.book import events as E
from streamsig.book.csvchunks import byte_chunks, line_starts, parse_int_chunk, read_first_line
from streamsig.book.instrument import Instrument, resolve
from streamsig.book.levels import check_rows, diff_levels, mark_eob
from streamsig.errors import DataError

# --------------------------------------------------------------------------
# LOBSTER
# --------------------------------------------------------------------------

MESSAGE_COLUMNS = ["Time", "Type", "OrderID", "Size", "Price", "Direction"]
PLACEHOLDER = 9999999999  #: LOBSTER's price for an empty level (negated on the bid side)
SAMPLE_ROWS = 100_000  #: orderbook rows read to infer the tick
_MSG_RE = re.compile(r"(?P<stem>.*)_message_(?P<levels>\d+)(?P<ext>\.csv(?:\.gz)?)")
_OB_RE = re.compile(r"(?P<stem>.*)_orderbook_(?P<levels>\d+)(?P<ext>\.csv(?:\.gz)?)")
_DATE_RE = re.compile(r"_(\d{4}-\d{2}-\d{2})(?:_|$)")


def day_ns(name: str) -> int:
    """ns since the epoch of UTC midnight of the date in a LOBSTER file name (0 if none).

    >>> day_ns("AMZN_2012-06-21_34200000_57600000_message_5.csv")
    1340236800000000000
    """
    m = _DATE_RE.search(name)
    if m is None:
        return 0
    try:
        d = dt.date.fromisoformat(m.group(1))
    except ValueError:
        return 0
    return (d - dt.date(1970, 1, 1)).days * 86_400_000_000_000


@dataclass
class LobsterStats:
    """Counts filled while a :class:`LobsterReader` iterates.

    The size check covers messages of type 1-4 (after the first) whose price
    is visible on its side (``Direction``) in the orderbook row before or the
    row after it: the size at that price (0 where absent) must change by
    ``+Size`` for a submission and ``-Size`` for a cancel, delete or visible
    execution. ``checked`` counts all of these, ``checked_after`` those whose
    price is visible in the row after (the count the data README reports),
    ``checked_both`` those visible in both rows. ``disagreements`` counts the
    failures; the first few are described in ``examples``.
    """

    messages: int = 0
    events: int = 0
    checked: int = 0
    checked_after: int = 0
    checked_both: int = 0
    disagreements: int = 0
    halts: int = 0
    off_grid_trades: int = 0
    by_type: dict[int, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)


def find_orderbook(message_path: str | Path) -> Path:
    """The orderbook file paired with a LOBSTER message file.

    ``X_message_L.csv[.gz]`` pairs with ``X_orderbook_L.csv`` or ``.csv.gz``
    next to it; raises ``FileNotFoundError`` when neither exists.
    """
    p = Path(message_path)
    m = _MSG_RE.fullmatch(p.name)
    if m is None:
        raise DataError(p, None, "not a LOBSTER message file name (expected ..._message_<L>.csv[.gz])")
    names = dict.fromkeys(f"{m['stem']}_orderbook_{m['levels']}{ext}" for ext in (m["ext"], ".csv", ".csv.gz"))
    for name in names:
        if (p.parent / name).is_file():
            return p.parent / name
    raise FileNotFoundError(f"{p.parent / next(iter(names))}: no orderbook file for {p.name}")


def lobster_pairs(path: str | Path) -> list[Path]:
    """Message files of a LOBSTER pair, or of every pair in a folder (sorted).

    Raises ``FileNotFoundError`` if a message file has no orderbook partner.
    Passing an orderbook file names the message file to pass instead.
    """
    p = Path(path)
    if p.is_dir():
        msgs = sorted(f for f in p.iterdir() if f.is_file() and _MSG_RE.fullmatch(f.name))
    elif p.is_file():
        ob = _OB_RE.fullmatch(p.name)
        if ob is not None:
            raise DataError(p, None, "a LOBSTER orderbook file; pass its message file "
                            f"{ob['stem']}_message_{ob['levels']}{ob['ext']}")
        msgs = [p]
    else:
        raise FileNotFoundError(str(p))
    for f in msgs:
        find_orderbook(f)
    return msgs


def pick_depths(msgs: list[Path], levels: int | None = None) -> tuple[list[Path], list[str]]:
    """One message file per ticker and day: the deepest, or the shallowest holding ``levels``.

    A folder can hold one day of one ticker at several depths (levels 1, 5,
    10); they are nested views of the same day, not separate streams. Returns
    the kept files and a note per ticker that had a choice.

    >>> names = [Path(f"A_2012-06-21_0_1_message_{L}.csv") for L in (1, 5, 10)]
    >>> kept, notes = pick_depths(names, levels=3)
    >>> [k.name for k in kept], notes
    (['A_2012-06-21_0_1_message_5.csv'], ['A_2012-06-21_0_1: files at levels 1, 5, 10; using level 5'])
    """
    groups: dict[str, list[tuple[int, Path]]] = {}
    for f in msgs:
        m = _MSG_RE.fullmatch(f.name)
        assert m is not None
        groups.setdefault(m["stem"], []).append((int(m["levels"]), f))
    kept, notes = [], []
    for stem, opts in groups.items():
        opts.sort()
        if len(opts) == 1:
            kept.append(opts[0][1])
            continue
        deep = [o for o in opts if levels is None or o[0] >= levels]
        L, f = (deep[0] if levels is not None and deep else opts[-1])
        kept.append(f)
        notes.append(f"{stem}: files at levels {', '.join(str(o[0]) for o in opts)}; using level {L}")
    return sorted(kept), notes


@nb.njit(cache=True)
def _parse_seconds(buf, starts, ends):
    """First field of each line, decimal seconds -> ns; returns (ns, first bad line or -1)."""
    n = starts.shape[0]
    out = np.zeros(n, np.int64)
    for r in range(n):
        sec = 0
        frac = 0
        nf = 0
        nd = 0
        rnd = 0
        dot = False
        for c in range(starts[r], ends[r]):
            ch = buf[c]
            if ch == 44:
                break
            if ch == 46:
                if dot:
                    return out, r
                dot = True
            elif 48 <= ch <= 57:
                d = ch - 48
                if dot:
                    if nf < 9:
                        frac = frac * 10 + d
                    elif nf == 9:
                        rnd = 1 if d >= 5 else 0
                    nf += 1
                else:
                    sec = sec * 10 + d
                    nd += 1
                    if nd > 9:
                        return out, r
            else:
                return out, r
        if nd == 0:
            return out, r
        for _ in range(nf, 9):
            frac *= 10
        out[r] = sec * 1_000_000_000 + frac + rnd
    return out, -1


def seconds_to_ns(data: bytes) -> tuple[np.ndarray, int]:
    """First CSV field of each line, decimal seconds, as exact int ns.

    Digits past the 9th decimal are rounded half up on the 10th. Returns
    ``(ns, index of the first unparsable line or -1)``.

    >>> seconds_to_ns(b"34200.004241176,1\\n43002.632812672004,3\\n1.0000000005\\n7,x")[0].tolist()
    [34200004241176, 43002632812672, 1000000001, 7000000000]
    """
    starts, ends, _ = line_starts(data)
    ns, bad = _parse_seconds(np.frombuffer(data, np.uint8), starts, ends)
    return ns, int(bad)


def _nlines(data: bytes) -> int:
    return data.count(b"\n") + (not data.endswith(b"\n"))


def _fmt_ns(ns: int) -> str:
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


class LobsterReader:
    """Stream a LOBSTER message/orderbook pair as ``EVENT_DTYPE`` chunks.

    ``levels`` (default: L from the file name) may be smaller than the
    file's L to follow only the top ``levels``. ``symbol`` defaults to the
    file name's first ``_`` field. Each chunk holds the events of
    ``chunk_rows`` messages and ends on an EOB; :attr:`stats` is refilled on
    every pass.
    """

    def __init__(self, message_path: str | Path, levels: int | None = None, symbol: str | None = None,
                 chunk_rows: int = 100_000, tick_size: float | None = None,
                 instruments: Mapping[str, Mapping[str, object]] | None = None) -> None:
        self.message_path = Path(message_path)
        self.orderbook_path = find_orderbook(self.message_path)
        m = _MSG_RE.fullmatch(self.message_path.name)
        assert m is not None  # find_orderbook checked the name
        self.file_levels = int(m["levels"])
        first = read_first_line(self.orderbook_path)
        ncols = first.count(b",") + 1 if first.strip() else 0
        if ncols != 4 * self.file_levels:
            raise DataError(self.orderbook_path, 1,
                            f"expected {4 * self.file_levels} columns for level {self.file_levels}, got {ncols}")
        self.levels = self.file_levels if levels is None else int(levels)
        if not 1 <= self.levels <= self.file_levels:
            raise ValueError(f"levels must be 1..{self.file_levels} for {self.orderbook_path.name}")
        self.symbol = symbol or self.message_path.name.split("_")[0]
        self.chunk_rows = int(chunk_rows)
        self._ob_names = [f"{k}{i}" for i in range(1, self.file_levels + 1)
                          for k in ("AskPrice", "AskSize", "BidPrice", "BidSize")]
        self.day_ns = day_ns(self.message_path.name)
        self.instrument = self._instrument(tick_size, instruments)
        self.tick_size = self.instrument.tick_size
        q = self.tick_size * 10_000
        if q < 1 or abs(q - round(q)) > 1e-9:
            raise ValueError("tick_size must be a whole multiple of 0.0001 (LOBSTER's price unit)")
        self._q = int(round(q))

    def _instrument(self, tick_size: float | None,
                    instruments: Mapping[str, Mapping[str, object]] | None) -> Instrument:
        """Given tick, table tick, or the GCD of the first chunk's visible book prices ($ x 10000)."""
        base = dict(quote="USD", settle="USD", market="equity", lot_size=1.0)
        table = {self.symbol: {**base, **dict((instruments or {}).get(self.symbol, {}))}}
        if tick_size is not None or "tick_size" in table[self.symbol]:
            return resolve(self.symbol, "lobster", tick_size=tick_size, table=table, where=self.message_path)
        g, n = 0, 0
        for line0, data in byte_chunks(self.orderbook_path, SAMPLE_ROWS):
            o = parse_int_chunk(self.orderbook_path, line0, data, self._ob_names)
            px = np.concatenate([o[:, 0::4][o[:, 1::4] > 0], o[:, 2::4][o[:, 3::4] > 0]])
            px = np.unique(px[(px > 0) & (px != PLACEHOLDER)])
            n = len(px)
            g = int(np.gcd.reduce(px)) if n else 0
            break
        if not g:
            return resolve(self.symbol, "lobster", table=table, default_tick=0.01, where=self.message_path)
        inst = resolve(self.symbol, "lobster", tick_size=g / 10_000, table=table,
                       where=self.message_path)
        from dataclasses import replace
        return replace(inst, tick_from=f"inferred: GCD of {n:,} distinct book prices in the first rows")
        self.stats = LobsterStats()

    def __iter__(self) -> Iterator[np.ndarray]:
        self.stats = LobsterStats()
        L = self.levels
        prev = (np.zeros(L, np.int64), np.zeros(L), np.zeros(L, np.int64), np.zeros(L))
        last_ns = None
        msgs = byte_chunks(self.message_path, self.chunk_rows)
        books = byte_chunks(self.orderbook_path, self.chunk_rows)
        for mc, oc in itertools.zip_longest(msgs, books):
            have_m = 0 if mc is None else _nlines(mc[1])
            have_o = 0 if oc is None else _nlines(oc[1])
            if have_m != have_o:
                line = (mc or oc)[0] + min(have_m, have_o)
                longer = "orderbook" if have_o > have_m else "message"
                raise DataError(self.orderbook_path, line,
                                f"row counts differ: the {longer} file has more rows")
            ev, prev, last_ns = self._chunk(mc[0], mc[1], oc[1], prev, last_ns)
            yield ev

    def read_all(self) -> np.ndarray:
        """All events of the pair in one array."""
        parts = list(self)
        return np.concatenate(parts) if parts else E.empty(0)

    # -- one chunk ---------------------------------------------------------
    def _chunk(self, line0, mdata, odata, prev, last_ns):
        mp, op = self.message_path, self.orderbook_path
        msg = parse_int_chunk(mp, line0, mdata, MESSAGE_COLUMNS, first=1)
        o = parse_int_chunk(op, line0, odata, self._ob_names)
        n = len(msg)
        seq0 = line0 - 1
        typ, oid, size, price, direc = msg.T
        ns, bad = seconds_to_ns(mdata)
        if bad >= 0:
            t = mdata.splitlines()[bad].split(b",")[0].decode(errors="replace")
            raise DataError(mp, line0 + bad, f"Time {t!r} is not decimal seconds")
        self._check_messages(line0, typ, size, price, direc, ns, last_ns)

        q, L = self._q, self.levels
        ask_px, ask_sz, bid_px, bid_sz = (o[:, k::4][:, :L] for k in range(4))
        ticks = self._book_ticks(line0, o, ask_px, ask_sz, bid_px, bid_sz)
        ask_t, bid_t = ticks
        hit = check_rows(ask_t, ask_sz, bid_t, bid_sz, fmt=lambda t: f"{t * q}")
        if hit is not None:
            raise DataError(op, line0 + hit[0], hit[1])
        A = np.vstack([prev[0][None], ask_t]), np.vstack([prev[1][None], ask_sz])
        B = np.vstack([prev[2][None], bid_t]), np.vstack([prev[3][None], bid_sz])
        d_row, d_bid, d_px, d_sz, d_lvl = diff_levels(A[0], A[1], B[0], B[1])

        # message price in ticks: order prices must be on the grid, trades are rounded
        mt = (2 * price + q) // (2 * q)
        off = price % q != 0
        order_off = off & (typ <= 4)
        if order_off.any():
            i = int(np.argmax(order_off))
            raise DataError(mp, line0 + i, f"Price {price[i]} is not a multiple of tick {self.tick_size}")
        first_file_row = seq0 == 0
        self._check_sizes(line0, typ, size, mt, direc, A, B, first_file_row)

        trade = (typ >= 4) & (typ <= 6)
        halt = typ == 7
        has_depth = np.zeros(n, bool)
        has_depth[d_row] = True
        clear_rows = np.zeros(1 if first_file_row else 0, np.int64)
        x_rows = np.flatnonzero(trade | halt)
        noop_rows = np.flatnonzero(~has_depth & ~trade & ~halt & ~(np.arange(n) < len(clear_rows)))
        side_flag = np.where(direc == 1, E.BUY, E.SELL).astype(np.uint32)
        aggressor = np.where(direc == 1, E.SELL, E.BUY).astype(np.uint32)
        x_flags = np.where(halt[x_rows], E.HALT,
                           E.TRADE | np.where(typ[x_rows] == 6, 0, aggressor[x_rows])).astype(np.uint32)
        rows = np.concatenate([clear_rows, d_row, x_rows, noop_rows])
        flags = np.concatenate([
            np.full(len(clear_rows), E.CLEAR | E.SNAPSHOT, np.uint32),
            np.where(d_bid, E.DEPTH | E.BUY, E.DEPTH | E.SELL).astype(np.uint32)
            | np.where(first_file_row & (d_row == 0), E.SNAPSHOT, 0).astype(np.uint32),
            x_flags, side_flag[noop_rows]])
        pxs = np.concatenate([np.zeros(len(clear_rows), np.int64), d_px,
                              np.where(halt[x_rows], price[x_rows], mt[x_rows]), mt[noop_rows]])
        szs = np.concatenate([np.zeros(len(clear_rows)), d_sz, np.where(halt[x_rows], 0, size[x_rows]),
                              size[noop_rows]]).astype(np.float64)
        lvls = np.concatenate([np.full(len(clear_rows), -1, np.int32), d_lvl,
                               np.full(len(x_rows) + len(noop_rows), -1, np.int32)])
        order = np.argsort(rows, kind="stable")
        rows = rows[order]
        ev = E.empty(len(rows))
        ev["flags"] = flags[order] | np.where(mark_eob(rows), E.EOB, 0).astype(np.uint32)
        ev["level"] = lvls[order]
        ev["price"] = pxs[order]
        ev["size"] = szs[order]
        ev["exch_ts"] = ns[rows] + self.day_ns
        ev["local_ts"] = ns[rows] + self.day_ns
        ev["seq"] = seq0 + rows
        ev["order_id"] = oid[rows]
        ev["aux"] = typ[rows]

        st = self.stats
        st.messages += n
        st.events += len(ev)
        st.halts += int(halt.sum())
        st.off_grid_trades += int((off & trade).sum())
        for t, c in zip(*np.unique(typ, return_counts=True)):
            st.by_type[int(t)] = st.by_type.get(int(t), 0) + int(c)
        new_prev = (ask_t[-1].copy(), ask_sz[-1].astype(np.float64), bid_t[-1].copy(), bid_sz[-1].astype(np.float64))
        return ev, new_prev, int(ns[-1])

    def _check_messages(self, line0, typ, size, price, direc, ns, last_ns) -> None:
        mp = self.message_path
        problems = []
        for mask, why in (
            ((typ < 1) | (typ > 7), lambda i: f"unknown message type {typ[i]}"),
            ((direc != 1) & (direc != -1), lambda i: f"Direction must be 1 or -1, got {direc[i]}"),
            (size < 0, lambda i: f"negative Size {size[i]}"),
            ((typ == 7) & ((price < -1) | (price > 1)), lambda i: f"halt message with Price {price[i]} (expected -1, 0 or 1)"),
            ((typ != 7) & (price <= 0), lambda i: f"non-positive Price {price[i]}"),
        ):
            idx = np.flatnonzero(mask)
            if idx.size:
                problems.append((int(idx[0]), why))
        before = np.concatenate([[ns[0] if last_ns is None else last_ns], ns[:-1]])
        back = np.flatnonzero(ns < before)
        if back.size:
            i = int(back[0])
            was = int(ns[i - 1]) if i else last_ns
            problems.append((i, lambda i: f"Time goes backwards ({_fmt_ns(int(ns[i]))} after {_fmt_ns(was)})"))
        if problems:
            i, why = min(problems, key=lambda t: t[0])
            raise DataError(mp, line0 + i, why(i))

    def _book_ticks(self, line0, o, ask_px, ask_sz, bid_px, bid_sz):
        op, q = self.orderbook_path, self._q
        sizes = o[:, 1::2]
        neg = np.flatnonzero((sizes < 0).any(axis=1))
        if neg.size:
            r = int(neg[0])
            c = 2 * int(np.argmax(sizes[r] < 0)) + 1
            raise DataError(op, line0 + r, f"negative size {o[r, c]} in {self._ob_names[c]}")
        out = []
        for px, sz, name in ((ask_px, ask_sz, "AskPrice"), (bid_px, bid_sz, "BidPrice")):
            valid = sz > 0
            bad = valid & ((np.abs(px) == PLACEHOLDER) | (px % q != 0) | (px <= 0))
            if bad.any():
                r = int(np.flatnonzero(bad.any(axis=1))[0])
                lv = int(np.argmax(bad[r]))
                why = "placeholder price with a non-zero size" if abs(px[r, lv]) == PLACEHOLDER else \
                    f"price {px[r, lv]} is not a positive multiple of tick {self.tick_size}"
                raise DataError(op, line0 + r, f"{name}{lv + 1}: {why}")
            out.append(np.where(valid, px // q, 0))
        return out

    def _check_sizes(self, line0, typ, size, mt, direc, A, B, first_file_row) -> None:
        bid = (direc == 1)[:, None]
        res = []
        for k in (slice(0, -1), slice(1, None)):
            px = np.where(bid, B[0][k], A[0][k])
            sz = np.where(bid, B[1][k], A[1][k])
            hit = (px == mt[:, None]) & (sz > 0)
            res.append((hit.any(axis=1), np.where(hit, sz, 0.0).sum(axis=1)))
        (in0, s0), (in1, s1) = res
        chk = (typ >= 1) & (typ <= 4) & (in0 | in1)
        if first_file_row:
            chk[0] = False
        expected = np.where(typ == 1, size, -size)
        dis = chk & (s1 - s0 != expected)
        st = self.stats
        st.checked += int(chk.sum())
        st.checked_after += int((chk & in1).sum())
        st.checked_both += int((chk & in0 & in1).sum())
        st.disagreements += int(dis.sum())
        for i in np.flatnonzero(dis)[: max(0, 5 - len(st.examples))]:
            st.examples.append(f"line {line0 + i}: type {typ[i]} Size {size[i]} at {mt[i]} ticks, "
                               f"visible size {s0[i]:g} -> {s1[i]:g}")
