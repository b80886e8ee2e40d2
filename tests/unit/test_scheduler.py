"""``reconcile(snapshot) -> actions``: table-driven snapshots, no I/O, no sleeping."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import pytest

from mnp.scheduler.reconcile import (
    NEVER_FITS,
    Action,
    Advance,
    CEView,
    ExpandArray,
    LaunchNodes,
    LoseNode,
    NodeView,
    Place,
    QueueView,
    SetReason,
    Snapshot,
    reconcile,
)
from mnp.spec.definitions import Dependency
from mnp.spec.environments import NodeStatus
from mnp.spec.jobs import Job
from mnp.spec.resources import Resources
from mnp.spec.states import JobStatus
from tests.unit.helpers_core import T0, make_job, make_spec

S = JobStatus
NOW = T0 + 60_000
LOST_AFTER = 10_000
LAUNCH_TIMEOUT = 30_000
CAP = Resources(4, 4096, 0)


def node(
    node_id: str,
    ce: str = "ce",
    cap: Resources | None = None,
    free: Resources | None = None,
    status: NodeStatus = NodeStatus.ACTIVE,
    last_seen: int = NOW,
) -> NodeView:
    cap = cap or Resources(4, 4096, 0)
    return NodeView(node_id, ce, status, cap, free or cap, last_seen)


def ce(
    name: str = "ce",
    enabled: bool = True,
    desired: int = 0,
    capacity: Resources | None = CAP,
) -> CEView:
    return CEView(name, enabled, desired, (capacity,) if capacity is not None else ())


def snapshot(
    *,
    queues: Sequence[QueueView] = (QueueView("q", 1, ("ce",)),),
    ces: Sequence[CEView] = (),
    nodes: Sequence[NodeView] = (),
    submitted: Sequence[Job] = (),
    pending: Sequence[Job] = (),
    deps: Mapping[str, JobStatus | None] | None = None,
    runnable: Mapping[str, Sequence[Job]] | None = None,
) -> Snapshot:
    return Snapshot(
        now_ms=NOW,
        queues=list(queues),
        compute_environments={c.name: c for c in (ces or [ce()])},
        nodes=list(nodes),
        submitted=list(submitted),
        pending=list(pending),
        dependency_status=dict(deps or {}),
        runnable={k: list(v) for k, v in (runnable or {}).items()},
        lost_after_ms=LOST_AFTER,
        launch_timeout_ms=LAUNCH_TIMEOUT,
    )


def runnable_job(
    job_id: str, vcpus: float = 1, mem: int = 0, gpus: int = 0, queue: str = "q"
) -> Job:
    return make_job(job_id, S.RUNNABLE, resources=Resources(vcpus, mem, gpus), queue=queue)


def dep_job(job_id: str, status: JobStatus, *dep_ids: str) -> Job:
    return make_job(job_id, status, depends_on=[Dependency(d) for d in dep_ids])


def places(actions: list[Action]) -> list[tuple[str, str]]:
    return [(a.job_id, a.node_id) for a in actions if isinstance(a, Place)]


# --- dependencies -----------------------------------------------------------------------------

DEPENDENCY_CASES: list[tuple[str, Snapshot, list[Action]]] = [
    (
        "submitted without deps -> RUNNABLE",
        snapshot(submitted=[make_job("a")]),
        [Advance("a", S.RUNNABLE)],
    ),
    (
        "submitted with a running dep -> PENDING",
        snapshot(submitted=[dep_job("b", S.SUBMITTED, "a")], deps={"a": S.RUNNING}),
        [Advance("b", S.PENDING)],
    ),
    (
        "submitted with a submitted dep -> PENDING",
        snapshot(submitted=[dep_job("b", S.SUBMITTED, "a")], deps={"a": S.SUBMITTED}),
        [Advance("b", S.PENDING)],
    ),
    (
        "submitted with a succeeded dep -> RUNNABLE",
        snapshot(submitted=[dep_job("b", S.SUBMITTED, "a")], deps={"a": S.SUCCEEDED}),
        [Advance("b", S.RUNNABLE)],
    ),
    (
        "submitted with a failed dep -> PENDING then FAILED naming it",
        snapshot(
            submitted=[dep_job("b", S.SUBMITTED, "ok", "bad")],
            deps={"ok": S.SUCCEEDED, "bad": S.FAILED},
        ),
        [
            Advance("b", S.PENDING),
            Advance("b", S.FAILED, "DEPENDENCY:FAILED - dependency bad failed"),
        ],
    ),
    (
        "pending with every dep succeeded -> RUNNABLE",
        snapshot(
            pending=[dep_job("c", S.PENDING, "a", "b")],
            deps={"a": S.SUCCEEDED, "b": S.SUCCEEDED},
        ),
        [Advance("c", S.RUNNABLE)],
    ),
    (
        "pending with one dep still running -> nothing",
        snapshot(
            pending=[dep_job("c", S.PENDING, "a", "b")],
            deps={"a": S.SUCCEEDED, "b": S.RUNNING},
        ),
        [],
    ),
    (
        "pending with a failed dep after a running one -> FAILED naming it",
        snapshot(pending=[dep_job("c", S.PENDING, "a", "b")], deps={"a": S.RUNNING, "b": S.FAILED}),
        [Advance("c", S.FAILED, "DEPENDENCY:FAILED - dependency b failed")],
    ),
    (
        "unknown dependency id -> FAILED",
        snapshot(pending=[dep_job("c", S.PENDING, "ghost")], deps={"ghost": None}),
        [Advance("c", S.FAILED, "DEPENDENCY:NOT_FOUND - dependency ghost does not exist")],
    ),
    (
        "array parent -> ExpandArray (its dependencies belong to its children)",
        snapshot(
            submitted=[make_job("p", S.SUBMITTED, array_size=3, depends_on=[Dependency("x")])],
            deps={"x": S.RUNNING},
        ),
        [ExpandArray("p")],
    ),
]


@pytest.mark.parametrize(
    ("snap", "expected"),
    [(s, e) for _, s, e in DEPENDENCY_CASES],
    ids=[name for name, _, _ in DEPENDENCY_CASES],
)
def test_dependencies(snap: Snapshot, expected: list[Action]) -> None:
    assert reconcile(snap) == expected


def test_dependency_order_of_submitted_jobs_is_kept() -> None:
    snap = snapshot(submitted=[make_job("a"), make_job("p", array_size=2), make_job("b")])
    assert reconcile(snap) == [
        Advance("a", S.RUNNABLE),
        ExpandArray("p"),
        Advance("b", S.RUNNABLE),
    ]


# --- array dependency semantics (Job.dependency_ids) -----------------------------------------


def child(parent: str, index: int, *deps: Dependency, size: int = 4) -> Job:
    spec = make_spec(parent, array_size=size, depends_on=list(deps))
    return make_job(f"{parent}:{index}", S.PENDING, spec=spec, parent_id=parent, array_index=index)


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        (child("P", 0, Dependency(None, "SEQUENTIAL")), []),
        (child("P", 1, Dependency(None, "SEQUENTIAL")), ["P:0"]),
        (child("P", 3, Dependency(None, "SEQUENTIAL")), ["P:2"]),
        (child("P", 0, Dependency("X", "N_TO_N")), ["X:0"]),
        (child("P", 2, Dependency("X", "N_TO_N")), ["X:2"]),
        (child("P", 2, Dependency("X")), ["X"]),
        (child("P", 2, Dependency("X"), Dependency("Y", "N_TO_N")), ["X", "Y:2"]),
        (make_job("P", array_size=4, depends_on=[Dependency("X", "N_TO_N")]), []),
        (make_job("solo", depends_on=[Dependency("A"), Dependency("B")]), ["A", "B"]),
    ],
    ids=[
        "sequential-first",
        "sequential-1",
        "sequential-3",
        "n-to-n-0",
        "n-to-n-2",
        "plain-on-child",
        "plain-and-n-to-n",
        "parent-waits-for-nothing",
        "plain-job",
    ],
)
def test_dependency_ids(job: Job, expected: list[str]) -> None:
    assert job.dependency_ids() == expected


@pytest.mark.parametrize(
    ("index", "deps", "expected"),
    [
        (0, {}, [Advance("P:0", S.RUNNABLE)]),
        (2, {"P:1": S.RUNNING}, []),
        (2, {"P:1": S.SUCCEEDED}, [Advance("P:2", S.RUNNABLE)]),
        (
            2,
            {"P:1": S.FAILED},
            [Advance("P:2", S.FAILED, "DEPENDENCY:FAILED - dependency P:1 failed")],
        ),
    ],
)
def test_sequential_child_waits_for_previous_child(
    index: int, deps: dict[str, JobStatus], expected: list[Action]
) -> None:
    snap = snapshot(pending=[child("P", index, Dependency(None, "SEQUENTIAL"))], deps=deps)
    assert reconcile(snap) == expected


def test_n_to_n_child_waits_for_matching_child() -> None:
    snap = snapshot(
        pending=[
            child("P", 1, Dependency("X", "N_TO_N")),
            child("P", 2, Dependency("X", "N_TO_N")),
        ],
        deps={"X:1": S.SUCCEEDED, "X:2": S.RUNNING},
    )
    assert reconcile(snap) == [Advance("P:1", S.RUNNABLE)]


# --- placement --------------------------------------------------------------------------------


def test_places_on_the_node_with_most_free_vcpus() -> None:
    snap = snapshot(
        nodes=[
            node("n1", free=Resources(1, 4096, 0)),
            node("n2", free=Resources(3, 4096, 0)),
            node("n3", free=Resources(2, 4096, 0)),
        ],
        runnable={"q": [runnable_job("a")]},
    )
    assert places(reconcile(snap)) == [("a", "n2")]


def test_placement_spreads_and_accounts_for_what_it_placed() -> None:
    snap = snapshot(
        nodes=[node("n1", cap=Resources(2, 4096, 0)), node("n2", cap=Resources(2, 4096, 0))],
        runnable={"q": [runnable_job(f"j{i}") for i in range(5)]},
    )
    assert places(reconcile(snap)) == [("j0", "n1"), ("j1", "n2"), ("j2", "n1"), ("j3", "n2")]


@pytest.mark.parametrize(
    ("need", "free", "fits"),
    [
        (Resources(2, 0, 0), Resources(2, 4096, 0), True),
        (Resources(2.5, 0, 0), Resources(2, 4096, 0), False),
        (Resources(0.5, 0, 0), Resources(0.5, 4096, 0), True),
        (Resources(1, 4096, 0), Resources(4, 4096, 0), True),
        (Resources(1, 4097, 0), Resources(4, 4096, 0), False),
        (Resources(1, 0, 2), Resources(4, 4096, 2), True),
        (Resources(1, 0, 3), Resources(4, 4096, 2), False),
        (Resources(1, 0, 1), Resources(4, 4096, 0), False),
    ],
    ids=[
        "vcpu-exact",
        "vcpu-over",
        "fractional-vcpu",
        "memory-exact",
        "memory-over",
        "gpu-exact",
        "gpu-over",
        "gpu-none",
    ],
)
def test_fit_by_vcpu_memory_and_gpu(need: Resources, free: Resources, fits: bool) -> None:
    job = runnable_job("a", need.vcpus, need.memory_mib, need.gpus)
    snap = snapshot(
        ces=[ce(capacity=Resources(8, 65536, 8))],
        nodes=[node("n1", cap=Resources(8, 65536, 8), free=free)],
        runnable={"q": [job]},
    )
    actions = reconcile(snap)
    assert places(actions) == ([("a", "n1")] if fits else [])
    assert not [a for a in actions if isinstance(a, SetReason)], "it fits an empty node"


def test_higher_priority_queue_is_placed_first_when_capacity_is_scarce() -> None:
    snap = snapshot(
        queues=[QueueView("low", 1, ("ce",)), QueueView("high", 10, ("ce",))],
        nodes=[node("n1", cap=Resources(2, 4096, 0))],
        runnable={
            "low": [runnable_job("l1", 2, queue="low")],
            "high": [runnable_job("h1", queue="high"), runnable_job("h2", queue="high")],
        },
    )
    assert places(reconcile(snap)) == [("h1", "n1"), ("h2", "n1")]


def test_lower_priority_queue_gets_what_is_left() -> None:
    snap = snapshot(
        queues=[QueueView("low", 1, ("ce",)), QueueView("high", 10, ("ce",))],
        nodes=[node("n1", cap=Resources(3, 4096, 0))],
        runnable={
            "low": [runnable_job("l1", queue="low")],
            "high": [runnable_job("h1", 2, queue="high")],
        },
    )
    assert places(reconcile(snap)) == [("h1", "n1"), ("l1", "n1")]


def test_compute_environments_are_tried_in_queue_order() -> None:
    snap = snapshot(
        queues=[QueueView("q", 1, ("second", "first"))],
        ces=[ce("first"), ce("second")],
        nodes=[
            node("a-big", "first", cap=Resources(4, 4096, 0)),
            node("b-small", "second", cap=Resources(1, 4096, 0)),
        ],
        runnable={"q": [runnable_job("j1"), runnable_job("j2")]},
    )
    assert places(reconcile(snap)) == [("j1", "b-small"), ("j2", "a-big")]


def test_disabled_environment_takes_no_placements() -> None:
    snap = snapshot(
        queues=[QueueView("q", 1, ("off", "on"))],
        ces=[ce("off", enabled=False), ce("on")],
        nodes=[node("n-off", "off"), node("n-on", "on", free=Resources(1, 4096, 0))],
        runnable={"q": [runnable_job("j1"), runnable_job("j2")]},
    )
    assert places(reconcile(snap)) == [("j1", "n-on")]


def test_only_disabled_environment_means_no_placement_and_no_reason() -> None:
    snap = snapshot(
        ces=[ce(enabled=False)],
        nodes=[node("n1")],
        runnable={"q": [runnable_job("j1")]},
    )
    assert reconcile(snap) == []


def test_nodes_of_other_environments_are_not_used() -> None:
    snap = snapshot(
        ces=[ce("ce"), ce("other")],
        nodes=[node("elsewhere", "other")],
        runnable={"q": [runnable_job("j1")]},
    )
    assert places(reconcile(snap)) == []


def test_launching_nodes_take_no_placements() -> None:
    snap = snapshot(
        nodes=[node("n1", status=NodeStatus.LAUNCHING)],
        runnable={"q": [runnable_job("j1")]},
    )
    assert places(reconcile(snap)) == []


def test_backfill_a_big_job_does_not_block_a_small_one_behind_it() -> None:
    snap = snapshot(
        nodes=[node("n1", cap=Resources(4, 4096, 0), free=Resources(2, 4096, 0))],
        runnable={"q": [runnable_job("big", 4), runnable_job("big2", 4), runnable_job("small", 1)]},
    )
    actions = reconcile(snap)
    assert places(actions) == [("small", "n1")]
    assert not [a for a in actions if isinstance(a, SetReason)], "big fits an empty node"


def test_placing_stops_when_nothing_is_free() -> None:
    snap = snapshot(
        nodes=[node("n1", free=Resources(0, 4096, 0))],
        runnable={"q": [runnable_job(f"j{i}") for i in range(3)]},
    )
    assert reconcile(snap) == []


@pytest.mark.parametrize(
    ("need", "reason"),
    [
        (Resources(64, 0, 0), "needs 64 vCPUs, largest node has 8"),
        (Resources(1, 100_000, 0), "needs 100000 MiB memory, largest node has 16384 MiB"),
        (Resources(1, 0, 4), "needs 4 GPUs, largest node has 1"),
        (Resources(8.5, 0, 0), "needs 8.5 vCPUs, largest node has 8"),
    ],
    ids=["vcpus", "memory", "gpus", "fractional"],
)
def test_a_job_that_can_never_fit_gets_a_misconfiguration_reason(
    need: Resources, reason: str
) -> None:
    big = runnable_job("big", need.vcpus, need.memory_mib, need.gpus)
    snap = snapshot(
        ces=[ce(capacity=Resources(8, 16384, 1))],
        nodes=[node("n1", cap=Resources(8, 16384, 1))],
        runnable={"q": [big, runnable_job("small")]},
    )
    actions = reconcile(snap)
    assert actions == [
        SetReason("big", f"{NEVER_FITS} - {reason}"),
        Place("small", "n1"),
    ]
    first = actions[0]
    assert isinstance(first, SetReason)
    assert first.reason.startswith("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT")


def test_never_fits_reason_is_not_repeated_once_set() -> None:
    reason = f"{NEVER_FITS} - needs 64 vCPUs, largest node has 4"
    job = make_job("big", S.RUNNABLE, resources=Resources(64, 0, 0), status_reason=reason)
    snap = snapshot(nodes=[node("n1")], runnable={"q": [job]})
    assert reconcile(snap) == []


def test_a_job_that_fits_some_environment_is_not_misconfigured() -> None:
    snap = snapshot(
        queues=[QueueView("q", 1, ("small", "large"))],
        ces=[
            ce("small", capacity=Resources(2, 4096, 0)),
            ce("large", capacity=Resources(16, 4096, 0)),
        ],
        nodes=[node("s1", "small", cap=Resources(2, 4096, 0))],
        runnable={"q": [runnable_job("j", 8)]},
    )
    assert reconcile(snap) == []


def test_unknown_capacity_never_marks_a_job_misconfigured() -> None:
    snap = snapshot(ces=[ce(capacity=None)], runnable={"q": [runnable_job("j", 512)]})
    assert reconcile(snap) == []


def test_never_fits_reason_names_the_largest_node_across_environments() -> None:
    snap = snapshot(
        queues=[QueueView("q", 1, ("small", "large"))],
        ces=[
            ce("small", capacity=Resources(4, 4096, 0)),
            ce("large", capacity=Resources(8, 4096, 0)),
        ],
        runnable={"q": [runnable_job("j", 64)]},
    )
    assert reconcile(snap) == [SetReason("j", f"{NEVER_FITS} - needs 64 vCPUs, largest node has 8")]


# --- nodes ------------------------------------------------------------------------------------

NODE_CASES: list[tuple[str, list[NodeView], list[CEView], list[Action]]] = [
    (
        "heartbeating node is kept",
        [node("n1", last_seen=NOW - LOST_AFTER)],
        [ce()],
        [],
    ),
    (
        "silent node is lost",
        [node("n1", last_seen=NOW - LOST_AFTER - 1)],
        [ce()],
        [LoseNode("n1", "stopped heartbeating (10.0 s silent)")],
    ),
    (
        "launching node within its allowance is kept",
        [node("n1", status=NodeStatus.LAUNCHING, last_seen=NOW - LAUNCH_TIMEOUT)],
        [ce()],
        [],
    ),
    (
        "launching node past its allowance is lost",
        [node("n1", status=NodeStatus.LAUNCHING, last_seen=NOW - LAUNCH_TIMEOUT - 1)],
        [ce()],
        [LoseNode("n1", "did not register after launch")],
    ),
    (
        "launching node is not lost by the heartbeat rule",
        [node("n1", status=NodeStatus.LAUNCHING, last_seen=NOW - LOST_AFTER - 1)],
        [ce()],
        [],
    ),
    (
        "environment short of nodes launches the missing ones",
        [node("n1"), node("n2", status=NodeStatus.LAUNCHING)],
        [ce(desired=5)],
        [LaunchNodes("ce", 3)],
    ),
    (
        "lost and stopped nodes do not count as live",
        [
            node("n1", last_seen=NOW - LOST_AFTER - 1),
            node("n2", status=NodeStatus.LOST),
            node("n3", status=NodeStatus.STOPPED),
        ],
        [ce(desired=1)],
        [LoseNode("n1", "stopped heartbeating (10.0 s silent)"), LaunchNodes("ce", 1)],
    ),
    (
        "environment at or above its size launches nothing",
        [node("n1"), node("n2")],
        [ce(desired=1)],
        [],
    ),
]


@pytest.mark.parametrize(
    ("nodes", "ces", "expected"),
    [(n, c, e) for _, n, c, e in NODE_CASES],
    ids=[name for name, _, _, _ in NODE_CASES],
)
def test_nodes(nodes: list[NodeView], ces: list[CEView], expected: list[Action]) -> None:
    assert reconcile(snapshot(nodes=nodes, ces=ces)) == expected


def test_a_lost_node_takes_no_placements() -> None:
    snap = snapshot(
        nodes=[node("n1", last_seen=NOW - LOST_AFTER - 1)],
        runnable={"q": [runnable_job("j")]},
    )
    assert places(reconcile(snap)) == []


# --- purity -----------------------------------------------------------------------------------


def test_reconcile_does_not_mutate_its_input() -> None:
    snap = snapshot(
        queues=[QueueView("q", 1, ("ce",)), QueueView("q2", 5, ("ce",))],
        ces=[ce(desired=3, capacity=Resources(4, 4096, 1))],
        nodes=[
            node("n1", cap=Resources(4, 4096, 1)),
            node("n2", free=Resources(1, 100, 0), last_seen=NOW - LOST_AFTER - 5),
        ],
        submitted=[make_job("s1"), make_job("arr", array_size=3), dep_job("s2", S.SUBMITTED, "x")],
        pending=[dep_job("p1", S.PENDING, "x"), dep_job("p2", S.PENDING, "y")],
        deps={"x": S.SUCCEEDED, "y": S.FAILED},
        runnable={
            "q": [runnable_job("r1"), runnable_job("r2", 64)],
            "q2": [runnable_job("r3", 2, 1024, 1, queue="q2")],
        },
    )
    before = copy.deepcopy(snap)
    actions = reconcile(snap)
    assert actions, "the snapshot should produce work"
    assert snap == before
    assert reconcile(snap) == actions, "the same snapshot gives the same actions"
