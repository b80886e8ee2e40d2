"""A busy head's least time between ticks grows with its queue (mnp.head.tick_interval)."""

from __future__ import annotations

import pytest

from mnp.head import TICK_INTERVAL_MAX_SECONDS, TICK_INTERVAL_SECONDS, tick_interval


@pytest.mark.parametrize(
    ("runnable", "seconds"),
    [(0, TICK_INTERVAL_SECONDS), (100, TICK_INTERVAL_SECONDS), (1_000, 0.02), (10_000, 0.2),
     (100_000, TICK_INTERVAL_MAX_SECONDS), (10**7, TICK_INTERVAL_MAX_SECONDS)],
)  # fmt: skip
def test_ticks_space_out_with_the_queue_between_the_floor_and_the_cap(
    runnable: int, seconds: float
) -> None:
    assert tick_interval(runnable) == pytest.approx(seconds)

