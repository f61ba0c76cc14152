"""Batches of what a Faust stream has waiting, without waiting for more.

``stream.take(n, within=t)`` hands over a batch only when ``n`` values have
arrived or a ``t`` timer fires, so every frame waits for the timer when the
stream is quiet (and the timer keeps the loop awake when it is idle).
:func:`ready_batches` hands over a batch as soon as the stream's queue runs
dry: one value when traffic is light, up to ``max_batch`` when a backlog has
built up, so the batch size follows the load and a lone frame is never held.

Events are acknowledged only after the caller is done with their batch (the
caller's next step of the loop), as ``take`` does, so an offset commit never
covers a value that has not been processed.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any


async def ready_batches(stream: Any, max_batch: int) -> AsyncIterator[list[Any]]:
    """Yield lists of the values ``stream`` has queued (1..``max_batch``), acking each batch after use."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    manual = stream.noack()
    queue = manual.channel.queue
    values: list[Any] = []
    events: list[Any] = []
    async for value in manual:
        values.append(value)
        events.append(manual.current_event)
        if len(values) < max_batch and not queue.empty():
            continue
        batch, values = values, []
        yield batch
        done, events = events, []
        for event in done:
            if event is not None:
                await manual.ack(event)
