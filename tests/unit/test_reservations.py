"""Reservations in ``reconcile`` (no starvation of a job that waited too long), DISABLED
environments, and default MEMORY.

A simulated cluster drives the pure ``reconcile`` with a virtual clock (a 4-node multi-node
job behind a stream of small jobs: starved without reservations, placed within the age with
them); table snapshots show what backfill may put on reserved nodes; the in-process head shows
DISABLED environments and default MEMORY end to end.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from mnp.scheduler import reasons
from mnp.scheduler.reconcile import (
    Action,
    CEView,
    NodeView,
    Place,
    PlaceGang,
    QueueView,
    SetReason,
    Snapshot,
    reconcile,
)
from mnp.spec.environments import NodeStatus
from mnp.spec.jobs import Job
from mnp.spec.noderanges import NodeSpec
from mnp.spec.resources import ContainerSpec, Resources
from mnp.spec.states import HistoryEntry, JobStatus
from tests.unit.helpers_core import T0, Head, make_job

CAP = Resources(4, 4096, 0)
AGE_MS = 300_000


def small(job_id: str, at: int, timeout: int | None = None, vcpus: float = 1) -> Job:
    job = make_job(job_id, JobStatus.RUNNABLE, created_at=at, resources=Resources(vcpus, 256, 0))
    job.spec = replace(job.spec, timeout_seconds=timeout)
    return job


def gang(job_id: str, num: int, at: int, timeout: int | None = None) -> Job:
    job = make_job(job_id, JobStatus.RUNNABLE, created_at=at)
    job.spec = replace(
        job.spec,
        timeout_seconds=timeout,
        nodes=NodeSpec(
            num_nodes=num,
            main_node=0,
            containers=[ContainerSpec(["main"], {}, Resources(1, 256, 0)) for _ in range(num)],
        ),
    )
    return job


def snapshot(
    now: int,
    nodes: list[NodeView],
    jobs: list[Job],
    reserve_after_ms: int | None = AGE_MS,
    enabled: bool = True,
) -> Snapshot:
    return Snapshot(
        now_ms=now,
        queues=[QueueView("q", 1, ("ce",))],
        compute_environments={"ce": CEView("ce", enabled, 0, (CAP,), max_nodes=len(nodes))},
        nodes=nodes,
        submitted=[],
        pending=[],
        dependency_status={},
        runnable={"q": jobs},
        lost_after_ms=3_600_000,
        launch_timeout_ms=3_600_000,
        reserve_after_ms=reserve_after_ms,
        explain=True,
    )


# --- a simulated cluster: a gang behind a stream of small jobs --------------------------------


@dataclass
class Sim:
    """``nodes`` 4-vCPU nodes; small untimed jobs (each runs ``RUN_S``) arrive faster than
    they finish, so there is always a backlog; what ``reconcile`` decides is applied."""

    reserve_after_ms: int | None
    nodes: int = 4
    now: int = T0
    queue: list[Job] = field(default_factory=list)
    running: dict[str, list[tuple[int, Resources]]] = field(default_factory=dict)
    gang_at: int | None = None
    small_started: int = 0
    reasons_seen: set[str] = field(default_factory=set)
    count: int = 0

    RUN_S = 20
    STEP_S = 5
    ARRIVALS = 6
    """Per step: 1.2 jobs/s of 20 s on 16 vCPUs keeps 24 jobs of demand on 16 slots."""

    def __post_init__(self) -> None:
        self.running = {f"n{i}": [] for i in range(self.nodes)}

    def arrive(self) -> None:
        for _ in range(self.ARRIVALS * self.nodes // 4):
            self.count += 1
            self.queue.append(small(f"s{self.count}", self.now))

    def views(self) -> list[NodeView]:
        out = []
        for n, work in self.running.items():
            used = Resources(0, 0, 0)
            for _, r in work:
                used = used.plus(r)
            # the scheduler does not know when untimed work ends
            releases = tuple((None, r) for _, r in work)
            out.append(NodeView(n, "ce", NodeStatus.ACTIVE, CAP, CAP.minus(used), self.now,
                                releases=releases))  # fmt: skip
        return out

    def step(self) -> None:
        actions = reconcile(snapshot(self.now, self.views(), self.queue, self.reserve_after_ms))
        by_id = {j.job_id: j for j in self.queue}
        for a in actions:
            if isinstance(a, Place):
                self.running[a.node_id].append(
                    (self.now + self.RUN_S * 1000, by_id[a.job_id].resources)
                )
                self.queue.remove(by_id[a.job_id])
                self.small_started += 1
            elif isinstance(a, PlaceGang):
                for n in a.node_ids:
                    self.running[n].append((self.now + 60_000, CAP))
                self.queue.remove(by_id[a.job_id])
                self.gang_at = self.now
            elif isinstance(a, SetReason):
                by_id[a.job_id].status_reason = a.reason
                self.reasons_seen.add(reasons.kind_of(a.reason) or "")
        self.now += self.STEP_S * 1000
        for n, work in self.running.items():
            self.running[n] = [(end, r) for end, r in work if end > self.now]
        self.arrive()


def run(reserve_after_ms: int | None, seconds: int, nodes: int = 4) -> Sim:
    sim = Sim(reserve_after_ms, nodes)
    for _ in range(4):  # the cluster is busy and has a backlog when the gang arrives
        sim.arrive()
        sim.step()
    g = gang("mpi", nodes, sim.now)
    sim.queue.insert(0, g)  # it is ahead of every small job submitted after it
    gang_submitted = sim.now
    while sim.now - gang_submitted < seconds * 1000 and sim.gang_at is None:
        sim.step()
    return sim


@pytest.mark.parametrize("nodes", [4, 8])
def test_a_gang_behind_a_stream_of_small_jobs_starves_without_reservations(nodes: int) -> None:
    """The control: with backfill alone the nodes are never idle at once."""
    sim = run(None, seconds=1800, nodes=nodes)
    assert sim.gang_at is None
    assert sim.small_started > 1000


@pytest.mark.parametrize("nodes", [4, 8])
def test_a_gang_behind_a_stream_of_small_jobs_starts_within_its_reservation_age(nodes: int) -> None:
    """An MPI gang of every node (the issue's 8-node job) behind 1-vCPU jobs."""
    sim = run(AGE_MS, seconds=1800, nodes=nodes)
    assert sim.gang_at is not None
    waited = sim.gang_at - (T0 + 4 * Sim.STEP_S * 1000)
    # it reserves at the age; the untimed jobs on its nodes end within RUN_S
    assert AGE_MS <= waited <= AGE_MS + (Sim.RUN_S + 2 * Sim.STEP_S) * 1000
    assert sim.small_started > 200, "backfill ran small jobs while it waited"
    assert {reasons.RESERVING, reasons.HELD, reasons.GANG} <= sim.reasons_seen


# --- what backfill may put on reserved nodes --------------------------------------------------

NOW = T0 + 3_600_000


def timed_node(node_id: str, free: float, ends_in_s: int) -> NodeView:
    """A node running a timed job (1 vCPU) ending within ``ends_in_s`` from NOW."""
    used = CAP.minus(Resources(free, CAP.memory_mib - 256, 0))
    return NodeView(node_id, "ce", NodeStatus.ACTIVE, CAP, CAP.minus(used), NOW,
                    releases=((NOW + ends_in_s * 1000, used),))  # fmt: skip


def aged(job: Job) -> Job:
    job.history = [HistoryEntry(JobStatus.RUNNABLE, NOW - AGE_MS, None)]
    return job


def places(actions: list[Action]) -> list[tuple[str, str]]:
    return [(a.job_id, a.node_id) for a in actions if isinstance(a, Place)]


def reason_of(actions: list[Action], job_id: str) -> str | None:
    return next(
        (a.reason for a in actions if isinstance(a, SetReason) and a.job_id == job_id), None
    )


def test_backfill_into_reserved_nodes_takes_only_work_that_ends_before_the_reservation() -> None:
    nodes = [timed_node("n0", 3, 600), timed_node("n1", 3, 600)]
    jobs = [
        aged(gang("g", 2, NOW - AGE_MS)),
        small("untimed", NOW),
        small("short", NOW, timeout=60),
        small("too-long", NOW, timeout=3600),
    ]
    actions = reconcile(snapshot(NOW, nodes, jobs))
    assert [p[0] for p in places(actions)] == ["short"]
    assert (reason_of(actions, "g") or "").startswith(reasons.RESERVING)
    assert "n0, n1" in (reason_of(actions, "g") or "")
    for held in ("untimed", "too-long"):
        text = reason_of(actions, held) or ""
        assert text.startswith(reasons.HELD), text
        assert "reserved for job g" in text


def test_before_its_age_a_waiting_gang_reserves_nothing() -> None:
    nodes = [timed_node("n0", 3, 600), timed_node("n1", 3, 600)]
    jobs = [gang("g", 2, NOW - AGE_MS + 1000), small("untimed", NOW)]
    jobs[0].history = [HistoryEntry(JobStatus.RUNNABLE, NOW - AGE_MS + 1000, None)]
    actions = reconcile(snapshot(NOW, nodes, jobs))
    assert places(actions) == [("untimed", "n0")]
    assert (reason_of(actions, "g") or "").startswith(reasons.GANG)


def test_a_single_node_job_reserves_the_node_that_frees_soonest() -> None:
    nodes = [timed_node("n0", 2, 900), timed_node("n1", 2, 120), timed_node("n2", 2, 600)]
    jobs = [aged(small("big", NOW - AGE_MS, vcpus=4)), small("a", NOW), small("b", NOW)]
    actions = reconcile(snapshot(NOW, nodes, jobs))
    assert "nodes n1 are reserved" in (reason_of(actions, "big") or "")
    assert {n for _, n in places(actions)} <= {"n0", "n2"}
    assert len(places(actions)) == 2


def test_the_reserving_job_is_placed_when_its_nodes_are_free() -> None:
    idle = [NodeView(f"n{i}", "ce", NodeStatus.ACTIVE, CAP, CAP, NOW) for i in range(2)]
    jobs = [aged(gang("g", 2, NOW - AGE_MS)), small("s", NOW)]
    actions = reconcile(snapshot(NOW, idle, jobs))
    assert [a for a in actions if isinstance(a, PlaceGang)] == [PlaceGang("g", ("n0", "n1"))]


def test_a_disabled_environment_takes_nothing_and_says_so() -> None:
    idle = [NodeView("n0", "ce", NodeStatus.ACTIVE, CAP, CAP, NOW)]
    jobs = [small("s", NOW), gang("g", 1, NOW)]
    actions = reconcile(snapshot(NOW, idle, jobs, enabled=False))
    assert not [a for a in actions if isinstance(a, Place | PlaceGang)]
    for j in ("s", "g"):
        assert (reason_of(actions, j) or "").startswith(reasons.ENV_DISABLED)


# --- the head: DISABLED environments and default MEMORY ---------------------------------------


def no_memory_definition(h: Head) -> None:
    h.definition(containerProperties={"resourceRequirements": [{"type": "VCPU", "value": "1"}]})


def one_node_of_jobs_without_memory(h: Head, tag: str | None = None) -> None:
    """Environment ``ce`` (its default-MEMORY tag ``tag``, if any), a queue, a definition
    stating no MEMORY, and one node of 4 vCPUs and 4096 MiB."""
    environment(h, tags={reasons.DEFAULT_MEMORY_TAG: tag} if tag is not None else None)
    h.queue()
    no_memory_definition(h)
    h.node("n1", vcpus=4, memory_mib=4096)


def environment(h: Head, state: str = "ENABLED", tags: dict[str, str] | None = None) -> None:
    body: dict[str, Any] = {"computeEnvironmentName": "ce", "type": "UNMANAGED", "state": state}
    if tags:
        body["tags"] = tags
    h.api["createComputeEnvironment"](body)


def test_a_disabled_environment_of_the_head_takes_nothing_new(tmp_path: Path) -> None:
    h = Head.open(tmp_path / "home")
    try:
        environment(h, state="DISABLED")
        h.queue()
        h.definition()
        h.node("n1")
        job = h.submit()
        h.ticks()
        assert h.status(job) == "RUNNABLE"
        assert h.describe(job)["statusReason"].startswith(reasons.ENV_DISABLED)
        h.api["updateComputeEnvironment"]({"computeEnvironment": "ce", "state": "ENABLED"})
        h.ticks()
        assert h.status(job) == "STARTING"
        assert not reasons.is_waiting(h.describe(job).get("statusReason"))
    finally:
        h.close()


def test_an_environment_default_memory_keeps_two_jobs_off_a_node_that_fits_one(
    tmp_path: Path,
) -> None:
    h = Head.open(tmp_path / "home")
    try:
        one_node_of_jobs_without_memory(h, tag="3000")
        first, second = h.submit("a"), h.submit("b")
        h.ticks()
        assert h.status(first) == "STARTING"
        assert h.status(second) == "RUNNABLE"
        stated = h.describe(first)["statusReason"]
        assert stated.startswith(reasons.DEFAULT_MEMORY)
        assert "MEMORY 3000 MiB" in stated
        waiting = h.describe(second)["statusReason"]
        assert waiting.startswith(reasons.SHORT) and "MiB memory" in waiting, waiting
        assert h.state.node_rt["n1"].used == Resources(1, 3000, 0)
    finally:
        h.close()


def test_the_head_default_memory_stops_oversubscribing_memory_others_hold(
    tmp_path: Path,
) -> None:
    """3 GiB of the node's 4 GiB is held by a job that states it; the jobs stating none each
    hold their vCPU's share (1 GiB), so only one of them fits beside it."""
    h = Head.open(tmp_path / "home")
    try:
        one_node_of_jobs_without_memory(h)
        big = h.submit(
            "big",
            containerOverrides={"resourceRequirements": [{"type": "MEMORY", "value": "3072"}]},
        )
        a, b = h.submit("a"), h.submit("b")
        h.ticks()
        assert [h.status(j) for j in (big, a, b)] == ["STARTING", "STARTING", "RUNNABLE"]
        assert h.state.node_rt["n1"].used == Resources(2, 4096, 0)
    finally:
        h.close()


@pytest.mark.parametrize("tag", ["8192", "4096"])
def test_a_default_never_exceeds_the_node(tmp_path: Path, tag: str) -> None:
    h = Head.open(tmp_path / "home")
    try:
        one_node_of_jobs_without_memory(h, tag=tag)
        job = h.submit()
        h.ticks()
        assert h.status(job) == "STARTING"
        assert h.state.node_rt["n1"].used == Resources(1, 4096, 0)
    finally:
        h.close()


def test_an_aged_job_behind_a_full_queue_still_reserves() -> None:
    """Placing stops at the first job that finds nothing free; an aged job further back (a
    retried one, or a fair-share order) still gets to reserve its nodes."""
    nodes = [timed_node("n0", 0, 600), timed_node("n1", 0, 300)]
    jobs = [small("fresh1", NOW), small("fresh2", NOW), aged(gang("g", 2, NOW - AGE_MS))]
    actions = reconcile(snapshot(NOW, nodes, jobs))
    assert (reason_of(actions, "g") or "").startswith(reasons.RESERVING)
    assert (reason_of(actions, "fresh2") or "").startswith(reasons.SHORT)


def counting_runnable_since(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the jobs whose waiting time ``reconcile`` reads, in order."""
    from mnp.scheduler import reconcile as module

    read: list[str] = []
    real = module.runnable_since

    def counted(job: Job) -> int:
        read.append(job.job_id)
        return real(job)

    monkeypatch.setattr(module, "runnable_since", counted)
    return read


def test_between_walks_a_queue_none_of_whose_jobs_is_old_enough_is_not_read_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pass between the walks for reasons need not read a deep queue to learn that no job
    has waited long enough to reserve: the last walk left the queue's oldest waiting time.
    Once that age is reached the pass looks again, and the first job reserves."""
    read = counting_runnable_since(monkeypatch)
    nodes = [timed_node("n0", 0, 600), timed_node("n1", 0, 300)]
    jobs = [small(f"j{i}", NOW) for i in range(200)]
    floors: dict[str, int] = {}

    def at(now: int, walk: bool) -> list[Action]:
        read.clear()
        s = replace(snapshot(now, nodes, jobs), now_ms=now, explain_rest=walk,
                    runnable_floors=floors)  # fmt: skip
        return reconcile(s)

    at(NOW, walk=True)
    assert len(read) == 200 and floors == {"q": NOW}  # the walk read every job's time
    at(NOW + 1000, walk=False)
    assert read == []  # no job can reserve yet: not even the one placing tried is asked
    actions = at(NOW + AGE_MS, walk=False)
    assert (reason_of(actions, "j0") or "").startswith(reasons.RESERVING)


def test_a_job_older_than_the_queue_floor_reserves_at_the_next_walk() -> None:
    """A floor is believed only between walks: a job that came back with an older waiting
    time than the floor says (none does through the head's own transitions) is found by the
    next walk, at most a second later."""
    nodes = [timed_node("n0", 0, 600), timed_node("n1", 0, 300)]
    jobs = [*(small(f"j{i}", NOW) for i in range(20)), aged(small("old", NOW - AGE_MS))]
    floors = {"q": NOW}
    between = reconcile(replace(snapshot(NOW, nodes, jobs), explain_rest=False,
                                runnable_floors=floors))  # fmt: skip
    assert reason_of(between, "old") is None
    walk = reconcile(replace(snapshot(NOW, nodes, jobs), runnable_floors=floors))
    assert (reason_of(walk, "old") or "").startswith(reasons.RESERVING)
    assert floors == {"q": NOW - AGE_MS}


def test_a_default_memory_is_held_again_after_a_restart(tmp_path: Path) -> None:
    h = Head.open(tmp_path / "home")
    try:
        one_node_of_jobs_without_memory(h, tag="3000")
        h.submit("a")
        h.ticks()
        assert h.state.node_rt["n1"].used == Resources(1, 3000, 0)
    finally:
        h.close()
    again = Head.open(tmp_path / "home", clock=h.clock)
    try:
        again.scheduler.restore()
        assert again.state.node_rt["n1"].used == Resources(1, 3000, 0)
        (aid,) = again.state.node_rt["n1"].running
        again.state.node_rt["n1"].release(aid)
        assert again.state.node_rt["n1"].used == Resources(0, 0, 0)
    finally:
        again.close()
