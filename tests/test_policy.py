import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamsig.trading.policy import PolicyConfig, SignalPolicy


def probs(s: float) -> tuple[float, float, float]:
    """A triple whose edge p_up - p_down is exactly ``s`` (dyadic values stay exact)."""
    return (0.25 - s / 2, 0.5, 0.25 + s / 2)


def targets(pol: SignalPolicy, edges: list[float]) -> list[float]:
    return [pol.target(probs(s)) for s in edges]


def test_hysteresis_long_and_short():
    pol = SignalPolicy(PolicyConfig(enter=0.25, exit=0.125))
    edges = [0.125, 0.25, 0.1875, 0.125, 0.0625, 0.1875, -0.25, -0.1875, -0.125, -0.0625]
    # 0.125 < enter: flat | 0.25 >= enter: long | 0.1875, 0.125 >= exit: stay long
    # 0.0625 < exit: flat | 0.1875 < enter: stay flat | -0.25 <= -enter: short
    # -0.1875, -0.125 <= -exit: stay short | -0.0625 > -exit: flat
    assert targets(pol, edges) == [0, 1, 1, 1, 0, 0, -1, -1, -1, 0]


def test_reversal_skips_flat():
    pol = SignalPolicy(PolicyConfig(enter=0.25, exit=0.0))
    assert targets(pol, [0.5, -0.25, 0.25]) == [1, -1, 1]


def test_unit_scales_in_up_to_max_position():
    pol = SignalPolicy(PolicyConfig(enter=0.25, exit=0.0, unit=0.5, max_position=1.25))
    # each confirming event adds 0.5 until |target| reaches 1.25
    assert targets(pol, [0.25, 0.5, 0.25, 0.25, 0.125, -0.25, -0.5, -0.5]) == \
        [0.5, 1.0, 1.25, 1.25, 1.25, -0.5, -1.0, -1.25]


def test_min_hold_delays_exit_not_entry():
    pol = SignalPolicy(PolicyConfig(enter=0.25, exit=0.0, min_hold=3))
    # enter at call 0; the exit signal at calls 1, 2 is held; allowed at call 3
    assert targets(pol, [0.5, -0.0625, -0.0625, -0.0625, 0.5]) == [1, 1, 1, 0, 1]


def test_nan_holds_target():
    pol = SignalPolicy(PolicyConfig(enter=0.25))
    assert pol.target(probs(0.5)) == 1.0
    assert pol.target((math.nan, 0.5, 0.5)) == 1.0


def test_state_restore_continues_identically():
    rng = np.random.default_rng(7)
    p = rng.dirichlet([1.0, 1.0, 1.0], size=200)
    ref = SignalPolicy(PolicyConfig(enter=0.2, exit=0.05, unit=0.5, max_position=2, min_hold=4))
    full = ref.run(p)
    a = SignalPolicy(PolicyConfig(enter=0.2, exit=0.05, unit=0.5, max_position=2, min_hold=4))
    first = [a.target(row) for row in p[:77]]
    b = SignalPolicy(PolicyConfig(enter=0.2, exit=0.05, unit=0.5, max_position=2, min_hold=4))
    b.restore(a.state())
    rest = [b.target(row) for row in p[77:]]
    assert first + rest == full.tolist()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)), max_size=60),
       st.integers(0, 5))
def test_run_equals_per_event(rows, min_hold):
    p = np.array(rows, dtype=np.float64).reshape(-1, 3)
    a = SignalPolicy(PolicyConfig(enter=0.1, exit=-0.05, unit=1, max_position=3, min_hold=min_hold))
    b = SignalPolicy(PolicyConfig(enter=0.1, exit=-0.05, unit=1, max_position=3, min_hold=min_hold))
    assert a.run(p).tolist() == [b.target(r) for r in p]
    assert a.state() == b.state()


def test_bad_parameters():
    with pytest.raises(ValueError):
        SignalPolicy(PolicyConfig(enter=0.0))
    with pytest.raises(ValueError):
        SignalPolicy(PolicyConfig(enter=0.2, exit=0.3))
    with pytest.raises(ValueError):
        SignalPolicy(PolicyConfig(enter=0.2, unit=0))


def test_unit_defaults_to_all_in():
    pol = SignalPolicy(PolicyConfig(enter=0.25, max_position=2.0))
    assert targets(pol, [0.5, 0.5, -0.25, 0.0625]) == [2.0, 2.0, -2.0, 0.0]
