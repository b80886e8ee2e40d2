"""launcher.stopping on a fake clock: timeout, SIGTERM, grace, SIGKILL, and the reason kept."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any, cast

from launcher.stopping import TIMEOUT_REASON, Stopping


class _Handle:
    def __init__(self, when: float, fn: Callable[[], None]) -> None:
        self.when, self.fn, self.cancelled = when, fn, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """The three loop methods Stopping uses, on a clock moved by :meth:`advance`."""

    def __init__(self) -> None:
        self.now = 0.0
        self.handles: list[_Handle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, fn: Callable[[], None]) -> _Handle:
        handle = _Handle(when, fn)
        self.handles.append(handle)
        return handle

    def call_later(self, delay: float, fn: Callable[[], None]) -> _Handle:
        return self.call_at(self.now + delay, fn)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for h in sorted(self.handles, key=lambda h: h.when):
            if h.when <= self.now and not h.cancelled:
                h.cancelled = True
                h.fn()


def make(grace: float = 2.0) -> tuple[Stopping, FakeLoop, list[signal.Signals], list[bool]]:
    loop = FakeLoop()
    sent: list[signal.Signals] = []
    alive = [True]
    stopping = Stopping(cast(Any, loop), sent.append, lambda: alive[0], grace)
    return stopping, loop, sent, alive


def test_timeout_terms_then_kills_after_the_grace() -> None:
    s, loop, sent, _ = make()
    s.ready(10.0)
    loop.advance(9.9)
    assert sent == []
    loop.advance(0.1)
    assert (sent, s.reason, s.timed_out) == ([signal.SIGTERM], TIMEOUT_REASON, True)
    loop.advance(2.0)
    assert sent == [signal.SIGTERM, signal.SIGKILL]


def test_first_reason_wins_and_a_later_stop_only_brings_the_kill_forward() -> None:
    s, loop, sent, _ = make(grace=5.0)
    s.ready(None)
    s.stop("first")
    s.stop("second", grace=10.0)  # later deadline: ignored
    s.stop("third", grace=1.0)  # earlier deadline: wins
    loop.advance(1.0)
    assert (sent, s.reason, s.timed_out) == ([signal.SIGTERM, signal.SIGKILL], "first", False)


def test_a_stop_before_ready_is_applied_at_ready() -> None:
    s, loop, sent, _ = make()
    s.stop("early", grace=0.5)
    assert sent == []
    s.ready(None)
    assert sent == [signal.SIGTERM]
    loop.advance(0.5)
    assert sent == [signal.SIGTERM, signal.SIGKILL]


def test_kill_now_records_its_reason_only_without_an_earlier_stop() -> None:
    s, _, sent, _ = make()
    s.ready(None)
    s.kill_now("Killed")
    assert (sent, s.reason) == ([signal.SIGKILL], "Killed")
    s2, _, _, _ = make()
    s2.ready(None)
    s2.stop("user")
    s2.kill_now("Killed")
    assert s2.reason == "user"


def test_nothing_is_sent_once_it_has_exited() -> None:
    s, loop, sent, alive = make()
    s.ready(1.0)
    s.stop("user")
    alive[0] = False
    loop.advance(5.0)
    s.stop("again")
    s.kill_now()
    assert sent == [signal.SIGTERM]
    s.cancel()
    assert all(h.cancelled for h in loop.handles)


def test_cancel_disarms_the_timeout() -> None:
    s, loop, sent, _ = make()
    s.ready(1.0)
    s.cancel()
    loop.advance(5.0)
    assert (sent, s.reason) == ([], None)
