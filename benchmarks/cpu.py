"""CPU accounting: how much of the machine a measurement used, and how much something else did."""

from __future__ import annotations

import os
import time

from benchmarks.config import JSON, say
from benchmarks.head import HeadNode
from benchmarks.machine import machine_jiffies, process_jiffies


class CpuMeter:
    """CPU used between :meth:`start` and :meth:`stop`: the whole machine, and the processes of
    this benchmark: this process (``client``), the head, its agents, and the agents' jobs
    (counted once reaped).

    ``other_pct`` (machine capacity used by anything else) flags a run disturbed by other work
    on the machine; the figures of such a run are pessimistic.
    """

    def __init__(self, head: HeadNode) -> None:
        self.roles: dict[int, tuple[str, str]] = {os.getpid(): ("client", "")}
        self.roles[head.pid] = ("head", "")
        for pid in head.agent_pids:
            self.roles[pid] = ("agents", "jobs")
        self._machine = (0, 0)
        self._before: dict[int, tuple[int, int]] = {}

    def start(self) -> CpuMeter:
        self._machine = machine_jiffies()
        self._before = {p: j for p in self.roles if (j := process_jiffies(p)) is not None}
        return self

    def stop(self, extra_client_s: float = 0.0) -> JSON:
        """``extra_client_s``: CPU seconds of client processes this meter cannot see (worker
        processes that exit before it stops, reporting their own time), counted as client."""
        total1, idle1 = machine_jiffies()
        total = max(1, total1 - self._machine[0])
        busy = total - (idle1 - self._machine[1])
        tick = os.sysconf("SC_CLK_TCK")
        by_role: dict[str, int] = {"client": round(extra_client_s * tick), "head": 0,
                                   "agents": 0, "jobs": 0}
        for pid, before in self._before.items():
            after = process_jiffies(pid) or before
            own, children = self.roles[pid]
            by_role[own] += after[0] - before[0]
            if children:  # the client's children (the head) are not reaped while measuring
                by_role[children] += after[1] - before[1]
        ours = sum(by_role.values())
        return {
            "machine_busy_pct": round(100 * busy / total, 1),
            "cpu_s": {role: round(j / tick, 2) for role, j in by_role.items()},
            "other_pct": round(100 * max(0, busy - ours) / total, 1),
        }


def machine_busy_pct(seconds: float) -> float:
    total0, idle0 = machine_jiffies()
    time.sleep(seconds)
    total1, idle1 = machine_jiffies()
    return 100 * (1 - (idle1 - idle0) / max(1, total1 - total0))


def wait_quiet(limit_pct: float = 25.0, max_wait: float = 60.0) -> float:
    """Wait (up to ``max_wait`` s) until the machine is less than ``limit_pct`` busy over one
    second, so a measurement does not start in the middle of someone else's work. Returns
    the last reading."""
    deadline = time.monotonic() + max_wait
    busy = machine_busy_pct(1.0)
    if busy >= limit_pct:
        say(f"  the machine is {busy:.0f}% busy with other work; waiting up to {max_wait:.0f} s")
    while busy >= limit_pct and time.monotonic() < deadline:
        busy = machine_busy_pct(1.0)
    return round(busy, 1)
