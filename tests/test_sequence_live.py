"""Sequence models (LSTM, Transformer) live: engine, backtest, worker and demo give the same signals."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamsig.backtest.runner import run_backtest
from streamsig.book.sources import Feed, open_feeds
from streamsig.engine import SignalEngine
from streamsig.features import DEFAULT_FEATURES, FeatureSpec
from streamsig.models import train_model
from streamsig.trading import PolicyConfig
from streamsig.trading.strategies import SequenceStrategy, load_strategy

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
ROOT = Path(__file__).resolve().parents[1]
SPEC = FeatureSpec(levels=10)
FEATS = [f for f in DEFAULT_FEATURES if f in SPEC.names]
TINY = {"lstm": {"window": 8, "hidden": 8, "epochs": 1},
        "transformer": {"window": 8, "d_model": 8, "heads": 2, "epochs": 1}}
SYMS = ["AAA", "BBB"]


def feeds(n: int = 1500, seed: int = 9) -> list[Feed]:
    return open_feeds("synthetic", symbols=SYMS, n_updates=n, seed=seed)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    from streamsig.features.table import feature_frame

    out = tmp_path_factory.mktemp("seqmodels")
    df = feature_frame(open_feeds("synthetic", symbols=["TRN"], n_updates=3000, seed=4), SPEC)
    got = {t: train_model(df, FEATS, {"horizon": 20}, t, seed=0, out_dir=out, folds=2, params=p,
                          name=t, extra={"feature_spec": SPEC.to_dict()})
           for t, p in TINY.items()}
    # The synthetic mid moves about 0.5 bp per class over 20 rows, less than half a spread, so the edge
    # policy rightly never trades it. A copy whose card claims 30 x those moves does trade (the card
    # is not hashed; the ONNX bytes are unchanged), which is what a test of the live path needs.
    import shutil

    for t in TINY:
        shutil.copytree(got[t], out / f"{t}-bold")
        card = json.loads((out / f"{t}-bold" / "card.json").read_text())
        card["class_moves"]["mean_return"] = [30 * m for m in card["class_moves"]["mean_return"]]
        (out / f"{t}-bold" / "card.json").write_text(json.dumps(card))
        got[f"{t}-bold"] = out / f"{t}-bold"
    return got


def _plain(obj) -> bool:
    """True when a checkpoint holds only dicts, lists, arrays, bytes and JSON scalars."""
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return all(_plain(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return obj.dtype.kind in "biuf"
    return obj is None or isinstance(obj, (bytes, str, bool, int, float))


@pytest.mark.parametrize("model_type,policy", [("lstm", "threshold"), ("lstm", "edge"),
                                               ("transformer", "threshold"), ("transformer", "edge")])
def test_engine_in_random_frames_with_a_restore_equals_the_backtest(models, model_type, policy):
    model = models[model_type + ("-bold" if policy == "edge" else "")]
    pol = PolicyConfig(kind=policy, enter=0.1, max_position=1.0, fee_bps=0.0)
    strat, model_id, spec = load_strategy(model, "ofi", pol)
    assert isinstance(strat, SequenceStrategy) and spec == SPEC and model_id.startswith(model_type)
    offline = run_backtest(feeds(), SPEC, model_dir=model, policy_cfg=pol, baselines=[]).signals
    rng = np.random.default_rng(5)
    for f in feeds():
        ev = f.read_all()
        eng = SignalEngine(f.symbol, SPEC, f.tick_size, strat)
        parts, i, cut = [], 0, len(ev) // 2
        while i < len(ev):
            j = min(len(ev), i + int(rng.integers(1, 400)))
            if i < cut <= j:
                j = cut
            parts.append(eng.on_events(ev[i:j]).signals)
            if j == cut:  # a worker restart: a new engine from the checkpoint
                ck = eng.checkpoint()
                assert _plain(ck)
                assert ck["strategy"]["trader"]["window"].shape == (TINY[model_type]["window"] - 1, len(FEATS))
                eng = SignalEngine(f.symbol, SPEC, f.tick_size, strat)
                eng.restore(ck)
            i = j
        live = np.concatenate(parts)
        want = offline[f.symbol]
        assert live.tobytes() == want.tobytes(), f"{model_type} {f.symbol}: live signals differ from the backtest"
        T = TINY[model_type]["window"]
        assert np.isnan(want["p_up"][:T - 1]).all() and (want["target"][:T - 1] == 0).all()  # warm-up
        assert np.isfinite(want["p_up"][200:]).all()  # features warm up (100-row sums), then the window
        assert (want["target"] != 0).any()  # it trades


def test_a_restore_without_the_window_would_differ(models):
    """The window is what the checkpoint carries: a restart that lost it warms up again."""
    strat, _, _ = load_strategy(models["lstm"], "ofi", PolicyConfig(enter=0.1))
    f = feeds()[0]
    ev = f.read_all()
    eng = SignalEngine(f.symbol, SPEC, f.tick_size, strat)
    eng.on_events(ev[:800])
    ck = eng.checkpoint()
    resumed = SignalEngine(f.symbol, SPEC, f.tick_size, strat)
    resumed.restore(ck)
    ck["strategy"]["trader"]["window"][:] = np.nan
    cold = SignalEngine(f.symbol, SPEC, f.tick_size, strat)
    cold.restore(ck)
    a, b = resumed.on_events(ev[800:900]).signals, cold.on_events(ev[800:900]).signals
    assert np.isfinite(a["p_up"]).all() and np.isnan(b["p_up"][:7]).all()


def _cli(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "streamsig.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("model_type", ["lstm", "transformer"])
def test_backtest_command_trades_a_sequence_model_from_its_card(models, tmp_path, model_type):
    res = _cli("backtest", "--source", "synthetic", "--symbols", "AAA", "--updates", "1500", "--seed", "9",
               "--model", str(models[model_type]), "--policy", "edge", "--fee-bps", "0.5",
               "--out", str(tmp_path), "--run-id", "r", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:] + res.stdout[-2000:]
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["model"]["type"] == model_type
    assert summary["config"]["policy"]["kind"] == "edge"
    import pandas as pd

    sig = pd.read_parquet(tmp_path / "r" / "signals.parquet")
    assert sig["p_up"][:TINY[model_type]["window"] - 1].isna().all() and sig["p_up"][200:].notna().all()


@pytest.mark.slow
async def test_worker_serves_a_sequence_model_from_its_card_across_a_restart(models, stream_config, tmp_path):
    from streamsig.live.config import running
    from streamsig.live.producer import produce
    from streamsig.wire.topics import ensure_topics
    from streamsig.live.worker import build_worker
    from tests.test_stream_e2e import collect
    from tests.test_stream_restart import by_symbol

    cfg = stream_config
    await ensure_topics(cfg.bootstrap, cfg.topics.all(), cfg.partitions)
    model = models["lstm"]
    strat, model_id, spec = load_strategy(model, "ofi", PolicyConfig(enter=0.1))  # no flag: the card says lstm
    assert isinstance(strat, SequenceStrategy)
    first, second = [], []
    for f in feeds():
        ev = f.read_all()
        cut = int(np.flatnonzero(ev["seq"] == 700)[0])
        first.append(Feed(f.symbol, f.tick_size, f.levels, f.label, lambda ev=ev[:cut]: iter([ev])))
        second.append(Feed(f.symbol, f.tick_size, f.levels, f.label, lambda ev=ev[cut:]: iter([ev])))
    last = {f.symbol: int(f.read_all()["seq"][-1]) for f in feeds()}

    def done_at(seqs):
        def done(msgs) -> bool:
            from streamsig.wire.signals import decode_signals
            seen: dict[str, int] = {}
            for _, v in msgs:
                fr = decode_signals(v)
                seen[fr.symbol] = max(seen.get(fr.symbol, -1), fr.last_seq)
            return all(seen.get(s, -1) >= q for s, q in seqs.items())
        return done

    state = tmp_path / "state"
    async with running(build_worker(cfg, spec, strat, model_id, state), ready_timeout_s=30):
        await produce(first, cfg.bootstrap, cfg.topics.book_events, frame_size=97, snapshot_every=0)
        await collect(cfg.bootstrap, cfg.topics.signals, done_at({s: 699 for s in SYMS}))
    strat2, _, _ = load_strategy(model, "ofi", PolicyConfig(enter=0.1))  # a new process loads the model again
    async with running(build_worker(cfg, spec, strat2, model_id, state), ready_timeout_s=30):
        await produce(second, cfg.bootstrap, cfg.topics.book_events, frame_size=61, snapshot_every=0)
        msgs = await collect(cfg.bootstrap, cfg.topics.signals, done_at(last))
    live = by_symbol(msgs)
    offline = run_backtest(feeds(), SPEC, model_dir=model, policy_cfg=PolicyConfig(enter=0.1), baselines=[]).signals
    for sym in SYMS:
        assert len(np.unique(live[sym]["seq"])) == len(live[sym]), f"{sym}: a signal was published twice"
        assert live[sym].tobytes() == offline[sym].tobytes(), f"{sym}: live signals differ from the backtest"
        assert np.isfinite(live[sym]["p_up"][700:]).all()  # the restarted worker kept its windows


@pytest.mark.slow
@pytest.mark.parametrize("model_type", ["lstm", "transformer"])
def test_demo_runs_a_sequence_model(models, tmp_path, model_type):
    from streamsig.live.broker import free_port

    card = json.loads((models[model_type] / "card.json").read_text())
    res = _cli("demo", "--model", str(models[model_type]), "--updates", "1500", "--speed", "max",
               "--duration", "60", "--ws-port", str(free_port()), "--metrics-port", str(free_port()),
               "--policy", "edge" if model_type == "transformer" else "threshold", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"model    {card['model_id']}" in res.stdout
    assert "stopped cleanly" in res.stdout
    final = [ln for ln in res.stdout.splitlines() if "SYNA seq" in ln][-1]
    for sym in ("SYNA", "SYNB", "SYNC"):
        assert f"{sym} seq 1499 " in final, final  # the worker applied every update it was sent


def test_walk_forward_schedule_keeps_every_sequence_model_warm(models):
    """A scheduled switch between two copies of one sequence model changes nothing: the second
    model's window saw every row before its turn (edge policy, one policy across the switch)."""
    from streamsig.trading.strategies import ScheduledModelStrategy
    from streamsig.models import load_scorer

    f = feeds()[:1]
    ts = f[0].read_all()["exch_ts"]
    switch = int(ts[len(ts) // 2])
    pol = PolicyConfig(kind="edge", max_position=1.0)
    one = run_backtest(f, SPEC, strategy=SequenceStrategy(load_scorer(models["lstm-bold"]), pol),
                       baselines=[]).signals["AAA"]
    sched = ScheduledModelStrategy([0, switch], [load_scorer(models["lstm-bold"]) for _ in range(2)], pol)
    two = run_backtest(f, SPEC, strategy=sched, baselines=[]).signals["AAA"]
    assert (one["target"] != 0).any()
    assert one.tobytes() == two.tobytes()
