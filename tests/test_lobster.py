"""LOBSTER reader: events reproduce every orderbook row; malformed lines fail clearly."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamsig.book import events as E
from streamsig.book.lobster import LobsterReader, find_orderbook, lobster_pairs, seconds_to_ns
from streamsig.errors import DataError
from tests._fmt_books import DictBook, lobster_row_levels, real, simulate_lobster, write_lobster


def assert_replays(ev: np.ndarray, rows: np.ndarray, levels: int, file_levels: int | None = None) -> None:
    """Every EOB leaves the dict book equal to orderbook row ``seq`` (top ``levels``)."""
    assert len(ev) and ev["flags"][-1] & E.EOB
    book, seen = DictBook(), 0
    for i in book.replay(ev):
        k = int(ev["seq"][i])
        assert k == seen, "one batch per message, in file order"
        assert book.top(levels + 1) == lobster_row_levels(rows[k], levels), f"row {k}"
        seen += 1
    assert seen == len(rows)


def oracle_checks(msgs, rows, levels):
    """Independent count of size-checked messages (visible before or after / after)."""
    either = after = 0
    for k in range(1, len(msgs)):
        _, typ, _, _, price, d = msgs[k]
        if not 1 <= typ <= 4:
            continue
        vis = []
        for row in (rows[k - 1], rows[k]):
            asks, bids = lobster_row_levels(row, levels)
            vis.append(price // 100 in dict(bids if d == 1 else asks))
        either += vis[0] or vis[1]
        after += vis[1]
    return either, after


@pytest.mark.parametrize("levels,chunk_rows,gz", [(1, 100_000, False), (3, 7, False), (5, 64, True)])
def test_synthetic_replay_and_checks(tmp_path, levels, chunk_rows, gz):
    msgs, rows = simulate_lobster(600, levels, seed=levels)
    path = write_lobster(tmp_path, msgs, rows, levels, gz=gz)
    r = LobsterReader(path, chunk_rows=chunk_rows)
    chunks = list(r)
    assert all(c["flags"][-1] & E.EOB for c in chunks)
    ev = np.concatenate(chunks)
    assert_replays(ev, rows, levels)
    st = r.stats
    assert st.messages == 600 and st.events == len(ev)
    assert st.disagreements == 0 and st.examples == []
    assert (st.checked, st.checked_after) == oracle_checks(msgs, rows, levels)
    assert st.by_type == dict(pd.Series([m[1] for m in msgs]).value_counts().sort_index())
    assert st.halts == sum(m[1] == 7 for m in msgs)
    # one EOB per message, seq = row, ts = the message time
    eob = ev[(ev["flags"] & E.EOB) != 0]
    assert eob["seq"].tolist() == list(range(600))
    day = 1_340_236_800 * 10**9  # 2012-06-21 (the file name's date) at UTC midnight
    assert eob["exch_ts"].tolist() == [day + int(m[0].split(".")[0]) * 10**9
                                       + int((m[0].split(".") + [""])[1].ljust(9, "0")) for m in msgs]
    assert (eob["aux"] == [m[1] for m in msgs]).all()


@settings(deadline=None)
@given(st.integers(0, 86_399_999_999_999), st.booleans(), st.sampled_from(["", "0", "000", "4", "49"]))
def test_time_strings_parse_to_exact_ns(ns, trim, extra):
    """Trailing zeros may be dropped; digits past ns below a half are ignored."""
    frac = f"{ns % 10**9:09d}"
    if trim:
        frac = frac.rstrip("0")
        text = f"{ns // 10**9}" + (f".{frac}" if frac else "")
    else:
        text = f"{ns // 10**9}.{frac}{extra}"
    assert seconds_to_ns(f"{text},1,2\n".encode())[0].tolist() == [ns]


def test_chunking_does_not_change_events(tmp_path):
    msgs, rows = simulate_lobster(80, 4, seed=9)
    path = write_lobster(tmp_path, msgs, rows, 4)
    a = LobsterReader(path, chunk_rows=1).read_all()
    b = LobsterReader(path, chunk_rows=10_000).read_all()
    assert a.tobytes() == b.tobytes()


def test_levels_subset_follows_top_levels(tmp_path):
    msgs, rows = simulate_lobster(400, 5, seed=3)
    path = write_lobster(tmp_path, msgs, rows, 5)
    r = LobsterReader(path, levels=2)
    assert (r.levels, r.file_levels, r.symbol, r.tick_size) == (2, 5, "TEST", 0.01)
    assert_replays(r.read_all(), rows, 2)


def test_event_layout_of_each_message_kind(tmp_path):
    P = 9999999999
    msgs = [
        ("34200.000000001", 1, 11, 100, 1000000, 1),    # bid 100.00 x 100 (snapshot row)
        ("34200.5", 1, 12, 50, 1000200, -1),            # ask 100.02 x 50
        ("34201.25", 4, 12, 20, 1000200, -1),           # visible execution of the ask: buyer-initiated
        ("34202", 5, 0, 7, 1000150, 1),                 # hidden midpoint print: rounds to 100.02
        ("34203.000000000", 7, 0, 0, -1, -1),           # halt
        ("34204.1", 1, 13, 5, 990000, 1),               # beyond the top level: nothing visible changes
        ("34205", 6, 0, 300, 1000100, -1),              # cross trade: no aggressor side
    ]
    rows = [[P, 0, 1000000, 100], [1000200, 50, 1000000, 100], [1000200, 30, 1000000, 100],
            [1000200, 30, 1000000, 100], [1000200, 30, 1000000, 100], [1000200, 30, 1000000, 100],
            [1000200, 30, 1000000, 100]]
    r = LobsterReader(write_lobster(tmp_path, msgs, np.array(rows), 1), tick_size=0.01)
    ev = r.read_all()
    got = [(E.describe_flags(int(f)), int(p), float(s), int(q)) for f, p, s, q in
           zip(ev["flags"], ev["price"], ev["size"], ev["seq"])]
    assert got == [
        ("CLEAR|SNAPSHOT", 0, 0.0, 0),
        ("DEPTH|BUY|EOB|SNAPSHOT", 10000, 100.0, 0),
        ("DEPTH|SELL|EOB", 10002, 50.0, 1),
        ("DEPTH|SELL", 10002, 30.0, 2),
        ("TRADE|BUY|EOB", 10002, 20.0, 2),
        ("TRADE|SELL|EOB", 10002, 7.0, 3),
        ("EOB|HALT", -1, 0.0, 4),
        ("BUY|EOB", 9900, 5.0, 5),
        ("TRADE|EOB", 10001, 300.0, 6),
    ]
    day = 1_340_236_800 * 10**9
    assert (ev["exch_ts"] - day).tolist() == [34200000000001] * 2 + [34200500000000, 34201250000000, 34201250000000,
                                                                     34202000000000, 34203000000000, 34204100000000,
                                                                     34205000000000]
    assert (ev["local_ts"] == ev["exch_ts"]).all()
    assert ev["order_id"].tolist() == [11, 11, 12, 12, 12, 0, 0, 13, 0]
    assert ev["level"].tolist() == [-1, 0, 0, 0, -1, -1, -1, -1, -1]
    assert ev["aux"].tolist() == [1, 1, 1, 4, 4, 5, 7, 1, 6]
    st = r.stats
    assert (st.off_grid_trades, st.halts, st.checked, st.checked_after, st.disagreements) == (1, 1, 2, 2, 0)


def test_size_disagreement_is_counted(tmp_path):
    msgs, rows = simulate_lobster(200, 2, seed=5)
    k = next(i for i, m in enumerate(msgs) if i > 10 and m[1] == 3 and
             m[4] // 100 in dict(lobster_row_levels(rows[i - 1], 2)[0 if m[5] == -1 else 1]))
    msgs[k] = msgs[k][:3] + (msgs[k][3] + 1,) + msgs[k][4:]
    r = LobsterReader(write_lobster(tmp_path, msgs, rows, 2))
    assert_replays(r.read_all(), rows, 2)  # events come from the rows, not the message sizes
    assert r.stats.disagreements == 1
    assert r.stats.examples[0].startswith(f"line {k + 1}: type 3 Size {msgs[k][3]}")


def test_pairs_and_names(tmp_path):
    msgs, rows = simulate_lobster(20, 1)
    a = write_lobster(tmp_path, msgs, rows, 1, ticker="AAA", gz=True)
    b = write_lobster(tmp_path, msgs, rows, 1, ticker="BBB")
    assert lobster_pairs(tmp_path) == [a, b]
    assert lobster_pairs(a) == [a]
    assert find_orderbook(a).name == "AAA_2012-06-21_34200000_57600000_orderbook_1.csv.gz"
    assert LobsterReader(a).read_all().tobytes() == LobsterReader(b).read_all().tobytes()
    find_orderbook(b).unlink()
    with pytest.raises(FileNotFoundError, match="orderbook_1.csv"):
        lobster_pairs(tmp_path)
    with pytest.raises(DataError, match="not a LOBSTER message file name"):
        find_orderbook(tmp_path / "quotes.csv")


GOOD_M = ["34200.1,1,1,10,1000000,1", "34200.2,1,2,10,1000100,-1", "34200.3,3,2,10,1000100,-1"]
GOOD_O = ["1000100,0,1000000,10", "1000100,10,1000000,10", "9999999999,0,1000000,10"]


@pytest.mark.parametrize("which,line,text,reason", [
    ("m", 2, "34200.2,1,2,10,1000100", "expected 6 columns, got 5"),
    ("m", 2, "34200.2,1,2,ten,1000100,-1", "column Size: 'ten' is not an integer"),
    ("m", 3, "34200.3,3,2,nan,1000100,-1", "column Size: 'nan' is not an integer"),
    ("m", 2, "34200.2,1,2,-10,1000100,-1", "negative Size -10"),
    ("m", 2, "34200.05,1,2,10,1000100,-1", "Time goes backwards (34200.050000000 after 34200.100000000)"),
    ("m", 3, "34200.3,8,2,10,1000100,-1", "unknown message type 8"),
    ("m", 1, "34200.1x,1,1,10,1000000,1", "Time '34200.1x' is not decimal seconds"),
    ("m", 2, "", "empty line"),
    ("o", 2, "1000000,10,1000000,10", "crossed book: best ask 1000000 <= best bid 1000000"),
    ("o", 2, "1000150,10,1000000,10", "AskPrice1: price 1000150 is not a positive multiple of tick 0.01"),
])
def test_malformed_line_names_file_line_reason(tmp_path, which, line, text, reason):
    m, o = list(GOOD_M), list(GOOD_O)
    (m if which == "m" else o)[line - 1] = text
    path = write_lobster(tmp_path, [tuple(x.split(",")) for x in m], np.zeros((0, 4)), 1)
    path.write_text("\n".join(m) + "\n")
    ob = find_orderbook(path)
    ob.write_text("\n".join(o) + "\n")
    with pytest.raises(DataError) as exc:
        LobsterReader(path, tick_size=0.01).read_all()
    bad = path if which == "m" else ob
    assert str(exc.value) == f"{bad}:{line}: {reason}"


def test_row_count_mismatch(tmp_path):
    path = write_lobster(tmp_path, [tuple(x.split(",")) for x in GOOD_M], np.zeros((0, 4)), 1)
    path.write_text("\n".join(GOOD_M) + "\n")
    find_orderbook(path).write_text("\n".join(GOOD_O[:2]) + "\n")
    with pytest.raises(DataError, match=r"orderbook_1.csv:3: row counts differ: the message file has more rows"):
        LobsterReader(path).read_all()


# ---- real LOBSTER samples ---------------------------------------------------

REAL = {  # file, README's count of checked messages (price visible after the message)
    "aapl10": ("lobster/aapl_level10_first999_rows/AAPL_2012-06-21_34200000_57600000_message_10.csv", 619),
    "amzn5": ("lobster/AMZN_2012-06-21_34200000_57600000_message_5.csv.gz", 119_650),
    "amzn1": ("lobster/AMZN_2012-06-21_34200000_57600000_message_1.csv.gz", 41_117),
    "aapl1": ("lobster/AAPL_2012-06-21_34200000_57600000_message_1.csv.gz", 77_093),
}


@pytest.mark.realdata
@pytest.mark.parametrize("key", ["aapl10", "amzn5"])
def test_real_events_reproduce_every_orderbook_row(key):
    path = real(REAL[key][0])
    r = LobsterReader(path, chunk_rows=50_000)
    ev = r.read_all()
    rows = pd.read_csv(find_orderbook(path), header=None).to_numpy(np.int64)
    assert len(rows) == r.stats.messages
    assert_replays(ev, rows, r.levels)
    assert r.stats.disagreements == 0


@pytest.mark.realdata
@pytest.mark.parametrize("key", list(REAL))
def test_real_size_checks_match_readme(key):
    rel, readme_checked = REAL[key]
    r = LobsterReader(real(rel))
    for _ in r:
        pass
    assert r.stats.checked_after == readme_checked
    assert r.stats.disagreements == 0
    assert r.stats.checked >= r.stats.checked_after >= r.stats.checked_both > 0
    msgs = pd.read_csv(real(rel), header=None)
    assert r.stats.by_type == msgs[1].value_counts().sort_index().to_dict()
    assert r.stats.off_grid_trades == int(((msgs[4] % 100 != 0) & msgs[1].isin([5, 6])).sum())


@pytest.mark.realdata
def test_real_events_apply_cleanly_to_the_book():
    from streamsig.book.book import Book

    path = real(REAL["amzn5"][0])
    r = LobsterReader(path)
    ev = r.read_all()
    book = Book(capacity=r.levels)
    assert not book.apply(ev).any()
    last = pd.read_csv(find_orderbook(path), header=None).to_numpy(np.int64)[-1]
    asks, bids = lobster_row_levels(last, r.levels)
    assert list(zip(book.ask_px[:book.n_ask].tolist(), book.ask_sz[:book.n_ask].tolist())) == asks
    assert list(zip(book.bid_px[:book.n_bid].tolist(), book.bid_sz[:book.n_bid].tolist())) == bids
