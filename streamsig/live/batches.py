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
import collections
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


class DirectFeed:
    """One topic's messages handed from the consumer's fetch loop to one agent, a fetched batch at a time.

    Faust delivers every message through its conductor, a channel, an event
    and a stream: tens of microseconds per message, which at one message per
    book frame is most of a worker's time (docs/latency.md). A topic with a
    feed (:func:`direct_feed`) skips all of that: the fetch loop
    (``streamsig.live.config._Consumer._drain_messages``) puts what it fetched
    of the topic here, and the agent takes it with :meth:`batches`. The topic
    stays an agent's topic, so Faust subscribes, assigns, seeks and commits it
    as before; acknowledgements go straight to the consumer. While a batch is
    in use, :attr:`fetched_ns` holds, per message of it, when its fetch came
    back to the fetch loop (the stage ``produce_to_fetch`` ends there).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit  #: messages held before the fetch loop waits for the agent
        self.epoch = 0  #: grows with every :meth:`clear`; what was fetched before one is dropped
        self._lists: collections.deque[tuple[int, list[Any], list[int]]] = collections.deque()
        self.fetched_ns: list[int] = []  #: per message of the batch in use: its fetch's return (ns)
        self._held = 0
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    async def put(self, messages: list[Any], inc: int, epoch: int, fetched_ns: int) -> None:
        """From the fetch loop: messages fetched under incarnation ``inc`` and feed ``epoch``, their fetch
        back at ``fetched_ns``; waits while the feed is full."""
        while self._held >= self.limit and epoch == self.epoch:
            self._room.clear()
            await self._room.wait()
        if epoch != self.epoch:
            return  # cleared since they were fetched
        self._lists.append((inc, messages, [fetched_ns] * len(messages)))
        self._held += len(messages)
        self._ready.set()

    def clear(self) -> None:
        """Drop what is held, unacknowledged (on a rebalance: Faust seeks to the committed offsets and
        fetches it again)."""
        self.epoch += 1
        self._lists.clear()
        self._held = 0
        self._room.set()

    async def batches(self, app: Any, max_batch: int) -> AsyncIterator[list[Any]]:
        """Yield lists of the messages waiting (1..``max_batch``, never waiting for more), acking each batch
        after use; messages of partitions no longer assigned, or of topics the broker lost, are dropped.
        A batch during whose use the feed was cleared is not acked (Faust has forgotten the revoked
        partitions' acks by then, and an ack would book messages the caller skipped)."""
        from streamsig.live.config import incarnation

        consumer = app.consumer
        while True:
            while not self._lists:
                self._ready.clear()
                await self._ready.wait()
            inc, batch, fetched = self._lists.popleft()
            while self._lists and self._lists[0][0] == inc and len(batch) < max_batch:
                _, more, at = self._lists.popleft()
                batch, fetched = batch + more, fetched + at
            if len(batch) > max_batch:
                self._lists.appendleft((inc, batch[max_batch:], fetched[max_batch:]))
                batch, fetched = batch[:max_batch], fetched[:max_batch]
            self._held -= len(batch)
            self._room.set()
            if incarnation(app) != inc:
                continue  # messages of topics the broker lost: dropped, unacknowledged
            assigned = consumer.assignment()
            if any(m.tp not in assigned for m in batch):
                kept = [i for i, m in enumerate(batch) if m.tp in assigned]
                batch, fetched = [batch[i] for i in kept], [fetched[i] for i in kept]
            if not batch:
                continue
            epoch = self.epoch
            self.fetched_ns = fetched
            yield batch
            if incarnation(app) != inc:
                continue  # the topics were lost meanwhile: these offsets name nothing in the new ones
            if self.epoch != epoch:
                continue  # a rebalance came meanwhile: what the caller left out is read again, not acked
            for m in batch:
                consumer.ack(m)


def direct_feed(app: Any, topic: str, limit: int = 4096) -> DirectFeed:
    """Route ``topic``'s messages past Faust's streams to a new :class:`DirectFeed` (before the app starts)."""
    feeds = getattr(app, "streamsig_direct", None)
    if feeds is None:
        feeds = app.streamsig_direct = {}
    if topic in feeds:
        raise ValueError(f"topic {topic!r} already has a direct feed")
    feeds[topic] = DirectFeed(limit)
    return feeds[topic]
