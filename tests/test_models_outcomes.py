"""Live predictions scored on matured labels: the labels are the offline labels, whatever the batching."""
from __future__ import annotations

import numpy as np
import pytest

from streamsig.labels import LabelConfig, make_labels
from streamsig.models.outcomes import MaturedScores, tally
from streamsig.models.synthetic import planted_table


@pytest.mark.parametrize("cfg", [LabelConfig(horizon=7), LabelConfig(horizon=0.5, unit="seconds"),
                                 LabelConfig(horizon=4, threshold=2, threshold_unit="ticks", tick_size=0.01)],
                         ids=["rows", "seconds", "ticks"])
def test_batches_score_exactly_the_offline_labels(cfg: LabelConfig) -> None:
    df = planted_table(900, seed=11)
    y = make_labels(df, cfg)
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(3), len(df))
    probs[:5] = np.nan  # warm-up rows without probabilities are not scored
    m = MaturedScores(cfg)
    total = {"matured": 0, "hits": 0, "predicted": 0, "observed": 0}
    cuts = np.sort(rng.choice(np.arange(1, len(df)), 40, replace=False))
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(df)]):
        t = m.update_many(df["mid"].to_numpy()[lo:hi], df["ts_ns"].to_numpy()[lo:hi], probs[lo:hi])
        total = {k: v + t[k] for k, v in total.items()}
    expect = tally(probs, np.asarray(y))  # offline: every row with a label at once
    assert total["matured"] == expect["matured"] == int(((y >= 0) & np.isfinite(probs).all(axis=1)).sum())
    assert total["hits"] == expect["hits"]
    assert np.array_equal(total["predicted"], expect["predicted"])
    assert np.array_equal(total["observed"], expect["observed"])
    assert m.waiting == int((y < 0).sum())  # the unlabelled tail still waits


def test_unsupported_labels_score_nothing() -> None:
    m = MaturedScores(LabelConfig(kind="smoothed", horizon=5))
    assert not m.supported
    t = m.update_many(np.ones(20), np.arange(20), np.full((20, 3), 1 / 3))
    assert t["matured"] == 0 and m.waiting == 0


def _reference_tally(probs: np.ndarray, y: np.ndarray) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Row by row, as the docstring of ``tally`` defines it."""
    predicted, observed = np.zeros((3, 10), np.int64), np.zeros((3, 10), np.int64)
    matured = hits = 0
    for p, c in zip(probs, y):
        if not (0 <= c <= 2) or not np.isfinite(p).all():
            continue
        matured += 1
        hits += int(np.argmax(p) == c)  # argmax takes the first of tied classes
        for k in range(3):
            b = min(int(p[k] * 10), 9)
            predicted[k, b] += 1
            observed[k, b] += int(k == c)
    return matured, hits, predicted, observed


def test_tally_counts_as_defined_row_by_row() -> None:
    rng = np.random.default_rng(5)
    for n in (0, 1, 3, 50, 400):
        probs = rng.dirichlet([1.0, 1.0, 1.0], n)
        if n >= 3:
            probs[0] = [0.0, 0.0, 1.0]  # the last decile holds 1.0
            probs[1] = [0.4, 0.4, 0.2]  # a tie: the first class counts
            probs[2, 1] = np.nan  # skipped
            probs[rng.integers(0, n, n // 10)] = [0.5, 0.0, 0.5]
        y = rng.integers(-1, 4, n)  # -1 and 3 are no labels
        t = tally(probs, y)
        matured, hits, predicted, observed = _reference_tally(probs, y)
        assert (t["matured"], t["hits"]) == (matured, hits)
        assert t["predicted"].tolist() == predicted.tolist() and t["observed"].tolist() == observed.tolist()
