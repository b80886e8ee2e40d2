"""What the web dashboard (:mod:`mnp.api.dashboard`) asks of the head besides the operations
every client has: one overview of queues, environments and job counts; a job listing that also
filters by user; each user's arrangement of panels; and the last hour of queue depth and
throughput.

The overview counts the jobs not yet finished from memory (the scheduler holds every one of
them), so a page polling it every few seconds costs no store scan; finished jobs are counted
by the store, as ``getStatus`` does. Array parents and the nodes of a multi-node job are left
out of a queue's depth: the children and the parent are the work that waits.

The layout is kept in the store's ``meta`` table, one row per user (:data:`LAYOUT_KEY`), so it
survives restarts and follows the user to any browser. The series is an in-memory ring
(:class:`Series`) sampled every :data:`SAMPLE_SECONDS`: an hour of samples is small, and a
head restart starting the chart afresh is acceptable for a view of the last hour.

Not thread-safe: call from the head node's event loop.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mnp.errors import FieldError, InvalidInput
from mnp.scheduler.state import HeadState
from mnp.service.jobrefs import resolve_job_ref
from mnp.service.render import job_summary
from mnp.service.users import Caller, owner_name
from mnp.spec.arns import name_from_arn
from mnp.spec.environments import NodeStatus
from mnp.spec.jobs import Job
from mnp.spec.states import JobStatus
from mnp.store.queries import JobQuery

JSON = dict[str, Any]

PANELS = (
    "counts", "queues", "environments", "throughput", "depth", "nodes", "shares", "jobs",
    "deadLetters",
)  # fmt: skip
"""Every panel the overview can show, by id (``deadLetters``: the events no webhook or topic
took, ``listDeadLetters``; admins only)."""
DEFAULT_LAYOUT = ("counts", "queues", "environments", "throughput", "depth")
LAYOUT_KEY = "dashboard.layout."
"""Meta key prefix: ``dashboard.layout.<user name>`` holds that user's panels as JSON."""
SAMPLE_SECONDS = 10
SERIES_SECONDS = 3600
JOBS_PAGE = 50
JOBS_PAGE_MOST = 1000
"""A page of an array's children (the job page's grid) may be this long; others 100."""
USER_SCAN_MOST = 5000
"""A listing filtered by user reads at most this many rows per page before answering."""


# --- the layout ------------------------------------------------------------------------------
def parse_layout(body: JSON) -> tuple[str, ...]:
    """``{"panels": [...]}``: known panel ids, each once, in the order shown."""
    panels = body.get("panels") if isinstance(body, dict) else None
    if not isinstance(panels, list) or not all(isinstance(p, str) for p in panels):
        raise InvalidInput([FieldError("panels", "required: a list of panel ids")])
    unknown = [p for p in panels if p not in PANELS]
    if unknown:
        raise InvalidInput(
            [FieldError("panels", f"unknown panels {unknown}: one of {', '.join(PANELS)}")]
        )
    if len(set(panels)) != len(panels):
        raise InvalidInput([FieldError("panels", "each panel at most once")])
    return tuple(panels)


def get_layout(s: HeadState, caller: Caller) -> JSON:
    """The caller's panels (the default until they save their own), and every panel there is."""
    saved = s.store.get_meta(LAYOUT_KEY + caller.name)
    panels = list(DEFAULT_LAYOUT)
    if saved is not None:
        try:
            panels = list(parse_layout(json.loads(saved)))
        except (ValueError, InvalidInput):  # a panel a later version dropped: the default
            pass
    return {"panels": panels, "available": list(PANELS), "saved": saved is not None}


def put_layout(s: HeadState, caller: Caller, panels: tuple[str, ...]) -> JSON:
    """Remember ``panels`` as the caller's own arrangement."""
    with s.store.transaction():
        s.store.set_meta(LAYOUT_KEY + caller.name, json.dumps({"panels": list(panels)}))
    return {"panels": list(panels)}


# --- the overview ------------------------------------------------------------------------------
def counted(job: Job) -> bool:
    """Whether ``job`` is a unit of work a queue's depth counts: not an array parent (its
    children are), not a node of a multi-node job (its parent is)."""
    if job.parent_id is None:
        return job.spec.array_size is None
    return job.array_index is not None


def overview(s: HeadState) -> JSON:
    """Queues (depth by state), compute environments (bounds, nodes up, vCPUs in use) and the
    number of jobs in each state."""
    depth: dict[str, dict[str, int]] = {q: {} for q in s.queues}
    for job in s.active.values():
        if counted(job):
            by_state = depth.setdefault(job.spec.queue, {})
            by_state[job.status.value] = by_state.get(job.status.value, 0) + 1
    queues = [
        {
            "jobQueueName": q.name,
            "state": q.state.value,
            "priority": q.priority,
            "schedulingPolicy": name_from_arn(q.scheduling_policy_arn, "scheduling-policy")
            if q.scheduling_policy_arn
            else None,
            "computeEnvironments": [n for _, n in sorted(q.compute_environment_order)],
            "depth": depth.get(q.name, {}),
        }
        for q in sorted(s.queues.values(), key=lambda q: (-q.priority, q.name))
    ]
    envs = []
    for ce in sorted(s.ces.values(), key=lambda c: c.name):
        up = [
            n
            for n in s.nodes.values()
            if n.compute_environment == ce.name and n.status == NodeStatus.ACTIVE
        ]
        total = sum(n.capacity.vcpus for n in up)
        used = 0.0
        for n in up:
            rt = s.node_rt.get(n.node_id)
            used += rt.used.vcpus if rt else 0
        envs.append(
            {
                "computeEnvironmentName": ce.name,
                "type": ce.type,
                "state": ce.state.value,
                "status": ce.status.value,
                "provider": ce.provider,
                "minNodes": ce.min_nodes,
                "desiredNodes": ce.desired_nodes,
                "maxNodes": ce.node_count,
                "nodesUp": len(up),
                "vcpus": total,
                "usedVcpus": used,
                "utilisation": round(used / total, 3) if total else 0.0,
            }
        )
    return {
        "queues": queues,
        "computeEnvironments": envs,
        "jobCounts": s.store.count_jobs_by_status(),
        "at": s.clock(),
    }


# --- the job listing ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class JobFilter:
    """``dashboardJobs``: every condition optional; ``nextToken`` is the offset to read on."""

    queue: str | None = None
    status: str | None = None
    name: str | None = None
    """A name prefix (case-insensitive)."""
    user: str | None = None
    """Who submitted the jobs."""
    parent: str | None = None
    """An array's id: its children, by index."""
    offset: int = 0
    limit: int = JOBS_PAGE

    @classmethod
    def from_body(cls, body: JSON) -> JobFilter:
        errors: list[FieldError] = []

        def text(key: str) -> str | None:
            value = body.get(key)
            if value is None or value == "":
                return None
            if not isinstance(value, str) or len(value) > 1024:
                errors.append(FieldError(key, "must be a string of at most 1024 characters"))
                return None
            return value

        f = {k: text(k) for k in ("jobQueue", "jobStatus", "jobName", "user", "arrayJobId")}
        if f["jobStatus"] is not None and f["jobStatus"] not in JobStatus.__members__:
            errors.append(FieldError("jobStatus", f"must be one of {', '.join(JobStatus)}"))
        most = JOBS_PAGE_MOST if f["arrayJobId"] else 100
        limit = body.get("maxResults", JOBS_PAGE)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= most:
            errors.append(FieldError("maxResults", f"must be 1-{most}"))
            limit = JOBS_PAGE
        token = body.get("nextToken") or "0"
        if not (isinstance(token, str) and token.isdigit()):
            errors.append(FieldError("nextToken", "not a token this head node gave out"))
            token = "0"
        if errors:
            raise InvalidInput(errors)
        return cls(f["jobQueue"], f["jobStatus"], f["jobName"], f["user"], f["arrayJobId"],
                   int(token), limit)  # fmt: skip


def list_jobs(s: HeadState, f: JobFilter) -> JSON:
    """One page of job summaries, newest first (an array's children by index). Filtering by
    user reads on in the store until the page is full or :data:`USER_SCAN_MOST` rows were
    read; ``nextToken`` then says where to read on."""
    queue = name_from_arn(f.queue, "job-queue") if f.queue else None
    query = JobQuery(
        queue=queue,
        statuses=[f.status] if f.status else None,
        parent_id=resolve_job_ref(s.store, f.parent) if f.parent else None,
        name_prefix=f.name,
    )
    owner = owner_name()
    found: list[Job] = []
    offset = f.offset
    chunk = f.limit + 1 if f.user is None else 500
    scanned = 0
    more = False
    while True:
        rows = s.store.query_jobs(_page(query, offset, chunk))
        for i, job in enumerate(rows):
            if f.user is None or (job.submitted_by or owner) == f.user:
                if len(found) == f.limit:
                    more, offset = True, offset + i
                    break
                found.append(job)
        else:
            offset += len(rows)
            scanned += len(rows)
            if len(rows) == chunk and scanned < USER_SCAN_MOST:
                continue
            more = len(rows) == chunk
        break
    out: JSON = {"jobSummaryList": [job_summary(s.active.get(j.job_id, j)) for j in found]}
    if more:
        out["nextToken"] = str(offset)
    return out


def _page(q: JobQuery, offset: int, limit: int) -> JobQuery:
    return JobQuery(
        queue=q.queue, statuses=q.statuses, parent_id=q.parent_id, name_prefix=q.name_prefix,
        offset=offset, limit=limit,
    )  # fmt: skip


# --- the series ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Sample:
    at: int
    """Epoch milliseconds."""
    runnable: int
    running: int
    finished: int
    """Jobs that finished (SUCCEEDED or FAILED) since the sample before."""


class Series:
    """The last :data:`SERIES_SECONDS` of queue depth and throughput, one sample per
    :data:`SAMPLE_SECONDS` at most (:meth:`sample_if_due`; the head samples on a timer and
    before each read, so the newest point is fresh)."""

    def __init__(
        self,
        state: HeadState,
        every_seconds: float = SAMPLE_SECONDS,
        keep_seconds: float = SERIES_SECONDS,
        finished_count: Callable[[], int] | None = None,
    ) -> None:
        self._s = state
        self.every_ms = int(every_seconds * 1000)
        self._ring: deque[Sample] = deque(maxlen=max(2, int(keep_seconds / every_seconds) + 1))
        self._finished_count = finished_count or (lambda: state.ended_count)
        self._last_finished: int | None = None

    def sample_if_due(self) -> bool:
        """Take a sample unless the last one is younger than the period; whether it did."""
        now = self._s.clock()
        if self._ring and now - self._ring[-1].at < self.every_ms:
            return False
        runnable = running = 0
        for job in self._s.active.values():
            if not counted(job):
                continue
            if job.status == JobStatus.RUNNABLE:
                runnable += 1
            elif job.status in (JobStatus.STARTING, JobStatus.RUNNING):
                running += 1
        total = self._finished_count()
        # a first sample, or jobs deleted from the store since: no throughput to report
        finished = 0 if self._last_finished is None else max(0, total - self._last_finished)
        self._last_finished = total
        self._ring.append(Sample(now, runnable, running, finished))
        return True

    def to_json(self) -> JSON:
        self.sample_if_due()
        samples = list(self._ring)
        return {
            "sampleSeconds": self.every_ms / 1000,
            "at": [x.at for x in samples],
            "runnable": [x.runnable for x in samples],
            "running": [x.running for x in samples],
            "finished": [x.finished for x in samples],
        }
