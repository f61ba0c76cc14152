"""The garbage collector in long-running processes: no full collection over the startup heap.

CPython's full (generation 2) collection walks every object the collector
tracks. After its imports a worker tracks about 130,000 (Faust, aiokafka,
numpy, onnxruntime), and one full collection then takes 85-165 ms on a
2-core machine: the event loop stands still and every message behind it
waits. :func:`settle` collects once and moves whatever is still alive into
the permanent generation (``gc.freeze``), so later collections walk only what
was allocated since; :func:`settle_after` does it again once the first
batches have compiled their kernels and opened their sessions (a few times
in the first 30 s). Reference counting frees everything as before; only
cycles among frozen objects are never collected, and the frozen set is taken
only at startup and during warm-up, so it does not grow with the run.

The long-running commands (``worker``, ``trade``, ``serve``, ``produce``,
``demo``) call these; a library caller keeps its own collector settings.
"""
from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Sequence
from typing import TypeVar

T = TypeVar("T")

#: seconds after startup at which the heap is settled again: what the first batches allocate for
#: good (compiled kernels, sessions, per-symbol state) is frozen before a full collection walks it
WARM_S = (1.0, 3.0, 10.0, 30.0)


def settle(full: bool = True) -> None:
    """Collect (all generations, or only the young ones), then freeze every object alive now."""
    gc.collect() if full else gc.collect(1)
    gc.freeze()


async def settle_after(seconds: Sequence[float] = WARM_S) -> None:
    """At each of ``seconds`` after the call, settle the heap again (a young collection only: no long pause)."""
    t0 = time.monotonic()
    for at in seconds:
        await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
        settle(full=False)


async def settle_later() -> None:
    """:func:`settle_after` at :data:`WARM_S` (a task without arguments, as Faust's ``app.task`` takes)."""
    await settle_after()


async def settled(aw: Awaitable[T], warm_s: Sequence[float] = WARM_S) -> T:
    """Await ``aw`` with the heap settled now and again at each of ``warm_s`` seconds."""
    settle()
    warm = asyncio.ensure_future(settle_after(warm_s))
    try:
        return await aw
    finally:
        warm.cancel()
