"""Every input mistake a new user makes ends in one line naming the file and what to do, exit code 2."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests._data import AMZN5, BTC_INCR, CRYPTO, LOBSTER, need


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamsig.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def one_error(r: subprocess.CompletedProcess) -> str:
    """The single ``error:`` line of a failed command (asserting there is exactly one line of stderr after
    the per-file notes, and no traceback)."""
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and "Aborted" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: "), r.stderr
    return lines[-1][len("error: "):]


INC_HEAD = "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount\n"


def small_incremental(path: Path, n: int = 30_000) -> Path:
    rows = [f"binance-futures,BTCUSDT,{1000 + i},{1000 + i},{'true' if i < 2 else 'false'},"
            f"{'bid' if i % 2 else 'ask'},{(100.0 - 0.1 * (i % 7)) if i % 2 else (100.5 + 0.1 * (i % 7)):.1f},"
            f"{1 + i % 5}" for i in range(n)]
    path.write_text(INC_HEAD + "\n".join(rows) + "\n")
    return path


def test_truncated_gzip_names_the_file(tmp_path):
    raw = small_incremental(tmp_path / "inc.csv").read_bytes()
    gz = tmp_path / "binance-futures_incremental_book_L2_2024-07-18_BTCUSDT.csv.gz"
    gz.write_bytes(gzip.compress(raw)[: len(gzip.compress(raw)) // 2])
    r = run_cli("features", "--data", str(gz), "--out", str(tmp_path / "f.parquet"))
    assert one_error(r) == f"{gz}: truncated gzip file (it ends before its end-of-stream marker)"


def test_corrupt_gzip_names_the_file(tmp_path):
    raw = small_incremental(tmp_path / "inc.csv").read_bytes()
    data = bytearray(gzip.compress(raw))
    data[len(data) // 2: len(data) // 2 + 64] = b"\x00" * 64
    gz = tmp_path / "binance-futures_incremental_book_L2_2024-07-18_BTCUSDT.csv.gz"
    gz.write_bytes(bytes(data))
    r = run_cli("features", "--data", str(gz), "--out", str(tmp_path / "f.parquet"))
    assert one_error(r).startswith(f"{gz}: corrupt gzip file (")


@pytest.mark.realdata
def test_truncated_lobster_gzip_names_the_file(tmp_path):
    src = need(AMZN5)
    msg = tmp_path / src.name
    msg.write_bytes(src.read_bytes()[:200_000])
    ob = src.with_name(src.name.replace("message", "orderbook"))
    shutil.copy(ob, tmp_path / ob.name)
    r = run_cli("features", "--data", str(msg), "--out", str(tmp_path / "f.parquet"))
    assert one_error(r) == f"{msg}: truncated gzip file (it ends before its end-of-stream marker)"


@pytest.mark.realdata
def test_lobster_file_without_source_is_detected(tmp_path):
    r = run_cli("features", "--data", str(need(AMZN5)), "--out", str(tmp_path / "f.parquet"))
    assert r.returncode == 0, r.stderr
    assert "AMZN tick 0.01 (inferred: GCD of" in r.stderr and "wrote 155,935 rows" in r.stderr


def test_undetectable_file_lists_the_sources(tmp_path):
    f = tmp_path / "prices.csv"
    f.write_text("when,what\n1,2\n")
    r = run_cli("features", "--data", str(f), "--out", str(tmp_path / "f.parquet"))
    assert one_error(r) == (f"{f}: cannot tell the source from this file; pass --source (synthetic, lobster, "
                            "crypto), and for another snapshot layout --columns map.toml")
    r = run_cli("features", "--source", "crypto", "--data", str(f), "--out", str(tmp_path / "f.parquet"))
    assert one_error(r) == (f"{f}:1: unknown snapshot layout (known: Tardis book_snapshot_N; bid_price_i / "
                            "ask_size_i levels; Kaggle 1-second (midpoint, distance, notional)); describe it "
                            "with --columns map.toml")


@pytest.mark.realdata
def test_quotes_file_says_it_is_not_a_book_file(tmp_path):
    q = need(CRYPTO / "binance-futures_quotes_2024-07-18_BTCUSDT.csv.gz")
    for extra in ((), ("--source", "crypto")):
        r = run_cli("features", *extra, "--data", str(q), "--out", str(tmp_path / "f.parquet"))
        assert one_error(r) == (f"{q}: quotes files are not book files (best bid/ask only); pass the "
                                "book_snapshot_N or incremental_book_L2 file of the same day")


@pytest.mark.realdata
def test_folder_of_crypto_files_says_what_it_is(tmp_path):
    r = run_cli("features", "--data", str(need(CRYPTO)), "--out", str(tmp_path / "f.parquet"))
    assert one_error(r) == (f"{CRYPTO}: a folder of 8 crypto files (book_snapshot, incremental_book_L2, quotes, "
                            "trades); crypto sources read one book file: pass --data <folder>/<one book_snapshot_N "
                            "or incremental_book_L2 file>")
    r = run_cli("features", "--source", "crypto", "--data", str(CRYPTO), "--out", str(tmp_path / "f.parquet"))
    assert "a folder of 8 crypto files" in one_error(r)


@pytest.mark.realdata
def test_lobster_orderbook_file_names_the_message_file(tmp_path):
    ob = need(LOBSTER / "AMZN_2012-06-21_34200000_57600000_orderbook_5.csv.gz")
    r = run_cli("features", "--data", str(ob), "--out", str(tmp_path / "f.parquet"))
    assert one_error(r) == (f"{ob}: a LOBSTER orderbook file; pass its message file "
                            "AMZN_2012-06-21_34200000_57600000_message_5.csv.gz")


@pytest.mark.realdata
def test_lobster_folder_with_several_depths_picks_one_and_says_so(tmp_path):
    for L in (1, 5):
        for kind in ("message", "orderbook"):
            name = f"AMZN_2012-06-21_34200000_57600000_{kind}_{L}.csv.gz"
            os.symlink(need(LOBSTER / name), tmp_path / name)
    r = run_cli("features", "--data", str(tmp_path), "--out", str(tmp_path / "f.parquet"))
    assert r.returncode == 0, r.stderr
    assert "files at levels 1, 5; using level 5" in r.stderr and "wrote 155,935 rows" in r.stderr
    r = run_cli("features", "--data", str(tmp_path), "--levels", "1", "--out", str(tmp_path / "f.parquet"))
    assert "files at levels 1, 5; using level 1" in r.stderr and "wrote 57,515 rows" in r.stderr


def test_train_horizon_longer_than_the_data(tmp_path):
    r = run_cli("train", "--updates", "300", "--horizon", "5000", "--out", str(tmp_path))
    assert one_error(r) == ("--horizon: 5000 rows is not shorter than the data (300 feature rows for SYNA); "
                            "pass a smaller --horizon")


def test_train_too_many_folds(tmp_path):
    r = run_cli("train", "--updates", "300", "--folds", "5000", "--out", str(tmp_path))
    assert one_error(r) == ("--folds: 5000 folds are too many for 900 feature rows: each block would hold 0 rows "
                            "(at most 17 folds of >= 50 rows)")


def test_speed_zero_is_an_error_not_max(tmp_path):
    r = run_cli("demo", "--updates", "100", "--speed", "0")
    assert one_error(r) == "--speed: must be > 0 (or 'max' for as fast as possible), got '0'"


def test_synthetic_source_with_a_data_file_is_one_line(tmp_path):
    from streamsig.book.sources import open_feeds
    from streamsig.errors import DataError

    f = small_incremental(tmp_path / "binance-futures_incremental_book_L2_2024-07-18_BTCUSDT.csv", 10)
    with pytest.raises(DataError) as exc:
        open_feeds("synthetic", f)
    assert str(exc.value) == (f"{f}: not a synthetic scenario (.toml); this looks like crypto data: "
                              "pass --source crypto or leave --source out")


@pytest.mark.realdata
def test_incremental_sample_without_source(tmp_path):
    r = run_cli("features", "--data", str(need(BTC_INCR)), "--out", str(tmp_path / "f.parquet"))
    assert r.returncode == 0, r.stderr
    assert "BTCUSDT tick 0.1 (inferred: GCD of" in r.stderr and "benign deletes (levels not held): 12,706" in r.stderr


# ---- card and report truth -------------------------------------------------------------------

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "default"


@pytest.mark.realdata
def test_evaluate_refuses_features_the_data_cannot_give(tmp_path):
    r = run_cli("evaluate", "--model", str(DEFAULT_MODEL), "--data",
                str(need(LOBSTER / "AMZN_2012-06-21_34200000_57600000_message_1.csv.gz")))
    assert one_error(r) == (f"{DEFAULT_MODEL}: the model needs depth_imb_5 (5 levels per side) but the data has 1; "
                            "these cannot be computed")


@pytest.mark.realdata
def test_evaluate_says_when_the_data_has_fewer_levels(tmp_path):
    from tests._data import AAPL10

    msg = tmp_path / "AAPL_2012-06-21_34200000_57600000_message_5.csv"
    ob = tmp_path / "AAPL_2012-06-21_34200000_57600000_orderbook_5.csv"
    msg.write_bytes(need(AAPL10).read_bytes())
    src_ob = AAPL10.with_name(AAPL10.name.replace("message", "orderbook"))
    ob.write_text("\n".join(",".join(line.split(",")[:20]) for line in src_ob.read_text().splitlines()) + "\n")
    r = run_cli("evaluate", "--model", str(DEFAULT_MODEL), "--data", str(msg), "--report", str(tmp_path / "r.html"))
    assert r.returncode == 0, r.stderr
    assert ("warning: the data has 5 levels per side, the card's features 10; ofi_dw, ofi_dw_sum_50 will be "
            "computed from 5 levels") in r.stderr


def test_models_list_fits_80_columns():
    r = subprocess.run([sys.executable, "-m", "streamsig.cli", "models", "list", "--root",
                        str(DEFAULT_MODEL.parent)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert max(len(ln) for ln in lines) <= 80
    row = next(ln for ln in lines if ln.strip().startswith("default"))
    created = json.loads((DEFAULT_MODEL / "card.json").read_text())["created"][:10]  # the day it was trained
    assert row.split() == ["default", "lightgbm", created, "SYNA,SYNB,SYNC", "h50", "rows", "0.460", "yes"]


def test_backtest_on_the_models_training_data_warns(tmp_path):
    r = run_cli("backtest", "--model", str(DEFAULT_MODEL), "--updates", "1500", "--out", str(tmp_path),
                "--run-id", "r")
    assert r.returncode == 0, r.stderr
    model_id = json.loads((DEFAULT_MODEL / "card.json").read_text())["model_id"]
    want = (f"model {model_id} was trained on this data: SYNA, SYNB, SYNC overlap its training range "
            "2024-01-01T00:00:00 to 2024-01-01T00:03:20; figures are in-sample")
    assert f"warning: {want}" in " ".join(r.stderr.split())
    html = (tmp_path / "r" / "report.html").read_text()
    assert f"<p class='banner' role='alert'>{want}</p>" in html


@pytest.mark.realdata
def test_lobster_card_times_carry_the_file_date(tmp_path):
    from tests._data import AAPL10

    r = run_cli("train", "--data", str(need(AAPL10)), "--horizon", "10", "--folds", "2", "--model-type", "logreg",
                "--out", str(tmp_path), "--name", "m")
    assert r.returncode == 0, r.stderr
    import json
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert card["data"]["time_range"][0].startswith("2012-06-21T09:30:00")
    assert card["instruments"]["AAPL"]["tick_size"] == 0.01
    assert card["instruments"]["AAPL"]["tick_from"].startswith("inferred: GCD")
