"""Backtest runner: determinism, live-equal signals, chunking, metrics consistency, CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from streamsig.cli.backtest import register
from streamsig.backtest.outputs import run_id, write_outputs
from streamsig.backtest.runner import run_backtest
from streamsig.book.sources import Feed, open_feeds
from streamsig.features import FeatureSpec, compute_features
from streamsig.trading import ExecConfig, PolicyConfig, SignalPolicy
from streamsig.trading import performance as metrics

SCENARIO = Path(__file__).resolve().parents[1] / "producers" / "synthetic.toml"
SPEC = FeatureSpec(levels=5)
FEATURES = ["qimb_1", "depth_imb_5", "ofi_1_sum_10", "ofi_1_sum_50", "spread_ticks", "ret_10"]
POLICY = PolicyConfig(enter=0.15, exit=0.0)
COSTS = ExecConfig(fee_bps=0.5, slippage_bps=0.1, order_latency_events=2)


def feeds(n: int = 6000, symbols: tuple[str, ...] = ("SYNA", "SYNB")) -> list[Feed]:
    return open_feeds("synthetic", SCENARIO, levels=5, symbols=list(symbols), n_updates=n)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small LightGBM model trained with the models API on synthetic features."""
    from streamsig.features.table import feature_frame
    from streamsig.models import train_model

    df = feature_frame(open_feeds("synthetic", SCENARIO, levels=5, symbols=["SYNC"], n_updates=8000), SPEC)
    return train_model(df, FEATURES, {"horizon": 10}, "lightgbm", seed=0,
                       out_dir=tmp_path_factory.mktemp("models"), folds=2)


def test_two_runs_give_byte_identical_summary(model_dir: Path, tmp_path: Path) -> None:
    outs = []
    for k in range(2):
        res = run_backtest(feeds(), SPEC, model_dir=model_dir, exec_cfg=COSTS, policy_cfg=POLICY)
        outs.append(write_outputs(res, tmp_path / f"run{k}", report=False))
    assert outs[0].name == outs[1].name  # the run id is a hash of the inputs
    a, b = ((o / "summary.json").read_bytes() for o in outs)
    assert a == b
    s = json.loads(a)
    assert s["metrics"]["model"]["n_trades"] > 0
    assert str(tmp_path) not in a.decode()  # no paths that vary
    assert list(s) == sorted(s)


@pytest.mark.slow
def test_cli_summary_is_byte_identical_across_processes(tmp_path: Path) -> None:
    """Two ``streamsig backtest`` processes with different hash seeds write the same summary.json."""
    root = Path(__file__).resolve().parents[1]
    texts = []
    for seed in ("1", "2"):
        out = tmp_path / seed
        r = subprocess.run([sys.executable, "-m", "streamsig.cli", "backtest", "--updates", "2000",
                            "--symbols", "SYNC,SYNA,SYNB", "--model", str(root / "models" / "default"),
                            "--fee-bps", "1", "--latency-ns", "1000", "--out", str(out),
                            "--policy", "threshold"],  # edge: the synthetic moves never pay the fee
                           check=False, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(root), "PYTHONHASHSEED": seed})
        assert r.returncode == 0, r.stderr[-2000:]
        (run,) = list(out.iterdir())
        texts.append((run.name, (run / "summary.json").read_bytes()))
    assert texts[0] == texts[1]
    s = json.loads(texts[0][1])
    assert sorted(s["feeds"]) == ["SYNA", "SYNB", "SYNC"] and s["metrics"]["model"]["n_trades"] > 0
    assert str(tmp_path) not in texts[0][1].decode() and str(root) not in texts[0][1].decode()


def test_signals_equal_the_per_row_live_path(model_dir: Path) -> None:
    """Batch scoring per chunk + SignalPolicy.run == score_one + SignalPolicy.target row by row."""
    from streamsig.models import Scorer

    fs = feeds(n=4000, symbols=("SYNA",))
    res = run_backtest(fs, SPEC, model_dir=model_dir, exec_cfg=COSTS, policy_cfg=POLICY)
    sig = res.signals["SYNA"]
    scorer, policy = Scorer(model_dir), SignalPolicy(POLICY)
    table = compute_features(fs[0].read_all(), SPEC, fs[0].tick_size, "SYNA")
    cols = SPEC.select(scorer.features)
    probs = np.array([scorer.score_one(row[cols].astype(np.float32)) for row in table.values])
    targets = np.array([policy.target(p) for p in probs])
    np.testing.assert_array_equal(sig["seq"], table.sequence)
    np.testing.assert_array_equal(sig["ts_ns"], table.ts_ns)
    np.testing.assert_array_equal(np.column_stack([sig["p_down"], sig["p_flat"], sig["p_up"]]),
                                  probs.astype(np.float64))
    np.testing.assert_array_equal(sig["target"], targets)
    assert (targets != 0).any()


def _rechunked(feed: Feed, sizes: list[int]) -> Feed:
    ev = feed.read_all()
    cuts = np.cumsum(sizes)
    cuts = cuts[cuts < len(ev)]
    return Feed(feed.symbol, feed.tick_size, feed.levels, feed.label, lambda: iter(np.split(ev, cuts)))


def test_any_chunking_gives_the_same_run(model_dir: Path) -> None:
    """Chunks cut anywhere (mid-batch too) change nothing: features, book at each row, fills."""
    f = feeds(n=3000, symbols=("SYNA",))[0]
    kw = dict(model_dir=model_dir, exec_cfg=COSTS, policy_cfg=POLICY)
    one = run_backtest([_rechunked(f, [10**9])], SPEC, **kw)
    many = run_backtest([_rechunked(f, [1, 2, 7, 333, 50, 1001] * 10)], SPEC, **kw)
    for key, rec in one.lanes.items():
        other = many.lanes[key]
        np.testing.assert_array_equal(rec.fills, other.fills)
        np.testing.assert_array_equal(rec.equity, other.equity)
    for name in one.signals["SYNA"].dtype.names:  # field by field: NaN equals NaN there
        np.testing.assert_array_equal(one.signals["SYNA"][name], many.signals["SYNA"][name])
    assert one.summaries() == many.summaries()


def test_summary_equals_metrics_recomputed_from_the_tables(model_dir: Path, tmp_path: Path) -> None:
    res = run_backtest(feeds(), SPEC, model_dir=model_dir, exec_cfg=COSTS, policy_cfg=POLICY,
                       bar_ns=500_000_000)
    folder = write_outputs(res, tmp_path, report=False)
    summary = json.loads((folder / "summary.json").read_text())
    eq = pd.read_parquet(folder / "equity.parquet")
    trades = pd.read_parquet(folder / "trades.parquet")
    fills = pd.read_parquet(folder / "fills.parquet")
    for strat in res.strategies:
        e = eq[eq["strategy"] == strat]
        # each symbol's first mark comes before any fill: its equity there is its capital
        cap = float(e.groupby("symbol", sort=False)["symbol_equity"].first().sum())
        ts, val = metrics.resample_last(e["ts_ns"].to_numpy(), e["equity"].to_numpy(), 500_000_000)
        t = trades[trades["strategy"] == strat].sort_values("close_ts", kind="stable")
        f = fills[fills["strategy"] == strat]
        spread = float((f["side"] * (f["price"] - f["mid"]) * f["qty"]).sum())
        want = metrics.summary(val, ts, capital=cap, trade_pnl=t["pnl"].to_numpy(),
                               holding_ns=(t["close_ts"] - t["open_ts"]).to_numpy(), fees=float(f["fee"].sum()),
                               spread_cost=spread, notional=float((f["qty"] * f["price"]).sum()))
        got = summary["metrics"][strat]
        assert set(got) == set(want)
        for k, v in want.items():
            if v is None:
                assert got[k] is None, (strat, k)
            else:
                assert got[k] == pytest.approx(v, rel=1e-8, abs=1e-10), (strat, k)
    assert summary["metrics"]["flat"]["pnl"] == 0.0


def test_cli_backtest_writes_a_run_folder(model_dir: Path, tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command keeps "backtest" a subcommand
    r = CliRunner().invoke(app, ["backtest", "--updates", "3000", "--symbols", "S", "--levels", "5",
                                 "--model", str(model_dir), "--fee-bps", "1", "--latency-ns", "1000",
                                 "--max-drawdown", "0.5", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert {p.name for p in run.iterdir()} >= {"summary.json", "trades.parquet", "equity.parquet", "report.html"}
    s = json.loads((run / "summary.json").read_text())
    assert s["config"]["exec"]["fee_bps"] == 1.0 and s["config"]["exec"]["signal_latency_ns"] == 1000
    assert s["model"]["id"] == model_dir.name
    bad = CliRunner().invoke(app, ["backtest", "--model", str(tmp_path / "nope"), "--updates", "100"])
    assert bad.exit_code != 0
    assert "backtest" in CliRunner().invoke(app, ["backtest", "--help"]).output


def test_run_id_changes_with_costs(model_dir: Path) -> None:
    a = run_backtest(feeds(n=500), SPEC, model_dir=model_dir, exec_cfg=ExecConfig(fee_bps=1))
    b = run_backtest(feeds(n=500), SPEC, model_dir=model_dir, exec_cfg=ExecConfig(fee_bps=2))
    assert run_id(a) != run_id(b) and run_id(a).startswith("model-")
