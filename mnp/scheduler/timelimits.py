"""A job queue's ``jobStateTimeLimitActions``, enforced: the RUNNABLE job at the front of a
queue whose ``statusReason`` has matched an action's ``reason`` for ``maxTimeSeconds`` is
cancelled (``CANCEL``) or terminated (``TERMINATE``), and the next job moves to the front.

As AWS Batch has it (its API reference, JobStateTimeLimitAction, and the user guide's
"Automatic remediation with jobStateTimeLimitActions"): only the job at the head of the queue
counts, only while it is RUNNABLE, and only while its ``statusReason`` is the one named (AWS's
reasons are codes such as ``MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT``; a job's reason is the
code, possibly followed by `` - `` and details, so the code is what is compared). The job ends
FAILED with ``Canceled by JobStateTimeLimit action due to reason: <reason>`` (``Terminated by …``
for TERMINATE; AWS's user guide gives the latter wording, the former is its CANCEL counterpart).

The front of a queue is its first RUNNABLE job in scheduling order (:func:`scheduling_order`:
FIFO, or on a fair-share queue the order :class:`mnp.scheduler.fairshare.FairOrder` offers
them). The time a reason has held is counted from when the scheduler first saw the job at the
front with it (:class:`FrontWatch`), not from the job's history: a reason is set without a
status change, so the history does not date it. That clock lives in memory: after a head
restart it starts again, so a job may wait longer than ``maxTimeSeconds`` (AWS calls the time
approximate) but is never cancelled early.

Pure: the scheduling loop applies the decisions once per tick
(:meth:`mnp.scheduler.loop.Scheduler.enforce_time_limits`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from mnp.scheduler import reasons
from mnp.scheduler.fairshare import FairOrder, FairShareView
from mnp.spec.jobs import Job

CANCELLED = "Canceled by JobStateTimeLimit action due to reason: "
TERMINATED = "Terminated by JobStateTimeLimit action due to reason: "


AWS_REASONS: dict[str, tuple[str, ...]] = {
    "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY": (
        reasons.SHORT, reasons.SCALING, reasons.GANG, reasons.EC2_WAITING,
    ),
}  # fmt: skip
"""AWS's documented reason codes for ``jobStateTimeLimitActions`` → the mnp reasons that mean
the same (waiting for capacity that is not there now). Its other codes are mnp's as they are
(``MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT``: a job that can never fit)."""


def _is_code(status_reason: str, code: str) -> bool:
    if not status_reason.startswith(code):
        return False
    rest = status_reason[len(code) :]
    return not rest or not (rest[0].isalnum() or rest[0] == "_")


@dataclass(frozen=True, slots=True)
class TimeLimit:
    """One ``jobStateTimeLimitActions`` entry."""

    reason: str
    max_seconds: int
    terminate: bool = False
    """``action`` TERMINATE (else CANCEL)."""

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> TimeLimit | None:
        """From the stored entry (:class:`mnp.service.models.JobStateTimeLimitAction`); None
        for a state other than RUNNABLE (the only one AWS has) or an entry without a reason."""
        reason = str(doc.get("reason") or "")
        if doc.get("state", "RUNNABLE") != "RUNNABLE" or not reason:
            return None
        return cls(reason, int(doc.get("maxTimeSeconds") or 0), doc.get("action") == "TERMINATE")

    def matches(self, status_reason: str | None) -> bool:
        """Whether a job's ``statusReason`` is this entry's reason: the same text, or it
        followed by details (``CODE - details``, ``CODE: details``). AWS's own codes also
        match the mnp reasons that mean the same (:data:`AWS_REASONS`)."""
        if not status_reason:
            return False
        return any(_is_code(status_reason, code)
                   for code in (self.reason, *AWS_REASONS.get(self.reason, ())))  # fmt: skip

    @property
    def status_reason(self) -> str:
        """The reason the job ends with."""
        return (TERMINATED if self.terminate else CANCELLED) + self.reason


def queue_limits(docs: Iterable[Mapping[str, Any]]) -> tuple[TimeLimit, ...]:
    """A queue's stored ``jobStateTimeLimitActions`` as :class:`TimeLimit` entries."""
    return tuple(limit for d in docs if (limit := TimeLimit.from_doc(d)) is not None)


def scheduling_order(jobs: Iterable[Job], view: FairShareView | None) -> Iterator[Job]:
    """A queue's RUNNABLE jobs in the order they would start: FIFO as given, or on a
    fair-share queue (``view``) the order :class:`FairOrder` offers them with each start
    counted against its share before the next is chosen, as the scheduling pass counts the
    jobs it places. Lazy: taking the first few of a long backlog costs little beyond the sort
    of each share's jobs."""
    if view is None:
        yield from jobs
        return
    order = FairOrder(view, jobs)
    for job in order:
        yield job
        order.placed(job)


def front_of(jobs: Iterable[Job], view: FairShareView | None) -> Job | None:
    """The job at the head of a queue (None: nothing RUNNABLE)."""
    return next(islice(scheduling_order(jobs, view), 1), None)


@dataclass(frozen=True, slots=True)
class Front:
    """A queue's head job as last seen, and since when its reason has matched each entry."""

    job_id: str
    since_ms: Mapping[str, int] = field(default_factory=dict)
    """Per matching entry's reason: when the job was first seen at the front with it."""


@dataclass(frozen=True, slots=True)
class Expire:
    """End a RUNNABLE job: its queue's time limit for its reason has passed."""

    job_id: str
    queue: str
    reason: str
    """The ``statusReason`` it ends with."""
    terminate: bool


def watch(
    limits: Mapping[str, Sequence[TimeLimit]],
    heads: Mapping[str, tuple[str, str | None]],
    previous: Mapping[str, Front],
    now_ms: int,
) -> tuple[dict[str, Front], list[Expire]]:
    """One look at the queues' fronts.

    ``limits``: each queue's entries (a queue without any is not watched); ``heads``: per
    queue, its head job's id and ``statusReason`` now (a queue with nothing RUNNABLE is left
    out); ``previous``: what the last look returned. Returns the fronts to pass next time and
    the jobs whose time is up, at most one per queue (the first entry in the queue's order
    that is due; AWS's ``maxTimeSeconds`` is "approximate": it is due once that much has
    passed)."""
    fronts: dict[str, Front] = {}
    expired: list[Expire] = []
    for queue, entries in limits.items():
        head = heads.get(queue)
        if not entries or head is None:
            continue
        job_id, reason = head
        old = previous.get(queue)
        before = old.since_ms if old is not None and old.job_id == job_id else {}
        since = {e.reason: before.get(e.reason, now_ms) for e in entries if e.matches(reason)}
        fronts[queue] = Front(job_id, since)
        for e in entries:
            start = since.get(e.reason)
            if start is not None and now_ms - start >= e.max_seconds * 1000:
                expired.append(Expire(job_id, queue, e.status_reason, e.terminate))
                break
    return fronts, expired


@dataclass(slots=True)
class FrontWatch:
    """The scheduler's memory between looks (:func:`watch`)."""

    fronts: dict[str, Front] = field(default_factory=dict)


