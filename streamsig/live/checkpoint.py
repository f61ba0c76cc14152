"""Per-symbol checkpoints: a safe file format, a local folder cache and a broker topic.

Format (``FORMAT_VERSION`` 1), no pickle anywhere::

    b"SSCK" | u16 format version | u16 flags | u32 JSON length | JSON | body | sha256(all before)

The JSON holds the scalars (kind, symbol, version, the state's plain numbers
and strings) and a table of arrays (name, dtype, shape, offset, size) whose
raw bytes follow in ``body`` (zlib-compressed when flag 1 is set). Reading
checks the magic, the format version, the lengths and the sha256 before
anything is parsed, refuses object dtypes, and only ever builds dicts, lists,
numbers, strings, bytes and numpy arrays: a crafted file cannot run code.

A checkpoint's ``version`` grows by one each time its symbol's state changes
(and continues from the restored one), so the newest of a local file and the
broker's record is the one with the higher version.

:class:`LocalStore` writes files atomically (temp file, fsync, rename, fsync
of the folder) under collision-free names (a hash of the symbol's bytes).
:class:`BrokerStore` keeps the same bytes on a topic keyed by symbol and
co-partitioned with ``book-events``, so whichever worker owns a partition can
restore its symbols; it reads a partition up to a marker record it writes
itself (Tansu answers ListOffsets one batch short) and splits records above
the producer's request limit. Writers only publish a state that changed, at
most once per checkpoint interval.

Tansu never compacts, and has no DeleteRecords, so the broker copy is kept in
generations: the checkpoints of book-events partition ``p`` go to the
one-partition topic ``<base>.p<p>.g<n>`` (:func:`generation_topic`). Once
``rotate_bytes`` have been written to a generation (and at least four times
its symbols' latest checkpoints), its owner writes every symbol's latest
checkpoint to generation ``n + 1`` and then deletes the older ones, so each
partition's checkpoints stay below about ``rotate_bytes`` plus one full set.
A reader merges every generation it finds by version, so a crash between the
two steps loses nothing.

``STREAMSIG_CRASH_AT=<hook>:<n>`` (for testing only) makes this process
SIGKILL itself the n-th time it passes the named :func:`crash_point`.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import signal
import struct
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamsig.wire.topics import Topics, closed, topic_name

log = logging.getLogger(__name__)

MAGIC = b"SSCK"
FORMAT_VERSION = 1
_HEAD = struct.Struct(">4sHHI")
_FLAG_ZLIB = 1
_DIGEST = 32
MAX_RECORD_BYTES = 900_000  #: broker record chunk size, under the 1 MB producer request limit
_PART_MAGIC = b"SSCR"
_PART_HEAD = struct.Struct(">4sHHq32s")  # magic, part, parts, version, sha256 of the whole blob
_MARKER = b"SSMK"

CHECKPOINTS = "checkpoints"
TRADER_CHECKPOINTS = "trader-checkpoints"
SNAPSHOT_REQUESTS = "snapshot-requests"


def state_topics(topics: Topics) -> tuple[str, str, str]:
    """(worker checkpoints, trader checkpoints, snapshot requests) topic names under ``topics``' prefix.

    >>> state_topics(Topics("x"))
    ('x-checkpoints', 'x-trader-checkpoints', 'x-snapshot-requests')
    """
    return (topic_name(CHECKPOINTS, topics.prefix), topic_name(TRADER_CHECKPOINTS, topics.prefix),
            topic_name(SNAPSHOT_REQUESTS, topics.prefix))


class CheckpointError(ValueError):
    """A checkpoint is truncated, corrupt, of another format or for another symbol."""


# ---- crash hooks (testing) ---------------------------------------------------------------
_crash_counts: dict[str, int] = {}


def crash_point(name: str) -> None:
    """For testing: SIGKILL this process here on the n-th pass when ``STREAMSIG_CRASH_AT=name:n``.

    Hooks: ``file-write`` (half of a checkpoint file written), ``checkpoint-saved`` (state saved,
    offsets not yet committed), ``output-sent`` (output queued, broker ack not yet awaited),
    ``checkpoint-rotated`` (a new checkpoint generation written, the old one not yet deleted).
    """
    spec = os.environ.get("STREAMSIG_CRASH_AT")
    if not spec:
        return
    hook, _, n = spec.partition(":")
    if hook != name:
        return
    _crash_counts[name] = _crash_counts.get(name, 0) + 1
    if _crash_counts[name] == int(n or 1):
        log.warning("STREAMSIG_CRASH_AT=%s: killing this process", spec)
        os.kill(os.getpid(), signal.SIGKILL)


# ---- format ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Checkpoint:
    """One decoded checkpoint."""

    kind: str  #: "worker" or "trader"
    symbol: str
    version: int  #: grows by one per changed state
    state: dict[str, Any]


def _pack(obj: Any, arrays: list[tuple[str, np.ndarray]]) -> Any:
    if isinstance(obj, dict):
        return {str(k): _pack(v, arrays) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_pack(v, arrays) for v in obj]
    if isinstance(obj, (bytes, bytearray, memoryview)):
        arrays.append((f"a{len(arrays)}", np.frombuffer(bytes(obj), np.uint8)))
        return {"$bytes": arrays[-1][0]}
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError("object arrays cannot be checkpointed")
        arrays.append((f"a{len(arrays)}", np.ascontiguousarray(obj)))
        return {"$array": arrays[-1][0]}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__}")


def _unpack(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, dict):
        if len(obj) == 1 and ("$bytes" in obj or "$array" in obj):
            key, name = next(iter(obj.items()))
            if name not in arrays:
                raise CheckpointError(f"checkpoint refers to a missing array {name!r}")
            a = arrays[name]
            return a.tobytes() if key == "$bytes" else a
        return {k: _unpack(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unpack(v, arrays) for v in obj]
    return obj


def _dtype_json(dt: np.dtype) -> Any:
    return dt.descr if dt.names else dt.str


def _dtype_from_json(d: Any) -> np.dtype:
    try:
        if isinstance(d, str):
            dt = np.dtype(d)
        elif isinstance(d, list):
            fields = []
            for f in d:
                if not (isinstance(f, list) and len(f) in (2, 3) and isinstance(f[0], str)):
                    raise CheckpointError(f"bad dtype field {f!r}")
                sub = _dtype_from_json(f[1])
                fields.append((f[0], sub) if len(f) == 2 else (f[0], sub, tuple(int(x) for x in f[2])))
            dt = np.dtype(fields)
        else:
            raise CheckpointError(f"bad dtype {d!r}")
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"bad dtype {d!r}: {exc}") from None
    if dt.hasobject:
        raise CheckpointError("object dtypes are refused")
    return dt


def encode_checkpoint(kind: str, symbol: str, version: int, state: dict[str, Any],
                      compress: bool = True) -> bytes:
    """The checkpoint bytes of ``state`` (nested dicts/lists of numbers, strings, bytes and arrays)."""
    arrays: list[tuple[str, np.ndarray]] = []
    packed = _pack(state, arrays)
    table, parts, off = [], [], 0
    for name, a in arrays:
        b = a.tobytes()
        table.append({"name": name, "dtype": _dtype_json(a.dtype), "shape": list(a.shape),
                      "offset": off, "nbytes": len(b)})
        parts.append(b)
        off += len(b)
    head = {"kind": kind, "symbol": symbol, "version": int(version), "state": packed, "arrays": table}
    js = json.dumps(head, separators=(",", ":"), allow_nan=True).encode("utf-8")
    body = b"".join(parts)
    flags = 0
    if compress:
        body, flags = zlib.compress(body, 1), _FLAG_ZLIB
    out = _HEAD.pack(MAGIC, FORMAT_VERSION, flags, len(js)) + js + body
    return out + hashlib.sha256(out).digest()


def decode_checkpoint(blob: bytes, symbol: str | None = None, kind: str | None = None) -> Checkpoint:
    """Parse and verify checkpoint bytes; :class:`CheckpointError` if anything is wrong."""
    if len(blob) < _HEAD.size + _DIGEST:
        raise CheckpointError(f"checkpoint truncated ({len(blob)} bytes)")
    data, digest = blob[:-_DIGEST], blob[-_DIGEST:]
    if hashlib.sha256(data).digest() != digest:
        raise CheckpointError("checkpoint checksum mismatch (truncated or corrupt)")
    magic, ver, flags, jlen = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise CheckpointError("not a streamsig checkpoint")
    if ver != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint format {ver} is not supported (expected {FORMAT_VERSION})")
    if _HEAD.size + jlen > len(data):
        raise CheckpointError("checkpoint header runs past the end")
    try:
        head = json.loads(data[_HEAD.size:_HEAD.size + jlen].decode("utf-8"))
        body = data[_HEAD.size + jlen:]
        if flags & _FLAG_ZLIB:
            body = zlib.decompress(body)
        arrays: dict[str, np.ndarray] = {}
        for t in head["arrays"]:
            dt = _dtype_from_json(t["dtype"])
            shape = tuple(int(x) for x in t["shape"])
            off, n = int(t["offset"]), int(t["nbytes"])
            if off < 0 or n < 0 or off + n > len(body) or n != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
                raise CheckpointError(f"array {t['name']!r} does not fit the body")
            arrays[str(t["name"])] = np.frombuffer(body, dt, count=n // dt.itemsize if dt.itemsize else 0,
                                                   offset=off).reshape(shape).copy()
        ck = Checkpoint(str(head["kind"]), str(head["symbol"]), int(head["version"]),
                        _unpack(head["state"], arrays))
    except CheckpointError:
        raise
    except (ValueError, KeyError, TypeError, zlib.error, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint unreadable: {type(exc).__name__}: {exc}") from None
    if symbol is not None and ck.symbol != symbol:
        raise CheckpointError(f"checkpoint is for symbol {ck.symbol!r}, not {symbol!r}")
    if kind is not None and ck.kind != kind:
        raise CheckpointError(f"checkpoint is a {ck.kind!r} checkpoint, not {kind!r}")
    return ck


def state_digest(state: dict[str, Any]) -> bytes:
    """A digest of a state's content (what "unchanged" is compared on)."""
    return hashlib.sha256(encode_checkpoint("", "", 0, state, compress=False)).digest()


# ---- files -------------------------------------------------------------------------------
def default_state_dir(kind: str) -> Path:
    """``$XDG_DATA_HOME/streamsig/<kind>`` (default ``~/.local/share/streamsig/<kind>``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "streamsig" / kind


def _temp_path(path: Path, pid: int | None = None) -> Path:
    """The file :func:`atomic_write` writes ``path`` through: ``.<name>.<writer's pid>.tmp``
    (the writer is this process unless ``pid`` says otherwise)."""
    return path.with_name(f".{path.name}.{os.getpid() if pid is None else pid}.tmp")


def _temp_writer(tmp: Path) -> int | None:
    """The writer's pid in a name made by :func:`_temp_path`, None if it is not such a name."""
    parts = tmp.name.split(".")
    if len(parts) < 4 or parts[0] or parts[-1] != "tmp" or not parts[-2].isdigit():
        return None
    return int(parts[-2])


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old or the new file."""
    tmp = _temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        half = len(data) // 2
        os.write(fd, data[:half])
        crash_point("file-write")
        view = memoryview(data)[half:]
        while len(view):
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def symbol_file(symbol: str) -> str:
    """A file name for ``symbol``: a hash of its UTF-8 bytes (no two symbols share one).

    >>> symbol_file("A/B") != symbol_file("A_B") != symbol_file("a\\0b")
    True
    """
    return hashlib.sha256(symbol.encode("utf-8", "surrogatepass")).hexdigest()[:40] + ".ckpt"


def _writer_alive(tmp: Path) -> bool:
    """Whether the process that named ``tmp`` (see :func:`_temp_path`) is alive and not this one."""
    pid = _temp_writer(tmp)
    if pid is None or pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


class LocalStore:
    """Checkpoints of one kind in a folder, one file per symbol (a cache of the broker's)."""

    def __init__(self, folder: str | Path, kind: str) -> None:
        self.folder, self.kind = Path(folder), kind
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob(".*.tmp"):  # left by a crash during a write
            if not _writer_alive(stale):  # another live process may be writing it right now
                stale.unlink(missing_ok=True)

    def path(self, symbol: str) -> Path:
        return self.folder / symbol_file(symbol)

    def load(self, symbol: str) -> Checkpoint | None:
        """The symbol's checkpoint, None if there is none; :class:`CheckpointError` if it is damaged."""
        p = self.path(symbol)
        try:
            blob = p.read_bytes()
        except FileNotFoundError:
            return None
        return decode_checkpoint(blob, symbol, self.kind)

    def save(self, symbol: str, blob: bytes) -> None:
        atomic_write(self.path(symbol), blob)


class Versions:
    """Per-symbol checkpoint versions and the digest of the last state written (skip unchanged)."""

    def __init__(self) -> None:
        self.version: dict[str, int] = {}
        self._digest: dict[str, bytes] = {}

    def restored(self, symbol: str, ck: Checkpoint | None, extra: tuple[str, ...] = ()) -> None:
        """Continue from ``ck``; ``extra`` names the keys written beside the content (not compared)."""
        self.version[symbol] = ck.version if ck is not None else 0
        self._digest.pop(symbol, None)
        if ck is not None:
            self._digest[symbol] = state_digest({k: v for k, v in ck.state.items() if k not in extra})

    def forget(self, symbol: str) -> None:
        self.version.pop(symbol, None)
        self._digest.pop(symbol, None)

    def next(self, symbol: str, content: dict[str, Any]) -> tuple[int, bytes] | None:
        """(version, digest) to write for ``content``, or None when it equals the last one written."""
        d = state_digest(content)
        if self._digest.get(symbol) == d:
            return None
        return self.version.get(symbol, 0) + 1, d

    def written(self, symbol: str, version: int, digest: bytes) -> None:
        """Record that ``version`` (with content ``digest``) is saved."""
        self.version[symbol], self._digest[symbol] = version, digest


# ---- broker ------------------------------------------------------------------------------
def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as aiokafka and Faust use) picks for ``key``."""
    from aiokafka.partitioner import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions


def split_record(blob: bytes, version: int, limit: int = MAX_RECORD_BYTES) -> list[bytes]:
    """``blob`` as one or more topic records, each under ``limit`` bytes."""
    digest = hashlib.sha256(blob).digest()
    chunks = [blob[i:i + limit] for i in range(0, len(blob), limit)] or [b""]
    return [_PART_HEAD.pack(_PART_MAGIC, i, len(chunks), version, digest) + c for i, c in enumerate(chunks)]


class _Assembler:
    """Reassembles split records; keeps the newest complete blob per key."""

    def __init__(self) -> None:
        self.parts: dict[bytes, tuple[int, bytes, dict[int, bytes], int]] = {}
        self.latest: dict[bytes, tuple[int, bytes]] = {}

    def add(self, key: bytes, value: bytes) -> None:
        if len(value) < _PART_HEAD.size or not value.startswith(_PART_MAGIC):
            return
        _, part, parts, version, digest = _PART_HEAD.unpack_from(value)
        cur = self.parts.get(key)
        if cur is None or cur[0] != version or cur[1] != digest:
            cur = (version, digest, {}, parts)
            self.parts[key] = cur
        cur[2][part] = value[_PART_HEAD.size:]
        if len(cur[2]) == cur[3]:
            blob = b"".join(cur[2][i] for i in range(cur[3]))
            del self.parts[key]
            if hashlib.sha256(blob).digest() != digest:
                log.error("checkpoint record of %r fails its checksum", key)
                return
            old = self.latest.get(key)
            if old is None or version >= old[0]:
                self.latest[key] = (version, blob)


def generation_topic(base: str, partition: int, generation: int) -> str:
    """The one-partition topic holding generation ``generation`` of ``partition``'s checkpoints.

    >>> generation_topic("x-checkpoints", 3, 0)
    'x-checkpoints.p3.g0'
    """
    return f"{base}.p{partition}.g{generation}"


def _generations(names: Iterable[str], base: str, partition: int) -> list[int]:
    """Generation numbers of ``partition`` among topic ``names``, ascending.

    >>> _generations(["b.p1.g2", "b.p1.g0", "b.p10.g5", "b.p1.gx", "c.p1.g9"], "b", 1)
    [0, 2]
    """
    head = f"{base}.p{partition}.g"
    return sorted(int(n[len(head):]) for n in names if n.startswith(head) and n[len(head):].isdigit())


ROTATE_BYTES = 64 * 1024 * 1024  #: bytes written to one partition's checkpoint generation before it rotates


class BrokerStore:
    """Checkpoints on the broker, keyed by symbol, in generations per book-events partition.

    Also reads back output topics (signals, fills, P&L) to find what was already
    published. Start it on the event loop that uses it. A partition must be
    loaded (:meth:`load_partition`) before its symbols are published.
    """

    def __init__(self, bootstrap: str, topic: str, partitions: int, idle_s: float = 0.4,
                 rotate_bytes: int = ROTATE_BYTES) -> None:
        self.bootstrap, self.topic, self.partitions, self.idle_s = bootstrap, topic, partitions, idle_s
        self.rotate_bytes = rotate_bytes
        self._producer: Any = None
        self._admin: Any = None
        self._gen: dict[int, int] = {}  # partition -> generation written now
        self._written: dict[int, int] = {}  # partition -> bytes in that generation
        self._latest: dict[int, dict[bytes, tuple[int, bytes]]] = {}  # partition -> key -> (version, blob)
        self.rotations = 0

    async def start(self, extra_topics: Iterable[str] = (), co_partitioned: Iterable[str] = ()) -> None:
        """Create the topics if needed and connect; ``co_partitioned`` topics must have as many partitions."""
        from aiokafka.admin import AIOKafkaAdminClient

        from streamsig.wire.topics import ensure_topics, partition_counts

        extra = list(extra_topics)
        if extra:
            await ensure_topics(self.bootstrap, extra, self.partitions)
        others = list(co_partitioned)
        counts = await partition_counts(self.bootstrap, others) if others else {}
        for name in others:
            if counts[name] != self.partitions:
                raise RuntimeError(f"{name} has {counts[name]} partitions, not {self.partitions}: state keyed by "
                                   "symbol must be co-partitioned with book-events")
        self._producer = await self._new_producer()
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await self._admin.start()

    async def _new_producer(self) -> Any:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks=1, enable_idempotence=False,
                                    max_request_size=1_000_000, linger_ms=0)
        await producer.start()
        return producer

    async def stop(self) -> None:
        if self._producer is not None:
            await closed(self._producer.stop())
            self._producer = None
        if self._admin is not None:
            await closed(self._admin.close())
            self._admin = None

    async def send(self, topic: str, key: bytes, value: bytes, partition: int | None = None) -> Any:
        """Send one record and wait for the broker's acknowledgement (retried, then raised)."""
        for attempt in range(4):
            try:
                return await self._producer.send_and_wait(topic, value, key=key, partition=partition)
            except Exception as exc:  # noqa: BLE001 - any failure: retry, then raise
                if attempt == 3:
                    raise
                log.warning("send to %s failed (%s); retrying", topic, exc)
                await asyncio.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _write(self, topic: str, key: bytes, version: int, blob: bytes) -> None:
        recs = split_record(blob, version)
        futs = [await self._producer.send(topic, rec, key=key, partition=0) for rec in recs]
        try:
            await asyncio.gather(*futs)
        except Exception:  # noqa: BLE001 - retry the whole record once, acknowledged
            for rec in recs:
                await self.send(topic, key, rec, 0)

    async def publish(self, symbol: str, version: int, blob: bytes) -> None:
        """Write one checkpoint (split if needed) and wait until the broker has all of it."""
        key = symbol.encode("utf-8", "surrogatepass")
        p = partition_for(key, self.partitions)
        if p not in self._gen:
            raise RuntimeError(f"partition {p} of {self.topic} was not loaded before publishing {symbol!r}")
        await self._write(generation_topic(self.topic, p, self._gen[p]), key, version, blob)
        self._latest[p][key] = (version, blob)
        self._written[p] += len(blob)

    async def rotate_if_due(self) -> int:
        """Rotate every loaded partition whose generation is full; return how many rotated."""
        n = 0
        for p in list(self._gen):
            live = sum(len(b) for _, b in self._latest[p].values())
            if self._written[p] >= max(self.rotate_bytes, 4 * live):
                await self.rotate(p)
                n += 1
        return n

    async def rotate(self, partition: int) -> None:
        """Write ``partition``'s latest checkpoints to a new generation, then delete the older ones."""
        from aiokafka.admin import NewTopic

        p, old = partition, self._gen[partition]
        new = old + 1
        topic = generation_topic(self.topic, p, new)
        await self._admin.create_topics([NewTopic(topic, 1, 1)])
        for key, (version, blob) in sorted(self._latest[p].items()):
            await self._write(topic, key, version, blob)
        crash_point("checkpoint-rotated")
        self._gen[p], self._written[p] = new, sum(len(b) for _, b in self._latest[p].values())
        existing = await self._admin.list_topics()
        stale = [generation_topic(self.topic, p, g) for g in _generations(existing, self.topic, p) if g < new]
        if stale:
            # a client that has written to a topic names it in its metadata requests, and Tansu
            # creates the topics a metadata request names: only a producer that never wrote to
            # the old generations may live on
            old_producer, self._producer = self._producer, await self._new_producer()
            await closed(old_producer.stop())
            await self._admin.delete_topics(stale)
        self.rotations += 1
        log.info("checkpoints of %s partition %d rotated to generation %d (%d symbols)", self.topic, p, new,
                 len(self._latest[p]))

    def forget(self) -> None:
        """Stop tracking every partition (they were revoked; their next owners load them again)."""
        self._gen.clear()
        self._written.clear()
        self._latest.clear()

    async def load_partition(self, partition: int) -> dict[str, bytes]:
        """The newest complete checkpoint blob of each symbol on ``partition``, over all its generations.

        Each generation is read up to a marker record written to it first.
        """
        from aiokafka.admin import NewTopic

        p = partition
        gens = _generations(await self._admin.list_topics(), self.topic, p)
        if not gens:
            gens = [0]
            await self._admin.create_topics([NewTopic(generation_topic(self.topic, p, 0), 1, 1)])
        asm = _Assembler()
        written = 0
        for g in gens:
            topic = generation_topic(self.topic, p, g)
            token = _MARKER + uuid.uuid4().bytes
            await self.send(topic, b"", token, 0)
            seen = False

            def on(key: bytes | None, value: bytes | None, token: bytes = token) -> bool:
                nonlocal seen, written
                if value == token:
                    seen = True
                    return True
                if key and value:
                    asm.add(key, value)
                    written += len(value) if g == gens[-1] else 0
                return False

            await read_partition(self.bootstrap, topic, 0, 0, on, idle_s=None,
                                 resend=lambda topic=topic, token=token: self.send(topic, b"", token, 0))
            if not seen:
                raise RuntimeError(f"marker not found on {topic}")
        self._gen[p], self._written[p] = gens[-1], written
        self._latest[p] = dict(asm.latest)
        return {k.decode("utf-8", "surrogatepass"): blob for k, (_, blob) in asm.latest.items()}

    async def read_tail(self, topic: str, partition: int, start: int,
                        on: Callable[[bytes | None, bytes | None], bool | None]) -> None:
        """Read ``topic[partition]`` from ``start`` until idle (nobody else writes it now)."""
        await read_partition(self.bootstrap, topic, partition, max(0, start), on, idle_s=self.idle_s)


async def read_partition(bootstrap: str, topic: str, partition: int, start: int,
                         on: Callable[[bytes | None, bytes | None], bool | None],
                         idle_s: float | None, timeout_s: float = 60.0,
                         resend: Callable[[], Awaitable[Any]] | None = None, quiet_s: float = 1.0) -> None:
    """Feed ``on(key, value)`` the records of one partition from ``start``.

    Stops when ``on`` returns True (a marker), or, with ``idle_s``, once the end
    is reached and nothing more arrived for ``idle_s`` seconds. The end is the high
    watermark of the last fetch answer (Tansu's ListOffsets answers one batch short,
    and a broker that came back without its data answers for the new partition): a
    position above it means the broker lost the partition, and it is read again
    from 0. With no ``idle_s``, ``resend`` writes the marker again whenever the end is
    reached and nothing came for ``quiet_s`` (one written before a loss is gone).
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    tp = TopicPartition(topic, partition)
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                         fetch_max_wait_ms=50, max_partition_fetch_bytes=4 * 1024 * 1024)
    await c.start()
    try:
        c.assign([tp])
        c.seek(tp, start)
        deadline = time.monotonic() + timeout_s
        wait = quiet_s if idle_s is None else idle_s
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            got = await c.getmany(tp, timeout_ms=100, max_records=5000)
            recs = got.get(tp, [])
            for r in recs:
                if on(r.key, r.value):
                    return
            now = time.monotonic()
            if recs or quiet_since is None:
                quiet_since = None if recs else now
                continue
            if now - quiet_since < wait:
                continue
            quiet_since = now
            end, pos = c.highwater(tp), await c.position(tp)
            if end is None:
                continue  # no fetch answer yet
            if pos > end:
                log.warning("%s[%d] ends at %d, below %d: the broker lost it; reading it from 0",
                            topic, partition, end, pos)
                c.seek(tp, 0)
            elif pos < end:
                continue
            elif idle_s is not None:
                return
            if resend is not None:
                await resend()
        raise TimeoutError(f"reading {topic}[{partition}] from offset {start} did not finish within {timeout_s:g} s "
                           f"(position {await c.position(tp)}, end {c.highwater(tp)})")
    finally:
        await closed(c.stop())


async def save_changed(kind: str, contents: Iterable[tuple[str, dict[str, Any]]],
                       extra: Callable[[str], dict[str, Any]], versions: Versions, local: LocalStore | None,
                       store: BrokerStore) -> int:
    """Checkpoint each ``(symbol, content)`` whose content changed: local cache, then the broker, acknowledged.

    ``extra(symbol)`` adds fields that do not count as a change (output offsets, the time).
    ``contents`` and ``extra`` are read (and copied: :func:`frozen`) at once, on the event loop;
    comparing, encoding and the local files then run in a thread while the loop goes on. Rotates
    the broker's checkpoint generations when due; returns how many were written.
    """
    items = [(sym, frozen(content), extra(sym)) for sym, content in contents]
    encoded = await asyncio.to_thread(_encode_changed, kind, items, versions, local)
    await asyncio.gather(*(store.publish(sym, version, blob) for sym, version, _, blob in encoded))
    for sym, version, digest, _ in encoded:
        versions.written(sym, version, digest)
    await store.rotate_if_due()  # bounds the checkpoint topics, which the broker never compacts
    return len(encoded)


def _encode_changed(kind: str, items: list[tuple[str, dict[str, Any], dict[str, Any]]], versions: Versions,
                    local: LocalStore | None) -> list[tuple[str, int, bytes, bytes]]:
    """(symbol, version, digest, checkpoint bytes) of each changed item, written to ``local`` first."""
    out = []
    for sym, content, more in items:
        nv = versions.next(sym, content)
        if nv is None:
            continue
        version, digest = nv
        blob = encode_checkpoint(kind, sym, version, dict(content, **more))
        if local is not None:
            local.save(sym, blob)
        out.append((sym, version, digest, blob))
    return out


def frozen(obj: Any) -> Any:
    """A copy of a checkpoint content that later changes to the original do not reach (arrays copied)."""
    if isinstance(obj, dict):
        return {k: frozen(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [frozen(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    return obj


async def request_snapshot(store: BrokerStore, topic: str, symbol: str, after_seq: int, reason: str) -> None:
    """Ask the producer for a book snapshot of ``symbol`` (see :mod:`streamsig.live.producer`)."""
    body = {"type": "snapshot-request", "symbol": symbol, "after_seq": int(after_seq), "reason": reason,
            "ts_ns": time.time_ns()}
    await store.send(topic, symbol.encode("utf-8", "surrogatepass"), json.dumps(body).encode())
