"""Crypto readers: snapshot diffs round-trip, incremental batches, trades, merging."""
from __future__ import annotations

import gzip
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from streamsig.book import events as E
from streamsig.book.crypto import (KAGGLE_LEVELS, TARDIS_BOOK_SNAPSHOT, IncrementalReader, SnapshotColumns,
                                   SnapshotReader, TradesReader, infer_tick, merge_events)
from streamsig.errors import DataError
from tests._fmt_books import DictBook, real

# ---- synthetic files -------------------------------------------------------

# (timestamp µs, asks [(price, size)], bids [(price, size)]) with 3 levels
SNAPS = [
    (1_000_000, [("100.50", "1.5"), ("100.60", "2"), ("100.75", "0.1")], [("100.40", "3"), ("100.30", "1"), ("100.00", "9")]),
    (1_001_000, [("100.50", "1.5"), ("100.60", "2"), ("100.75", "0.1")], [("100.40", "3"), ("100.30", "1"), ("100.00", "9")]),
    (1_002_000, [("100.50", "1.5"), ("100.60", "2"), ("100.75", "0.1")], [("100.40", "2.5"), ("100.30", "1"), ("100.00", "9")]),
    (1_002_000, [("100.50", "1.5"), ("100.60", "2")], [("100.45", "1"), ("100.40", "2.5"), ("100.30", "1")]),
    (999_000, [("100.60", "2"), ("100.70", "4"), ("100.80", "1")], [("100.45", "1"), ("100.40", "2.5"), ("100.30", "1")]),
]


def tardis_snapshot_csv(path, snaps=SNAPS, symbol="BTCUSDT", levels=3):
    head = ["exchange", "symbol", "timestamp", "local_timestamp"]
    for i in range(levels):
        head += [f"asks[{i}].price", f"asks[{i}].amount", f"bids[{i}].price", f"bids[{i}].amount"]
    lines = [",".join(head)]
    for ts, asks, bids in snaps:
        row = ["binance-futures", symbol, str(ts), str(ts - 1500)]
        for i in range(levels):
            a = asks[i] if i < len(asks) else ("", "")
            b = bids[i] if i < len(bids) else ("", "")
            row += [*a, *b]
        lines.append(",".join(row))
    path.write_text("\n".join(lines) + "\n")
    return path


def top_from_snap(snap, tick):
    _, asks, bids = snap
    t = lambda lv: [(round(float(p) / tick), float(s)) for p, s in lv]
    return t(asks), t(bids)


def test_snapshot_diffs_exactly(tmp_path):
    path = tardis_snapshot_csv(tmp_path / "snap.csv")
    assert SnapshotReader(path).tick_size == 0.05  # every price of SNAPS lies on a 0.05 grid
    r = SnapshotReader(path, tick_size=0.01)
    assert (r.symbol, r.tick_size, r.levels) == ("BTCUSDT", 0.01, 3)
    ev = r.read_all()
    got = [(E.describe_flags(int(f)), int(p), float(s), int(q), int(t)) for f, p, s, q, t in
           zip(ev["flags"], ev["price"], ev["size"], ev["seq"], ev["exch_ts"])]
    assert got[0] == ("CLEAR|SNAPSHOT", 0, 0.0, 0, 1_000_000_000)
    assert all("SNAPSHOT" in g[0] for g in got[:7]) and got[6][0].endswith("EOB|SNAPSHOT")
    # row 1 is unchanged: nothing; row 2: one bid size; row 3: ask 100.75 gone, bid 100.00 pushed out, bid 100.45 new
    assert got[7:] == [
        ("DEPTH|BUY|EOB", 10040, 2.5, 1, 1_002_000_000),
        ("DEPTH|SELL", 10075, 0.0, 2, 1_002_000_000),
        ("DEPTH|BUY", 10000, 0.0, 2, 1_002_000_000),
        ("DEPTH|BUY|EOB", 10045, 1.0, 2, 1_002_000_000),
        ("DEPTH|SELL", 10050, 0.0, 3, 999_000_000),
        ("DEPTH|SELL", 10070, 4.0, 3, 999_000_000),
        ("DEPTH|SELL|EOB", 10080, 1.0, 3, 999_000_000),
    ]
    assert (ev["local_ts"] == ev["exch_ts"] - 1_500_000).all()
    book, snaps_after = DictBook(), [0, 2, 3, 4]
    for k, i in enumerate(book.replay(ev)):
        assert book.top(4) == top_from_snap(SNAPS[snaps_after[k]], 0.01)


def test_snapshot_chunking_levels_and_parquet(tmp_path):
    path = tardis_snapshot_csv(tmp_path / "snap.csv")
    gz = tmp_path / "snap.csv.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    whole = SnapshotReader(path, tick_size=0.01).read_all()
    assert SnapshotReader(gz, chunk_rows=1, tick_size=0.01).read_all().tobytes() == whole.tobytes()
    pq = tmp_path / "snap.parquet"
    df = pd.read_csv(path)
    df.to_parquet(pq)
    assert SnapshotReader(pq, chunk_rows=2).tick_size == 0.05  # Parquet floats: inferred from their text
    par = SnapshotReader(pq, chunk_rows=2, tick_size=0.01)
    assert par.read_all().tobytes() == whole.tobytes()
    two = SnapshotReader(path, levels=2, tick_size=0.01).read_all()
    book = DictBook()
    for k, _ in zip([0, 2, 3, 4], book.replay(two)):
        asks, bids = top_from_snap(SNAPS[k], 0.01)
        assert book.top(3) == (asks[:2], bids[:2])


def test_kaggle_layout_from_dict_json_and_toml(tmp_path):
    cols = ["timestamp"] + [f"{s}_{k}_{i}" for i in (1, 2, 3) for s in ("bid", "ask") for k in ("price", "size")]
    rows = []
    for ts, asks, bids in SNAPS:
        vals = {"timestamp": ts // 1000}
        for i in range(3):
            a = asks[i] if i < len(asks) else ("", "")
            b = bids[i] if i < len(bids) else ("", "")
            vals |= {f"ask_price_{i+1}": a[0], f"ask_size_{i+1}": a[1], f"bid_price_{i+1}": b[0], f"bid_size_{i+1}": b[1]}
        rows.append(",".join(str(vals[c]) for c in cols))
    path = tmp_path / "ETHUSD_levels.csv"
    path.write_text(",".join(cols) + "\n" + "\n".join(rows) + "\n")
    ref = SnapshotReader(tardis_snapshot_csv(tmp_path / "snap.csv"), tick_size=0.01).read_all()
    mapping = {"timestamp": "timestamp", "bid_price": "bid_price_{i}", "bid_size": "bid_size_{i}",
               "ask_price": "ask_price_{i}", "ask_size": "ask_size_{i}", "first_level": 1, "time_unit": "ms"}
    (tmp_path / "map.json").write_text(json.dumps(mapping))
    (tmp_path / "map.toml").write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in mapping.items()))
    for cols_ in (replace(KAGGLE_LEVELS, time_unit="ms"), SnapshotColumns.from_dict(mapping), SnapshotColumns.load(tmp_path / "map.json"),
                  SnapshotColumns.load(tmp_path / "map.toml")):
        r = SnapshotReader(path, columns=cols_, tick_size=0.01)
        assert (r.symbol, r.levels) == ("ETHUSD", 3)
        ev = r.read_all()
        for f in ("flags", "price", "size", "seq", "level", "exch_ts"):
            assert (ev[f] == ref[f]).all(), f
        assert (ev["local_ts"] == ev["exch_ts"]).all()
    # without a map the layout is detected from the header; these small stamps read as epoch seconds
    auto = SnapshotReader(path, tick_size=0.01)
    assert (auto.columns.name, auto.time_unit) == ("bid_price_i / ask_size_i levels", "s")
    with pytest.raises(DataError, match=r"ETHUSD_levels.csv:1: missing column 'asks\[0\].price'"):
        SnapshotReader(path, columns=TARDIS_BOOK_SNAPSHOT)
    with pytest.raises(ValueError, match="unknown SnapshotColumns keys"):
        SnapshotColumns.from_dict({**mapping, "bid_px": "x"})


def test_tick_inference_and_off_grid(tmp_path):
    assert infer_tick(["1.5", "2.125", "3"]) == (0.125, 3)
    assert TARDIS_BOOK_SNAPSHOT.level(0) == ("asks[0].price", "asks[0].amount", "bids[0].price", "bids[0].amount")
    path = tardis_snapshot_csv(tmp_path / "snap.csv")
    assert SnapshotReader(path, tick_size=0.05).tick_size == 0.05
    with pytest.raises(DataError) as exc:
        SnapshotReader(path, tick_size=0.2).read_all()
    assert str(exc.value) == f"{path}:2: asks[0].price: price 100.5 is not a multiple of tick 0.2"


@pytest.mark.parametrize("row,cell,value,reason", [
    (2, 4, "100.40", "crossed book: best ask 100.4 <= best bid 100.4"),
    (3, 9, "-2", "asks[1].amount: negative size -2.0"),
    (4, 6, "abc", "column bids[0].price: 'abc' is not a number"),
    (4, 6, "", "bids[0].price: missing price"),
    (5, 15, None, "expected 16 columns, got 15"),
])
def test_snapshot_malformed_line(tmp_path, row, cell, value, reason):
    path = tardis_snapshot_csv(tmp_path / "snap.csv")
    lines = path.read_text().splitlines()
    cells = lines[row - 1].split(",")
    if value is None:
        del cells[cell]
    else:
        cells[cell] = value
    lines[row - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as exc:
        SnapshotReader(path, tick_size=0.01).read_all()
    assert str(exc.value) == f"{path}:{row}: {reason}"


INC_HEAD = "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount"
INC = [  # (symbol, ts µs, snapshot, side, price, amount)
    ("BTC", 100, "true", "bid", "10.0", "1"), ("BTC", 100, "true", "bid", "9.9", "2"),
    ("BTC", 100, "true", "ask", "10.1", "3"),
    ("ETH", 100, "true", "ask", "2.50", "3"),
    ("BTC", 99, "false", "bid", "9.9", "0"), ("BTC", 99, "false", "bid", "9.8", "5"),
    ("BTC", 105, "false", "ask", "10.1", "4"),
    ("BTC", 107, "true", "bid", "10.0", "1"), ("BTC", 107, "true", "ask", "10.2", "1"),
    ("BTC", 108, "false", "ask", "10.3", "1.25"),
]


def incremental_csv(path, rows=INC):
    text = INC_HEAD + "\n" + "\n".join(f"binance-futures,{s},{t},{t + 7},{n},{d},{p},{a}" for s, t, n, d, p, a in rows)
    path.write_text(text + "\n")
    return path


def test_incremental_batches(tmp_path):
    path = incremental_csv(tmp_path / "inc.csv")
    r = IncrementalReader(path, symbol="BTC")
    assert (r.symbol, r.tick_size) == ("BTC", 0.1)
    ev = r.read_all()
    got = [(E.describe_flags(int(f)), int(p), float(s), int(q)) for f, p, s, q in
           zip(ev["flags"], ev["price"], ev["size"], ev["seq"])]
    assert got == [
        ("CLEAR|SNAPSHOT", 0, 0.0, 0),
        ("DEPTH|BUY|SNAPSHOT", 100, 1.0, 0), ("DEPTH|BUY|SNAPSHOT", 99, 2.0, 0),
        ("DEPTH|SELL|EOB|SNAPSHOT", 101, 3.0, 0),
        ("DEPTH|BUY", 99, 0.0, 1), ("DEPTH|BUY|EOB", 98, 5.0, 1),
        ("DEPTH|SELL|EOB", 101, 4.0, 2),
        ("CLEAR|SNAPSHOT", 0, 0.0, 3), ("DEPTH|BUY|SNAPSHOT", 100, 1.0, 3),
        ("DEPTH|SELL|EOB|SNAPSHOT", 102, 1.0, 3),
        ("DEPTH|SELL|EOB", 103, 1.25, 4),
    ]
    assert ev["exch_ts"][[0, 4, 6]].tolist() == [100_000, 99_000, 105_000]
    assert (ev["local_ts"] == ev["exch_ts"] + 7000).all()
    for n in (1, 2, 3):
        assert IncrementalReader(path, symbol="BTC", chunk_rows=n).read_all().tobytes() == ev.tobytes()
    eth = IncrementalReader(path, symbol="ETH").read_all()
    assert [E.describe_flags(int(f)) for f in eth["flags"]] == ["CLEAR|SNAPSHOT", "DEPTH|SELL|EOB|SNAPSHOT"]
    assert IncrementalReader(path, symbol="ETH").tick_size == 2.5  # one price: the grid it proves is coarse
    with pytest.raises(DataError) as exc:
        IncrementalReader(path).read_all()
    assert str(exc.value) == f"{path}:5: file holds more than one symbol (BTC, ETH); pass symbol="


@pytest.mark.parametrize("cell,value,reason", [
    (5, "ask", "is_snapshot must be false or true, got 'ask'"),
    (6, "mid", "side must be ask or bid, got 'mid'"),
    (7, "9.95", "price: price 9.95 is not a multiple of tick 0.1"),
    (8, "-1", "amount: negative size -1.0"),
    (8, "nan", "amount is missing or NaN"),
    (3, "1e", "column timestamp: '1e' is not an integer"),
])
def test_incremental_malformed_line(tmp_path, cell, value, reason):
    path = incremental_csv(tmp_path / "inc.csv", INC[:3])
    lines = path.read_text().splitlines()
    cells = lines[3].split(",")
    cells[cell - 1] = value
    lines[3] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as exc:
        IncrementalReader(path, tick_size=0.1).read_all()
    assert str(exc.value) == f"{path}:4: {reason}"


def trades_csv(path):
    path.write_text("exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
                    "x,BTC,101,90,5001,buy,10.1,0.5\n"
                    "x,BTC,101,91,5002,sell,10.0,1\n"
                    "x,BTC,106,95,abc,unknown,10.05,2\n")
    return path


def test_trades_and_merge(tmp_path):
    assert TradesReader(trades_csv(tmp_path / "trades.csv")).tick_size == 0.05
    tr = TradesReader(trades_csv(tmp_path / "trades.csv"), tick_size=0.01)
    assert (tr.symbol, tr.tick_size) == ("BTC", 0.01)
    t = tr.read_all()
    assert [E.describe_flags(int(f)) for f in t["flags"]] == ["TRADE|BUY|EOB", "TRADE|SELL|EOB", "TRADE|EOB"]
    assert t["price"].tolist() == [1010, 1000, 1005] and t["size"].tolist() == [0.5, 1.0, 2.0]
    assert t["order_id"].tolist() == [5001, 5002, -1] and t["seq"].tolist() == [0, 1, 2]
    assert t["exch_ts"].tolist() == [101_000, 101_000, 106_000]
    book = IncrementalReader(incremental_csv(tmp_path / "inc.csv"), symbol="BTC", tick_size=0.01).read_all()
    m = merge_events(book, t)
    assert len(m) == len(book) + len(t)
    # batches in time order; the 99 µs batch stays right after its 100 µs predecessor; ties keep argument order
    eob = m[(m["flags"] & E.EOB) != 0]
    assert eob["exch_ts"].tolist() == [100_000, 99_000, 101_000, 101_000, 105_000, 106_000, 107_000, 108_000]
    assert eob["seq"].tolist() == list(range(8))
    assert (m["seq"][:4] == 0).all() and m["flags"][0] == E.CLEAR | E.SNAPSHOT
    assert merge_events().size == 0 and merge_events(t).tobytes() == t.tobytes()


def test_trades_malformed_line(tmp_path):
    path = trades_csv(tmp_path / "trades.csv")
    path.write_text(path.read_text().replace("sell", "taker"))
    with pytest.raises(DataError) as exc:
        TradesReader(path).read_all()
    assert str(exc.value) == f"{path}:3: side must be buy, sell or unknown, got 'taker'"


# ---- real Binance captures in Tardis format ---------------------------------

TARDIS = "crypto/tardis_format/binance-futures_{}_2024-07-18_{}.csv.gz"


def snapshot_tops(path, tick):
    """Each snapshot_10 row as (asks, bids) tick lists, read independently of the reader."""
    df = pd.read_csv(path)
    out = []
    ap = df[[f"asks[{i}].price" for i in range(10)]].to_numpy()
    asz = df[[f"asks[{i}].amount" for i in range(10)]].to_numpy()
    bp = df[[f"bids[{i}].price" for i in range(10)]].to_numpy()
    bsz = df[[f"bids[{i}].amount" for i in range(10)]].to_numpy()
    for k in range(len(df)):
        out.append(([(round(p / tick), s) for p, s in zip(ap[k], asz[k]) if s > 0],
                    [(round(p / tick), s) for p, s in zip(bp[k], bsz[k]) if s > 0]))
    return df["timestamp"].to_numpy() * 1000, out


@pytest.mark.realdata
@pytest.mark.parametrize("sym,tick", [("BTCUSDT", 0.1), ("ETHUSDT", 0.01)])
def test_real_snapshot_round_trips(sym, tick):
    path = real(TARDIS.format("book_snapshot_10", sym))
    r = SnapshotReader(path, chunk_rows=2000)
    assert (r.symbol, r.levels, r.tick_size) == (sym, 10, tick)
    ev = r.read_all()
    ts, tops = snapshot_tops(path, r.tick_size)
    # a batch for row 0 and for every row that differs from the row before; nothing else
    changed = [0] + [k for k in range(1, len(tops)) if tops[k] != tops[k - 1]]
    book, n = DictBook(), 0
    for n, i in enumerate(book.replay(ev), 1):
        k = changed[n - 1]
        assert book.top(11) == tops[k] and ev["exch_ts"][i] == ts[k], f"row {k}"
    assert n == len(changed) == ev["seq"][-1] + 1 and len(changed) < len(tops)


@pytest.mark.realdata
@pytest.mark.parametrize("sym,tick", [("BTCUSDT", 0.1), ("ETHUSDT", 0.01)])
def test_real_incremental_matches_snapshots_and_quotes(sym, tick):
    inc = IncrementalReader(real(TARDIS.format("incremental_book_L2", sym)), chunk_rows=50_000)
    ev = inc.read_all()
    assert inc.tick_size == tick
    ts_snap, tops = snapshot_tops(real(TARDIS.format("book_snapshot_10", sym)), inc.tick_size)
    book, bts, bb, ba = DictBook(strict=False), [], [], []  # Binance may delete levels it never sent
    for k, i in enumerate(book.replay(ev)):
        # the snapshot_10 file has one row per depth message: the top 10 must agree exactly
        top = book.top(10)
        assert top == tops[k] and ev["exch_ts"][i] == ts_snap[k]
        bts.append(ev["exch_ts"][i] // 1000)
        ba.append(top[0][0][0])
        bb.append(top[1][0][0])
    assert k + 1 == len(tops) and ev["seq"][-1] == k
    # quotes (bookTicker) stamped with the same exchange ms as a depth message: compare the last
    # quote of that timestamp with the book after the message. bookTicker ticks between depth
    # messages too, so only equal timestamps are comparable; a few differ by in-ms ordering.
    q = pd.read_csv(real(TARDIS.format("quotes", sym)))
    qt = q["timestamp"].to_numpy()
    last = np.r_[qt[1:] != qt[:-1], True]
    bts, bb, ba = np.array(bts), np.array(bb), np.array(ba)
    j = np.minimum(np.searchsorted(bts, qt), len(bts) - 1)
    sel = last & (bts[j] == qt)
    same = (bb[j[sel]] == np.rint(q["bid_price"].to_numpy()[sel] / tick)) & \
           (ba[j[sel]] == np.rint(q["ask_price"].to_numpy()[sel] / tick))
    assert sel.sum() > 400
    assert same.mean() > 0.95, (same.sum(), sel.sum())


@pytest.mark.realdata
@pytest.mark.parametrize("sym,n", [("BTCUSDT", 10_701), ("ETHUSDT", 13_655)])
def test_real_trades_and_merge(sym, n):
    tr = TradesReader(real(TARDIS.format("trades", sym)), tick_size=0.01)
    t = tr.read_all()
    df = pd.read_csv(real(TARDIS.format("trades", sym)))
    assert len(t) == n and (t["flags"] & E.EOB).all()
    assert ((t["flags"] & E.BUY) != 0).sum() == (df["side"] == "buy").sum()
    assert (t["price"] == np.rint(df["price"].to_numpy() / 0.01)).all()
    book = SnapshotReader(real(TARDIS.format("book_snapshot_10", sym)), tick_size=0.01).read_all()
    m = merge_events(book, t)
    eob = m[(m["flags"] & E.EOB) != 0]
    assert len(m) == len(book) + n and eob["seq"].tolist() == list(range(len(eob)))
    is_trade = (m["flags"] & E.TRADE) != 0
    for part, src in ((m[is_trade], t), (m[~is_trade], book)):  # each stream keeps its order
        for f in ("flags", "price", "size", "exch_ts"):
            assert (part[f] == src[f]).all()
    assert (np.diff(eob["exch_ts"]) < 0).sum() <= 1  # only ETH's diff stamped before its REST snapshot


@pytest.mark.realdata
def test_real_snapshot_events_apply_cleanly_to_the_book():
    from streamsig.book.book import Book

    path = real(TARDIS.format("book_snapshot_10", "BTCUSDT"))
    rd = SnapshotReader(path)
    ev = rd.read_all()
    book = Book(capacity=10)
    assert not book.apply(ev).any()
    asks, bids = snapshot_tops(path, rd.tick_size)[1][-1]
    assert list(zip(book.ask_px[:book.n_ask].tolist(), book.ask_sz[:book.n_ask].tolist())) == asks
    assert list(zip(book.bid_px[:book.n_bid].tolist(), book.bid_sz[:book.n_bid].tolist())) == bids


# ---- snapshot layouts and timestamps, detected through the CLI ------------------------------

def run_features(*args):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "streamsig.cli", "features", *args], capture_output=True,
                          text=True, timeout=300)


EPOCH_US = 1_721_347_022_000_000  # 2024-07-19 00:37:02 UTC


def level_rows(unit):
    """SNAPS as ``timestamp,bid_price_i,...`` rows (3 levels) with stamps written in ``unit``."""
    cols = ["timestamp"] + [f"{s}_{k}_{i}" for i in (1, 2, 3) for s in ("bid", "ask") for k in ("price", "size")]
    out = [",".join(cols)]
    for ts, asks, bids in SNAPS:
        us = EPOCH_US + ts
        stamp = {"iso": pd.Timestamp(us, unit="us", tz="UTC").isoformat(), "s": f"{us / 1e6:.6f}",
                 "ms": str(us // 1000), "us": str(us), "ns": str(us * 1000)}[unit]
        vals = {"timestamp": stamp}
        for i in range(3):
            a = asks[i] if i < len(asks) else ("", "")
            b = bids[i] if i < len(bids) else ("", "")
            vals |= {f"ask_price_{i+1}": a[0], f"ask_size_{i+1}": a[1], f"bid_price_{i+1}": b[0], f"bid_size_{i+1}": b[1]}
        out.append(",".join(str(vals[c]) for c in cols))
    return out


@pytest.mark.parametrize("unit,words", [("iso", "ISO datetime text"), ("s", "epoch seconds"), ("ms", "epoch ms"),
                                        ("us", "epoch µs"), ("ns", "epoch ns")])
def test_level_columns_layout_and_time_units_through_cli(tmp_path, unit, words):
    path = tmp_path / "ETHUSDT_levels.csv"
    path.write_text("\n".join(level_rows(unit)) + "\n")
    out = tmp_path / "f.parquet"
    r = run_features("--data", str(path), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert f"layout bid_price_i / ask_size_i levels, 3 levels, timestamps {words}" in r.stderr
    df = pd.read_parquet(out)
    # rows 0, 2, 3, 4 change the book (row 1 repeats row 0); stamps are exact to the ms at least
    want = [(EPOCH_US + SNAPS[k][0]) * 1000 for k in (0, 2, 3, 4)]
    assert df["ts_ns"].tolist() == want
    assert df["mid"].tolist() == pytest.approx([100.45, 100.45, 100.475, 100.525])


def test_tardis_snapshot_layout_through_cli(tmp_path):
    path = tardis_snapshot_csv(tmp_path / "binance-futures_book_snapshot_3_2024-07-18_BTCUSDT.csv")
    out = tmp_path / "f.parquet"
    r = run_features("--data", str(path), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "BTCUSDT tick 0.05 (inferred: GCD of 9 distinct prices" in r.stderr
    assert "layout Tardis book_snapshot_N, 3 levels, timestamps epoch µs" in r.stderr
    assert pd.read_parquet(out)["spread_ticks"].tolist() == [2.0, 2.0, 1.0, 3.0]  # 0.05 ticks


def kaggle_1s_csv(path):
    """SNAPS in the Kaggle 1-second layout: distances from the midpoint and notionals per level."""
    head = ["system_time", "midpoint", "spread"] + [f"{s}_{k}_{i}" for s in ("bids", "asks")
                                                    for k in ("distance", "notional") for i in range(3)]
    out = [",".join(head)]
    for ts, asks, bids in SNAPS:
        a1, b1 = float(asks[0][0]), float(bids[0][0])
        mid = (a1 + b1) / 2
        row = {"system_time": pd.Timestamp(EPOCH_US + ts, unit="us", tz="UTC").isoformat(),
               "midpoint": f"{mid:.3f}", "spread": f"{a1 - b1:.2f}"}
        for side, lv in (("bids", bids), ("asks", asks)):
            for i in range(3):
                p, s = (float(lv[i][0]), float(lv[i][1])) if i < len(lv) else (mid, 0.0)
                row[f"{side}_distance_{i}"] = f"{(p - mid) / mid:.10f}"
                row[f"{side}_notional_{i}"] = f"{p * s:.6f}"
        out.append(",".join(row[c] for c in head))
    path.write_text("\n".join(out) + "\n")
    return path


def test_kaggle_1s_layout_through_cli(tmp_path):
    path = kaggle_1s_csv(tmp_path / "BTC_1sec.csv")
    r = run_features("--data", str(path), "--out", str(tmp_path / "f.parquet"))
    assert r.returncode == 0, r.stderr
    assert "BTC tick 0.05 (inferred: GCD of" in r.stderr
    assert "layout Kaggle 1-second (midpoint, distance, notional), 3 levels, timestamps ISO datetime text" in r.stderr
    rd = SnapshotReader(path, tick_size=0.01)
    ref = SnapshotReader(tardis_snapshot_csv(tmp_path / "snap.csv"), tick_size=0.01).read_all()
    ev = rd.read_all()
    for f in ("flags", "price", "seq", "level"):
        assert (ev[f] == ref[f]).all(), f
    assert ev["size"] == pytest.approx(ref["size"], rel=1e-6)  # notional / price: approximate
    assert (ev["exch_ts"] == ref["exch_ts"] + EPOCH_US * 1000).all()


def test_any_layout_through_a_column_map(tmp_path):
    lines = level_rows("ms")
    lines[0] = lines[0].replace("timestamp", "t").replace("bid_price_", "bp").replace("bid_size_", "bs") \
        .replace("ask_price_", "ap").replace("ask_size_", "as")
    path = tmp_path / "XRP_custom.csv"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "f.parquet"
    r = run_features("--data", str(path), "--out", str(out))
    assert r.returncode == 2 and "cannot tell the source from this file" in r.stderr
    m = tmp_path / "map.toml"
    m.write_text('timestamp = "t"\nbid_price = "bp{i}"\nbid_size = "bs{i}"\nask_price = "ap{i}"\n'
                 'ask_size = "as{i}"\nfirst_level = 1\n')
    r = run_features("--source", "crypto", "--data", str(path), "--columns", str(m), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "layout map.toml, 3 levels, timestamps epoch ms" in r.stderr
    assert pd.read_parquet(out)["ts_ns"].tolist() == [(EPOCH_US + SNAPS[k][0]) * 1000 for k in (0, 2, 3, 4)]


@pytest.mark.realdata
def test_real_diff_stream_deletes_are_benign_and_counted():
    """Binance deletes levels the local book never held (beyond its depth, already removed): each such
    delete is a counted no-op, and the kernel still equals the independent reference."""
    from streamsig.features import FeatureSpec, compute_features
    from tests.reference_features import reference_features
    from tests.test_features_kernel import assert_frames_close

    rd = IncrementalReader(real(TARDIS.format("incremental_book_L2", "BTCUSDT")))
    ev = next(iter(rd))  # the first chunk: the REST snapshot and ~100k diff rows
    spec = FeatureSpec(levels=5)
    tab = compute_features(ev, spec, rd.tick_size)
    counts: dict = {}
    ref = reference_features(ev, spec, rd.tick_size, counts=counts)
    assert counts["benign"] > 100 and tab.rejects[E.Reason.BENIGN_DELETE] == counts["benign"]
    assert tab.rejects[E.Reason.ZERO_SIZE_ADD] == 0 and counts["crossed"] == 0
    assert tab.rejects[[r for r in range(len(E.Reason)) if r not in (0, E.Reason.BENIGN_DELETE)]].sum() == 0
    assert len(tab.values) == len(ref)
    assert_frames_close(tab.values, ref, spec.names)
