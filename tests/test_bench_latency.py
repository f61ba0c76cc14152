"""The latency benchmark's cases spread their frames over the partitions alike."""
from __future__ import annotations

import sys
from pathlib import Path

from aiokafka.partitioner import DefaultPartitioner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import latency  # noqa: E402


def test_every_case_puts_symbol_i_on_partition_i_mod_the_partitions() -> None:
    parts = list(range(latency.PARTITIONS))
    seen: set[str] = set()
    for n in range(1, 40):
        names = latency.case_symbols(n)
        assert len(names) == latency.SYMBOLS_PER_CASE
        assert [DefaultPartitioner()(s.encode(), parts, parts) for s in names] == \
            [i % latency.PARTITIONS for i in range(latency.SYMBOLS_PER_CASE)]
        assert len({len(s) for s in names if s.startswith(f"C{n}S")}) == 1  # one frame size per case
        assert not seen & set(names)  # the collector routes by symbol: no name in two cases
        seen |= set(names)


def test_per_update_latency_is_each_frame_to_the_first_message_that_answers_it() -> None:
    import numpy as np

    ms = 1_000_000
    frames = {"A": np.array([[1, 10 * ms], [2, 12 * ms], [3, 13 * ms], [9, 40 * ms]], dtype=np.int64),
              "B": np.array([[5, 11 * ms]], dtype=np.int64)}
    # one message answers A's frames 1-3 at 20 ms (its last seq 3); a late one 2 answers nothing new
    answers = [("A", 3, 20 * ms), ("B", 5, 15 * ms), ("A", 2, 21 * ms)]
    lat, missing = latency.per_update_ms(frames, answers, since_ns=11 * ms)
    assert sorted(lat.tolist()) == [4.0, 7.0, 8.0]  # frame A1 is before since_ns; A9 unanswered
    assert missing == 1
