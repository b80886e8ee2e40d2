"""The agent's side of its lease and its fence (issue 11).

The head grants a lease in every register and poll reply (``leaseSeconds``). The lease runs
from the *send* time of the call that got the reply: the head received the call later and
starts its own lost-node allowance (``lost_after_seconds``, longer than the lease) later
still, so the agent's deadline always comes first, by at least ``lost_after - lease``.

:class:`Lease` starts the node's watchdog (:mod:`launcher.fence`) with a pipe and tells it the
deadline and every process group and container to fence. The fence stops the work at the
deadline even when the agent is frozen, kills it when the agent dies, and resumes it on a
newer lease. Writes to a fence that died are dropped (logged once): the agent's work goes on,
unfenced, rather than stopping for a watchdog fault.

Not thread-safe: call it from the agent's loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time

from launcher.attempts import Attempts
from launcher.engine import container_name
from mnp.spec.protocol import Assignment, Event

log = logging.getLogger("launcher.agent")

LEASE_EXPIRED = "Host: lease expired on node"
"""The start of the reason the agent reports for attempts it killed because its session ended
after its lease ran out (the head refuses those reports as stale: it failed the attempts
already)."""
SESSION_ENDED = "Host: session ended on node"
"""Likewise, for a session the head ended while the lease still ran (another registration)."""
UNFENCE_SECONDS = 0.5
"""How long a line that only ends fencing may wait for the next write (the fence forgets
emptied groups by itself every second)."""


class Lease:
    """The lease granted by the head, and the fence process enforcing it."""

    def __init__(self) -> None:
        self.deadline: float | None = None
        """When the lease ends (``time.monotonic()`` seconds); None before the first grant."""
        self.seconds: float | None = None
        """The lease length the head last granted."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._broken = False
        self._pids: dict[str, int] = {}
        """Attempt id → its process group (a process attempt's pid), while fenced."""
        self._names: dict[str, str] = {}
        """Attempt id → its container's name, while fenced."""
        self._queued: list[str] = []
        """Lines for the fence not yet written (see :meth:`_send`)."""
        self._soon = False
        """A write is due on the loop's next turn."""
        self._later: asyncio.TimerHandle | None = None
        """The write of lines that only end fencing, when nothing else is due."""

    def start(self) -> None:
        """Start the fence (in its own session, so a signal to the agent's group spares it)."""
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "launcher.fence"],
            stdin=subprocess.PIPE,
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": _source_path()},
        )

    @property
    def fence_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def renew(self, sent_at: float, seconds: object) -> None:
        """A reply to a call sent at ``sent_at`` (monotonic) granted ``seconds`` (ignored
        when not a positive number: an older head grants no lease)."""
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
            return
        self.seconds = float(seconds)
        deadline = sent_at + float(seconds)
        if self.deadline is None or deadline > self.deadline:
            self.deadline = deadline
            self._send(f"lease {deadline:.6f}")

    def expired(self, now: float | None = None) -> bool:
        """Whether the lease has run out (False before the first grant)."""
        return self.deadline is not None and (now or time.monotonic()) >= self.deadline

    def forget(self) -> None:
        """The session ended: the next register starts a new lease from scratch."""
        self.deadline = None

    def group(self, pgid: int, fenced: bool) -> None:
        """Fence process group ``pgid`` (or no longer)."""
        self._send(f"{'+' if fenced else '-'}group {pgid}", soon=fenced)

    def container(self, name: str, fenced: bool) -> None:
        """Fence Docker container ``name`` (or no longer)."""
        self._send(f"{'+' if fenced else '-'}container {name}", soon=fenced)

    def assigned(self, node_id: str, a: Assignment) -> None:
        """An attempt is about to start: a container is fenced before it exists (a kill of
        one not created yet is harmless), a process once its ``started`` event names it."""
        if a.container is not None and a.attempt_id not in self._names:
            self._names[a.attempt_id] = name = container_name(node_id, a.attempt_id)
            self.container(name, True)

    def observe(self, ev: Event) -> None:
        """Every event of the agent's sink: fence a started process's group, unfence what
        ended."""
        aid = ev.attempt_id
        if ev.kind == "started" and ev.pid and aid not in self._names and aid not in self._pids:
            self._pids[aid] = ev.pid
            self.group(ev.pid, True)
        elif ev.kind in ("exited", "start_failed"):
            pid, name = self._pids.pop(aid, None), self._names.pop(aid, None)
            if pid is not None:
                self.group(pid, False)
            if name is not None:
                self.container(name, False)

    async def end_session(self, attempts: Attempts, node_id: str) -> None:
        """The head ended the agent's session (it failed the attempts, or will): SIGKILL
        every attempt (the fence kills SSH sessions and containers too), their exits reported
        with :data:`LEASE_EXPIRED` (or :data:`SESSION_ENDED`); the next register starts a new
        lease."""
        reason = f"{LEASE_EXPIRED if self.expired() else SESSION_ENDED} {node_id}"
        log.error("killing every attempt of node %s: %s", node_id, reason)
        for aid in attempts.ids():
            attempts.kill(aid, reason)  # the reason their exits carry
        self.kill()
        await attempts.kill_all()
        self.forget()

    def kill(self) -> None:
        """SIGKILL everything fenced now (the session ended: the head retried the work)."""
        self._send("kill")
        self._flush()

    def close(self) -> None:
        """EOF to the fence (it kills what is still fenced, then exits); wait for it."""
        self._flush()
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _send(self, line: str, soon: bool = True) -> None:
        """Queue ``line`` for the fence; the lines of one turn of the agent's loop (a poll
        reply's lease and the groups of the attempts it started) go in one write, which
        wakes the fence once. A line that only ends fencing (not ``soon``) waits up to
        :data:`UNFENCE_SECONDS` for the next write: a short job's ``-group`` then goes with
        the next job's ``+group``, one write instead of two (in order: a group id reused
        meanwhile is fenced again after). Without a running loop, written at once."""
        if self._proc is None or self._broken:
            return
        self._queued.append(line)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._flush()
            return
        if soon:
            if not self._soon:
                self._soon = True
                loop.call_soon(self._flush)
        elif self._later is None:
            self._later = loop.call_later(UNFENCE_SECONDS, self._flush)

    def _flush(self) -> None:
        self._soon = False
        if self._later is not None:
            self._later.cancel()
            self._later = None
        lines, self._queued = self._queued, []
        proc = self._proc
        if not lines or proc is None or proc.stdin is None or self._broken:
            return
        try:
            proc.stdin.write("".join(f"{line}\n" for line in lines).encode())
            proc.stdin.flush()
        except OSError as exc:
            self._broken = True
            log.error("the node's fence is gone (%s): work is no longer fenced", exc)


def _source_path() -> str:
    """Where ``launcher`` is imported from, first on the fence's path (a source tree too)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rest = os.environ.get("PYTHONPATH")
    return os.pathsep.join(filter(None, [here, rest]))
