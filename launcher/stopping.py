"""How an attempt is stopped: the timeout, SIGTERM, the grace period, SIGKILL, and why.

Written once for both runtimes of a node (:mod:`launcher.process`, :mod:`launcher.container`),
which differ only in how a signal is delivered (``killpg`` vs the engine's ``kill``) and in
when they can take one (a process at once, a container once it has started). A
:class:`Stopping` sees its attempt through two callables, ``send(signal)`` and ``alive()``;
it never learns of the exit itself: the runtime reports that and calls :meth:`Stopping.cancel`.

Rules, for every attempt:

- the timeout (``timeout_seconds`` after the start) stops it with reason :data:`TIMEOUT_REASON`
  and marks it timed out, unless a stop came first;
- the first stop's reason is the one reported; a later stop can only bring the SIGKILL
  forward, never push it back or change the reason;
- a stop sends SIGTERM, then SIGKILL once its grace period has passed if still alive;
- a stop requested before the attempt can take signals is applied when it can.

Not thread-safe: call everything on the loop's thread.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

TIMEOUT_REASON = "Timeout"


class Stopping:
    """The stop state of one attempt (see the module docstring for the rules)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        send: Callable[[signal.Signals], None],
        alive: Callable[[], bool],
        default_grace: float,
    ) -> None:
        """``send`` delivers a signal to the attempt (and must not raise when it has gone);
        ``alive`` says whether it still runs; ``default_grace`` is the grace of a stop that
        names none (the assignment's ``kill_grace_seconds``)."""
        self.reason: str | None = None
        """The first stop's reason: the one the ``exited`` event carries."""
        self.timed_out = False
        """Whether the timeout caused the stop."""
        self._loop = loop
        self._send = send
        self._alive = alive
        self._default_grace = default_grace
        self._ready = False
        self._timeout_handle: asyncio.TimerHandle | None = None
        self._escalate_handle: asyncio.TimerHandle | None = None
        self._escalate_at: float | None = None

    def ready(self, timeout_seconds: float | None) -> None:
        """The attempt can take signals now: arm its timeout (None: none) and carry out a stop
        requested before. Call once."""
        self._ready = True
        if timeout_seconds is not None:
            self._timeout_handle = self._loop.call_later(timeout_seconds, self._on_timeout)
        if self.reason is not None:  # stopped while it was starting
            self._send(signal.SIGTERM)
            self._arm_escalation()

    def stop(self, reason: str, grace: float | None = None) -> None:
        """SIGTERM now, SIGKILL after ``grace`` seconds (default ``default_grace``) if still
        alive. Ignored when the attempt is not alive."""
        if not self._alive():
            return
        if grace is None:
            grace = self._default_grace
        deadline = self._loop.time() + max(0.0, grace)
        if self.reason is None:
            self.reason = reason
            if self._ready:
                self._send(signal.SIGTERM)
        elif self._escalate_at is not None and deadline >= self._escalate_at:
            return
        self._escalate_at = deadline
        if self._ready:
            self._arm_escalation()

    def kill_now(self, reason: str | None = None) -> None:
        """SIGKILL now (or as soon as the attempt can take it). ``reason`` is recorded only
        when no stop came before. Ignored when the attempt is not alive."""
        if not self._alive():
            return
        if self.reason is None:
            self.reason = reason
        self._escalate_at = self._loop.time()
        if self._ready:
            self._send(signal.SIGKILL)

    def cancel(self) -> None:
        """Disarm the timers (the attempt has exited, or is being torn down); idempotent."""
        for handle in (self._timeout_handle, self._escalate_handle):
            if handle is not None:
                handle.cancel()
        self._timeout_handle = self._escalate_handle = None

    def _on_timeout(self) -> None:
        self._timeout_handle = None
        if self._alive() and self.reason is None:
            self.timed_out = True
            self.stop(TIMEOUT_REASON)

    def _arm_escalation(self) -> None:
        if self._escalate_handle is not None:
            self._escalate_handle.cancel()
        if self._escalate_at is not None:
            self._escalate_handle = self._loop.call_at(self._escalate_at, self._escalate)

    def _escalate(self) -> None:
        self._escalate_handle = None
        if self._alive():
            self._send(signal.SIGKILL)
