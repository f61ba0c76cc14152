"""Batches of what a Faust stream has waiting, without waiting for more.

``stream.take(n, within=t)`` hands over a batch only when ``n`` values have
arrived or a ``t`` timer fires, so every frame waits for the timer when the
stream is quiet (and the timer keeps the loop awake when it is idle).
:func:`ready_batches` hands over a batch as soon as the stream's queue runs
dry and the partition of its last value has nothing more at the broker (its
offset is the last one below the consumer's high-water mark): a lone frame is
never held. Behind a backlog Faust delivers values one at a time, so the queue
alone would always look dry; there the batch keeps growing (up to
``max_batch``) for as long as the next value arrives within a few turns of the
event loop, which amortises the per-batch cost exactly when it matters.

Events are acknowledged only after the caller is done with their batch (the
caller's next step of the loop), as ``take`` does, so an offset commit never
covers a value that has not been processed.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

_TURNS = 8  #: event-loop turns to wait for the next value of a backlog before handing the batch over


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


async def ready_batches(stream: Any, max_batch: int) -> AsyncIterator[list[Any]]:
    """Yield lists of the values ``stream`` has waiting (1..``max_batch``), acking each batch after use."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    manual = stream.noack()
    queue = manual.channel.queue
    consumer = stream.app.consumer
    values: list[Any] = []
    events: list[Any] = []
    async for value in manual:
        values.append(value)
        event = manual.current_event
        events.append(event)
        if len(values) < max_batch:
            if not queue.empty():
                continue
            if _behind(consumer, event):
                for _ in range(_TURNS):
                    await asyncio.sleep(0)
                    if not queue.empty():
                        break
                if not queue.empty():
                    continue
        batch, values = values, []
        yield batch
        done, events = events, []
        for event in done:
            if event is not None:
                await manual.ack(event)
