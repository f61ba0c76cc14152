"""Topic names and topic creation.

Create topics before anything produces to them: Tansu auto-creates an unknown
topic on the first metadata request with its own default partition count.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiokafka.admin import AIOKafkaAdminClient

BOOK_EVENTS = "book-events"
SIGNALS = "signals"
FILLS = "fills"
PNL = "pnl"
DEAD_LETTER = "dead-letter"
BASE_NAMES = (BOOK_EVENTS, SIGNALS, FILLS, PNL, DEAD_LETTER)

_TOPIC_ALREADY_EXISTS = 36  # Kafka error code
log = logging.getLogger(__name__)


async def closed(closing: Awaitable[Any], timeout_s: float | None = None) -> bool:
    """Await a Kafka client's ``close()`` or ``stop()`` without letting it swallow a cancel of the caller.

    aiokafka's client close awaits its metadata task under
    ``suppress(CancelledError)``: a cancel that reaches the caller then is lost,
    and a task that was told to stop runs on (a ``serve`` that never exits).
    Here the close runs as a task of its own: a cancel of the caller ends the
    wait and propagates while the close goes on. Returns whether the close
    finished within ``timeout_s`` (``None``: no limit); a close that failed is
    logged, not raised.
    """
    task = asyncio.ensure_future(closing)
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        return False
    if not task.cancelled() and task.exception() is not None:
        log.debug("closing a Kafka client failed: %s", task.exception())
    return True


class TopicError(RuntimeError):
    """Topic creation or inspection failed."""


def topic_name(base: str, prefix: str = "") -> str:
    """``base`` with an optional deployment prefix joined by ``-``.

    >>> topic_name("signals"), topic_name("signals", "paper")
    ('signals', 'paper-signals')
    """
    return f"{prefix}-{base}" if prefix else base


@dataclass(frozen=True)
class Topics:
    """The streamsig topic names for one deployment prefix.

    >>> Topics("x").book_events
    'x-book-events'
    >>> len(Topics().all())
    5
    """

    prefix: str = ""

    @property
    def book_events(self) -> str:
        return topic_name(BOOK_EVENTS, self.prefix)

    @property
    def signals(self) -> str:
        return topic_name(SIGNALS, self.prefix)

    @property
    def fills(self) -> str:
        return topic_name(FILLS, self.prefix)

    @property
    def pnl(self) -> str:
        return topic_name(PNL, self.prefix)

    @property
    def dead_letter(self) -> str:
        return topic_name(DEAD_LETTER, self.prefix)

    def all(self) -> tuple[str, ...]:
        """All five names, in pipeline order."""
        return tuple(topic_name(b, self.prefix) for b in BASE_NAMES)


async def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    replication: int = 1,
    *,
    timeout_s: float = 15.0,
) -> dict[str, int]:
    """Create the topics that do not exist yet; return each topic's partition count.

    Topics that already exist are left as they are (their partition count is
    reported, not changed). Raises :class:`TopicError` on any other error.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    if partitions < 1 or replication < 1:
        raise ValueError(f"partitions and replication must be >= 1, got {partitions}, {replication}")
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return {}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        resp = await admin.create_topics(
            [NewTopic(n, partitions, replication) for n in wanted], timeout_ms=int(timeout_s * 1000)
        )
        for err in resp.topic_errors:
            name, code = err[0], err[1]
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                msg = err[2] if len(err) > 2 else ""
                raise TopicError(f"cannot create topic {name!r}: Kafka error {code} {msg or ''}".strip())
        return await _partition_counts(admin, wanted)
    except asyncio.TimeoutError as exc:
        raise TopicError(f"no answer from Kafka at {bootstrap} within {timeout_s:g} s") from exc
    finally:
        await closed(admin.close())


async def partition_counts(bootstrap: str, names: Iterable[str]) -> dict[str, int]:
    """Partition count of each named topic; :class:`TopicError` if one is missing."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await _partition_counts(admin, list(names))
    finally:
        await closed(admin.close())


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    # Ask for all topics: naming them would auto-create missing ones (4 partitions on Tansu).
    described = {t["topic"]: t for t in await admin.describe_topics(None)}
    counts: dict[str, int] = {}
    for name in names:
        t = described.get(name)
        if t is None:
            raise TopicError(f"topic {name!r} does not exist")
        if t["error_code"]:
            raise TopicError(f"cannot describe topic {name!r}: Kafka error {t['error_code']}")
        counts[name] = len(t["partitions"])
    return counts
