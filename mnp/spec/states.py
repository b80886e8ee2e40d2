"""Job states and the transition table, written as data.

Every change of a job's status goes through :func:`transition`, which refuses edges that are
not in :data:`TRANSITIONS` and appends ``(status, time, reason)`` to the job's history.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class JobStatus(enum.StrEnum):
    """AWS Batch's job states, with the same names on the wire."""

    SUBMITTED = "SUBMITTED"
    """Accepted and stored; the scheduler has not looked at it yet."""
    PENDING = "PENDING"
    """Waiting for dependencies (or, for an array parent, for its children)."""
    RUNNABLE = "RUNNABLE"
    """Ready to run; waiting for a node with room in one of its queue's environments."""
    STARTING = "STARTING"
    """Placed on a node; the node agent is starting the process."""
    RUNNING = "RUNNING"
    """The attempt's process is running."""
    SUCCEEDED = "SUCCEEDED"
    """Finished with exit code 0 (terminal)."""
    FAILED = "FAILED"
    """Finished otherwise: non-zero exit, timeout, cancel, terminate, failed dependency."""

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED)


TERMINAL_STATUSES = frozenset(s.value for s in JobStatus if s.terminal)
"""The wire names of the terminal states, for code that reads JSON."""

S = JobStatus

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.SUBMITTED: frozenset(
        {
            S.PENDING,  # has unmet dependencies, or is an array parent
            S.RUNNABLE,  # no dependencies
            S.FAILED,  # cancelled/terminated before the scheduler saw it
        }
    ),
    S.PENDING: frozenset(
        {
            S.RUNNABLE,  # every dependency SUCCEEDED
            S.FAILED,  # a dependency failed; cancelled; array parent with a failed child
            S.SUCCEEDED,  # array parent whose children all succeeded
        }
    ),
    S.RUNNABLE: frozenset(
        {
            S.STARTING,  # placed on a node
            S.FAILED,  # cancelled or terminated while waiting
            S.PENDING,  # held (scontrol hold): waits until released (not an AWS Batch move)
        }
    ),
    S.STARTING: frozenset(
        {
            S.RUNNING,  # the node agent started the process
            S.RUNNABLE,  # start failed or node lost; the retry strategy asks for another attempt
            S.FAILED,  # start failed / node lost with no attempts left; terminated
        }
    ),
    S.RUNNING: frozenset(
        {
            S.SUCCEEDED,  # exit code 0
            S.RUNNABLE,  # the attempt failed and the retry strategy asks for another attempt
            S.FAILED,  # failed with no retry left, timed out, terminated
        }
    ),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
}


class IllegalTransition(Exception):
    """A status change that the table does not allow (a bug in the caller, not bad input)."""

    def __init__(self, job_id: str, current: JobStatus, target: JobStatus) -> None:
        super().__init__(f"job {job_id}: illegal transition {current} -> {target}")
        self.job_id = job_id
        self.current = current
        self.target = target


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    status: JobStatus
    at: int
    """Epoch milliseconds."""
    reason: str | None


class HasStatus(Protocol):
    job_id: str
    status: JobStatus
    status_reason: str | None
    history: list[HistoryEntry]
    runnable_at: int | None


def transition(job: HasStatus, target: JobStatus, now_ms: int, reason: str | None = None) -> None:
    """Move ``job`` to ``target`` at ``now_ms``; the only way a status changes.

    Raises :class:`IllegalTransition` (and changes nothing) when the edge is not in
    :data:`TRANSITIONS`. On success the job's ``status`` and ``status_reason`` are updated and
    a history entry appended.
    """
    if target not in TRANSITIONS[job.status]:
        raise IllegalTransition(job.job_id, job.status, target)
    job.status = target
    if reason is not None:
        job.status_reason = reason
    job.history.append(HistoryEntry(target, now_ms, reason))
    job.runnable_at = now_ms if target == JobStatus.RUNNABLE else None
