"""Batches of what a Faust stream has waiting, without waiting for more.

``stream.take(n, within=t)`` hands over a batch only when ``n`` values have
arrived or a ``t`` timer fires, so every frame waits for the timer when the
stream is quiet (and the timer keeps the loop awake when it is idle).
:func:`ready_batches` hands over a batch as soon as the stream's queue runs
dry: a lone frame is never held. A batch takes what was already queued when
its first value arrived (so its first value waits only for values that were
ahead of it, never for later ones), and, while the partition of its last value
still has more at the broker than has been delivered (its offset is below the
consumer's high-water mark minus one) and the batch is younger than
``_BACKLOG_WAIT_S``, what arrives within a few turns of the event loop: behind
a backlog the batch grows (up to ``max_batch``) and amortises the per-batch
cost exactly when it matters.

Events are acknowledged only after the caller is done with their batch (the
caller's next step of the loop), as ``take`` does, so an offset commit never
covers a value that has not been processed. A value whose partition was
revoked while its batch was being gathered is dropped unacknowledged: its
partition's next owner reads it again. So is a batch of a topic the broker
lost (see :func:`streamsig.live.config.incarnation`).
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

_TURNS = 8  #: event-loop turns to wait for the next value of a backlog before handing the batch over
_BACKLOG_WAIT_S = 0.002  #: a batch stops waiting for a backlog's next value once it is this old


def _behind(consumer: Any, event: Any) -> bool:
    """Whether the broker holds more of ``event``'s partition than has been delivered."""
    if event is None:
        return False
    msg = event.message
    try:
        high = consumer.highwater(msg.tp)
    except Exception:  # noqa: BLE001 - no high-water mark known yet (or no consumer): do not wait
        return False
    return high is not None and msg.offset < high - 1


async def ready_batches(stream: Any, max_batch: int, events: bool = False) -> AsyncIterator[list[Any]]:
    """Yield lists of the values ``stream`` has waiting (1..``max_batch``), acking each batch after use.

    With ``events=True`` the lists hold the Faust events instead (``.value``,
    and ``.message`` with its partition and offset)."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    from streamsig.live.config import incarnation

    manual = stream.noack()
    queue = manual.channel.queue
    app = stream.app
    consumer = app.consumer
    clock = asyncio.get_running_loop().time
    values: list[Any] = []
    held: list[Any] = []
    target, started, inc = 1, 0.0, 0
    async for value in manual:
        if not values:
            target, started, inc = min(max_batch, 1 + queue.qsize()), clock(), incarnation(app)
        values.append(value)
        event = manual.current_event
        held.append(event)
        if len(values) < target:
            continue  # already waiting when the batch began
        if len(values) < max_batch and clock() - started < _BACKLOG_WAIT_S and _behind(consumer, event):
            for _ in range(_TURNS):
                await asyncio.sleep(0)
                if not queue.empty():
                    break
            if not queue.empty():
                target = min(max_batch, len(values) + queue.qsize())
                continue
        batch, values = values, []
        done, held = held, []
        if incarnation(app) != inc:
            continue  # events of topics the broker lost: dropped, unacknowledged
        if consumer is not None:
            assigned = consumer.assignment()
            keep = [e is None or e.message.tp in assigned for e in done]
            if not all(keep):
                batch = [v for v, k in zip(batch, keep) if k]
                done = [e for e, k in zip(done, keep) if k]
                if not done:
                    continue
        yield done if events else batch
        if incarnation(app) != inc:
            continue  # the topics were lost meanwhile: these offsets name nothing in the new ones
        for event in done:
            if event is not None:
                await manual.ack(event)
