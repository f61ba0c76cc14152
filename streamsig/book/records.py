"""Record dtypes of what the pipeline emits, beside the event dtype (:mod:`streamsig.book.events`).

- ``SIGNAL_DTYPE``: one signal per feature row: the sequence it answers, class
  probabilities, the policy's target, and the book there (mid, best bid and ask
  price and size: what a trader marks and checks its book against);
- ``FILL_DTYPE``: one paper fill;
- ``TRIP_DTYPE``: one round trip (flat to flat).
"""
from __future__ import annotations

import numpy as np

SIGNAL_DTYPE = np.dtype([("seq", "<i8"), ("ts_ns", "<i8"), ("p_down", "<f8"), ("p_flat", "<f8"),
                         ("p_up", "<f8"), ("target", "<f8"), ("mid", "<f8"), ("bid", "<f8"), ("bid_sz", "<f8"),
                         ("ask", "<f8"), ("ask_sz", "<f8")])
FILL_DTYPE = np.dtype([("ts_ns", "<i8"), ("seq", "<i8"), ("side", "<i1"), ("qty", "<f8"), ("price", "<f8"),
                       ("fee", "<f8"), ("maker", "?"), ("mid", "<f8")])
TRIP_DTYPE = np.dtype([("open_ts", "<i8"), ("close_ts", "<i8"), ("side", "<i1"), ("pnl", "<f8")])
