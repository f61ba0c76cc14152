"""Every input mistake a new user makes ends in one line naming the file and what to do, exit code 2."""
from __future__ import annotations

import gzip
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
