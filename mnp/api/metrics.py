"""``GET /metrics``: the head in Prometheus's text format (the ``prometheus-client`` library).

What is counted where:

- at each status change (:meth:`HeadMetrics.observe`, told by ``HeadState.on_status``; only
  increments, nothing is looked up): ``mnp_job_transitions_total{queue,status}``,
  ``mnp_job_submissions_total{queue}`` (a job the scheduler took in, leaving SUBMITTED;
  array children and multi-node nodes are counted with their parent),
  ``mnp_job_retries_total{queue}`` (an attempt ended and the job is RUNNABLE again),
  ``mnp_job_scheduling_latency_seconds{queue}`` (created → first RUNNING) and
  ``mnp_job_run_seconds{queue,status}`` (started → SUCCEEDED/FAILED);
- per request (:class:`RequestTimer`, around the whole app):
  ``mnp_http_request_duration_seconds{door}``, the door being ``native``, ``aws``, ``logs``,
  ``agent`` (the agents' long polls: their duration is the poll's wait), ``metrics`` or
  ``other``;
- at each scrape, from what the head holds (:class:`HeadCollector`): ``mnp_jobs{queue,status}``
  (the active statuses from memory, SUCCEEDED/FAILED from the store: a job just ended shows
  there after the next tick's write), ``mnp_nodes{compute_environment,status}``,
  ``mnp_compute_environment_vcpus{compute_environment}`` and ``…_vcpus_used``, their ratio
  ``mnp_compute_environment_utilisation``, ``mnp_event_loop_lag_seconds`` (the last
  observation), ``mnp_event_loop_lag_max_seconds``, ``mnp_event_loop_stalled_seconds_total``,
  ``mnp_store_bytes``, and the event outbox: ``mnp_event_deliveries_pending``,
  ``mnp_event_dead_letters``.

Each head has its own :class:`~prometheus_client.CollectorRegistry` (tests run several heads
in one process; nothing goes to the library's global registry).

Who may scrape (see docs/metrics.md): the head's owner token or an admin's, as the native
API's ``X-Mnp-Token`` header or ``Authorization: Bearer`` (what Prometheus's
``authorization`` setting sends); a dedicated read-only token in ``$MNP_METRICS_TOKEN`` (so
Prometheus need not hold a token that can change the cluster); or anyone when
``$MNP_METRICS_OPEN=1`` (a head on a private network). The metrics name queues,
environments and how busy they are, which a shared head's users need not all see.
"""

from __future__ import annotations

import os
import secrets
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mnp.service.users import Caller
from mnp.spec.environments import Node
from mnp.spec.jobs import Job
from mnp.spec.protocol import TOKEN_HEADER
from mnp.spec.resources import Resources
from mnp.spec.states import JobStatus

TOKEN_ENV = "MNP_METRICS_TOKEN"
OPEN_ENV = "MNP_METRICS_OPEN"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600)
RUN_BUCKETS = (1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 72 * 3600)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30)
PLACED = frozenset({JobStatus.STARTING, JobStatus.RUNNING})
ENDED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED})


class _Runtime(Protocol):
    @property
    def used(self) -> Resources: ...


class MetricsState(Protocol):
    """What the scrape reads of the head's state (``HeadState``)."""

    @property
    def active(self) -> Mapping[str, Job]: ...

    @property
    def nodes(self) -> Mapping[str, Node]: ...

    @property
    def node_rt(self) -> Mapping[str, _Runtime]: ...


class MetricsStore(Protocol):
    def count_jobs_by_queue_status(self) -> dict[tuple[str, str], int]: ...

    def size_bytes(self) -> int: ...


class LagSource(Protocol):
    last_lag_ms: int
    max_lag_ms: int
    stalled_ms: int


class HeadCollector(Collector):
    """The gauges read at scrape time."""

    def __init__(
        self,
        state: MetricsState,
        store: MetricsStore,
        lag: LagSource,
        outbox: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        self.state = state
        self.store = store
        self.lag = lag
        self.outbox = outbox

    def collect(self) -> Iterable[Metric]:
        yield self._jobs()
        yield from self._nodes()
        lag = self.lag
        yield GaugeMetricFamily("mnp_event_loop_lag_seconds",
                                "How late the head's event loop last woke up",
                                value=lag.last_lag_ms / 1000)  # fmt: skip
        yield GaugeMetricFamily("mnp_event_loop_lag_max_seconds",
                                "The longest event-loop stall since the head started",
                                value=lag.max_lag_ms / 1000)  # fmt: skip
        yield CounterMetricFamily("mnp_event_loop_stalled_seconds",
                                  "Event-loop stall time since the head started",
                                  value=lag.stalled_ms / 1000)  # fmt: skip
        yield GaugeMetricFamily("mnp_store_bytes", "The head's SQLite files (with the WAL)",
                                value=self.store.size_bytes())  # fmt: skip
        if self.outbox is not None:
            pending, dead = self.outbox()
            yield GaugeMetricFamily("mnp_event_deliveries_pending",
                                    "Event deliveries not yet done", value=pending)  # fmt: skip
            yield GaugeMetricFamily("mnp_event_dead_letters",
                                    "Event deliveries given up (kept)", value=dead)  # fmt: skip

    def _jobs(self) -> Metric:
        counts: dict[tuple[str, str], int] = {
            key: n for key, n in self.store.count_jobs_by_queue_status().items()
            if JobStatus(key[1]).terminal
        }  # fmt: skip
        for job in self.state.active.values():
            if not job.status.terminal:
                key = (job.queue, job.status.value)
                counts[key] = counts.get(key, 0) + 1
        family = GaugeMetricFamily("mnp_jobs", "Jobs by queue and status",
                                   labels=["queue", "status"])  # fmt: skip
        for (queue, status), n in sorted(counts.items()):
            family.add_metric([queue, status], n)
        return family

    def _nodes(self) -> Iterator[Metric]:
        nodes = GaugeMetricFamily("mnp_nodes", "Nodes by compute environment and status",
                                  labels=["compute_environment", "status"])  # fmt: skip
        by: dict[tuple[str, str], int] = {}
        capacity: dict[str, float] = {}
        used: dict[str, float] = {}
        for node in self.state.nodes.values():
            key = (node.compute_environment, node.status.value)
            by[key] = by.get(key, 0) + 1
            if node.status.value != "ACTIVE":
                continue
            ce = node.compute_environment
            capacity[ce] = capacity.get(ce, 0) + node.capacity.vcpus
            rt = self.state.node_rt.get(node.node_id)
            used[ce] = used.get(ce, 0) + (rt.used.vcpus if rt is not None else 0)
        for (ce, status), n in sorted(by.items()):
            nodes.add_metric([ce, status], n)
        yield nodes
        labels = ["compute_environment"]
        cap = GaugeMetricFamily("mnp_compute_environment_vcpus",
                                "vCPUs of the active nodes", labels=labels)  # fmt: skip
        busy = GaugeMetricFamily("mnp_compute_environment_vcpus_used",
                                 "vCPUs held by placed jobs", labels=labels)  # fmt: skip
        util = GaugeMetricFamily("mnp_compute_environment_utilisation",
                                 "vCPUs used / vCPUs of active nodes", labels=labels)  # fmt: skip
        for ce in sorted(capacity):
            cap.add_metric([ce], capacity[ce])
            busy.add_metric([ce], used.get(ce, 0))
            util.add_metric([ce], used.get(ce, 0) / capacity[ce] if capacity[ce] else 0.0)
        yield cap
        yield busy
        yield util


class RequestHistogram(Collector):
    """``mnp_http_request_duration_seconds{door}``, kept here: an answer costs a bisect and two
    additions (``prometheus_client``'s ``Histogram`` takes a lock and walks its buckets in
    Python for each, several µs on every request), and a scrape reads the counts out as a
    histogram (:data:`REQUEST_BUCKETS`). The event loop both observes and collects."""

    NAME = "mnp_http_request_duration_seconds"

    def __init__(self) -> None:
        self._doors: dict[str, list[float]] = {}
        """Per door: the count of each bucket (``+Inf`` last), then the sum of the seconds."""

    def observe(self, door: str, seconds: float) -> None:
        counts = self._doors.get(door)
        if counts is None:
            counts = self._doors[door] = [0.0] * (len(REQUEST_BUCKETS) + 2)
        counts[bisect_left(REQUEST_BUCKETS, seconds)] += 1  # the first bound ≥ seconds
        counts[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.NAME, "The head's answers, by door", labels=["door"])
        bounds = [*map(floatToGoString, REQUEST_BUCKETS), "+Inf"]
        for door, counts in sorted(self._doors.items()):
            total = 0.0
            buckets = []
            for bound, n in zip(bounds, counts[:-1], strict=True):
                total += n
                buckets.append((bound, total))
            family.add_metric([door], buckets, counts[-1])
        yield family


class HeadMetrics:
    """One head's registry, the counters its status changes feed, and its request timer."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.transitions = Counter("mnp_job_transitions", "Job status changes, by new status",
                                   ["queue", "status"], registry=r)  # fmt: skip
        self.submissions = Counter("mnp_job_submissions", "Jobs taken in by the scheduler",
                                   ["queue"], registry=r)  # fmt: skip
        self.retries = Counter("mnp_job_retries", "Attempts ended with the job RUNNABLE again",
                               ["queue"], registry=r)  # fmt: skip
        self.latency = Histogram("mnp_job_scheduling_latency_seconds",
                                 "From a job's creation to its first RUNNING", ["queue"],
                                 buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.run_time = Histogram("mnp_job_run_seconds",
                                  "From a job's start to its end", ["queue", "status"],
                                  buckets=RUN_BUCKETS, registry=r)  # fmt: skip
        self.requests = RequestHistogram()
        r.register(self.requests)

        self._transition_inc: dict[tuple[str, JobStatus], Callable[[], None]] = {}
        """Per queue and new status, its transitions counter's ``inc`` (every change makes
        one)."""
        self._children: dict[tuple[object, ...], Any] = {}
        """Each metric's child per label values, found once: ``labels()`` takes a lock and
        builds its key on every call (a status change makes up to three)."""

    def observe_request(self, path: str, seconds: float) -> None:
        """One answer to a request for ``path``, ``seconds`` after it came."""
        self.requests.observe(door_of(path), seconds)

    def child(self, metric: Counter | Histogram, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached."""
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def collect_from(self, collector: Collector) -> None:
        self.registry.register(collector)

    def observe(self, job: Job, old: JobStatus) -> None:
        """A status change (``HeadState.on_status``): a few increments."""
        status = job.status
        queue = job.queue
        key = (queue, status)
        inc = self._transition_inc.get(key)
        if inc is None:
            inc = self._transition_inc[key] = self.child(self.transitions, queue, status.value).inc
        inc()
        child = self.child
        if old == JobStatus.SUBMITTED and job.parent_id is None:
            child(self.submissions, queue).inc()
        elif old in PLACED and status == JobStatus.RUNNABLE:
            child(self.retries, queue).inc()
        if job.is_array_parent or job.is_node:  # counted by their children, their parent
            return
        if status == JobStatus.RUNNING:
            if len(job.attempts) <= 1:
                now = job.history[-1].at if job.history else 0
                child(self.latency, queue).observe(max(0, now - job.created_at) / 1000)
        elif status in ENDED and job.started_at is not None:
            now = job.history[-1].at if job.history else 0
            child(self.run_time, queue, status.value).observe(
                max(0, now - job.started_at) / 1000
            )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def door_of(path: str) -> str:
    if path.startswith("/api/v1/logs/"):
        return "logs"
    if path.startswith("/internal/"):
        return "agent"
    if path.startswith("/api/"):
        return "native"
    if path.startswith("/v1/") or path == "/":
        return "aws"
    if path == "/metrics":
        return "metrics"
    return "other"


class RequestTimer:
    """ASGI middleware: each HTTP request's duration (to its last byte) by door."""

    def __init__(self, app: ASGIApp, metrics: HeadMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.metrics.observe_request(str(scope.get("path", "")), time.perf_counter() - start)


def allowed(request: Request, identify: Callable[[Request], Caller | None]) -> bool:
    """Whether ``request`` may read the metrics (see the module docstring)."""
    if os.environ.get(OPEN_ENV, "") in ("1", "true", "yes"):
        return True
    auth = request.headers.get("authorization", "")
    bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    dedicated = os.environ.get(TOKEN_ENV, "")
    if dedicated and bearer and secrets.compare_digest(bearer, dedicated):
        return True
    caller = identify(request)
    if caller is None and bearer:
        caller = identify(_with_token(request, bearer))
    return caller is not None and caller.is_admin


def _with_token(request: Request, token: str) -> Request:
    """``request`` as if its bearer token came in the native API's token header."""
    name = TOKEN_HEADER.lower().encode()
    headers = [(k, v) for k, v in request.scope["headers"] if k.lower() != name]
    headers.append((name, token.encode()))
    return Request({**request.scope, "headers": headers})


def routes(metrics: HeadMetrics, identify: Callable[[Request], Caller | None]) -> list[Route]:
    async def endpoint(request: Request) -> Response:
        if not allowed(request, identify):
            return PlainTextResponse(
                "metrics need an admin's token (X-Mnp-Token or Authorization: Bearer) or "
                f"${TOKEN_ENV}\n",
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", endpoint, methods=["GET"])]
