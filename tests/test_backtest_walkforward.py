"""Walk-forward backtest on synthetic data, and its HTML report rendered in headless Chromium."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from streamsig.backtest.outputs import write_outputs
from streamsig.backtest.result import BacktestResult
from streamsig.backtest.walkforward import fold_bounds, walk_forward_backtest
from streamsig.book.sources import open_feeds
from streamsig.features import FeatureSpec
from streamsig.trading import ExecConfig, PolicyConfig

SCENARIO = Path(__file__).resolve().parents[1] / "producers" / "synthetic.toml"
SPEC = FeatureSpec(levels=5)


@pytest.fixture(scope="module")
def wf(tmp_path_factory: pytest.TempPathFactory) -> tuple[BacktestResult, Path, Path]:
    feeds = open_feeds("synthetic", SCENARIO, levels=5, symbols=["SYNA", "SYNB"], n_updates=6000)
    models = tmp_path_factory.mktemp("models")
    res = walk_forward_backtest(feeds, SPEC, folds=3, label={"horizon": 10}, models_dir=models,
                                policy_cfg=PolicyConfig(enter=0.15), exec_cfg=ExecConfig(fee_bps=0.5))
    return res, write_outputs(res, tmp_path_factory.mktemp("reports")), models


def test_each_block_is_traded_by_the_model_of_the_block_before(wf: tuple[BacktestResult, Path, Path]) -> None:
    from streamsig.features import compute_features
    from streamsig.models import Scorer

    res, folder, models_dir = wf
    info = res.config["walk_forward"]
    starts, models = info["starts_ns"], info["models"]
    assert len(starts) == len(models) == 2 and len(set(models)) == 2
    for sym in res.symbols:
        sig = res.signals[sym]
        before = sig["ts_ns"] < starts[0]
        assert np.isnan(sig["p_up"][before]).all() and (sig["target"][before] == 0).all()
        assert np.isfinite(sig["p_up"][~before]).mean() > 0.9
        for rec in (res.lanes[(s, sym)] for s in res.strategies):  # everyone trades from the first test block
            assert rec.ts_ns[0] >= starts[0] and (rec.fills["ts_ns"] >= starts[0]).all()
    # rows of block 1 carry model 0's probabilities, rows of block 2 model 1's
    sig = res.signals["SYNA"]
    f = open_feeds("synthetic", SCENARIO, levels=5, symbols=["SYNA", "SYNB"], n_updates=6000)[0]
    rows = compute_features(f.read_all(), SPEC, f.tick_size).values
    for k, (a, b) in enumerate([(starts[0], starts[1]), (starts[1], 1 << 62)]):
        i = int(np.flatnonzero((sig["ts_ns"] >= a) & (sig["ts_ns"] < b) & np.isfinite(sig["p_up"]))[0])
        sc = Scorer(models_dir / models[k])
        p = sc.score_one(rows[i, SPEC.select(sc.features)].astype(np.float32))
        np.testing.assert_array_equal([sig["p_down"][i], sig["p_flat"][i], sig["p_up"][i]], p.astype(np.float64))
    assert res.model and res.model["fold_models"] == models and res.model["importance"]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["config"]["walk_forward"]["models"] == models
    assert summary["metrics"]["model"]["n_trades"] > 0


def test_fold_bounds_need_enough_rows() -> None:
    assert fold_bounds(np.arange(10), 2).tolist() == [5]
    with pytest.raises(ValueError):
        fold_bounds(np.zeros(100, np.int64), 3)  # all rows share one time


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_report_renders_its_charts_in_chromium(wf: tuple[BacktestResult, Path, Path], tmp_path: Path) -> None:
    res, folder, _ = wf
    html = (folder / "report.html").read_text()
    n_img = html.count("<img ")
    assert n_img == 5  # equity and drawdown, position, P&L by hour, calibration, importance
    for section in ("Assumptions", "Strategies (after costs)", "buy_and_hold", "sma", "ofi", "flat", "Latency"):
        assert section in html
    assert "src=\"http" not in html and "<link" not in html  # self-contained
    url = (folder / "report.html").as_uri()
    base = [_chromium(), *CHROME_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*base, "--virtual-time-budget=5000", "--dump-dom", url], capture_output=True,
                         text=True, timeout=60).stdout
    m = re.search(r'<body[^>]*data-images-loaded="(\d+)"', dom)
    assert m and int(m.group(1)) == n_img, dom[:300]
    shot = tmp_path / "shot.png"
    subprocess.run([*base, "--window-size=1200,2400", f"--screenshot={shot}", url], capture_output=True,
                   timeout=60)
    import matplotlib.image as mpimg

    px = mpimg.imread(shot)[..., :3]
    assert px.shape[0] >= 2000 and px.std() > 0.05  # not a blank page
    assert (px.reshape(-1, 3).std(axis=1) > 0.1).mean() > 0.005  # coloured chart lines are drawn
