"""Broker health as every process sees it: outages, capped backoff, quiet logs, lost topics.

:class:`Outage` is the state one process keeps about its broker: up or down,
the next retry delay (capped exponential), one log line per outage and per
``log_every_s`` while it lasts, and the ``streamsig_broker_up`` gauge and
``streamsig_broker_outages_total`` counter (label ``role``; the gauge also
``broker``, the bootstrap servers).

:class:`BrokerWatch` polls the broker's topic list (listing all topics, so
that nothing is auto-created by asking). Beside the topics it owns a marker
topic, ``<prefix>-streamsig-alive-<role>`` on first use (one per role, so that
the first process to notice a loss does not hide it from the others by
recreating a shared marker): a broker that comes back
without it has lost its topics and offsets (the embedded broker keeps nothing
across a restart). The watch then recreates the topics, counts
``streamsig_broker_data_losses_total``, logs it and calls ``on_loss``
(the worker dead-letters one record per symbol it holds, or gave up at a
rebalance since ``last_ok``, the last poll that found the topics).

:func:`quiet_client_logs` keeps Kafka client libraries from logging the same
error many times a second during an outage.

>>> o = Outage("test", base_s=0.1, cap_s=1.0)
>>> [round(o.failed(OSError("down")), 2) for _ in range(6)]
[0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
>>> o.up, o.recovered(), o.up
(False, True, True)
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from streamsig import telemetry as M
from streamsig.wire.topics import closed

log = logging.getLogger(__name__)

MARKER = "streamsig-alive"


class Outage:
    """One process's view of its broker (see module doc)."""

    def __init__(self, role: str, base_s: float = 0.2, cap_s: float = 5.0, log_every_s: float = 30.0,
                 broker: str = "") -> None:
        self.role, self.base_s, self.cap_s, self.log_every_s = role, base_s, cap_s, log_every_s
        self._up = M.BROKER_UP.labels(role, broker)
        M.BROKER_OUTAGES.labels(role)  # the series exists (at 0) before the first outage
        self.up = True
        self.since = 0.0
        self._delay = 0.0
        self._logged = 0.0
        self._failures = 0
        self._up.set(1)

    def failed(self, exc: BaseException) -> float:
        """Record a failed attempt; return how long to wait before the next one."""
        now = time.monotonic()
        self._failures += 1
        if self.up:
            self.up, self.since, self._logged = False, now, now
            self._up.set(0)
            M.BROKER_OUTAGES.labels(self.role).inc()
            log.error("%s: Kafka broker unreachable (%s: %s); retrying with backoff up to %g s",
                      self.role, type(exc).__name__, exc, self.cap_s)
        elif now - self._logged >= self.log_every_s:
            self._logged = now
            log.error("%s: Kafka broker still unreachable after %.0f s (%d attempts)", self.role,
                      now - self.since, self._failures)
        self._delay = min(self.cap_s, self._delay * 2 if self._delay else self.base_s)
        return self._delay

    def recovered(self) -> bool:
        """Record a successful attempt; True if it ended an outage."""
        self._delay, self._failures = 0.0, 0
        if self.up:
            return False
        self.up = True
        self._up.set(1)
        log.warning("%s: Kafka broker reachable again after %.1f s", self.role, time.monotonic() - self.since)
        return True


class BrokerWatch:
    """Poll the broker every ``interval_s``; report outages and recreate lost topics (see module doc)."""

    def __init__(self, bootstrap: str, topics: Sequence[str], partitions: int, role: str, prefix: str = "",
                 interval_s: float = 1.0, timeout_s: float = 10.0,
                 on_loss: Callable[[list[str]], Awaitable[None] | None] | None = None) -> None:
        self.bootstrap, self.topics, self.partitions = bootstrap, list(topics), partitions
        self.marker = f"{prefix}-{MARKER}-{role}" if prefix else f"{MARKER}-{role}"
        self.interval_s, self.on_loss = interval_s, on_loss
        self.timeout_s = timeout_s  #: a slower answer counts as an outage (a loaded host answers late)
        self.outage = Outage(role, broker=bootstrap)
        M.BROKER_DATA_LOSSES.labels(role)
        self.losses = 0
        self.last_ok = 0.0  #: ``time.monotonic()`` of the last poll that found the broker with its topics
        self._admin: Any = None
        self._marked = False
        self._lost: list[str] | None = None  #: topics missing at a loss noticed and not yet handled

    async def _topic_names(self) -> set[str]:
        from aiokafka.admin import AIOKafkaAdminClient

        if self._admin is None:
            # kept before it has started: a failed or cancelled start leaves connections open, and
            # _reset_admin (after any failed poll, and when the watch ends) closes it like any other
            self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap,
                                              request_timeout_ms=int(self.timeout_s * 1000))
            await asyncio.wait_for(self._admin.start(), self.timeout_s)
        return {t["topic"] for t in await asyncio.wait_for(self._admin.describe_topics(None), self.timeout_s)}

    async def _reset_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            await closed(admin.close(), 2.0)  # a dead connection may not close cleanly: not waited for long

    async def check_once(self) -> float:
        """One poll; returns the delay before the next."""
        from streamsig.wire.topics import ensure_topics

        try:
            names = await self._topic_names()
            if not self._marked:
                await ensure_topics(self.bootstrap, [self.marker], 1)
                self._marked = True
                names.add(self.marker)
            if self.marker not in names and self._lost is None:
                # noticed: kept until handled, since recreating the marker below may succeed while the
                # rest fails, and the next poll would then find the marker and never see the loss
                self._lost = [t for t in self.topics if t not in names]
            if self._lost is not None:
                await ensure_topics(self.bootstrap, [*self.topics, self.marker], self.partitions)
                missing, self._lost = self._lost, None
                self.losses += 1
                M.BROKER_DATA_LOSSES.labels(self.outage.role).inc()
                log.error("%s: the broker lost its topics and offsets; recreated %s; data published "
                          "before the loss and not yet consumed is gone", self.outage.role,
                          ", ".join(missing) or "(auto-created by clients already)")
                if self.on_loss is not None:
                    res = self.on_loss(missing)
                    if inspect.isawaitable(res):
                        await res
        except Exception as exc:  # noqa: BLE001 - any failure is an outage, the watch goes on
            await self._reset_admin()
            return self.outage.failed(exc)
        self.last_ok = time.monotonic()
        self.outage.recovered()
        return self.interval_s

    async def run(self) -> None:
        """Poll until cancelled."""
        me = asyncio.current_task()
        try:
            while True:
                delay = await self.check_once()
                if me is not None and me.cancelling():  # a cancel some client call swallowed
                    raise asyncio.CancelledError
                await asyncio.sleep(delay)
        finally:
            await self._reset_admin()


class _Once(logging.Filter):
    """Let a logger's message through once per ``every_s`` (by template); count the rest."""

    def __init__(self, every_s: float) -> None:
        super().__init__()
        self.every_s = every_s
        self._last: dict[tuple[str, str], float] = {}
        self._dropped: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(CLIENT_PREFIXES):
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        if now - self._last.get(key, -1e18) < self.every_s:
            self._dropped[key] = self._dropped.get(key, 0) + 1
            return False
        self._last[key] = now
        n = self._dropped.pop(key, 0)
        if n:
            record.msg = f"{record.msg} [{n} like it suppressed in the last {self.every_s:g} s]"
        if len(self._last) > 1000:
            self._last.clear()
        return True


_QUIET = _Once(10.0)
#: loggers quietened; asyncio logs every failed fire-and-forget send ("exception was never retrieved")
CLIENT_PREFIXES = ("aiokafka", "faust", "mode", "kafka", "asyncio")


def quiet_client_logs(every_s: float = 10.0) -> None:
    """Limit the Kafka client libraries' warnings and errors to one per message template per ``every_s``.

    The filter goes on every logger of those libraries that exists now (import
    them first) and on the root logger's handlers; calling again is harmless.
    """
    _QUIET.every_s = every_s
    names = [n for n in list(logging.Logger.manager.loggerDict) if n.startswith(CLIENT_PREFIXES)]
    for name in [*CLIENT_PREFIXES, *names]:
        lg = logging.getLogger(name)
        if _QUIET not in lg.filters:
            lg.addFilter(_QUIET)
    for h in logging.getLogger().handlers:
        if _QUIET not in h.filters:
            h.addFilter(_QUIET)
