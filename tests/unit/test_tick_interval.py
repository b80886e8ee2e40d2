"""A busy head's least time between ticks follows what a scheduling pass costs
(mnp.head.tick_interval, mnp.scheduler.loop.Scheduler.pass_seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnp.head import (
    PASS_SHARE,
    TICK_INTERVAL_MAX_SECONDS,
    TICK_INTERVAL_SECONDS,
    TICK_SECONDS_PER_RUNNABLE,
    tick_interval,
)
from tests.unit.helpers_core import Head


@pytest.mark.parametrize(
    ("pass_seconds", "seconds"),
    [(0.0, TICK_INTERVAL_SECONDS), (0.00005, TICK_INTERVAL_SECONDS), (0.016, 0.32),
     (0.03, 0.6), (0.065, TICK_INTERVAL_MAX_SECONDS), (10.0, TICK_INTERVAL_MAX_SECONDS)],
)  # fmt: skip
def test_ticks_space_out_with_the_pass_cost_between_the_floor_and_the_cap(
    pass_seconds: float, seconds: float
) -> None:
    assert tick_interval(pass_seconds) == pytest.approx(seconds)
    if TICK_INTERVAL_SECONDS < seconds < TICK_INTERVAL_MAX_SECONDS:
        assert pass_seconds / seconds == pytest.approx(PASS_SHARE)


@pytest.mark.parametrize(
    ("runnable", "seconds"),
    [(0, TICK_INTERVAL_SECONDS), (100, TICK_INTERVAL_SECONDS), (2_000, 0.04), (10_000, 0.2),
     (100_000, TICK_INTERVAL_MAX_SECONDS)],
)  # fmt: skip
def test_a_head_that_placed_nothing_waits_longer_with_a_deeper_queue(
    runnable: int, seconds: float
) -> None:
    assert tick_interval(0.00005, runnable, placed=False) == pytest.approx(seconds)
    # placing work, it ticks at the floor whatever the depth (slots are turning over)
    assert tick_interval(0.00005, runnable, placed=True) == TICK_INTERVAL_SECONDS
    assert tick_interval(0.03, runnable, placed=True) == pytest.approx(0.6)  # the pass rules
    if TICK_INTERVAL_SECONDS < seconds < TICK_INTERVAL_MAX_SECONDS:
        assert seconds == pytest.approx(runnable * TICK_SECONDS_PER_RUNNABLE)


def test_the_scheduler_says_whether_its_last_pass_placed_work(tmp_path: Path) -> None:
    h = Head.open(tmp_path / "home")
    try:
        h.basic()  # one node of 4 vCPUs, 1-vCPU jobs
        for i in range(6):
            h.submit(f"j{i}")
        h.ticks(3)
        assignments, _ = h.poll("n1")
        assert len(assignments) == 4
        for a in assignments:
            h.started("n1", a.attempt_id)
        h.ticks(1)
        assert h.scheduler.placed is False  # the node is full: two wait
        h.exited("n1", assignments[0].attempt_id, 0)
        h.ticks(1)
        assert h.scheduler.placed is True  # the freed slot took one
        h.ticks(1)
        assert h.scheduler.placed is False
    finally:
        h.close()


def test_the_pass_cost_is_the_median_of_the_last_passes(tmp_path: Path) -> None:
    h = Head.open(tmp_path / "home")
    try:
        h.basic()
        assert h.scheduler.pass_seconds == 0.0  # no pass yet
        h.ticks(1)
        first = h.scheduler.pass_seconds
        assert 0.0 < first < 1.0
        h.scheduler._pass_seconds.extend([0.002, 5.0, 0.003])  # one slow pass among them
        assert h.scheduler.pass_seconds == pytest.approx(0.003)
        h.scheduler._pass_seconds.extend([0.001, 0.001])
        assert h.scheduler.pass_seconds == pytest.approx(0.001)  # it has left the window
    finally:
        h.close()
