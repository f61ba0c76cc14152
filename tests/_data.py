"""Where the real samples live (``../shared/data`` beside the checkout)."""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
LOBSTER = SHARED / "lobster"
CRYPTO = SHARED / "crypto" / "tardis_format"
AAPL10 = LOBSTER / "aapl_level10_first999_rows" / "AAPL_2012-06-21_34200000_57600000_message_10.csv"
AMZN5 = LOBSTER / "AMZN_2012-06-21_34200000_57600000_message_5.csv.gz"
BTC_SNAP = CRYPTO / "binance-futures_book_snapshot_10_2024-07-18_BTCUSDT.csv.gz"
BTC_INCR = CRYPTO / "binance-futures_incremental_book_L2_2024-07-18_BTCUSDT.csv.gz"


def need(path: Path) -> Path:
    """Skip the calling test with a reason when a real sample is absent (under ``CI=true``
    that skip fails the run: see ``tests/conftest.py``)."""
    if not path.exists():
        pytest.skip(f"real sample not available: {path}")
    return path
