"""Synthetic LOB generator: determinism, book validity, mid modes, planted OFI relation."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamsig.book.events import BUY, CLEAR, DEPTH, EOB, EVENT_DTYPE, SELL, SNAPSHOT, TRADE
from streamsig.book.synthetic import (
    MID_MODES, SyntheticConfig, generate, generate_symbol, iter_chunks, load_scenario,
)
from streamsig.errors import DataError

REPO = Path(__file__).resolve().parents[1]


def replay(ev: np.ndarray, cfg: SyntheticConfig) -> dict[str, np.ndarray]:
    """Replay one symbol's events into a dict book, asserting every invariant.

    Returns per-update arrays: ``mid`` (ticks, after the update), ``flow`` (the
    sign of the update's first event: +1 bid add / ask cancel / market buy, -1
    the mirror images, 0 for the snapshot), ``n_trades`` and ``kind``.
    """
    L = cfg.levels
    seq, t_exch, t_local = ev["seq"], ev["exch_ts"], ev["local_ts"]
    assert len(ev) > 0 and ev["flags"][-1] & EOB, "stream must end with EOB"
    assert np.all(np.diff(t_exch) >= 0), "exch_ts decreased"
    assert np.all(np.diff(t_local) >= 0), "local_ts decreased"
    assert np.all(t_local >= t_exch), "local_ts before exch_ts"
    # one timestamp pair per update (seq order itself is checked in the loop)
    _, first_idx, inverse = np.unique(seq, return_index=True, return_inverse=True)
    assert np.array_equal(t_exch, t_exch[first_idx][inverse]), "timestamps differ within an update"
    assert np.array_equal(t_local, t_local[first_idx][inverse])
    flags, price, size = ev["flags"].tolist(), ev["price"].tolist(), ev["size"].tolist()
    seqs = seq.tolist()
    n_up = seqs[-1] + 1
    assert n_up == cfg.n_updates
    mid = np.zeros(n_up)
    flow = np.zeros(n_up)
    n_trades = np.zeros(n_up, dtype=np.int64)
    bids: dict[int, float] = {}
    asks: dict[int, float] = {}
    expect_seq = 0
    start = 0  # index of the first event of the current update
    pending_trade: tuple[int, int, float, float] | None = None  # (side, price, before, traded)
    for i in range(len(ev)):
        f, p, s, q = flags[i], price[i], size[i], seqs[i]
        assert q == expect_seq, f"event {i}: seq {q}, expected {expect_seq}"
        if q == 0:
            assert f & SNAPSHOT, "update 0 must be the snapshot"
            if i == 0:
                assert f == CLEAR | SNAPSHOT
        else:
            assert not f & (SNAPSHOT | CLEAR), f"event {i}: snapshot flags after update 0"
        if pending_trade is not None:
            side, tp, before, traded = pending_trade
            assert f & DEPTH and f & side and p == tp, f"event {i}: trade without its depth"
            assert s == before - traded, f"event {i}: depth {s} != {before} - {traded}"
            pending_trade = None
        first = i == start
        if f & CLEAR:
            bids.clear()
            asks.clear()
        elif f & TRADE:
            assert bool(f & BUY) != bool(f & SELL)
            book, side = (asks, SELL) if f & BUY else (bids, BUY)
            best = min(book) if f & BUY else max(book)
            assert p == best, f"event {i}: trade at {p}, best is {best}"
            assert 0 < s <= book[p], f"event {i}: traded {s} > level size {book[p]}"
            pending_trade = (side, p, book[p], s)
            n_trades[q] += 1
            if first:
                flow[q] = 1.0 if f & BUY else -1.0
        elif f & DEPTH:
            assert bool(f & BUY) != bool(f & SELL), f"event {i}: bad side flags"
            assert s >= 0 and s == int(s), f"event {i}: size {s}"
            book = bids if f & BUY else asks
            old = book.get(p, 0.0)
            if first and q > 0:
                assert s != old, f"event {i}: no-op depth event"
                flow[q] = (1.0 if s > old else -1.0) * (1.0 if f & BUY else -1.0)
            if s == 0:
                assert p in book, f"event {i}: deletes missing level {p}"
                del book[p]
            else:
                book[p] = s
        else:
            raise AssertionError(f"event {i}: unexpected flags {f}")
        if f & EOB:
            assert pending_trade is None
            assert len(bids) == L and len(asks) == L, f"update {q}: {len(bids)}x{len(asks)} levels"
            bb, ba = max(bids), min(asks)
            assert bb < ba, f"update {q}: crossed or locked {bb} >= {ba}"
            assert ba - bb <= cfg.max_spread
            assert bb - min(bids) == L - 1 and max(asks) - ba == L - 1, "not a dense grid"
            assert min(bids) >= 1, "price below one tick"
            # sizes are > 0: size 0 deletes, negative sizes fail at the event
            mid[q] = 0.5 * (bb + ba)
            expect_seq += 1
            start = i + 1
    assert expect_seq == n_up
    return {"mid": mid, "flow": flow, "n_trades": n_trades}


def flow_mid_corr(r: dict[str, np.ndarray], h: int) -> float:
    """corr(sum of flow over updates t-h+1..t, mid[t+h] - mid[t]) on a stride-h grid."""
    cs = np.concatenate([[0.0], np.cumsum(r["flow"])])
    t = np.arange(h, len(r["mid"]) - h, h)
    past = cs[t + 1] - cs[t + 1 - h]
    future = r["mid"][t + h] - r["mid"][t]
    return float(np.corrcoef(past, future)[0, 1])


# --------------------------------------------------------------------------- determinism


def test_same_seed_is_byte_identical_and_seeds_differ() -> None:
    cfg = SyntheticConfig(symbols=("A", "B"), n_updates=5_000, seed=11)
    a, b = generate(cfg), generate(cfg)
    assert list(a) == ["A", "B"]
    assert a["A"].dtype == EVENT_DTYPE
    assert a["A"].tobytes() == b["A"].tobytes() and a["B"].tobytes() == b["B"].tobytes()
    assert a["A"].tobytes() != a["B"].tobytes()
    other = generate_symbol(dataclasses.replace(cfg, seed=12), 0)
    assert other.tobytes() != a["A"].tobytes()
    # a symbol's stream depends on (seed, index) only, not on the other symbols
    alone = generate_symbol(dataclasses.replace(cfg, symbols=("A",)), 0)
    assert alone.tobytes() == a["A"].tobytes()


def test_chunks_concatenate_to_the_full_stream() -> None:
    cfg = SyntheticConfig(symbols=("X", "Y", "Z"), n_updates=2_500, seed=3)
    chunks = list(iter_chunks(cfg, chunk_updates=1_000))
    assert [s for s, _ in chunks] == ["X", "Y", "Z"] * 3
    for i, sym in enumerate(cfg.symbols):
        parts = [c for s, c in chunks if s == sym]
        assert [int(c["seq"][-1]) for c in parts] == [999, 1999, 2499]
        assert all(c["flags"][-1] & EOB for c in parts)
        assert np.concatenate(parts).tobytes() == generate_symbol(cfg, i).tobytes()
    with pytest.raises(ValueError, match="chunk_updates"):
        next(iter_chunks(cfg, chunk_updates=0))


# --------------------------------------------------------------------------- validity


@pytest.mark.parametrize("mode", MID_MODES)
def test_every_update_leaves_a_valid_book(mode: str) -> None:
    cfg = SyntheticConfig(n_updates=20_000, mid_mode=mode, drift=0.3, ofi_impact=0.5, seed=5)
    ev = generate_symbol(cfg, 0)
    r = replay(ev, cfg)
    assert int(ev["seq"][0]) == 0 and ev["flags"][0] == CLEAR | SNAPSHOT
    assert np.count_nonzero(ev["seq"] == 0) == 1 + 2 * cfg.levels
    assert r["mid"][0] == 10_000.0  # 100.00 at 0.01 ticks
    # the interesting branches all happen: sweeps of 2+ levels, quote moves both ways
    assert (r["n_trades"] >= 2).any()
    moves = np.diff(r["mid"])
    assert (moves > 0).any() and (moves < 0).any()


@settings(max_examples=30, deadline=None)
@given(
    levels=st.integers(1, 6),
    max_spread=st.integers(1, 5),
    vol=st.floats(0.0, 0.5),
    multi=st.floats(0.0, 0.9),
    rates=st.tuples(st.floats(0.0, 3.0), st.floats(0.0, 3.0), st.floats(0.01, 3.0)),
    order_size=st.floats(1.0, 8.0),
    mode=st.sampled_from(MID_MODES),
    impact=st.floats(0.0, 3.0),
    seed=st.integers(0, 2**32),
)
def test_random_configs_stay_valid(levels, max_spread, vol, multi, rates, order_size, mode,
                                   impact, seed) -> None:
    cfg = SyntheticConfig(
        levels=levels, max_spread=max_spread, vol=vol, multi_level_prob=multi,
        limit_rate=rates[0], cancel_rate=rates[1], market_rate=rates[2], order_size=order_size,
        mid_mode=mode, drift=-1.0, kappa=0.5, ofi_impact=impact, n_updates=400, seed=seed,
        start_price=0.01 * (levels + 3),  # right at the price floor
    )
    replay(generate_symbol(cfg, 0), cfg)


def test_max_spread_one_freezes_the_mid() -> None:
    cfg = SyntheticConfig(levels=2, max_spread=1, n_updates=5_000, vol=0.5)
    r = replay(generate_symbol(cfg, 0), cfg)
    assert np.all(r["mid"] == r["mid"][0]) and r["mid"][0] == 10_000.5


def test_event_mix_and_clock_follow_the_intensities() -> None:
    cfg = SyntheticConfig(n_updates=100_000, seed=9)
    ev = generate_symbol(cfg, 0)
    r = replay(ev, cfg)
    total = 2 * cfg.market_rate + 2 * cfg.levels * (cfg.limit_rate + cfg.cancel_rate)
    trade_share = np.mean(r["n_trades"][1:] > 0)
    # market orders on a one-lot best level turn into adds, so slightly below the rate share
    share = 2 * cfg.market_rate / total
    assert 0.9 * share < trade_share <= 1.03 * share
    ts = ev["exch_ts"][ev["flags"] & EOB != 0]
    assert np.mean(np.diff(ts)) == pytest.approx(cfg.mean_interarrival_ns, rel=0.02)
    assert ts[0] == cfg.start_ns
    lat = (ev["local_ts"] - ev["exch_ts"])[ev["flags"] & EOB != 0]
    assert cfg.latency_ns * 0.95 < lat.mean() < cfg.latency_ns * 1.3  # >= mean: FIFO receive


# --------------------------------------------------------------------------- mid modes


def test_mean_revert_stays_near_start_while_trend_drifts() -> None:
    base = SyntheticConfig(n_updates=100_000, seed=2)
    def run(**kw: object) -> np.ndarray:
        return replay(generate_symbol(dataclasses.replace(base, **kw), 0), base)["mid"]

    mr = run(mid_mode="mean_revert", kappa=0.05)
    up = run(mid_mode="trend", drift=0.2)
    down = run(mid_mode="trend", drift=-0.2)
    start = 10_000.0
    assert np.max(np.abs(mr - start)) < 20
    assert abs(np.mean(mr) - start) < 3
    assert up[-1] - start > 100 and np.mean(up) - start > 50
    assert down[-1] - start < -100 and np.mean(down) - start < -50


# --------------------------------------------------------------------------- planted relation


def test_planted_ofi_predicts_future_mid() -> None:
    cfg = SyntheticConfig(n_updates=200_000, ofi_impact=0.3, seed=4)
    r = replay(generate_symbol(cfg, 0), cfg)
    c10, c50, c100 = (flow_mid_corr(r, h) for h in (10, 50, 100))
    assert c50 > 0.1 and c100 > 0.1
    assert c10 > 0.03


def test_no_impact_means_no_predictability() -> None:
    cfg = SyntheticConfig(n_updates=800_000, ofi_impact=0.0, seed=4)
    r = replay(generate_symbol(cfg, 0), cfg)
    assert abs(flow_mid_corr(r, 50)) < 0.03
    assert abs(flow_mid_corr(r, 10)) < 0.03
    # the flow itself is there: it moves the mid in the same update
    same = np.corrcoef(r["flow"][1:], np.diff(r["mid"]))[0, 1]
    assert same > 0.05


# --------------------------------------------------------------------------- config + scenario


@pytest.mark.parametrize(
    ("field", "value"),
    [("levels", 0), ("vol", 0.6), ("mid_mode", "sideways"), ("symbols", ()),
     ("symbols", ("A", "A")), ("tick_size", 0.0), ("start_price", 0.05), ("ofi_halflife", 0.0)],
)
def test_bad_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        SyntheticConfig(**{field: value})


def test_demo_scenario_loads() -> None:
    cfg = load_scenario(REPO / "producers" / "synthetic.toml")
    assert len(cfg.symbols) == 3
    assert cfg.ofi_impact > 0
    assert isinstance(cfg.symbols, tuple) and isinstance(cfg.tick_size, float)
    small = dataclasses.replace(cfg, n_updates=2_000)
    for i in range(3):
        replay(generate_symbol(small, i), small)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('levels = 5\nlevles = 3\n', "s.toml:2: unknown key 'levles' (did you mean 'levels'?)"),
        ('colour = 1\n', "s.toml:1: unknown key 'colour' (known: symbols, levels,"),
        ('levels = "ten"\n', "s.toml:1: key 'levels': expected an integer, got str"),
        ('symbols = "A"\n', "s.toml:1: key 'symbols': expected a list of strings"),
        ('n_updates = 10\nvol = 0.9\n', "s.toml:2: key 'vol': must be in [0, 0.5], got 0.9"),
        ('seed = true\n', "s.toml:1: key 'seed': booleans are not accepted"),
        ('levels = \n', "s.toml: invalid TOML"),
    ],
)
def test_bad_scenario_is_one_line_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        load_scenario(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(str(tmp_path)) and message in msg
