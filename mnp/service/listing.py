"""ListJobs: which jobs a request selects (queue, parent, status, one filter) and one page.

The checks run in AWS Batch's order so that the first problem reported stays the same: the
selector, the queue's existence, the status, the number of filters, each filter, the page.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mnp.errors import FieldError, InvalidInput
from mnp.scheduler.state import HeadState
from mnp.service.base import LIST_FILTERS
from mnp.service.jobrefs import resolve_job_ref
from mnp.service.render import job_summary
from mnp.service.requests import BAD_TOKEN, ListJobs
from mnp.spec.arns import ARN_PREFIX, name_from_arn, stored
from mnp.spec.states import JobStatus
from mnp.store import pages
from mnp.store.queries import JobQuery

JSON = dict[str, Any]


def list_jobs(s: HeadState, req: ListJobs) -> JSON:
    """One page of job summaries, newest first as the store orders them."""
    if not req.all_statuses and len(req.selectors) != 1:
        raise InvalidInput(
            [
                FieldError(
                    "jobQueue",
                    "exactly one of jobQueue, arrayJobId, multiNodeJobId is required"
                    + (f" (got {', '.join(req.selectors)})" if req.selectors else ""),
                )
            ]
        )
    queue = name_from_arn(req.job_queue, "job-queue") if req.job_queue else None
    if queue is not None and queue not in s.queues:
        raise InvalidInput([FieldError("jobQueue", f"job queue {queue!r} does not exist")])
    statuses = _statuses(req)
    query: dict[str, Any] = {}
    for i, f in enumerate(req.filters):
        query.update(_filter_query(s, i, f))
    most = 100 if req.filters and not req.all_statuses else 1000
    limit, token = req.page.keyed(1000 if statuses else 100, most)
    selection = JobQuery(
        queue=queue,
        statuses=statuses,
        parent_id=resolve_job_ref(s.store, req.parent) if req.parent else None,
        children=req.all_statuses and req.include_children,
        limit=limit + 1,
        **query,
    )
    fingerprint = selection.fingerprint()
    after = None
    if token is not None:
        after = pages.verify(s.store.page_secret(), fingerprint, token)
        if after is None:
            raise InvalidInput([FieldError("nextToken", BAD_TOKEN)])
    rows = s.store.query_jobs_keyed(replace(selection, after=after))
    page = rows[:limit]
    out: JSON = {"jobSummaryList": [job_summary(s.active.get(j.job_id, j)) for j, _ in page]}
    if len(rows) > limit:
        out["nextToken"] = pages.sign(s.store.page_secret(), fingerprint, page[-1][1])
    return out


def _statuses(req: ListJobs) -> list[Any] | None:
    """The statuses to list (None: any); RUNNING unless a status, a filter or allStatuses."""
    status = req.job_status
    if status is not None and status not in JobStatus.__members__:
        raise InvalidInput([FieldError("jobStatus", f"must be one of {', '.join(JobStatus)}")])
    filters = req.filters
    if not req.all_statuses and len(filters) > 1:
        raise InvalidInput([FieldError("filters", "only one filter can be used at a time")])
    statuses = None if req.all_statuses or filters else [status or "RUNNING"]
    if status and (req.all_statuses or any(f.get("name") == "SHARE_IDENTIFIER" for f in filters)):
        statuses = [status]
    return statuses


def _filter_query(s: HeadState, i: int, f: Any) -> dict[str, Any]:
    """The store query arguments of filter ``i``."""
    name, values = f.get("name"), f.get("values") or []
    if not values:
        raise InvalidInput([FieldError(f"filters[{i}].values", "required")])
    value = str(values[0])
    if name == "JOB_NAME":
        return {"name_prefix": value[:-1]} if value.endswith("*") else {"name_exact": value}
    if name == "JOB_DEFINITION":
        if value.startswith("arn:"):  # any region's or account's, as the store keeps it
            value = stored(value)
            if value.rsplit(":", 1)[-1].isdigit():  # one revision
                return {"definition": value, "definition_exact": True}
            return {"definition": value + ":"}  # any revision
        base = ARN_PREFIX
        return {
            "definition": f"{base}:job-definition/{value[:-1]}"
            if value.endswith("*")
            else f"{base}:job-definition/{value}:"
        }
    if name in ("BEFORE_CREATED_AT", "AFTER_CREATED_AT"):
        try:
            stamp = int(value)
        except ValueError:
            raise InvalidInput([FieldError(f"filters[{i}].values", "epoch milliseconds")]) from None
        return {"created_before" if name == "BEFORE_CREATED_AT" else "created_after": stamp}
    if name == "SHARE_IDENTIFIER":
        return {"share_identifier": value}
    raise InvalidInput(
        [
            FieldError(
                f"filters[{i}].name",
                f"unsupported filter {name!r}: one of "
                f"{', '.join((*LIST_FILTERS, 'SHARE_IDENTIFIER'))}",
            )
        ]
    )
