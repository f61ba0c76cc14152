"""Feature tables from feeds: the batch path used by ``features``, training and backtests.

Tables carry each feed's instrument (tick and how it was found): Parquet
metadata ``streamsig.instruments``, DataFrame ``attrs["instruments"]``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from streamsig.book.events import Reason
from streamsig.book.sources import Feed
from streamsig.features.spec import FeatureSpec
from streamsig.features.state import FeatureState, FeatureTable, compute_features


def iter_tables(feed: Feed, spec: FeatureSpec, on_chunk: Callable[[int], None] | None = None,
                reuse: bool = False) -> Iterator[FeatureTable]:
    """Run the kernel chunk by chunk over one feed (state carried across chunks).

    With ``reuse`` every table's values live in one buffer that the next chunk
    overwrites (for consumers that copy them out at once, like the Parquet writer).
    """
    st = FeatureState(spec, feed.tick_size)
    buf = np.empty((0, spec.n_features))
    for ev in feed.chunks():
        if reuse and len(buf) < len(ev):
            buf = np.empty((len(ev), spec.n_features))
        yield compute_features(ev, spec, feed.tick_size, feed.symbol, state=st, out=buf if reuse else None)
        if on_chunk:
            on_chunk(len(ev))


def feature_frame(feeds: list[Feed], spec: FeatureSpec,
                  on_chunk: Callable[[int], None] | None = None):  # noqa: ANN201 - pandas edge
    """All feeds' feature rows as one pandas DataFrame (``ts_ns, sequence, symbol, <features>``)."""
    import pandas as pd

    parts = [t.to_pandas() for f in feeds for t in iter_tables(f, spec, on_chunk) if len(t.values)]
    if not parts:
        df = pd.DataFrame(columns=["ts_ns", "sequence", "symbol", *spec.names])
    else:
        df = pd.concat(parts, ignore_index=True)
    df.attrs["instruments"] = instruments_of(feeds)
    return df


def instruments_of(feeds: list[Feed]) -> dict[str, dict[str, object]]:
    """Each feed's instrument as a dict (tick, contract, fees and ``tick_from``: how the tick was found)."""
    return {f.symbol: f.instrument.to_dict() for f in feeds if f.instrument is not None}


def write_parquet(feeds: list[Feed], spec: FeatureSpec, out: str | Path,
                  on_chunk: Callable[[int], None] | None = None) -> tuple[int, np.ndarray]:
    """Stream feature rows of every feed into one Parquet file; returns (rows, reject counts).

    The file's metadata key ``streamsig.instruments`` holds :func:`instruments_of` as JSON.
    """
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("ts_ns", pa.int64()), ("sequence", pa.int64()), ("symbol", pa.string())]
                       + [(n, pa.float64()) for n in spec.names],
                       metadata={"streamsig.instruments": json.dumps(instruments_of(feeds))})
    rows = 0
    rejects = np.zeros(len(Reason), np.int64)
    with pq.ParquetWriter(out, schema) as w:
        for feed in feeds:
            for t in iter_tables(feed, spec, on_chunk, reuse=True):
                rejects[:len(t.rejects)] += t.rejects
                if not len(t.values):
                    continue
                cols = [pa.array(t.ts_ns), pa.array(t.sequence),
                        pa.array(np.full(len(t.values), t.symbol, dtype=object), pa.string())]
                cols += [pa.array(t.values[:, j]) for j in range(t.values.shape[1])]
                w.write_table(pa.Table.from_arrays(cols, schema=schema))
                rows += len(t.values)
    return rows, rejects
