"""The loop-lag guard (:mod:`mnp.scheduler.lag`): its arithmetic on an injected clock, and
the lost-node decision counting only loop-responsive time as silence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mnp.scheduler.lag import LagGuard
from mnp.spec.environments import NodeStatus
from tests.unit.helpers_core import FakeClock, Head


def test_on_time_observations_measure_no_lag() -> None:
    clock = FakeClock()
    guard = LagGuard(clock, period_s=0.1)
    for _ in range(5):
        clock.advance(0.1)
        assert guard.observe() == 0
    assert guard.stalled_since(clock() - 10_000) == 0
    assert guard.status() == {"lastMs": 0, "maxMs": 0, "stalledMs": 0, "periodMs": 100}


def test_a_late_wake_up_is_a_stall_credited_after_each_heartbeat() -> None:
    clock = FakeClock()
    guard = LagGuard(clock, period_s=0.1)
    t0 = clock()
    clock.advance(0.1)
    guard.observe()
    clock.advance(5.1)  # the loop woke 5 s late: stalled from t0+200 ms to t0+5200 ms
    assert guard.observe() == 5000
    assert guard.stalled_since(t0) == 5000
    assert guard.credited(t0) == t0 + 5000
    assert guard.stalled_since(t0 + 3200) == 2000  # a heartbeat mid-stall: only the rest
    assert guard.stalled_since(t0 + 5200) == 0  # a heartbeat after it: nothing
    clock.advance(0.1)
    assert guard.observe() == 0
    clock.advance(1.1)  # a second stall of 1 s
    assert guard.observe() == 1000
    assert guard.stalled_since(t0) == 6000
    assert guard.status() == {"lastMs": 1000, "maxMs": 5000, "stalledMs": 6000, "periodMs": 100}


def test_a_clock_going_back_is_no_stall_and_old_stalls_are_forgotten() -> None:
    clock = FakeClock()
    guard = LagGuard(clock, period_s=0.1, keep_s=60)
    t0 = clock()
    clock.advance(2.1)
    assert guard.observe() == 2000
    clock.advance(-1.0)
    assert guard.observe() == 0
    for _ in range(700):  # 70 s of on-time observations
        clock.advance(0.1)
        guard.observe()
    assert guard.stalled_since(t0) == 0  # the old stall was dropped
    assert guard.stalled_ms == 2000


@pytest.fixture
def head(tmp_path: Path) -> Iterator[Head]:
    h = Head.open(tmp_path / "home", lost_after_seconds=10)
    h.basic(nodes=("n1", "n2"))
    yield h
    h.close()


def test_a_stalled_head_loses_no_node_but_responsive_silence_still_counts(head: Head) -> None:
    guard = LagGuard(head.clock, period_s=0.1)
    head.scheduler.lag = guard
    job = head.submit()
    head.run_next("n1")
    head.clock.advance(0.1)
    guard.observe()
    head.clock.advance(15.1)  # the loop stalled 15 s (> lost_after): no heartbeat could land
    head.poll("n2")  # n2's poll is read first after the stall; n1's is still queued
    head.ticks(1)
    nodes = {n["nodeId"]: n["status"] for n in head.api["listNodes"]({})["nodes"]}
    assert nodes == {"n1": "ACTIVE", "n2": "ACTIVE"}
    assert head.status(job) == "RUNNING"
    # now n1 really is silent: lost after 10 s of responsive time, not before
    for _ in range(9):
        _responsive(head, guard, 1.0)
    assert head.status(job) == "RUNNING"
    _responsive(head, guard, 1.5)
    assert head.state.nodes["n1"].status == NodeStatus.LOST
    assert head.state.nodes["n2"].status == NodeStatus.ACTIVE
    assert head.status(job) != "RUNNING"


def _responsive(head: Head, guard: LagGuard, seconds: float) -> None:
    """``seconds`` of a responsive loop: observed every period, n2 polling, then a tick."""
    for _ in range(round(seconds / 0.1)):
        head.clock.advance(0.1)
        guard.observe()
    head.poll("n2")
    head.ticks(1)
