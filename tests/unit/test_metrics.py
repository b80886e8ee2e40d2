"""The head's metrics: counters fed by status changes, gauges read at scrape time, each head
its own registry, and who may scrape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.testclient import TestClient

from mnp.api import metrics
from mnp.service.users import Caller, Role
from mnp.spec.environments import Node, NodeStatus
from mnp.spec.jobs import Attempt, Job
from mnp.spec.resources import Resources
from mnp.spec.states import HistoryEntry, JobStatus
from tests.unit.helpers_core import T0, make_job


@dataclass
class Rt:
    used: Resources


@dataclass
class FakeState:
    active: dict[str, Job] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    node_rt: dict[str, Rt] = field(default_factory=dict)


@dataclass
class FakeStore:
    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def count_jobs_by_queue_status(self) -> dict[tuple[str, str], int]:
        return self.counts

    def size_bytes(self) -> int:
        return 4096


@dataclass
class FakeLag:
    last_lag_ms: int = 250
    max_lag_ms: int = 1500
    stalled_ms: int = 3000


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def attempt(number: int, at: int) -> Attempt:
    return Attempt(number, "n", "127.0.0.1", "ce", "log", at)


def step(m: metrics.HeadMetrics, job: Job, status: JobStatus, at: int) -> None:
    old, job.status = job.status, status
    job.history.append(HistoryEntry(status, at, None))
    if status == JobStatus.RUNNING:
        job.started_at = at
    m.observe(job, old)


def test_status_changes_feed_the_counters_and_histograms() -> None:
    m = metrics.HeadMetrics()
    job = make_job("j-1", queue="gpu")
    job.attempts.append(attempt(1, T0))
    for status, at in [(JobStatus.RUNNABLE, T0 + 100), (JobStatus.STARTING, T0 + 200),
                       (JobStatus.RUNNING, T0 + 1500), (JobStatus.RUNNABLE, T0 + 2000),
                       (JobStatus.STARTING, T0 + 2100), (JobStatus.RUNNING, T0 + 2200),
                       (JobStatus.SUCCEEDED, T0 + 12200)]:  # fmt: skip
        if status == JobStatus.RUNNING and job.started_at is not None:
            job.attempts.append(attempt(2, at))
        step(m, job, status, at)
    got = samples(m.exposition().decode())
    q = (("queue", "gpu"),)
    assert got[("mnp_job_submissions_total", q)] == 1
    assert got[("mnp_job_retries_total", q)] == 1
    assert got[("mnp_job_transitions_total", (("queue", "gpu"), ("status", "RUNNING")))] == 2
    # the first RUNNING only: 1.5 s after creation
    assert got[("mnp_job_scheduling_latency_seconds_count", q)] == 1
    assert got[("mnp_job_scheduling_latency_seconds_sum", q)] == pytest.approx(1.5)
    run = (("queue", "gpu"), ("status", "SUCCEEDED"))
    assert got[("mnp_job_run_seconds_sum", run)] == pytest.approx(10.0)


def test_each_head_has_its_own_registry() -> None:
    a, b = metrics.HeadMetrics(), metrics.HeadMetrics()
    job = make_job("j-1")
    step(a, job, JobStatus.RUNNABLE, T0)
    assert b"mnp_job_submissions_total{queue=\"q\"} 1.0" in a.exposition()
    assert b"mnp_job_submissions_total{queue=\"q\"}" not in b.exposition()


def _node(node_id: str, ce: str, vcpus: float, status: NodeStatus = NodeStatus.ACTIVE) -> Node:
    return Node(node_id, ce, "127.0.0.1", Resources(vcpus, 1024, 0), status)


def test_the_scrape_reads_jobs_nodes_lag_and_store() -> None:
    state = FakeState()
    state.active = {
        "a": make_job("a", JobStatus.RUNNING, queue="q"),
        "b": make_job("b", JobStatus.RUNNABLE, queue="q"),
        "c": make_job("c", JobStatus.SUCCEEDED, queue="q"),  # ended: counted from the store
    }
    state.nodes = {"n1": _node("n1", "ce", 4), "n2": _node("n2", "ce", 4),
                   "n3": _node("n3", "ce", 4, NodeStatus.STOPPED)}  # fmt: skip
    state.node_rt = {"n1": Rt(Resources(3, 0, 0)), "n2": Rt(Resources(1, 0, 0))}
    store = FakeStore({("q", "SUCCEEDED"): 5, ("q", "RUNNING"): 9, ("r", "FAILED"): 2})
    m = metrics.HeadMetrics()
    m.collect_from(metrics.HeadCollector(state, store, FakeLag(), lambda: (3, 1)))
    got = samples(m.exposition().decode())

    def jobs(q: str, s: str) -> float:
        return got[("mnp_jobs", (("queue", q), ("status", s)))]

    assert (jobs("q", "RUNNING"), jobs("q", "RUNNABLE")) == (1, 1)  # memory, not the store's 9
    assert (jobs("q", "SUCCEEDED"), jobs("r", "FAILED")) == (5, 2)
    ce = (("compute_environment", "ce"),)
    assert got[("mnp_nodes", (("compute_environment", "ce"), ("status", "ACTIVE")))] == 2
    assert got[("mnp_compute_environment_vcpus", ce)] == 8
    assert got[("mnp_compute_environment_utilisation", ce)] == pytest.approx(0.5)
    assert got[("mnp_event_loop_lag_seconds", ())] == 0.25
    assert got[("mnp_event_loop_stalled_seconds_total", ())] == 3.0
    assert got[("mnp_store_bytes", ())] == 4096
    assert got[("mnp_event_dead_letters", ())] == 1


ADMIN = Caller("root", Role.ADMIN, is_owner=True)
USER = Caller("bob", Role.USER)


def _client(monkeypatch: pytest.MonkeyPatch, **env: str) -> TestClient:
    for k in (metrics.TOKEN_ENV, metrics.OPEN_ENV):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    tokens = {"owner-token": ADMIN, "user-token": USER}

    def identify(request: Request) -> Caller | None:
        return tokens.get(request.headers.get("X-Mnp-Token", ""))

    m = metrics.HeadMetrics()
    app = Starlette(routes=metrics.routes(m, identify))
    return TestClient(metrics.RequestTimer(app, m))


def _status(client: TestClient, **headers: Any) -> int:
    return int(client.get("/metrics", headers=headers).status_code)


def test_who_may_scrape(monkeypatch: pytest.MonkeyPatch) -> None:
    c = _client(monkeypatch)
    assert _status(c) == 401
    assert _status(c, **{"X-Mnp-Token": "user-token"}) == 401  # not an admin
    assert _status(c, **{"X-Mnp-Token": "owner-token"}) == 200
    assert _status(c, Authorization="Bearer owner-token") == 200
    assert _status(c, Authorization="Bearer wrong") == 401
    c = _client(monkeypatch, **{metrics.TOKEN_ENV: "scrape-only"})
    assert _status(c, Authorization="Bearer scrape-only") == 200
    assert _status(c, Authorization="Bearer scrape-onl") == 401
    c = _client(monkeypatch, **{metrics.OPEN_ENV: "1"})
    assert _status(c) == 200


def test_requests_are_timed_by_door(monkeypatch: pytest.MonkeyPatch) -> None:
    c = _client(monkeypatch, **{metrics.OPEN_ENV: "1"})
    c.get("/metrics")
    got = samples(c.get("/metrics").text)
    assert got[("mnp_http_request_duration_seconds_count", (("door", "metrics"),))] >= 1
    assert metrics.door_of("/api/v1/submitJob") == "native"
    assert metrics.door_of("/internal/v1/agents/poll") == "agent"
    assert metrics.door_of("/v1/submitjob") == "aws"


def test_request_durations_count_in_the_first_bucket_at_or_above_them() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from mnp.api.metrics import HeadMetrics

    m = HeadMetrics()
    for seconds in (0.001, 0.0011, 0.02, 40.0):  # a bound itself is "le" it
        m.observe_request("/v1/submitjob", seconds)
    samples = {
        (s.name, s.labels.get("le")): s.value
        for f in text_string_to_metric_families(m.exposition().decode())
        for s in f.samples
        if s.name.startswith("mnp_http_request_duration_seconds") and s.labels["door"] == "aws"
    }
    bucket = "mnp_http_request_duration_seconds_bucket"
    assert samples[(bucket, "0.001")] == 1
    assert samples[(bucket, "0.0025")] == 2
    assert samples[(bucket, "0.025")] == 3
    assert samples[(bucket, "30.0")] == 3
    assert samples[(bucket, "+Inf")] == 4
    assert samples[("mnp_http_request_duration_seconds_count", None)] == 4
    assert abs(samples[("mnp_http_request_duration_seconds_sum", None)] - 40.0221) < 1e-9
