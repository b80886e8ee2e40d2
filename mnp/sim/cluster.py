"""A simulated cluster: many virtual nodes and a virtual clock driving the real head.

The head is the real one in-process (:class:`~mnp.scheduler.state.HeadState`,
:class:`~mnp.scheduler.loop.Scheduler`, :class:`~mnp.service.core.Service` over a SQLite
store), its clock injected; only the nodes are virtual. They register in one UNMANAGED
environment through :class:`~mnp.nodes.sessions.NodeSessions`, the same calls a node agent
makes over HTTP, and run nothing: an assignment "starts" as soon as its node polls, and its
exit is reported once the job's virtual duration has passed on the virtual clock. So what is
measured is the head's own cost per scheduling decision (placements and completions), the
part of a 350,000-vCPU cluster that cannot be tried on one machine with processes.

One :meth:`Cluster.step` is one virtual interval: the nodes whose jobs ended report their
exits, new jobs are submitted (keeping the queue topped up to its target), the scheduler
ticks (again while the tick woke work, as the head's loop does), the nodes given work poll
and report their starts, every node heartbeats once per ``heartbeat_seconds``, and the clock
advances by ``step_seconds``. A node given work polls at once because a real agent's poll is
held open until work arrives; an idle one only heartbeats.
"""

from __future__ import annotations

import heapq
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from mnp.config import HeadConfig
from mnp.nodes.sessions import NodeSessions
from mnp.scheduler.loop import Scheduler
from mnp.scheduler.state import HeadState
from mnp.service.core import Service
from mnp.service.operations import native_operations
from mnp.service.users import owner
from mnp.spec.jobs import array_child_id
from mnp.spec.protocol import Event, Poll, Register, Report
from mnp.spec.states import JobStatus
from mnp.store.sqlite import Store

START_MS = 1_700_000_000_000
"""The virtual clock's start (epoch milliseconds)."""
CE, QUEUE, DEFINITION, POLICY = "sim", "simq", "simdef", "simfs"
MEMORY_PER_VCPU_MIB = 2048
JOB_MEMORY_MIB = 256


class VirtualClock:
    """The head's clock (epoch milliseconds): it moves only when the simulation says."""

    def __init__(self, start_ms: int = START_MS) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * 1000)


@dataclass(frozen=True, slots=True)
class Workload:
    """The stream of jobs: ``jobs`` of 1 vCPU lasting ``min_seconds``–``max_seconds``
    (uniform, whole seconds, seeded), spread over ``shares`` (fair share on when given; one
    job of each share in turn, each share's weight factor as given), submitted so that the
    queue holds ``queue_target`` unplaced jobs whenever there are jobs left to submit."""

    jobs: int
    min_seconds: int = 1
    max_seconds: int = 60
    shares: tuple[tuple[str, float], ...] = (("a", 1.0), ("b", 1.0))
    """(shareIdentifier, weightFactor); empty: a FIFO queue."""
    queue_target: int = 10_000
    seed: int = 1
    share_decay_seconds: int = 600
    vcpus: int = 1
    array_size: int = 1
    """Jobs per SubmitJob: 1 submits single jobs; 2 or more, arrays of that many children
    (each child its own duration), so that submitting costs the head less than scheduling."""
    fair_share: bool = True
    """False: the queue has no policy (FIFO), the jobs are still counted by ``shares`` (a
    baseline for fair share's split)."""


@dataclass(slots=True)
class _VNode:
    node_id: str
    epoch: int = 0
    seq: int = 0
    running: set[str] = field(default_factory=set)
    """Attempt ids started here and not yet reported exited."""
    events: list[Event] = field(default_factory=list)
    """Events to report with this node's next report."""


@dataclass(slots=True)
class Counts:
    """What the simulation has done so far."""

    submitted: int = 0
    placed: int = 0
    completed: int = 0
    ticks: int = 0
    polls: int = 0
    reports: int = 0
    steps: int = 0
    vcpu_seconds: dict[str, float] = field(default_factory=dict)
    """vCPU-seconds of the attempts completed, per share: the virtual time each ran from its
    start (or :attr:`Cluster.count_from_ms`, when later) to its exit."""
    last_exit_ms: int | None = None
    """When the latest completion was reported (virtual epoch ms)."""
    wall: dict[str, float] = field(default_factory=dict)
    """Wall-clock seconds per phase: submit, report, tick, poll."""
    per_step: list[tuple[int, float]] = field(default_factory=list)
    """Each step's decisions (placements + completions) and its wall-clock seconds apart from
    submitting (the head's scheduling work: reports, ticks, polls)."""


class Cluster:
    """``nodes`` virtual nodes of ``vcpus`` vCPUs each, a head over a store in ``home``."""

    def __init__(
        self,
        home: Path,
        nodes: int,
        vcpus: int,
        workload: Workload,
        *,
        step_seconds: float = 1.0,
        heartbeat_seconds: float = 5.0,
        lost_after_seconds: float = 60.0,
    ) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.clock = VirtualClock()
        self.workload = workload
        self.step_seconds = step_seconds
        self.heartbeat_ms = round(heartbeat_seconds * 1000)
        config = HeadConfig(
            home=home, local=None, min_timeout_seconds=60, lost_after_seconds=lost_after_seconds
        )
        self.store = Store(config.db_path)
        self.state = HeadState(config, self.store, clock=self.clock)
        self.scheduler = Scheduler(self.state, "http://127.0.0.1:1")
        self.service = Service(self.state, self.scheduler)
        self.service.load()
        self.sessions = NodeSessions(self.scheduler)
        ops = native_operations(self.service)
        self.api: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            name: partial(op, owner()) for name, op in ops.items()
        }
        self.rng = random.Random(workload.seed)
        self.counts = Counts()
        self.durations: dict[str, int] = {}
        """job id → virtual seconds it runs (drawn at submit)."""
        self.share_of: dict[str, str] = {}
        self.submits = 0
        """SubmitJob calls made."""
        self.nodes: dict[str, _VNode] = {}
        self.exits: list[tuple[int, str, str]] = []
        """(virtual ms it exits at, node id, attempt id): a heap."""
        self.started_at: dict[str, int] = {}
        self.count_from_ms = START_MS
        """Usage (:attr:`Counts.vcpu_seconds`) is counted from here on (set it to measure a
        window, e.g. once the cluster is saturated)."""
        self.to_poll: set[str] = set()
        self.woke = False
        self.state.on_node_work = self.to_poll.add
        self.state.on_wake = self._woke
        self._next_heartbeat = 0
        self._order: list[str] = []
        self._setup(nodes, vcpus)

    def _woke(self) -> None:
        self.woke = True

    # --- set-up --------------------------------------------------------------------------------
    def _setup(self, nodes: int, vcpus: int) -> None:
        w = self.workload
        self.api["createComputeEnvironment"](
            {"computeEnvironmentName": CE, "type": "UNMANAGED", "state": "ENABLED"}
        )
        queue: dict[str, Any] = {
            "jobQueueName": QUEUE,
            "priority": 1,
            "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": CE}],
        }
        if w.shares and w.fair_share:
            fairshare = {
                "shareDecaySeconds": w.share_decay_seconds,
                "shareDistribution": [
                    {"shareIdentifier": s, "weightFactor": f} for s, f in w.shares
                ],
            }
            policy = {"name": POLICY, "fairsharePolicy": fairshare}
            queue["schedulingPolicyArn"] = self.api["createSchedulingPolicy"](policy)["arn"]
        self.api["createJobQueue"](queue)
        self.api["registerJobDefinition"](
            {
                "jobDefinitionName": DEFINITION,
                "type": "container",
                "containerProperties": {
                    "command": ["true"],
                    "resourceRequirements": [
                        {"type": "VCPU", "value": str(w.vcpus)},
                        {"type": "MEMORY", "value": str(JOB_MEMORY_MIB)},
                    ],
                },
            }
        )
        for i in range(nodes):
            node_id = f"v{i:06d}"
            address = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
            self.sessions.register(
                Register(node_id, CE, address, vcpus, vcpus * MEMORY_PER_VCPU_MIB, 0, 1)
            )
            vnode = self.nodes[node_id] = _VNode(node_id)
            vnode.epoch = self.state.nodes[node_id].session_epoch
        self._order = list(self.nodes)
        self.to_poll.clear()

    # --- one virtual interval ----------------------------------------------------------------
    def step(self) -> None:
        c = self.counts
        before = c.placed + c.completed
        submit = c.wall.get("submit", 0.0)
        t0 = time.perf_counter()
        with self._timed("report"):
            self._report_exits()
        with self._timed("submit"):
            self._submit()
        with self._timed("tick"):
            self._tick()
        with self._timed("poll"):
            self._poll()
        wall = time.perf_counter() - t0 - (c.wall["submit"] - submit)
        c.per_step.append((c.placed + c.completed - before, wall))
        self.clock.advance(self.step_seconds)
        c.steps += 1

    def _report_exits(self) -> None:
        now = self.clock.now
        due: set[str] = set()
        while self.exits and self.exits[0][0] <= now:
            _, node_id, aid = heapq.heappop(self.exits)
            vnode = self.nodes[node_id]
            vnode.running.discard(aid)
            self._event(vnode, aid, "exited", exit_code=0)
            due.add(node_id)
            job_id = aid.rpartition("/")[0]
            share = self.share_of.get(job_id, "")
            began = max(self.started_at.pop(aid, now), self.count_from_ms)
            ran = max(0, now - began) / 1000 * self.workload.vcpus
            self.counts.vcpu_seconds[share] = self.counts.vcpu_seconds.get(share, 0.0) + ran
            self.counts.completed += 1
            self.counts.last_exit_ms = now
        for node_id in sorted(due):
            self._send(self.nodes[node_id])

    def _submit(self) -> None:
        w = self.workload
        c = self.counts
        want = w.queue_target - (c.submitted - c.placed)
        while c.submitted < w.jobs:
            # whole arrays once there is room for one (the workload's last: what is left)
            size = min(max(1, w.array_size), max(1, w.queue_target), w.jobs - c.submitted)
            if size > want:
                break
            body: dict[str, Any] = {
                "jobName": f"s{self.submits}",
                "jobQueue": QUEUE,
                "jobDefinition": DEFINITION,
            }
            if size > 1:
                body["arrayProperties"] = {"size": size}
            share = ""
            if w.shares:
                share = w.shares[self.submits % len(w.shares)][0]
                if w.fair_share:
                    body["shareIdentifier"] = share
            job_id = str(self.api["submitJob"](body)["jobId"])
            self.submits += 1
            ids = [array_child_id(job_id, i) for i in range(size)] if size > 1 else [job_id]
            for child in ids:
                self.durations[child] = self.rng.randint(w.min_seconds, w.max_seconds)
                self.share_of[child] = share
            c.submitted += size
            want -= size

    def _tick(self) -> None:
        for _ in range(4):  # the head ticks again at once while a tick wakes new work
            self.woke = False
            self.scheduler.tick()
            self.counts.ticks += 1
            if not self.woke:
                break

    def _poll(self) -> None:
        now = self.clock.now
        polled = set(self.to_poll)
        self.to_poll.clear()
        if now >= self._next_heartbeat:  # every idle node heartbeats once per interval
            polled.update(self._order)
            self._next_heartbeat = now + self.heartbeat_ms
        for node_id in sorted(polled):
            vnode = self.nodes[node_id]
            reply = self.sessions.poll(Poll(node_id, sorted(vnode.running), 0.0, epoch=vnode.epoch))
            self.counts.polls += 1
            if not reply.assignments:
                continue
            for a in reply.assignments:
                if a.attempt_id in vnode.running:
                    continue  # a re-sent assignment: it runs already
                vnode.running.add(a.attempt_id)
                self._event(vnode, a.attempt_id, "started", pid=2)
                ends = now + self.durations[a.job_id] * 1000
                heapq.heappush(self.exits, (ends, node_id, a.attempt_id))
                self.started_at[a.attempt_id] = now
                self.counts.placed += 1
            self._send(vnode)

    def _event(self, vnode: _VNode, aid: str, kind: Any, **kw: Any) -> None:
        vnode.seq += 1
        vnode.events.append(Event(aid, kind, self.clock.now, seq=vnode.seq, **kw))

    def _send(self, vnode: _VNode) -> None:
        if vnode.events:
            self.sessions.report(Report(vnode.node_id, vnode.events, vnode.epoch))
            vnode.events = []
            self.counts.reports += 1

    @contextmanager
    def _timed(self, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            wall = self.counts.wall
            wall[phase] = wall.get(phase, 0.0) + time.perf_counter() - t0

    # --- running and reading ------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """Every job of the workload submitted and completed."""
        c = self.counts
        return c.submitted == self.workload.jobs and c.completed == c.submitted

    def run(self, seconds: float | None = None, wall_limit: float | None = None) -> bool:
        """Step until ``seconds`` of virtual time have passed (None: until :attr:`done`), or
        until ``wall_limit`` wall-clock seconds have (None: no limit). Returns whether the
        virtual time (or the workload) was run to its end, not cut short by the limit."""
        end = None if seconds is None else self.clock.now + round(seconds * 1000)
        stop = None if wall_limit is None else time.perf_counter() + wall_limit
        while not self.done and (end is None or self.clock.now < end):
            if stop is not None and time.perf_counter() >= stop:
                return False
            self.step()
        return True

    def summary(self) -> dict[str, Any]:
        """What the run did and how fast, as JSON: decisions (placements + completions) per
        wall-clock second over the whole run and apart from submitting, and the median over
        the steps of the second half of the run (the cluster filled, the queue in its steady
        state): the sustained rate."""
        c = self.counts
        decisions = c.placed + c.completed
        wall = sum(c.wall.values())
        scheduling = wall - c.wall.get("submit", 0.0)
        late = [d / w for d, w in c.per_step[len(c.per_step) // 2 :] if w > 0]
        late.sort()
        share_total = sum(c.vcpu_seconds.values()) or 1.0
        return {
            "nodes": len(self.nodes),
            "vcpus": sum(n.capacity.vcpus for n in self.state.nodes.values()),
            "virtual_seconds": self.virtual_seconds,
            "makespan_seconds": self.makespan,
            "steps": c.steps,
            "submitted": c.submitted,
            "submit_calls": self.submits,
            "placed": c.placed,
            "completed": c.completed,
            "decisions": decisions,
            "queue_target": self.workload.queue_target,
            "queued_at_end": c.submitted - c.placed,
            "running_at_end": c.placed - c.completed,
            "ticks": c.ticks,
            "polls": c.polls,
            "reports": c.reports,
            "wall_seconds": round(wall, 3),
            "wall_seconds_by_phase": {k: round(v, 3) for k, v in sorted(c.wall.items())},
            "decisions_per_wall_second": round(decisions / wall, 1) if wall else None,
            "decisions_per_scheduling_second": (
                round(decisions / scheduling, 1) if scheduling else None
            ),
            "sustained_decisions_per_second": round(late[len(late) // 2], 1) if late else None,
            "vcpu_seconds_by_share": {k: round(v, 1) for k, v in sorted(c.vcpu_seconds.items())},
            "vcpu_share_fraction": {
                k: round(v / share_total, 4) for k, v in sorted(c.vcpu_seconds.items())
            },
        }

    @property
    def virtual_seconds(self) -> float:
        """Virtual time run so far."""
        return (self.clock.now - START_MS) / 1000

    @property
    def makespan(self) -> float | None:
        """Virtual seconds from the start to the latest completion (None: none yet)."""
        last = self.counts.last_exit_ms
        return None if last is None else (last - START_MS) / 1000

    def statuses(self) -> dict[str, int]:
        """Jobs per status, from the store."""
        return self.store.count_jobs_by_status()

    def unplaced(self) -> int:
        """Jobs in the head's queue not placed yet (SUBMITTED, PENDING or RUNNABLE)."""
        s = self.state
        return (
            len(s.submitted)
            + sum(len(q) for q in s.runnable.values())
            + sum(1 for j in s.active.values() if j.status == JobStatus.PENDING)
        )

    def close(self) -> None:
        self.store.close()


@contextmanager
def cluster(
    nodes: int, vcpus: int, workload: Workload, home: Path | None = None, **kw: Any
) -> Iterator[Cluster]:
    """A :class:`Cluster` over a store in ``home`` (None: a temporary directory, removed)."""
    if home is not None:
        c = Cluster(home, nodes, vcpus, workload, **kw)
        try:
            yield c
        finally:
            c.close()
        return
    with tempfile.TemporaryDirectory(prefix="mnp-sim-") as tmp:
        c = Cluster(Path(tmp) / "home", nodes, vcpus, workload, **kw)
        try:
            yield c
        finally:
            c.close()
