"""Checkpoint topics stay bounded: generations per partition, rotated and deleted, safe under kill -9 (real broker)."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamsig.live.checkpoint import BrokerStore, _generations, decode_checkpoint, encode_checkpoint, partition_for

ROOT = Path(__file__).resolve().parents[1]
SYMS = ["AAA", "BBB", "CCC", "DDD"]
PARTS = 2


def blob(sym: str, version: int) -> bytes:
    """A checkpoint of about 20 kB whose content tells its version."""
    return encode_checkpoint("worker", sym, version, {"seq": version, "pad": os.urandom(20_000)})


async def topic_sizes(bootstrap: str, base: str) -> dict[str, int]:
    """Bytes of record values in every generation topic under ``base`` (read to a marker)."""
    from aiokafka.admin import AIOKafkaAdminClient

    from tests.test_stream_restart import read_all

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [n for n in await admin.list_topics() if n.startswith(base + ".p")]
    finally:
        await admin.close()
    return {n: sum(len(v or b"") for _, v in await read_all(bootstrap, n, idle_s=0.5)) for n in names}


async def load_all(bootstrap: str, base: str) -> dict[str, int]:
    """Each symbol's restored version, as a new owner of every partition sees it."""
    store = BrokerStore(bootstrap, base, PARTS)
    await store.start()
    try:
        out = {}
        for p in range(PARTS):
            for sym, b in (await store.load_partition(p)).items():
                out[sym] = decode_checkpoint(b, sym, "worker").version
        return out
    finally:
        await store.stop()


async def test_generations_rotate_and_the_topics_stay_bounded(kafka: str, unique_prefix: str) -> None:
    base = f"{unique_prefix}-checkpoints"
    store = BrokerStore(kafka, base, PARTS, rotate_bytes=200_000)
    await store.start()
    try:
        for p in range(PARTS):
            assert await store.load_partition(p) == {}
        for version in range(1, 41):  # 40 rounds x 4 symbols x 20 kB = 3.2 MB written
            for sym in SYMS:
                await store.publish(sym, version, blob(sym, version))
            await store.rotate_if_due()
    finally:
        await store.stop()
    assert store.rotations >= 2 * PARTS
    sizes = await topic_sizes(kafka, base)
    by_part = {p: [n for n in sizes if n.startswith(f"{base}.p{p}.")] for p in range(PARTS)}
    assert all(len(v) == 1 for v in by_part.values()), sizes  # the old generations were deleted
    assert max(sizes.values()) < 200_000 + 4 * 21_000, sizes  # one generation's limit plus one full set
    assert await load_all(kafka, base) == {s: 40 for s in SYMS}


CRASHER = """
import asyncio, os, sys
sys.path.insert(0, sys.argv[1])
from tests.test_checkpoint_rotation import SYMS, PARTS, blob
from streamsig.live.checkpoint import BrokerStore

async def main(bootstrap, base):
    store = BrokerStore(bootstrap, base, PARTS, rotate_bytes=150_000)
    await store.start()
    for p in range(PARTS):
        await store.load_partition(p)
    for version in range(1, 100):
        for sym in SYMS:
            await store.publish(sym, version, blob(sym, version))
        print(version, flush=True)
        await store.rotate_if_due()

asyncio.run(main(sys.argv[2], sys.argv[3]))
"""


@pytest.mark.slow
async def test_a_kill_9_between_writing_a_generation_and_deleting_the_old_one_loses_nothing(
        kafka: str, unique_prefix: str) -> None:
    base = f"{unique_prefix}-checkpoints"
    env = dict(os.environ, STREAMSIG_CRASH_AT="checkpoint-rotated:2")
    proc = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", CRASHER, str(ROOT), kafka, base],
                                   env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    last = int(proc.stdout.split()[-1])  # the round whose rotation was killed
    names = list(await topic_sizes(kafka, base))
    # the killed rotation left two generations of one partition
    assert any(len(_generations(names, base, p)) == 2 for p in range(PARTS)), names
    assert await load_all(kafka, base) == {s: last for s in SYMS}
    # the next owner goes on from the newer generation and its next rotation removes both old ones
    store = BrokerStore(kafka, base, PARTS, rotate_bytes=150_000)
    await store.start()
    try:
        for p in range(PARTS):
            await store.load_partition(p)
        for version in range(last + 1, last + 21):
            for sym in SYMS:
                await store.publish(sym, version, blob(sym, version))
            await store.rotate_if_due()
    finally:
        await store.stop()
    names = list(await topic_sizes(kafka, base))
    assert all(len(_generations(names, base, p)) == 1 for p in range(PARTS)), names
    assert await load_all(kafka, base) == {s: last + 20 for s in SYMS}
    assert {partition_for(s.encode(), PARTS) for s in SYMS} == set(range(PARTS))  # both partitions exercised
