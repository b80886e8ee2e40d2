"""Gang placement of multi-node parallel jobs in ``reconcile``: table-driven snapshots.

A gang takes whole idle nodes of one compute environment, all at once or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from mnp.scheduler.reconcile import (
    NEVER_FITS,
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
from mnp.spec.states import JobStatus
from tests.unit.helpers_core import T0, make_job

NOW = T0 + 60_000
CAP = Resources(4, 4096, 0)
SMALL = Resources(1, 256, 0)


def node(
    node_id: str,
    ce: str = "ce",
    cap: Resources = CAP,
    free: Resources | None = None,
    status: NodeStatus = NodeStatus.ACTIVE,
    last_seen: int = NOW,
) -> NodeView:
    return NodeView(node_id, ce, status, cap, free if free is not None else cap, last_seen)


def idle(*ids: str, ce: str = "ce", cap: Resources = CAP) -> list[NodeView]:
    return [node(i, ce, cap) for i in ids]


def ce(
    name: str = "ce",
    max_nodes: int | None = None,
    enabled: bool = True,
    shapes: Sequence[Resources] = (CAP,),
) -> CEView:
    return CEView(name, enabled, 0, tuple(shapes), max_nodes)


def gang(
    job_id: str,
    num: int,
    need: Resources | Sequence[Resources] = SMALL,
    queue: str = "q",
    reason: str | None = None,
) -> Job:
    needs = list(need) if isinstance(need, Sequence) else [need] * num
    assert len(needs) == num
    job = make_job(job_id, JobStatus.RUNNABLE, queue=queue, status_reason=reason)
    job.spec.nodes = NodeSpec(
        num_nodes=num,
        main_node=0,
        containers=[
            ContainerSpec(["main"] if i == 0 else [], {}, Resources(r.vcpus, r.memory_mib, r.gpus))
            for i, r in enumerate(needs)
        ],
    )
    return job


def single(job_id: str, vcpus: float = 1, queue: str = "q") -> Job:
    return make_job(job_id, JobStatus.RUNNABLE, queue=queue, resources=Resources(vcpus, 0, 0))


def snapshot(
    nodes: Sequence[NodeView],
    runnable: Sequence[Job],
    ces: Sequence[CEView] = (),
    queues: Sequence[QueueView] = (QueueView("q", 1, ("ce",)),),
) -> Snapshot:
    return Snapshot(
        now_ms=NOW,
        queues=list(queues),
        compute_environments={c.name: c for c in (ces or [ce()])},
        nodes=list(nodes),
        submitted=[],
        pending=[],
        dependency_status={},
        runnable={"q": list(runnable)},
        lost_after_ms=10_000,
        launch_timeout_ms=30_000,
    )


def placements(actions: list[Action]) -> list[Action]:
    return [a for a in actions if isinstance(a, PlaceGang | Place | SetReason)]


# --- the table --------------------------------------------------------------------------------

BUSY = Resources(3, 4096, 0)
"""Free capacity of a node that runs one small job."""

CASES: list[tuple[str, Snapshot, list[Action]]] = [
    (
        "four idle nodes: a 4-node gang takes them all, in node-id order",
        snapshot(idle("n4", "n2", "n3", "n1"), [gang("g", 4)]),
        [PlaceGang("g", ("n1", "n2", "n3", "n4"))],
    ),
    (
        "a node running anything is skipped",
        snapshot([*idle("n1", "n3", "n4", "n5"), node("n2", free=BUSY)], [gang("g", 4)]),
        [PlaceGang("g", ("n1", "n3", "n4", "n5"))],
    ),
    (
        "a node with only memory in use is not idle",
        snapshot(
            [*idle("n1", "n3", "n4"), node("n2", free=Resources(4, 4000, 0))],
            [gang("g", 4)],
        ),
        [],
    ),
    (
        "a node with only a GPU in use is not idle",
        snapshot(
            [
                *idle("n1", "n3", cap=Resources(4, 4096, 2)),
                node("n2", cap=Resources(4, 4096, 2), free=Resources(4, 4096, 1)),
            ],
            [gang("g", 3)],
            ces=[ce(shapes=(Resources(4, 4096, 2),))],
        ),
        [],
    ),
    (
        "one environment only: never split across environments",
        snapshot(
            [*idle("a1", "a2", ce="ce-a"), *idle("b1", "b2", "b3", ce="ce-b")],
            [gang("g", 3)],
            ces=[ce("ce-a"), ce("ce-b")],
            queues=[QueueView("q", 1, ("ce-a", "ce-b"))],
        ),
        [PlaceGang("g", ("b1", "b2", "b3"))],
    ),
    (
        "environments are tried in the queue's order",
        snapshot(
            [*idle("a1", "a2", ce="ce-a"), *idle("b1", "b2", ce="ce-b")],
            [gang("g", 2)],
            ces=[ce("ce-a"), ce("ce-b")],
            queues=[QueueView("q", 1, ("ce-b", "ce-a"))],
        ),
        [PlaceGang("g", ("b1", "b2"))],
    ),
    (
        "a disabled environment takes no gang",
        snapshot(
            [*idle("a1", "a2", ce="ce-a"), *idle("b1", "b2", ce="ce-b")],
            [gang("g", 2)],
            ces=[ce("ce-a", enabled=False), ce("ce-b")],
            queues=[QueueView("q", 1, ("ce-a", "ce-b"))],
        ),
        [PlaceGang("g", ("b1", "b2"))],
    ),
    (
        "a silent node is lost, not taken",
        snapshot([*idle("n1", "n2"), node("n0", last_seen=NOW - 60_000)], [gang("g", 2)]),
        [PlaceGang("g", ("n1", "n2"))],
    ),
    (
        "a launching node is not taken",
        snapshot([*idle("n1"), node("n2", status=NodeStatus.LAUNCHING)], [gang("g", 2)]),
        [],
    ),
    (
        "each node of the gang needs a node its container fits on",
        snapshot(
            [*idle("a-small", "b-small"), node("c-big", cap=Resources(16, 8192, 0))],
            [gang("g", 2, [Resources(8, 1024, 0), Resources(1, 256, 0)])],
            ces=[ce(shapes=(CAP, Resources(16, 8192, 0)))],
        ),
        [PlaceGang("g", ("c-big", "a-small"))],
    ),
    (
        "two 2-node gangs share four nodes",
        snapshot(idle("n1", "n2", "n3", "n4"), [gang("g1", 2), gang("g2", 2)]),
        [PlaceGang("g1", ("n1", "n2")), PlaceGang("g2", ("n3", "n4"))],
    ),
    (
        "a gang's nodes are whole: later small jobs use the other nodes",
        snapshot(idle("n1", "n2", "n3"), [gang("g", 2), single("s1", 4), single("s2", 4)]),
        [PlaceGang("g", ("n1", "n2")), Place("s1", "n3")],
    ),
    (
        "a small job placed first makes its node not idle for a later gang",
        snapshot(idle("n1", "n2", "n3"), [single("s1"), gang("g", 3)]),
        [Place("s1", "n1")],
    ),
]


@pytest.mark.parametrize(("name", "snap", "expected"), CASES, ids=[c[0] for c in CASES])
def test_gang_placement_table(name: str, snap: Snapshot, expected: list[Action]) -> None:
    assert placements(reconcile(snap)) == expected


def test_placed_nodes_are_distinct_and_in_one_environment() -> None:
    nodes = [*idle(*(f"a{i}" for i in range(5)), ce="ce-a"), *idle("b0", "b1", ce="ce-b")]
    snap = snapshot(
        nodes,
        [gang("g1", 3), gang("g2", 2), gang("g3", 2)],
        ces=[ce("ce-a"), ce("ce-b")],
        queues=[QueueView("q", 1, ("ce-a", "ce-b"))],
    )
    placed = [a for a in reconcile(snap) if isinstance(a, PlaceGang)]
    assert [a.job_id for a in placed] == ["g1", "g2", "g3"]
    env_of = {n.node_id: n.compute_environment for n in nodes}
    used: list[str] = []
    for a in placed:
        assert len({env_of[n] for n in a.node_ids}) == 1
        used += a.node_ids
    assert len(used) == len(set(used)) == 7


# --- no partial holds, no deadlock ------------------------------------------------------------


def test_a_gang_that_does_not_fit_now_holds_nothing_and_lets_small_jobs_through() -> None:
    nodes = [*idle("n1", "n2", "n3"), node("n4", free=BUSY)]
    snap = snapshot(nodes, [gang("g", 4), single("s1", 4), single("s2", 4)], ces=[ce(max_nodes=4)])
    assert placements(reconcile(snap)) == [Place("s1", "n1"), Place("s2", "n2")]


def test_two_gangs_competing_for_four_nodes_one_runs_the_other_waits() -> None:
    g1, g2 = gang("g1", 4), gang("g2", 4)
    first = reconcile(snapshot(idle("n1", "n2", "n3", "n4"), [g1, g2], ces=[ce(max_nodes=4)]))
    assert placements(first) == [PlaceGang("g1", ("n1", "n2", "n3", "n4"))]
    # while g1 holds the nodes, g2 waits with no reason (it fits once they are free)
    held = [node(n, free=Resources(0, 0, 0)) for n in ("n1", "n2", "n3", "n4")]
    assert placements(reconcile(snapshot(held, [g2], ces=[ce(max_nodes=4)]))) == []
    # a partly released gang is not enough either
    half = [*held[:2], *idle("n3", "n4")]
    assert placements(reconcile(snapshot(half, [g2], ces=[ce(max_nodes=4)]))) == []
    # once g1's nodes are idle again, g2 takes them
    again = reconcile(snapshot(idle("n1", "n2", "n3", "n4"), [g2], ces=[ce(max_nodes=4)]))
    assert placements(again) == [PlaceGang("g2", ("n1", "n2", "n3", "n4"))]


def test_two_3_node_gangs_on_four_nodes_place_one() -> None:
    snap = snapshot(idle("n1", "n2", "n3", "n4"), [gang("g1", 3), gang("g2", 3)])
    assert placements(reconcile(snap)) == [PlaceGang("g1", ("n1", "n2", "n3"))]


# --- never fits -------------------------------------------------------------------------------


def test_a_gang_larger_than_every_environment_gets_a_never_fit_reason() -> None:
    g = gang("g", 5)
    snap = snapshot(
        [*idle("a1", "a2", ce="ce-a"), *idle("b1", "b2", "b3", "b4", ce="ce-b")],
        [g, single("s")],
        ces=[ce("ce-a", max_nodes=2), ce("ce-b", max_nodes=4)],
        queues=[QueueView("q", 1, ("ce-a", "ce-b"))],
    )
    reason = f"{NEVER_FITS} - needs 5 nodes, the largest compute environment has 4"
    assert placements(reconcile(snap)) == [SetReason("g", reason), Place("s", "a1")]
    # the reason is not set again once the job has it
    g.status_reason = reason
    assert [a for a in reconcile(snap) if isinstance(a, SetReason)] == []


def test_an_environment_of_unknown_size_gives_no_never_fit_reason() -> None:
    snap = snapshot(idle("n1", "n2"), [gang("g", 5)], ces=[ce(max_nodes=None)])
    assert placements(reconcile(snap)) == []


def test_a_gang_node_too_big_for_every_node_shape_gets_a_never_fit_reason() -> None:
    g = gang("g", 2, [Resources(1, 256, 0), Resources(64, 256, 0)])
    snap = snapshot(idle("n1", "n2"), [g], ces=[ce(max_nodes=2)])
    assert placements(reconcile(snap)) == [
        SetReason("g", f"{NEVER_FITS} - needs 64 vCPUs, largest node has 4")
    ]


def test_a_gang_that_fits_an_environment_exactly_gets_no_reason() -> None:
    snap = snapshot(idle("n1", "n2", "n3"), [gang("g", 3)], ces=[ce(max_nodes=3)])
    assert placements(reconcile(snap)) == [PlaceGang("g", ("n1", "n2", "n3"))]


def test_a_heterogeneous_gang_that_fits_is_placed() -> None:
    big = Resources(16, 8192, 0)
    g = gang("g", 2, [Resources(1, 256, 0), Resources(8, 1024, 0)])
    snap = snapshot(
        [node("a-big", cap=big), *idle("b-small")], [g], ces=[ce(max_nodes=2, shapes=(CAP, big))]
    )
    assert placements(reconcile(snap)) == [PlaceGang("g", ("b-small", "a-big"))]
