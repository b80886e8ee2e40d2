"""A busy head's least time between ticks follows what a scheduling pass costs
(mnp.head.tick_interval, mnp.scheduler.loop.Scheduler.pass_seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnp.head import PASS_SHARE, TICK_INTERVAL_MAX_SECONDS, TICK_INTERVAL_SECONDS, tick_interval
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
