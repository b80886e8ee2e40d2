"""Attempts: how one is made, how its end is recorded, and what its end decides.

One place for single-node jobs and multi-node parallel (MNP) jobs alike: a single-node job's
attempt ends with its process; an MNP job's attempt ends with its main node's, the other
nodes' failures folded in (the ``failure`` of :func:`attempt_outcome`). Pure: no I/O, no head state.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from mnp.build.outputs import AttemptFiles
from mnp.spec.environments import Node
from mnp.spec.jobs import EXIT_REASON as EXIT_REASON
from mnp.spec.jobs import TIMEOUT_REASON as TIMEOUT_REASON
from mnp.spec.jobs import Attempt, Job
from mnp.spec.protocol import Wiring
from mnp.spec.states import JobStatus


@dataclass(frozen=True, slots=True)
class AttemptRun:
    """What differs between the assignments of a single-node job and of an MNP node (the
    rest of :class:`~mnp.spec.protocol.Assignment` is built the same for both)."""

    command: list[str]
    timeout_seconds: float | None
    files: AttemptFiles
    """Workdir, output paths, script (:func:`mnp.build.outputs.attempt_files`)."""
    wiring: Wiring | None = None


@dataclass(frozen=True, slots=True)
class AttemptEnd:
    """How an attempt's process ended, as the node (or the head, for a lost node) told it."""

    exit_code: int | None
    """None: the process never ran or was never seen to end (start failure, lost node)."""
    reason: str | None
    """Container-level reason (``Timeout``, the kill reason, a start error)."""
    status_reason: str
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an attempt's end decides for its job."""

    status: JobStatus
    """SUCCEEDED, FAILED, or RUNNABLE (another attempt)."""
    reason: str | None
    """The job's (and the attempt's) statusReason."""


def new_attempt(job: Job, node: Node, now: int) -> Attempt:
    """The job's next attempt, placed on ``node`` at ``now`` (the caller appends it).

    A single-node attempt's log stream gets a fresh random name, as AWS Batch's does; an MNP
    node's is named after the node job and attempt, so the streams of one job sort together.
    """
    number = len(job.attempts) + 1
    prefix = f"{job.spec.definition_name[:200]}/default/"
    if job.is_node:
        stream = f"{prefix}{job.job_id.replace('#', '-')}-{number}"
    else:
        stream = f"{prefix}{uuid.uuid4().hex}"
    return Attempt(
        number=number,
        node_id=node.node_id,
        address=node.address,
        compute_environment=node.compute_environment,
        log_stream_name=stream,
        placed_at=now,
        output=False,
    )


def record_end(attempt: Attempt, end: AttemptEnd, now: int) -> None:
    """Write what the node reported into the attempt (its statusReason is decided later)."""
    attempt.stopped_at = now
    attempt.exit_code = end.exit_code
    attempt.reason = end.reason


def attempt_outcome(job: Job, end: AttemptEnd, failure: str | None = None) -> Outcome:
    """Decide what the end of ``job``'s current attempt means (``job.attempts`` holds it).

    ``failure`` (MNP jobs only) is why another node failed the attempt first: it stands in for
    the main node's plain exit reason and keeps a clean exit from counting as success. In
    order: a terminated job fails with its terminate reason; a requeued attempt
    (:meth:`~mnp.service.jobs.JobOps.requeue_job`) makes the job RUNNABLE whatever its exit,
    and is not counted against the retry strategy; a timeout fails (never retried);
    exit code 0 of a RUNNING job succeeds; anything else is retried while the retry strategy
    allows (:meth:`~mnp.spec.definitions.RetryStrategy.should_retry`), else it fails.
    """
    status_reason = end.status_reason
    if failure and status_reason == EXIT_REASON:
        status_reason = failure
    if job.is_terminated:
        return Outcome(JobStatus.FAILED, job.status_reason)
    current = job.current_attempt
    if current is not None and current.requeued is not None:
        return Outcome(JobStatus.RUNNABLE, current.requeued)
    if end.timed_out:
        return Outcome(JobStatus.FAILED, TIMEOUT_REASON)
    if end.exit_code == 0 and not failure and job.status == JobStatus.RUNNING:
        return Outcome(JobStatus.SUCCEEDED, status_reason)
    counted = sum(1 for a in job.attempts if a.requeued is None)
    retry = job.spec.retry.should_retry(counted, end.exit_code, end.reason, status_reason)
    return Outcome(JobStatus.RUNNABLE if retry else JobStatus.FAILED, status_reason)
