"""Shared fixtures.

``kafka`` is the bootstrap ``"host:port"`` of one broker for the whole test
session: ``STREAMSIG_KAFKA`` when set, else an embedded Tansu started on first
use and stopped at the end. The broker is shared, so each test takes its
topic names and consumer group from ``unique_prefix`` (or ``stream_config``).

With ``CI=true`` a test may not skip for want of something CI provides: the
Prometheus or Chromium binary, the samples in ``../shared/data``, or an extra
``scripts/test.sh`` installs (torch, hftbacktest). Such a skip is reported as a
failure (:data:`CI_REQUIRED` matches the skip reasons), so a broken install
cannot pass as a green run.
"""
from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

#: skip reasons that mean a missing piece of the CI environment, not an optional one
CI_REQUIRED = re.compile(r"prometheus|chromium|shared[/ ]data|shared crypto|real (data|sample)"
                         r"|sample absent|slice absent|torch not installed|hftbacktest", re.IGNORECASE)

if TYPE_CHECKING:
    from streamsig.live.config import StreamConfig


def in_ci() -> bool:
    """True when the ``CI`` environment variable says so (``true``, ``1`` or ``yes``)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    rep = report.longrepr
    reason = rep[2] if isinstance(rep, tuple) and len(rep) == 3 else str(rep)
    return reason.removeprefix("Skipped: ")


def _required_skip(report: pytest.TestReport | pytest.CollectReport) -> str | None:
    if not (report.skipped and in_ci()) or hasattr(report, "wasxfail"):
        return None
    reason = _skip_reason(report)
    return reason if CI_REQUIRED.search(reason) else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Under CI, turn a skip for a missing CI requirement into a failure."""
    outcome = yield
    report = outcome.get_result()
    reason = _required_skip(report)
    if reason is not None:
        report.outcome = "failed"
        report.longrepr = f"CI=true, so this test may not skip: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """Under CI, remember modules skipped at import for a missing CI requirement."""
    outcome = yield
    reason = _required_skip(outcome.get_result())
    if reason is not None:
        collector.config.stash.setdefault(_SKIPPED_MODULES, []).append(f"{collector.nodeid}: {reason}")


_SKIPPED_MODULES = pytest.StashKey[list]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    """List the modules that skipped under CI for a missing requirement."""
    for line in config.stash.get(_SKIPPED_MODULES, []):
        terminalreporter.write_line(f"FAILED (CI=true, module may not skip) {line}", red=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a module skipped under CI for a missing requirement."""
    if session.config.stash.get(_SKIPPED_MODULES, []) and exitstatus in (0, 5):  # 5: nothing collected
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """Bootstrap servers of the session's broker (embedded Tansu unless STREAMSIG_KAFKA is set)."""
    from streamsig.live.broker import resolve_kafka

    bootstrap, broker = resolve_kafka(os.environ.get("STREAMSIG_KAFKA"))
    try:
        yield bootstrap
    finally:
        if broker is not None:
            broker.stop()


@pytest.fixture
def unique_prefix(request: pytest.FixtureRequest) -> str:
    """A short prefix (for topics and Faust app ids) that no other test uses."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:24]
    return f"t-{name}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def stream_config(kafka: str, unique_prefix: str, tmp_path: Path) -> "StreamConfig":
    """A StreamConfig on the session broker with test-only names and a quick group join."""
    from streamsig.live.config import StreamConfig

    return StreamConfig(
        bootstrap=kafka,
        app_id=unique_prefix,
        topic_prefix=unique_prefix,
        partitions=3,
        session_timeout_s=3.0,  # Tansu answers a join after half of this
        heartbeat_s=0.5,
        datadir=str(tmp_path),
    )
