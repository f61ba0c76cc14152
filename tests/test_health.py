"""What the live processes report about themselves: the broker gauge and the model-score counters."""
from __future__ import annotations


import numpy as np
import pytest

from streamsig.book.records import SIGNAL_DTYPE
from streamsig.models.outcomes import tally
from streamsig.live import health
from streamsig.live.broker import free_port
from streamsig.telemetry import REGISTRY


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_broker_watch_sets_down_for_a_closed_port() -> None:
    from streamsig.wire.health import BrokerWatch

    down = f"127.0.0.1:{free_port()}"
    watch = BrokerWatch(down, [], 1, "probe-test", timeout_s=2)
    assert value("streamsig_broker_up", role="probe-test", broker=down) == 1.0  # up until a poll fails
    await watch.check_once()
    await watch._reset_admin()
    assert value("streamsig_broker_up", role="probe-test", broker=down) == 0.0


def test_tallies_reach_the_counters_when_flushed() -> None:
    buf = health.TallyBuffer({"champion": "m-t1", "challenger": "m-t1+online"}, flush_s=3600)
    probs = np.array([[0.05, 0.15, 0.8], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1]])
    for _ in range(3):
        buf.add("ZZ", {"champion": tally(probs, np.array([2, 2, 1]))}, now=0.0)
    assert value("streamsig_labels_matured_total", symbol="ZZ", model="m-t1") == 0  # not yet flushed
    buf.flush()
    assert value("streamsig_labels_matured_total", symbol="ZZ", model="m-t1") == 9
    assert value("streamsig_label_hits_total", symbol="ZZ", model="m-t1") == 6
    # p_up 0.8 of row 0 (label up) -> bin 0.9, three times; p_flat 0.7 of row 2 (label flat) -> bin 0.8
    assert value("streamsig_calibration_predictions_total", model="m-t1", **{"class": "up", "bin": "0.9"}) == 3
    assert value("streamsig_calibration_outcomes_total", model="m-t1", **{"class": "up", "bin": "0.9"}) == 3
    assert value("streamsig_calibration_outcomes_total", model="m-t1", **{"class": "flat", "bin": "0.8"}) == 3
    assert value("streamsig_calibration_outcomes_total", model="m-t1", **{"class": "down", "bin": "0.7"}) == 0


def test_scores_are_sampled_at_most_once_per_interval() -> None:
    sig = np.zeros(100, SIGNAL_DTYPE)
    sig["p_down"], sig["p_flat"], sig["p_up"] = 0.25, 0.25, 0.5
    sig["p_up"][:10] = np.nan  # warm-up rows are skipped
    assert health.observe_scores("m-t2", "ZZ", sig, limit=16, every_s=1.0, now=10.0) == 15
    assert health.observe_scores("m-t2", "ZZ", sig, limit=16, every_s=1.0, now=10.5) == 0
    assert health.observe_scores("m-t2", "ZZ", sig, limit=16, every_s=1.0, now=11.0) == 15
    assert value("streamsig_signal_probability_count", model="m-t2", **{"class": "up"}) == 30
    assert value("streamsig_signal_probability_bucket", model="m-t2", **{"class": "up", "le": "0.4"}) == 0
    assert value("streamsig_signal_probability_bucket", model="m-t2", **{"class": "up", "le": "0.5"}) == 30


async def test_a_loss_is_reported_even_when_recreating_the_topics_failed_halfway(monkeypatch) -> None:
    """The marker topic may be recreated by a request that then fails; the next poll must still see the loss."""
    import streamsig.wire.topics as topics
    from streamsig.live.broker import EmbeddedBroker
    from streamsig.wire.health import BrokerWatch

    port = free_port()
    broker = EmbeddedBroker(port).start()
    seen: list[list[str]] = []
    try:
        watch = BrokerWatch(broker.bootstrap, ["halfway-a", "halfway-b"], 1, "halfway-test", prefix="halfway",
                            on_loss=seen.append, timeout_s=5)
        await topics.ensure_topics(broker.bootstrap, ["halfway-a", "halfway-b"], 1)
        await watch.check_once()  # marks the broker
        await watch._reset_admin()
        broker.stop()
        broker = EmbeddedBroker(port).start()  # memory storage: everything is gone
        real, calls = topics.ensure_topics, []

        async def fails_after_creating(*args, **kwargs):  # the topics are created, then the answer is lost
            calls.append(args[1])
            out = await real(*args, **kwargs)
            if len(calls) == 1:
                raise topics.TopicError("no answer within the timeout")
            return out

        monkeypatch.setattr(topics, "ensure_topics", fails_after_creating)
        await watch.check_once()
        assert watch.losses == 0 and not watch.outage.up  # failed: an outage, not yet a reported loss
        await watch.check_once()
        assert watch.losses == 1 and watch.outage.up
        assert seen == [["halfway-a", "halfway-b"]]  # what was missing when the loss was noticed
        await watch.check_once()
        assert watch.losses == 1  # reported once
    finally:
        await watch._reset_admin()
        broker.stop()


async def test_a_cancel_during_a_client_close_is_not_swallowed(kafka: str) -> None:
    """aiokafka's close suppresses CancelledError while it waits for its metadata task; the watch must not."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    from streamsig.wire.health import BrokerWatch

    for turns in range(12):  # cancel after 0..11 turns of the loop: some land inside aiokafka's close
        watch = BrokerWatch(kafka, [], 1, "close-test")
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
        await admin.start()
        watch._admin = admin
        task = asyncio.ensure_future(watch._reset_admin())
        for _ in range(turns):
            await asyncio.sleep(0)
        if task.done():
            continue
        task.cancel()
        await asyncio.wait({task})
        assert task.cancelled(), f"the cancel after {turns} turns was swallowed"


@pytest.mark.slow
async def test_a_cancelled_watch_stops_wherever_its_poll_was() -> None:
    """Cancelled at any point of its polls, the watch ends (it ran on, and a ``serve`` never exited).

    A broker holding a few hundred topics answers slowly enough that cancels
    land inside the watch's client calls, as on a busy deployment.
    """
    import asyncio
    import random

    from streamsig.live.broker import EmbeddedBroker
    from streamsig.wire.health import BrokerWatch
    from streamsig.wire.topics import ensure_topics

    broker = EmbeddedBroker(free_port()).start()
    try:
        for i in range(0, 200, 50):
            await ensure_topics(broker.bootstrap, [f"filler-{i + j}" for j in range(50)], 4)
        rng = random.Random(3)
        for k in range(20):
            watch = BrokerWatch(broker.bootstrap, [f"t{k}-signals", f"t{k}-pnl"], 4, "cancel-test", f"t{k}")
            task = asyncio.ensure_future(watch.run())
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=20)  # a hang, not a speed: a stop takes well under 1 s
            assert done and task.cancelled(), f"the watch cancelled in trial {k} ran on"
    finally:
        broker.stop()
