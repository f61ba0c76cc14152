"""Instruments: the tick from the price grid, per-symbol tables, and inverse-contract accounting."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest

from streamsig.book.incremental import IncrementalReader
from streamsig.book.instrument import Instrument, default_fee_bps, describe_contract, infer_tick, load_table
from streamsig.book.lobster import LobsterReader
from streamsig.book.snapshots import SnapshotReader
from streamsig.book.sources import open_feeds
from streamsig.errors import DataError
from streamsig.trading.account import Account
from streamsig.trading.executor import ExecConfig, Executor
from streamsig.trading.portfolio import Portfolio
from tests._data import AMZN5, CRYPTO, need


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamsig.cli", *args], capture_output=True, text=True,
                          timeout=300)


# ---- tick inference ------------------------------------------------------------------------

def test_infer_tick_is_the_grid_not_the_printed_decimals():
    # Binance spot prints 8 decimals on a 0.01 grid; USDⓈ-M BTC prints 2 on a 0.1 grid
    assert infer_tick(["61837.64000000", "61837.65000000", "61840.00000000"]) == (0.01, 3)
    assert infer_tick(["61800.20", "61800.30", "61800.10", "61805.00"])[0] == 0.1
    assert infer_tick([3424.98, 3425.0, 3425.37])[0] == 0.01  # floats via their shortest text
    assert infer_tick(["0.00001234", "0.00001236"])[0] == 0.00000002
    with pytest.raises(ValueError, match="no positive prices"):
        infer_tick(["", "0"])


SPOT_PRICES = ["61837.64000000", "61837.65000000", "61837.90000000", "61838.11000000", "61836.03000000"]


def spot_incremental(path: Path, later: str = "61839.27000000") -> Path:
    rows = ["exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount"]
    ts = 1721347022000000
    for i, p in enumerate(SPOT_PRICES):
        side = "bid" if i % 2 else "ask"
        px = p if side == "ask" else f"{float(p) - 5:.8f}"
        rows.append(f"binance,BTCUSDT,{ts},{ts},true,{side},{px},0.50000000")
    rows.append(f"binance,BTCUSDT,{ts + 1000},{ts + 1000},false,ask,{later},0.10000000")
    path.write_text("\n".join(rows) + "\n")
    return path


def spot_snapshot(path: Path) -> Path:
    head = "exchange,symbol,timestamp,local_timestamp,asks[0].price,asks[0].amount,bids[0].price,bids[0].amount"
    rows = [head]
    for i in range(4):
        a, b = SPOT_PRICES[i], SPOT_PRICES[i + 1]
        ask, bid = max(float(a), float(b)) + 0.01, min(float(a), float(b))
        rows.append(f"binance,BTCUSDT,{1721347022000000 + i},{1721347022000000 + i},{ask:.8f},1.00000000,"
                    f"{bid:.8f},2.00000000")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_binance_spot_files_with_8_decimals_get_a_0_01_tick(tmp_path):
    inc = IncrementalReader(spot_incremental(tmp_path / "binance_incremental_book_L2_BTCUSDT.csv"))
    assert inc.tick_size == 0.01
    assert inc.instrument.tick_from.startswith("inferred: GCD of")
    assert inc.instrument.market == "spot" and inc.instrument.taker_fee_bps == 10.0
    ev = inc.read_all()
    assert ev["price"][-1] == 6183927  # 61839.27 / 0.01
    snap = SnapshotReader(spot_snapshot(tmp_path / "binance_book_snapshot_1_BTCUSDT.csv"))
    assert snap.tick_size == 0.01


def test_a_later_off_grid_price_is_one_line_naming_file_and_line(tmp_path):
    path = spot_incremental(tmp_path / "inc.csv", later="61839.27500000")
    rd = IncrementalReader(path)  # a sample of all rows includes the off-grid price: a finer tick
    with pytest.raises(DataError) as exc:
        IncrementalReader(path, sample_rows=5).read_all()
    assert rd.tick_size == 0.005
    assert str(exc.value) == (f"{path}:7: price: price 61839.275 is not a multiple of tick 0.01 "
                              "(inferred from the first rows); pass --tick-size")


def test_tick_size_and_instruments_table_win_over_inference(tmp_path):
    path = spot_incremental(tmp_path / "inc.csv")
    assert IncrementalReader(path, tick_size=0.001).instrument.tick_from == "given (--tick-size)"
    table = tmp_path / "inst.toml"
    table.write_text('[BTCUSDT]\ntick_size = 0.001\nlot_size = 0.00001\ntaker_fee_bps = 7.5\n')
    inst = IncrementalReader(path, instruments=load_table(table)).instrument
    assert (inst.tick_size, inst.tick_from, inst.lot_size, inst.taker_fee_bps) == (0.001, "instruments table",
                                                                                 0.00001, 7.5)
    bad = tmp_path / "bad.toml"
    bad.write_text("[BTCUSDT]\ntick = 0.1\n")
    with pytest.raises(DataError, match=r"bad.toml: \[BTCUSDT\]: unknown instrument field 'tick'"):
        load_table(bad)


def test_features_cli_states_the_tick_and_records_it_in_the_table(tmp_path):
    path = spot_incremental(tmp_path / "binance_incremental_book_L2_BTCUSDT.csv")
    out = tmp_path / "f.parquet"
    r = run_cli("features", "--data", str(path), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "BTCUSDT tick 0.01 (inferred: GCD of" in r.stderr
    meta = json.loads(pq.read_schema(out).metadata[b"streamsig.instruments"])
    assert meta["BTCUSDT"]["tick_size"] == 0.01 and meta["BTCUSDT"]["tick_from"].startswith("inferred")
    r = run_cli("features", "--data", str(path), "--out", str(out), "--tick-size", "0.001")
    assert r.returncode == 0, r.stderr
    assert json.loads(pq.read_schema(out).metadata[b"streamsig.instruments"])["BTCUSDT"]["tick_size"] == 0.001


@pytest.mark.realdata
@pytest.mark.parametrize("kind,sym,tick", [("incremental_book_L2", "BTCUSDT", 0.1),
                                           ("incremental_book_L2", "ETHUSDT", 0.01),
                                           ("book_snapshot_10", "BTCUSDT", 0.1),
                                           ("book_snapshot_10", "ETHUSDT", 0.01)])
def test_real_crypto_samples_infer_the_exchange_tick(kind, sym, tick):
    (feed,) = open_feeds(None, need(CRYPTO / f"binance-futures_{kind}_2024-07-18_{sym}.csv.gz"))
    assert feed.tick_size == tick and feed.instrument.tick_from.startswith("inferred: GCD")
    assert (feed.instrument.market, feed.instrument.contract) == ("usdm", "linear")


@pytest.mark.realdata
def test_real_lobster_sample_infers_a_cent():
    rd = LobsterReader(need(AMZN5))
    assert rd.tick_size == 0.01 and rd.instrument.tick_from.startswith("inferred: GCD")


# ---- contracts -------------------------------------------------------------------------------

def test_contract_naming_and_default_fee():
    d = describe_contract("BTCUSD_PERP", "binance-delivery")
    assert (d["contract"], d["multiplier"], d["settle"], d["taker_fee_bps"]) == ("inverse", 100.0, "BTC", 5.0)
    assert describe_contract("ETHUSD_240927")["multiplier"] == 10.0
    assert describe_contract("BTCUSDT", "binance-futures")["contract"] == "linear"
    assert default_fee_bps(Instrument("BTCUSDT", taker_fee_bps=5.0), 1.0) == 5.0
    assert default_fee_bps(Instrument("AMZN"), 1.0) == 1.0


COINM = Instrument("BTCUSD_PERP", venue="binance-delivery", market="coinm", tick_size=0.1, contract="inverse",
                   multiplier=100.0, quote="USD", settle="BTC", taker_fee_bps=5.0, maker_fee_bps=2.0)


def one_level(bid: float, ask: float, tick: float = 0.1) -> SimpleNamespace:
    return SimpleNamespace(bid_px=np.array([round(bid / tick)]), bid_sz=np.array([1e6]), n_bid=1,
                           ask_px=np.array([round(ask / tick)]), ask_sz=np.array([1e6]), n_ask=1)


def test_inverse_contract_pnl_matches_binance_coin_m_formula():
    """Binance COIN-M: PnL (coin) = qty * contract size * (1/entry - 1/exit) for a long.

    Long 100 BTCUSD_PERP (100 USD each) at 10,000, closed at 11,000:
    100 * 100 * (1/10000 - 1/11000) = 0.0909090909 BTC. Taker fee 0.05 % of the
    coin notional: 0.0005 * 100*100/10000 = 0.0005 BTC to open and
    0.0005 * 10000/11000 = 0.000454545 BTC to close.
    """
    ex = Executor(ExecConfig(tick_size=0.1, fee_bps=5.0), "BTCUSD_PERP", COINM)
    pf = Portfolio(capital=1.0, instruments={"BTCUSD_PERP": COINM})
    ex.submit(0, 1, 100.0)
    (f1,) = ex.on_book(1, one_level(9999.9, 10000.0))
    assert (f1.qty, f1.price, f1.fee) == (100.0, 10000.0, pytest.approx(0.0005))
    pf.on_fill(f1)
    # marked at 12,500 the open long is worth 100 * 100 * (1/10000 - 1/12500) = 0.2 BTC
    assert pf.mark(2, 12500.0, "BTCUSD_PERP") == pytest.approx(1.0 + 0.2 - 0.0005)
    assert pf.unrealised("BTCUSD_PERP") == pytest.approx(0.2)
    ex.submit(3, 2, 0.0)
    (f2,) = ex.on_book(4, one_level(11000.0, 11000.1))
    assert f2.fee == pytest.approx(0.0005 * 10000 / 11000)
    pf.on_fill(f2)
    assert pf.realised("BTCUSD_PERP") == pytest.approx(0.0909090909, abs=1e-10)
    assert pf.fees == pytest.approx(0.0005 + 0.000454545454, abs=1e-12)
    assert pf.mark(5, 11000.05, "BTCUSD_PERP") == pytest.approx(1.0 + 0.0909090909 - 0.000954545454, abs=1e-10)
    assert pf.round_trips()["pnl"].tolist() == [pytest.approx(0.0909090909 - 0.000954545454, abs=1e-10)]
    assert pf.positions["BTCUSD_PERP"].notional == pytest.approx(1.0 + 10000 / 11000)


def test_inverse_short_and_harmonic_average_entry():
    pf = Portfolio(capital=1.0, instruments={"X": COINM})
    fill = lambda side, qty, px: __import__("streamsig.trading.executor", fromlist=["Fill"]).Fill(
        "X", 0, 0, side, qty, px, 0.0, False, float("nan"))
    pf.on_fill(fill(-1, 50.0, 11000.0))
    pf.on_fill(fill(+1, 50.0, 10000.0))  # short profit: 50 * 100 * (1/10000 - 1/11000)
    assert pf.realised("X") == pytest.approx(50 * 100 * (1 / 10000 - 1 / 11000))
    pf.on_fill(fill(+1, 10.0, 10000.0))
    pf.on_fill(fill(+1, 10.0, 20000.0))  # Binance's average entry of an inverse position is harmonic
    pf.mark(1, 13333.3333333, "X")  # the harmonic mean of 10,000 and 20,000: break-even
    assert pf.unrealised("X") == pytest.approx(0.0, abs=1e-9)


def test_account_capital_for_inverse_is_the_coin_notional():
    acc = Account("s", "BTCUSD_PERP", ExecConfig(tick_size=0.1), None, 10.0, instrument=COINM)

    class Cur:
        state = None
    acc.on_row(0, 0, 50_000.0, 0.0, Cur(), 0, np.zeros(0), np.zeros(0, np.int64))
    assert acc.pf.capital == pytest.approx(10 * 100 / 50_000)  # 0.02 BTC


def test_backtest_fee_is_the_market_fee_unless_given(tmp_path):
    import json

    from typer.testing import CliRunner

    from streamsig.cli.main import app
    from tests.test_crypto import tardis_snapshot_csv

    data = tardis_snapshot_csv(tmp_path / "snap.csv")  # binance-futures BTCUSDT: USDⓈ-M, 5 bps taker
    table = tmp_path / "inst.toml"
    table.write_text("[BTCUSDT]\ntaker_fee_bps = 7.5\n")

    def fees(*args, env=None):
        out = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
        r = CliRunner().invoke(app, ["backtest", "--data", str(data), "--out", str(out), "--run-id", "r", *args],
                               env={"STREAMSIG_FEE_BPS": None, **(env or {})})
        assert r.exit_code == 0, r.output
        s = json.loads((out / "r" / "summary.json").read_text())
        return s["config"]["exec"]["fee_bps"], [f["fee_bps"] for f in s["feeds"].values()]

    assert fees() == (5.0, [5.0])
    assert fees("--instruments", str(table)) == (7.5, [7.5])
    assert fees("--instruments", str(table), "--fee-bps", "0.5") == (0.5, [0.5])
    assert fees(env={"STREAMSIG_FEE_BPS": "2"}) == (2.0, [2.0])
