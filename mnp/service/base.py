"""What every part of :class:`mnp.service.core.Service` shares: the state it works on, the limits
it enforces, and small helpers for ARNs and pages."""

from __future__ import annotations

import re
from typing import Any

from mnp.errors import FieldError, InvalidInput
from mnp.scheduler.loop import Runtime
from mnp.scheduler.state import HeadState
from mnp.spec.model import Job, JobDefinition, SchedulingPolicy
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


class ServiceBase:
    """The state the operations work on (the mixins of :class:`mnp.service.core.Service`)."""

    s: HeadState
    rt: Runtime
    policies: dict[str, SchedulingPolicy]
    """Fair-share scheduling policies by name."""

    # provided by JobOps, used by the other parts
    def _cancel(self, job: Job, reason: str, terminate: bool) -> None:
        raise NotImplementedError

    def _definition(self, ref: str, active_only: bool) -> JobDefinition:
        raise NotImplementedError


def _arn_base(arn: str) -> str:
    """``arn:aws:batch:region:account`` from any mnp ARN."""
    return ":".join(arn.split(":")[:5])


def _required(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInput([FieldError(key, "required")])
    return value


def _page(body: dict[str, Any], default: int, most: int) -> tuple[int, int]:
    """``(maxResults, offset from nextToken)``, both checked; a page holds at most ``most``."""
    errors = []
    limit = body.get("maxResults")
    if limit is None:
        limit = default
    elif not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        errors.append(FieldError("maxResults", "must be at least 1"))
        limit = default
    token = body.get("nextToken") or "0"
    if not (isinstance(token, str) and token.isdigit()):
        errors.append(FieldError("nextToken", "not a token this head node gave out"))
        token = "0"
    if errors:
        raise InvalidInput(errors)
    return min(limit, most), int(token)


def _paginate(
    key: str, items: list[dict[str, Any]], body: dict[str, Any], default: int
) -> dict[str, Any]:
    limit, offset = _page(body, default, default)
    out: dict[str, Any] = {key: items[offset : offset + limit]}
    if offset + limit < len(items):
        out["nextToken"] = str(offset + limit)
    return out
