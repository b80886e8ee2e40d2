"""What every part of :class:`mnp.service.core.Service` shares: the context it works on (state,
scheduler, policies, and the lookups by name or ARN), the limits it enforces, and pages."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mnp.errors import NotFound
from mnp.scheduler.loop import Scheduler
from mnp.scheduler.state import HeadState
from mnp.service.jobrefs import resolve_job_ref
from mnp.service.requests import Page
from mnp.spec.arns import name_from_arn
from mnp.spec.definitions import JobDefinition
from mnp.spec.environments import ComputeEnvironment, JobQueue, SchedulingPolicy
from mnp.spec.states import JobStatus

REF = re.compile(r"Ref::([A-Za-z0-9_-]+)")
JOB_DEFINITION_MAX = 24 * 1024
SUBMIT_MAX = 30 * 1024
MNP_SUBMIT_MAX = 1024 * 1024
"""With mnp's additions (a batch script, an exported environment) a submission may be larger."""
CANCELLABLE = (JobStatus.SUBMITTED, JobStatus.PENDING, JobStatus.RUNNABLE)
MAX_QUEUES = 50
MAX_COMPUTE_ENVIRONMENTS = 50
MAX_ACTIVE_SHARES = 500
MAX_TAGS = 50
SNAPSHOT_JOBS = 100
LIST_FILTERS = ("JOB_NAME", "JOB_DEFINITION", "BEFORE_CREATED_AT", "AFTER_CREATED_AT")


@dataclass(slots=True)
class Context:
    """The state every part of the service works on, shared by reference (one per head).

    The lookups raise :class:`~mnp.errors.NotFound` naming what was asked for; callers that
    must answer InvalidInput instead (a reference inside a request) translate it.
    """

    s: HeadState
    rt: Scheduler
    policies: dict[str, SchedulingPolicy] = field(default_factory=dict)
    """Fair-share scheduling policies by name."""

    def job_id(self, ref: str) -> str:
        """The id of the job ``ref`` names: a UUID form as given, or a job number (``N``,
        ``N_T``, ``N:I``; :mod:`mnp.service.jobrefs`); unknown ones unchanged, to be answered
        as any unknown id is."""
        return resolve_job_ref(self.s.store, ref)

    def queue(self, ref: str) -> JobQueue:
        q = self.s.queues.get(name_from_arn(ref, "job-queue"))
        if q is None:
            raise NotFound(f"job queue {ref!r} does not exist")
        return q

    def ce(self, ref: str) -> ComputeEnvironment:
        ce = self.s.ces.get(name_from_arn(ref, "compute-environment"))
        if ce is None:
            raise NotFound(f"compute environment {ref!r} does not exist")
        return ce

    def policy(self, ref: str) -> SchedulingPolicy:
        policy = self.policies.get(name_from_arn(ref, "scheduling-policy"))
        if policy is None:
            raise NotFound(f"scheduling policy {ref!r} does not exist")
        return policy

    def definition(self, ref: str, active_only: bool) -> JobDefinition:
        """``name``, ``name:rev`` or an ARN with or without revision. Without a revision: the
        newest ACTIVE one, else (unless ``active_only``) the newest of any status."""
        text = name_from_arn(ref, "job-definition")
        name, _, rev = text.partition(":")
        revisions = self.s.definitions.get(name, [])
        if rev:
            for d in revisions:
                if str(d.revision) == rev:
                    return d
            raise NotFound(f"job definition {name}:{rev} does not exist")
        active = [d for d in revisions if d.status == "ACTIVE"]
        if active:
            return active[-1]
        if revisions and not active_only:
            return revisions[-1]
        raise NotFound(f"job definition {name!r} has no ACTIVE revision")


def _arn_base(arn: str) -> str:
    """``arn:aws:batch:region:account`` from any mnp ARN."""
    return ":".join(arn.split(":")[:5])


def _paginate(key: str, items: list[dict[str, Any]], page: Page, default: int) -> dict[str, Any]:
    """One page of ``items`` under ``key``, with ``nextToken`` when more follow."""
    limit, offset = page.resolve(default, default)
    out: dict[str, Any] = {key: items[offset : offset + limit]}
    if offset + limit < len(items):
        out["nextToken"] = str(offset + limit)
    return out
