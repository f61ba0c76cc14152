"""Shared fixtures.

``kafka`` is the bootstrap ``"host:port"`` of one broker for the whole test
session: ``STREAMSIG_KAFKA`` when set, else an embedded Tansu started on first
use and stopped at the end. The broker is shared, so each test takes its
topic names and consumer group from ``unique_prefix`` (or ``stream_config``).
"""
from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from streamsig.live.config import StreamConfig


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """Bootstrap servers of the session's broker (embedded Tansu unless STREAMSIG_KAFKA is set)."""
    from streamsig.live.broker import resolve_kafka

    bootstrap, broker = resolve_kafka(os.environ.get("STREAMSIG_KAFKA"))
    try:
        yield bootstrap
    finally:
        if broker is not None:
            broker.stop()


@pytest.fixture
def unique_prefix(request: pytest.FixtureRequest) -> str:
    """A short prefix (for topics and Faust app ids) that no other test uses."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:24]
    return f"t-{name}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def stream_config(kafka: str, unique_prefix: str, tmp_path: Path) -> "StreamConfig":
    """A StreamConfig on the session broker with test-only names and a quick group join."""
    from streamsig.live.config import StreamConfig

    return StreamConfig(
        bootstrap=kafka,
        app_id=unique_prefix,
        topic_prefix=unique_prefix,
        partitions=3,
        session_timeout_s=3.0,  # Tansu answers a join after half of this
        heartbeat_s=0.5,
        datadir=str(tmp_path),
    )
