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
