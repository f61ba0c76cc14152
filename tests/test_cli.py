"""The command line as a user meets it: tables written, errors in one line."""
from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from tests._data import AAPL10, BTC_SNAP, need


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamsig.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


@pytest.mark.realdata
def test_features_on_real_lobster_sample(tmp_path: Path) -> None:
    out = tmp_path / "aapl.parquet"
    r = run_cli("features", "--source", "lobster", "--data", str(need(AAPL10)), "--out", str(out))
    assert r.returncode == 0, r.stderr
    df = pd.read_parquet(out)
    assert len(df) == 999 and df["sequence"].tolist() == list(range(999))
    assert {"ts_ns", "sequence", "symbol", "mid", "ofi_10", "ofi_dw", "microprice_adj"} <= set(df.columns)
    assert (df["symbol"] == "AAPL").all()
    # 09:30:00.004241176 after midnight, in ns
    assert df["ts_ns"].iloc[0] % 86_400_000_000_000 == 34200_004241176


@pytest.mark.realdata
def test_features_on_real_crypto_snapshots(tmp_path: Path) -> None:
    out = tmp_path / "btc.parquet"
    r = run_cli("features", "--source", "crypto", "--data", str(need(BTC_SNAP)), "--out", str(out))
    assert r.returncode == 0, r.stderr
    df = pd.read_parquet(out)
    assert len(df) > 5000 and (df["symbol"] == "BTCUSDT").all()
    assert df["spread"].gt(0).all() and df["mid"].between(60000, 70000).all()


def test_wrong_path_is_one_line(tmp_path: Path) -> None:
    r = run_cli("features", "--source", "lobster", "--data", str(tmp_path / "missing.csv"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing.csv" in lines[0] and "no such file" in lines[0]


def test_unknown_source_is_one_line() -> None:
    r = run_cli("features", "--source", "nasdaq")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "unknown source" in r.stderr


def test_malformed_lobster_line_names_file_and_line(tmp_path: Path) -> None:
    msg = tmp_path / "XYZ_2012-06-21_34200000_57600000_message_1.csv"
    ob = tmp_path / "XYZ_2012-06-21_34200000_57600000_orderbook_1.csv"
    msg.write_text("34200.1,1,1,100,1000000,1\n34200.2,1,2,abc,999900,1\n")
    ob.write_text("1000100,0,1000000,100\n1000100,0,1000000,100\n")
    r = run_cli("features", "--source", "lobster", "--data", str(msg), "--out", str(tmp_path / "o.parquet"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{msg.name}:2:" in lines[0].replace(str(tmp_path) + "/", ""), r.stderr


def test_every_subcommand_has_help() -> None:
    import typer

    from streamsig.cli.main import app

    cmds = list(typer.main.get_command(app).commands)
    assert {"features", "demo", "produce", "worker", "trade", "broker"} <= set(cmds)
    no_data = {"broker", "worker", "trade", "serve", "models", "dashboards"}  # they read topics or folders
    with ThreadPoolExecutor(4) as pool:  # one process per subcommand, as a user starts them
        helps = dict(zip(cmds, pool.map(lambda c: run_cli(c, "--help"), cmds)))
    for c, h in helps.items():
        assert h.returncode == 0, c
        assert ("--source" in h.stdout) != (c in no_data), c
