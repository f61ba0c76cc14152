"""The long-running processes' heap: settled at startup and during warm-up, so a full collection is short."""
from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> str:
    """``code`` in a fresh interpreter (freezing this test process's heap would outlive the test)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          check=True, timeout=120).stdout.strip()


def test_settle_freezes_what_is_alive_and_leaves_later_objects_to_the_collector() -> None:
    out = run("""
        import gc
        from streamsig.heap import settle
        keep = [[i] for i in range(50_000)]
        settle()
        frozen = gc.get_freeze_count()
        later = [[i] for i in range(1_000)]
        print(frozen >= 50_000, gc.get_freeze_count() == frozen, len(gc.get_objects()) < 20_000)
    """)
    assert out == "True True True"


def test_settled_freezes_again_on_its_warm_up_schedule_and_returns_the_result() -> None:
    out = run("""
        import asyncio, gc
        from streamsig.heap import settled

        async def work():
            await asyncio.sleep(0.05)
            global made
            made = [[i] for i in range(30_000)]  # allocated during warm-up, alive for good
            n0 = gc.get_freeze_count()
            await asyncio.sleep(0.3)  # the second settle (at 0.2 s) freezes them
            return gc.get_freeze_count() - n0

        print(asyncio.run(settled(work(), warm_s=(0.2,))) >= 30_000)
    """)
    assert out == "True"
