"""Stream settings, the Faust app built from them, and worker start/stop helpers.

Defaults suit the embedded Tansu broker: a 6 s session timeout (Tansu answers
a group join only after half of it), 1 s heartbeats, at-least-once
processing (Tansu has no idempotent or transactional producer), in-memory
tables, and a short consumer fetch wait (Tansu holds an empty fetch for half
of its max wait and is not woken by new data; Faust hard-codes 1500 ms).
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, NoReturn

import faust
from faust.transport import consumer as _faust_consumer
from faust.transport.drivers import aiokafka as _faust_kafka

from streamsig.config import Config
from streamsig.wire.frames import max_events_for
from streamsig.wire.topics import Topics

_MAX_REQUEST_BYTES = 1_000_000  # Faust's default producer_max_request_size
#: most bytes one published message value may have under the default request limit
#: (:attr:`StreamConfig.payload_limit` for the configured one)
PAYLOAD_LIMIT = _MAX_REQUEST_BYTES - 4096
_YIELD_EVERY = 100  # messages the fetch loop delivers between turns of the event loop
#: GIL switch interval for processes running a Faust app. Faust's Kafka consumer runs in its own
#: thread; with Python's default 5 ms the event loop, coming back from each poll, can wait that long
#: for the consumer thread to let go of the GIL, once per message (docs/latency.md).
SWITCH_INTERVAL_S = 0.0002


@dataclass(frozen=True)
class StreamConfig(Config):
    """Everything the Kafka side needs; the defaults suit the embedded broker.

    Loaded like every config (:class:`~streamsig.config.Config`); each field
    can be set by a ``STREAMSIG_<FIELD>`` variable (the bootstrap comes from
    ``--kafka`` / ``STREAMSIG_KAFKA``):

    >>> StreamConfig.from_env({"STREAMSIG_PARTITIONS": "8"}, bootstrap="h:1").partitions
    8
    """

    bootstrap: str = "127.0.0.1:9092"  #: "host:port[,host:port...]"
    app_id: str = "streamsig"  #: Faust app id = consumer group id
    topic_prefix: str = ""
    partitions: int = 4
    replication: int = 1
    session_timeout_s: float = 6.0
    heartbeat_s: float = 1.0
    fetch_max_wait_ms: int = 20  #: Tansu adds up to half of it per hop when idle; shorter overloads it (docs/latency.md)
    commit_interval_s: float = 1.0
    frame_size: int = 500  #: max events per frame
    frame_delay_ms: float = 5.0  #: max time an event waits in a producer's framer
    web_port: int | None = None  #: Faust web server port; None disables it
    datadir: str | None = None  #: Faust data directory; None = a folder under the temp dir
    checkpoint_rotate_bytes: int = 64 * 1024 * 1024  #: bytes of a partition's checkpoint topic before it rotates
    max_message_bytes: int = _MAX_REQUEST_BYTES  #: producer request limit; no published message exceeds it
    seq_window: int = 1_000_000  #: largest forward sequence jump a frame may make (else SEQUENCE_JUMP)
    max_symbols: int = 512  #: most symbols one worker or trader holds (the rest: UNKNOWN_SYMBOL)
    allow_symbols: str = ""  #: comma-separated allow-list of symbols; empty allows any

    @property
    def allowed_symbols(self) -> tuple[str, ...]:
        """:attr:`allow_symbols` as a tuple (empty: any symbol)."""
        return tuple(s.strip() for s in self.allow_symbols.split(",") if s.strip())

    @property
    def payload_limit(self) -> int:
        """Most bytes a message value may have, leaving room for the key and record overhead."""
        return self.max_message_bytes - 4096

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_s < self.session_timeout_s:
            raise ValueError(
                f"need 0 < heartbeat_s < session_timeout_s, got {self.heartbeat_s}, {self.session_timeout_s}"
            )
        if self.partitions < 1 or self.replication < 1:
            raise ValueError("partitions and replication must be >= 1")
        if self.max_message_bytes < 64 * 1024:
            raise ValueError(f"max_message_bytes must be >= 65536, got {self.max_message_bytes}")
        if self.seq_window < 1 or self.max_symbols < 1:
            raise ValueError("seq_window and max_symbols must be >= 1")
        limit = max_events_for(self.payload_limit)
        if not 1 <= self.frame_size <= limit:
            raise ValueError(f"frame_size must be 1..{limit}, got {self.frame_size}")
        if self.checkpoint_rotate_bytes < 1:
            raise ValueError(f"checkpoint_rotate_bytes must be >= 1, got {self.checkpoint_rotate_bytes}")
        if self.fetch_max_wait_ms < 1:
            raise ValueError("fetch_max_wait_ms must be >= 1")

    @property
    def topics(self) -> Topics:
        """Topic names under this config's prefix."""
        return Topics(self.topic_prefix)

    @property
    def frame_delay_ns(self) -> int:
        """:attr:`frame_delay_ms` in nanoseconds, for :class:`~streamsig.wire.frames.Framer`."""
        return int(self.frame_delay_ms * 1_000_000)

    def replace(self, **changes: Any) -> "StreamConfig":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def broker_urls(bootstrap: str) -> list[str]:
    """Faust broker URLs for a bootstrap list.

    >>> broker_urls("a:1, kafka://b:2")
    ['kafka://a:1', 'kafka://b:2']
    """
    hosts = [h.strip().removeprefix("kafka://") for h in bootstrap.split(",") if h.strip()]
    return [f"kafka://{h}" for h in hosts]


def faust_settings(cfg: StreamConfig) -> dict[str, Any]:
    """Keyword arguments for ``faust.App(cfg.app_id, **faust_settings(cfg))``."""
    datadir = cfg.datadir or os.path.join(tempfile.gettempdir(), f"streamsig-faust-{cfg.app_id}")
    return {
        "broker": broker_urls(cfg.bootstrap),
        "processing_guarantee": "at_least_once",
        "broker_session_timeout": cfg.session_timeout_s,
        "broker_heartbeat_interval": cfg.heartbeat_s,
        "broker_commit_interval": cfg.commit_interval_s,
        "store": "memory://",
        "table_standby_replicas": 0,
        "topic_partitions": cfg.partitions,
        "topic_replication_factor": cfg.replication,
        "consumer_auto_offset_reset": "earliest",
        "web_enabled": cfg.web_port is not None,
        "web_port": cfg.web_port or 6066,
        "web_bind": "127.0.0.1",
        "datadir": datadir,
        "producer_max_request_size": cfg.max_message_bytes,
        # A rebalance clears the agents' queues and would then wait for every event already taken to
        # be acknowledged; a batch that took some values and waits for the next one (which the clear
        # removed) never is, and the rebalance would hang. The apps do not need that wait: they commit
        # only from their own revocation handlers, after their state is saved, and what was taken but
        # not processed is not acknowledged, so the next owner reads it again.
        "stream_wait_empty": False,
    }


class _ConsumerThread(_faust_kafka.AIOKafkaConsumerThread):
    """Faust's consumer thread with the app's ``fetch_max_wait_ms`` instead of 1500 ms."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(self.consumer.app, "fetch_max_wait_ms", None)
        if wait is not None:
            if not hasattr(consumer, "_fetch_max_wait_ms"):
                raise RuntimeError("aiokafka changed: AIOKafkaConsumer has no _fetch_max_wait_ms")
            consumer._fetch_max_wait_ms = int(wait)
        return consumer


_OVERRIDDEN = ("_drain_messages", "_add_gap", "getmany", "_commit_offsets", "_filter_committable_offsets",
               "_should_commit")
if not all(hasattr(_faust_consumer.Consumer, a) for a in _OVERRIDDEN):
    raise RuntimeError(f"faust changed: Consumer no longer has all of {_OVERRIDDEN}, which streamsig relies on")


class _Consumer(_faust_kafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def seek_to_committed(self) -> Any:
        """Seek every assigned partition to its committed offset, and those without one to the beginning.

        aiokafka leaves a partition with no committed offset where its fetch
        position happens to be. Faust seeks to the committed offsets after a
        rebalance, and whenever it dropped fetched records because the flow was
        suspended; a partition nobody has committed yet (a new topic, or one the
        broker recreated after losing it) kept the position after the dropped
        records, and those were never delivered. ``auto_offset_reset`` is
        "earliest": no committed offset means from the beginning. So does an
        offset committed for a topic the broker lost (see
        :func:`reread_from_start`) until this consumer has committed one itself.
        """
        committed = dict(await super().seek_to_committed())
        rewind = getattr(self.app, "streamsig_rewind", {})
        fresh = [tp for tp, off in committed.items()
                 if not off or tp.partition not in rewind.get(tp.topic, (tp.partition,))]
        if fresh:
            await self._thread.seek_to_beginning(*fresh)
        # Faust takes what this returns as the offsets read and committed: a void offset left in it
        # would make the fetch loop skip every record below it as already delivered
        committed.update({tp: None for tp in fresh})
        return committed

    async def _commit(self, offsets: Any) -> bool:
        """Commit; a partition of a lost topic trusts its committed offset again once it committed itself.

        A commit still on its way when the loss was noticed carries offsets of the lost topics: it
        does not count as this consumer's own (see :func:`reread_from_start`)."""
        inc = incarnation(self.app)
        done = await super()._commit(offsets)
        rewind = getattr(self.app, "streamsig_rewind", None)
        if incarnation(self.app) != inc:
            return False
        if done and rewind:
            for tp in offsets:
                if tp.topic in rewind:
                    rewind[tp.topic].add(tp.partition)
        return done

    def committable(self) -> dict[Any, int]:
        """The offsets a commit would store now, per assigned partition (what was acknowledged, gaps and all)."""
        return self._filter_committable_offsets(self.assignment())

    async def commit_offsets(self, offsets: dict[Any, int]) -> bool:
        """Commit ``offsets`` taken earlier by :meth:`committable`, except those not ahead of what is committed.

        Processing may have gone on since they were taken: this commits what a
        checkpoint saved, not what was acknowledged meanwhile."""
        offsets = {tp: off for tp, off in offsets.items() if self._should_commit(tp, off)}
        return bool(offsets) and await self._commit_offsets(offsets)

    async def _commit_offsets(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        """Faust's commit, which books the offsets as committed after it returns, also when the loss of
        the topics was noticed meanwhile: those offsets are taken out of the book again."""
        inc = incarnation(self.app)
        done = await super()._commit_offsets(offsets, start_new_transaction=start_new_transaction)
        if incarnation(self.app) != inc:
            for tp in offsets:
                self._committed_offset.pop(tp, None)
            return False
        return done

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - runs inside Faust
        """Faust's fetch loop, handing each fetched message straight to the conductor.

        Faust wraps every message's delivery in a pair of tasks (to give up when
        the flow is suspended for a rebalance), which costs several event-loop
        turns per message and makes it deliver a backlog one message at a time.
        Here a fetched batch is delivered in one go (yielding every
        ``_YIELD_EVERY`` messages), the suspension is checked before each
        message, and read offsets, gaps and ``broker_commit_every`` are kept as
        Faust keeps them. Messages of a topic with a direct feed
        (:func:`streamsig.live.batches.direct_feed`) go to it instead, a list
        per fetched batch.
        """
        deliver, read = self.callback, self._read_offset
        direct = getattr(self.app, "streamsig_direct", {})
        acks_on = self.app.topics.acks_enabled_for
        stopping = (self._stopped.is_set, fetcher._stopped.is_set)
        suspended = self.suspend_flow.is_set
        n = 0
        try:
            while not any(f() for f in stopping):
                self.diag.set_flag(_faust_consumer.CONSUMER_FETCHING)
                batch = self.getmany(timeout=1.0)
                await asyncio.sleep(0)
                if self.should_stop:
                    break
                inc = None
                fetched = 0
                fed: dict[Any, tuple[int, list]] = {}  # direct feed -> (its epoch, messages for it)
                async for tp, message in batch:
                    if inc is None:  # the records have just come back from the consumer thread
                        inc = incarnation(self.app)
                        fetched = time.time_ns()
                    if suspended() or incarnation(self.app) != inc:
                        break  # a rebalance, or the topics were lost (and sought to 0) meanwhile
                    last = read[tp]
                    if last is not None and message.offset < last:
                        continue  # already delivered (a fetch overlapping a seek)
                    if last and message.offset - last > 1 and acks_on(message.topic):
                        await self._add_gap(tp, last + 1, message.offset)
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    feed = direct.get(message.topic)
                    if feed is not None:
                        fed.setdefault(feed, (feed.epoch, []))[1].append(message)
                        read[tp] = message.offset
                        continue
                    await deliver(message)
                    read[tp] = message.offset
                    n += 1
                    if n % _YIELD_EVERY == 0:
                        await asyncio.sleep(0)
                for feed, (epoch, messages) in fed.items():
                    await feed.put(messages, inc, epoch, fetched)
                self.diag.unset_flag(_faust_consumer.CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise
        except asyncio.CancelledError:
            if not self.transport.app.should_stop:
                raise
        finally:
            self.diag.unset_flag(_faust_consumer.CONSUMER_FETCHING)


def incarnation(app: Any) -> int:
    """How many times :func:`reread_from_start` ran on ``app``.

    An event fetched under an older count comes from a topic the broker lost:
    its offset means nothing in the recreated topic, so it must neither be
    acknowledged nor move an offset watermark."""
    return getattr(app, "streamsig_incarnation", 0)


async def reread_from_start(app: Any) -> None:
    """After the broker lost its topics: forget the offsets read and fetch every assigned partition from 0.

    The recreated topics number their messages from 0 again, so the fetch loop would skip them as
    already delivered, and it may have done so for some before the loss was noticed; reading again
    from the start delivers those (the consumers are idempotent by sequence). Events of the lost
    topics still on their way (in the fetch loop, the streams' queues or a batch being gathered) are
    dropped: their offsets would otherwise be acknowledged, committed and sought to in the new topics,
    skipping as many of their messages (see :func:`incarnation`)."""
    consumer = app.consumer
    tps = sorted(consumer.assignment())
    thread = getattr(consumer, "_thread", None)
    if thread is not None:  # in the consumer's thread, ordered with its fetches: what it returns later is new
        aio = thread._ensure_consumer()
        await thread.call_thread(lambda: [aio.seek(tp, 0) for tp in tps if tp in aio.assignment()])
        topics = set(aio.subscription() or ()) | {tp.topic for tp in tps}
    else:
        for tp in tps:
            await consumer.seek(tp, 0)
        topics = {tp.topic for tp in tps}
    # no await from here on: the fetch loop sees the new count and the cleared books together
    # offsets committed to the recreated topics before the loss was noticed (a rebalance commits
    # what was acknowledged) are void: each partition starts from 0 until it is committed anew
    app.streamsig_rewind = {t: set() for t in topics}
    app.streamsig_incarnation = incarnation(app) + 1
    app.flow_control.clear()  # what the streams hold but have not taken yet
    # Faust's per-partition bookkeeping of read, acknowledged and committed offsets describes the
    # lost topics; left as it is, the next commit would store an old, higher offset for the new ones
    for name in ("_read_offset", "_acked", "_acked_index", "_committed_offset", "_gap"):
        book = getattr(consumer, name, None)
        if book is not None:
            book.clear()


class _Transport(_faust_kafka.Transport):
    Consumer = _Consumer


class StreamApp(faust.App):
    """``faust.App`` whose Kafka consumer uses :attr:`fetch_max_wait_ms`."""

    fetch_max_wait_ms: int | None = None

    def on_init_dependencies(self) -> Any:
        """Faust's services, without its Monitor among the per-event sensors.

        The Monitor keeps per-event statistics for Faust's web views (off here;
        streamsig exports its own metrics) at four sensor calls per message.
        The object stays, for the few places that call it directly.
        """
        deps = super().on_init_dependencies()
        if self.monitor in set(self.sensors):
            self.sensors.remove(self.monitor)
        return deps

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)


def make_app(cfg: StreamConfig, **overrides: Any) -> StreamApp:
    """A Faust app for ``cfg``; ``overrides`` replace individual Faust settings.

    Lowers this process's GIL switch interval to :data:`SWITCH_INTERVAL_S` (never raises it).
    """
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
    app = StreamApp(cfg.app_id, **{**faust_settings(cfg), **overrides})
    app.fetch_max_wait_ms = cfg.fetch_max_wait_ms
    return app


def raw_topic(app: faust.App, name: str, **kwargs: Any) -> faust.TopicT:
    """A topic whose keys and values are plain bytes (frames, JSON records)."""
    return app.topic(
        name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw", **kwargs
    )


def run_worker(app: faust.App, loglevel: str = "info", **worker_kwargs: Any) -> NoReturn:
    """Run ``app`` in a Faust worker until SIGINT/SIGTERM, then raise ``SystemExit``.

    For CLI commands: owns a fresh event loop, installs signal handlers,
    stops agents and commits offsets on shutdown. ``print`` in agents goes to
    stdout unchanged (Faust would otherwise log it as warnings).
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    worker_kwargs.setdefault("redirect_stdouts", False)
    worker = faust.Worker(app, loglevel=loglevel, loop=loop, **worker_kwargs)
    worker.execute_from_commandline()


@contextlib.asynccontextmanager
async def running(app: faust.App, ready_timeout_s: float = 30.0) -> AsyncIterator[faust.App]:
    """Start ``app`` on the current event loop, wait until partitions are assigned, stop on exit.

    For tests and embedding: no signal handlers, no ``SystemExit``. An app
    object can be started once; build a new one for each run.
    """
    ready = asyncio.Event()

    async def _on_ready() -> None:
        ready.set()

    app.on_startup_finished = _on_ready
    try:
        await asyncio.wait_for(_start_and_wait(app, ready), ready_timeout_s)
    except asyncio.TimeoutError:
        await app.stop()
        raise TimeoutError(f"Faust app {app.conf.id!r} not ready within {ready_timeout_s:g} s") from None
    except BaseException:
        await app.stop()
        raise
    try:
        yield app
    finally:
        await app.stop()


async def _start_and_wait(app: faust.App, ready: asyncio.Event) -> None:
    await app.start()
    await ready.wait()


def stream_config(bootstrap: str, prefix: str = "", partitions: int = 4, app_id: str = "streamsig",
                  **kw: Any) -> StreamConfig:
    """StreamConfig from CLI values (already resolved: CLI value > ``STREAMSIG_*`` > default);
    ``STREAMSIG_*`` variables fill the fields the CLI does not set."""
    return StreamConfig.from_env(bootstrap=bootstrap, topic_prefix=prefix, partitions=partitions, app_id=app_id,
                                 **kw)
