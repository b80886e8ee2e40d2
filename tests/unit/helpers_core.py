"""Shared helpers for the head-node unit tests: a fake clock, job factories, and an in-process
head node (``Service`` + ``Scheduler`` over a temp SQLite file) driven like the HTTP layer."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from mnp.config import HeadConfig
from mnp.nodes.sessions import NodeSessions
from mnp.scheduler.loop import Scheduler
from mnp.scheduler.state import HeadState
from mnp.service.core import Service
from mnp.service.operations import Handler, native_operations
from mnp.service.users import Caller, owner
from mnp.spec.definitions import Dependency, JobSpec, RetryStrategy
from mnp.spec.jobs import Job
from mnp.spec.protocol import Assignment, Event, Kill, Poll, Register, Report
from mnp.spec.resources import ContainerSpec, Resources
from mnp.spec.states import HistoryEntry, JobStatus
from mnp.store.sqlite import Store

T0 = 1_700_000_000_000
"""A fixed epoch-ms start for every fake clock."""

HOSTILE = 'it\'s a "job"; rm -rf / $HOME `id` \\g<0>\nsecond line'
"""A value with spaces, quotes, ``;``, ``$``, backquotes, a regex back-reference and a newline."""


class FakeClock:
    """An injected clock (epoch milliseconds) that only moves when told to."""

    def __init__(self, start_ms: int = T0) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


def make_spec(
    spec_id: str = "spec-1",
    *,
    name: str = "job",
    queue: str = "q",
    command: list[str] | None = None,
    resources: Resources | None = None,
    depends_on: list[Dependency] | None = None,
    retry: RetryStrategy | None = None,
    array_size: int | None = None,
    timeout_seconds: int | None = None,
    environment: dict[str, str] | None = None,
) -> JobSpec:
    return JobSpec(
        spec_id=spec_id,
        name=name,
        queue=queue,
        definition_arn="arn:aws:batch:local:000000000000:job-definition/def:1",
        definition_name="def",
        container=ContainerSpec(
            command=command if command is not None else ["true"],
            environment=dict(environment or {}),
            resources=resources if resources is not None else Resources(1, 0, 0),
        ),
        parameters={},
        depends_on=list(depends_on or []),
        retry=retry if retry is not None else RetryStrategy(),
        timeout_seconds=timeout_seconds,
        array_size=array_size,
        tags={},
        platform_capabilities=["EC2"],
        submitted_at=T0,
    )


def make_job(
    job_id: str,
    status: JobStatus = JobStatus.SUBMITTED,
    *,
    spec: JobSpec | None = None,
    created_at: int = T0,
    parent_id: str | None = None,
    array_index: int | None = None,
    status_reason: str | None = None,
    **spec_kwargs: Any,
) -> Job:
    return Job(
        job_id=job_id,
        spec=spec if spec is not None else make_spec(job_id, **spec_kwargs),
        status=status,
        created_at=created_at,
        parent_id=parent_id,
        array_index=array_index,
        status_reason=status_reason,
        history=[HistoryEntry(status, created_at, None)],
    )


TABLES = (
    "job_definitions",
    "job_queues",
    "compute_environments",
    "nodes",
    "job_specs",
    "jobs",
    "job_intake",
    "job_history",
    "meta",
)


def row_counts(db_path: Path) -> dict[str, int]:
    """Rows per table, read through a separate connection (what a restart would see)."""
    con = sqlite3.connect(str(db_path))
    try:
        return {t: int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in TABLES}
    finally:
        con.close()


@dataclass
class Head:
    """A head node in-process: the same calls the HTTP layer makes, with a fake clock."""

    home: Path
    clock: FakeClock
    service: Service
    scheduler: Scheduler
    state: HeadState
    store: Store
    sessions: NodeSessions
    seq: dict[str, int] = field(default_factory=dict)
    runs: dict[str, set[str]] = field(default_factory=dict)
    """What each fake node runs (started, not exited): what :meth:`poll` lists by default."""

    @classmethod
    def open(
        cls, home: Path, clock: FakeClock | None = None, lost_after_seconds: float = 10.0
    ) -> Head:
        home.mkdir(parents=True, exist_ok=True)
        clock = clock or FakeClock()
        config = HeadConfig(
            home=home, local=None, min_timeout_seconds=60, lost_after_seconds=lost_after_seconds
        )
        store = Store(config.db_path)
        state = HeadState(config, store, clock=clock)
        scheduler = Scheduler(state, "http://127.0.0.1:1")
        service = Service(state, scheduler)
        service.load()
        return cls(home, clock, service, scheduler, state, store, NodeSessions(scheduler))

    @property
    def api(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        """The native API's operations (JSON in, JSON out), as the HTTP door calls them for
        the head's owner."""
        return self.api_as(owner())

    def api_as(self, caller: Caller) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        """The native API's operations as ``caller`` calls them."""
        ops: dict[str, Handler] = native_operations(self.service)
        return {name: partial(op, caller) for name, op in ops.items()}

    @property
    def db_path(self) -> Path:
        return self.state.config.db_path

    # --- setup -------------------------------------------------------------------------------
    def environment(self, name: str = "ce", state: str = "ENABLED") -> None:
        self.api["createComputeEnvironment"](
            {"computeEnvironmentName": name, "type": "UNMANAGED", "state": state}
        )

    def queue(self, name: str = "q", ces: tuple[str, ...] = ("ce",), priority: int = 1) -> None:
        self.api["createJobQueue"](
            {
                "jobQueueName": name,
                "priority": priority,
                "computeEnvironmentOrder": [
                    {"order": i + 1, "computeEnvironment": c} for i, c in enumerate(ces)
                ],
            }
        )

    def definition(
        self, name: str = "def", command: list[str] | None = None, **extra: Any
    ) -> dict[str, Any]:
        container = {
            "command": command if command is not None else ["run", "Ref::msg"],
            "resourceRequirements": [
                {"type": "VCPU", "value": "1"},
                {"type": "MEMORY", "value": "256"},
            ],
        }
        container.update(extra.pop("containerProperties", {}))
        body = {
            "jobDefinitionName": name,
            "type": "container",
            "containerProperties": container,
            **extra,
        }
        return self.api["registerJobDefinition"](body)

    def node(
        self,
        node_id: str = "n1",
        ce: str = "ce",
        vcpus: int = 4,
        memory_mib: int = 4096,
        gpus: int = 0,
    ) -> None:
        self.sessions.register(
            Register(node_id, ce, f"127.0.0.{10 + len(self.seq)}", vcpus, memory_mib, gpus, 4242)
        )
        self.seq.setdefault(node_id, 0)

    def basic(self, nodes: tuple[str, ...] = ("n1",)) -> None:
        """One UNMANAGED environment ``ce``, queue ``q``, definition ``def``, the given nodes."""
        self.environment()
        self.queue()
        self.definition()
        for n in nodes:
            self.node(n)

    # --- jobs --------------------------------------------------------------------------------
    def submit(self, name: str = "job", **body: Any) -> str:
        req = {"jobName": name, "jobQueue": "q", "jobDefinition": "def", **body}
        return str(self.api["submitJob"](req)["jobId"])

    def describe(self, job_id: str) -> dict[str, Any]:
        jobs = self.api["describeJobs"]({"jobs": [job_id]})["jobs"]
        assert len(jobs) == 1, f"job {job_id} not found"
        return dict(jobs[0])

    def status(self, job_id: str) -> str:
        return str(self.describe(job_id)["status"])

    def ticks(self, n: int = 3) -> None:
        for _ in range(n):
            self.scheduler.tick()

    # --- the agent side ----------------------------------------------------------------------
    def poll(
        self, node_id: str = "n1", running: list[str] | None = None
    ) -> tuple[list[Assignment], list[Kill]]:
        if running is None:
            running = sorted(self.runs.get(node_id, set()))
        reply = self.sessions.poll(Poll(node_id, running, 0.0, epoch=self.epoch(node_id)))
        return reply.assignments, reply.kills

    def event(self, node_id: str, attempt_id: str, kind: Any, **kw: Any) -> int:
        self.seq[node_id] = self.seq.get(node_id, 0) + 1
        ev = Event(attempt_id, kind, self.clock(), seq=self.seq[node_id], **kw)
        runs = self.runs.setdefault(node_id, set())
        if kind == "started":
            runs.add(attempt_id)
        elif kind in ("exited", "start_failed"):
            runs.discard(attempt_id)
        return self.sessions.report(Report(node_id, [ev], self.epoch(node_id)))

    def epoch(self, node_id: str) -> int:
        """The node's current session, which the calls played here belong to."""
        node = self.state.nodes.get(node_id)
        return node.session_epoch if node is not None else 0

    def started(self, node_id: str, attempt_id: str) -> None:
        self.event(node_id, attempt_id, "started", pid=999)

    def exited(self, node_id: str, attempt_id: str, code: int, **kw: Any) -> None:
        self.event(node_id, attempt_id, "exited", exit_code=code, **kw)

    def run_next(self, node_id: str = "n1") -> Assignment:
        """Tick until ``node_id`` gets exactly one assignment; start it."""
        for _ in range(4):
            self.scheduler.tick()
            assignments, _ = self.poll(node_id)
            if assignments:
                assert len(assignments) == 1, assignments
                self.started(node_id, assignments[0].attempt_id)
                return assignments[0]
        raise AssertionError(f"no assignment for {node_id} after 4 ticks")

    def close(self) -> None:
        self.store.close()
