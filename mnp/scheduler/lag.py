"""The loop-lag guard: time the head's event loop was stalled does not count as node silence.

A stalled loop (a slow SQLite write, a blocking provider call, the process stopped) cannot
read the heartbeats waiting on its sockets, so without this guard a stall longer than the
lost-node timeout would declare healthy nodes lost. The guard is observed often (a small
periodic task, and every tick before it decides); a gap between two observations longer than
the period is a stall, kept as an interval. A node is lost only after ``lost_after`` seconds
of *loop-responsive* time without a heartbeat: :meth:`LagGuard.credited` moves a node's last
heartbeat forward by the stalled time since it.

Single-threaded (the head's event loop); the clock is injected (epoch milliseconds, the same
clock the heartbeats are stamped with).
"""

from __future__ import annotations

from collections.abc import Callable

PERIOD_SECONDS = 0.1
"""How often the head observes its loop; stalls shorter than this are not measured."""


class LagGuard:
    """Measures the event loop's lag and credits stalls to the nodes' heartbeat allowance."""

    def __init__(
        self, clock: Callable[[], int], period_s: float = PERIOD_SECONDS, keep_s: float = 3600
    ) -> None:
        self._clock = clock
        self.period_ms = int(period_s * 1000)
        self._keep_ms = int(keep_s * 1000)
        self._last_ms = clock()
        self._stalls: list[tuple[int, int]] = []
        """(start, end) epoch ms of each measured stall, in the order measured."""
        self.last_lag_ms = 0
        """The lag of the most recent observation (how late it was)."""
        self.max_lag_ms = 0
        self.stalled_ms = 0
        """All stalled time measured since the head started."""

    def observe(self) -> int:
        """Note that the loop is responsive now; returns the lag (ms) since the last
        observation: the time beyond one period, 0 if it came on time. A positive lag is
        remembered as a stall (until ``keep_s`` old)."""
        now = self._clock()
        start = self._last_ms + self.period_ms
        self._last_ms = now  # a clock set back is no stall, and does not hide later ones
        lag = max(0, now - start)
        self.last_lag_ms = lag
        if lag > 0:
            self._stalls.append((start, now))
            self.max_lag_ms = max(self.max_lag_ms, lag)
            self.stalled_ms += lag
        if self._stalls and self._stalls[0][1] < now - self._keep_ms:
            self._stalls = [s for s in self._stalls if s[1] >= now - self._keep_ms]
        return lag

    def stalled_since(self, at_ms: int) -> int:
        """The stalled time (ms) measured after ``at_ms``."""
        return sum(end - max(start, at_ms) for start, end in self._stalls if end > at_ms)

    def credited(self, last_seen_ms: int) -> int:
        """``last_seen_ms`` moved forward by the stalls since it: the lost-node decision
        compares this with now, so only loop-responsive time counts as silence."""
        return last_seen_ms + self.stalled_since(last_seen_ms)

    def status(self) -> dict[str, int]:
        """For the head's ``getStatus``: lag of the last observation, the largest, the total."""
        return {
            "lastMs": self.last_lag_ms,
            "maxMs": self.max_lag_ms,
            "stalledMs": self.stalled_ms,
            "periodMs": self.period_ms,
        }
