"""Crypto L2 readers in one import (they live in :mod:`~streamsig.book.snapshots`,
:mod:`~streamsig.book.incremental` and :mod:`~streamsig.book.trades`)."""
from __future__ import annotations

from streamsig.book.incremental import IncrementalReader
from streamsig.book.instrument import infer_tick
from streamsig.book.snapshots import KAGGLE_1S, KAGGLE_LEVELS, TARDIS_BOOK_SNAPSHOT, SnapshotColumns, SnapshotReader, detect_layout
from streamsig.book.trades import TradesReader, merge_events

__all__ = ["IncrementalReader", "infer_tick", "KAGGLE_1S", "KAGGLE_LEVELS", "TARDIS_BOOK_SNAPSHOT", "SnapshotColumns",
           "SnapshotReader", "detect_layout", "TradesReader", "merge_events"]
