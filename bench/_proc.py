"""Child processes of the benchmarks: their environment, CPU time and memory, read from /proc."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child_env() -> dict[str, str]:
    """This environment with the checkout first on ``PYTHONPATH`` (children import this streamsig)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def cpu_times() -> list[int]:
    """The machine's CPU time so far (all CPUs, clock ticks): user, nice, system, idle, iowait, irq,
    softirq, steal (``/proc/stat``); zeros where there is none."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return [0] * 8
    return [int(x) for x in first[1:9]] + [0] * (9 - len(first))


def steal_pct(before: list[int], after: list[int]) -> float:
    """Of the machine's CPU time between two :func:`cpu_times`, the percent its hypervisor gave to
    others (steal): a benchmark on a machine that loses a third of its time measures the host."""
    d = [b - a for a, b in zip(before, after)]
    return round(100.0 * d[7] / sum(d), 1) if sum(d) > 0 else 0.0


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
