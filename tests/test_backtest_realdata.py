"""End-to-end backtests on the LOBSTER sample files (skipped where ../shared/data is absent)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from streamsig.cli.backtest import register
from streamsig.backtest.outputs import write_outputs
from streamsig.backtest.walkforward import walk_forward_backtest
from streamsig.book.sources import open_feeds
from streamsig.features import FeatureSpec
from streamsig.trading import ExecConfig

LOBSTER = Path(__file__).resolve().parents[2] / "shared" / "data" / "lobster"
AMZN1 = LOBSTER / "AMZN_2012-06-21_34200000_57600000_message_1.csv.gz"
AAPL10 = LOBSTER / "aapl_level10_first999_rows" / "AAPL_2012-06-21_34200000_57600000_message_10.csv"

pytestmark = pytest.mark.realdata


@pytest.mark.skipif(not AMZN1.exists(), reason="LOBSTER AMZN sample absent")
def test_amzn_full_day_walk_forward(tmp_path: Path) -> None:
    """Read with open_feeds('lobster', path); train on the morning, trade the afternoon, write the run."""
    feeds = open_feeds("lobster", AMZN1)
    res = walk_forward_backtest(feeds, FeatureSpec(levels=1), folds=2, label={"horizon": 50},
                                models_dir=tmp_path / "models", exec_cfg=ExecConfig(fee_bps=0.2))
    folder = write_outputs(res, tmp_path / "reports")
    s = json.loads((folder / "summary.json").read_text())
    assert s["feeds"]["AMZN"]["events"] > 57_000 and s["feeds"]["AMZN"]["rows"] == 57_515
    assert set(s["metrics"]) == {"model", "flat", "buy_and_hold", "sma", "ofi"}
    assert s["metrics"]["flat"]["pnl"] == 0.0 and s["metrics"]["model"]["n_trades"] > 0
    # LOBSTER times are ns since the epoch on the file's date: trading starts after 10:00, ends before 16:00
    day = 1_340_236_800e9  # 2012-06-21 00:00 UTC
    start = s["config"]["walk_forward"]["starts_ns"][0]
    assert day + 10 * 3600e9 < start < day + 16 * 3600e9
    eq = pd.read_parquet(folder / "equity.parquet")
    assert eq["ts_ns"].min() >= start and eq["ts_ns"].max() < day + 16 * 3600e9
    bh = s["metrics"]["buy_and_hold"]
    assert bh["n_trades"] == 0.0 and bh["fees"] > 0  # one entry, held to the end
    assert "report.html" in {p.name for p in folder.iterdir()}


@pytest.mark.skipif(not AAPL10.exists(), reason="LOBSTER AAPL 10-level slice absent")
def test_cli_on_the_aapl_10_level_slice(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)
    r = CliRunner().invoke(app, ["backtest", "--source", "lobster", "--data", str(AAPL10), "--fee-bps", "1",
                                 "--latency-events", "2", "--out", str(tmp_path), "--run-id", "aapl"])
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "aapl" / "summary.json").read_text())
    assert s["primary"] is None and s["feeds"]["AAPL"]["rows"] > 500
    assert s["metrics"]["flat"]["pnl"] == 0.0
