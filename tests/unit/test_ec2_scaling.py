"""EC2 environments' scaling, pure: demand → the batched instance launches (types, counts,
gangs), room on LAUNCHING nodes taken first, maxvCpus never passed with BEST_FIT,
minvCpus/desiredvCpus kept, idle instances drained down to minvCpus, a lowered maxvCpus
draining the idlest, no launch while backing off."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mnp.ec2.catalog import Catalogue
from mnp.scheduler.ec2scaling import (
    Ec2Env,
    Ec2Scale,
    InstanceLaunch,
    LaunchInstances,
    SetDesiredVcpus,
    WaitReason,
    plan,
)
from mnp.scheduler.scaling import DrainNodes, RetireNodes
from mnp.spec.environments import NodeStatus
from mnp.spec.jobs import Job
from mnp.spec.resources import Resources
from tests.unit.test_gang_scheduler import gang, single

CATALOGUE = Catalogue.from_rows(
    [
        {"name": "c5.large", "vcpus": 2, "memoryMiB": 4096},
        {"name": "c5.xlarge", "vcpus": 4, "memoryMiB": 8192},
        {"name": "c5.2xlarge", "vcpus": 8, "memoryMiB": 16384},
    ]
)
PRICES = {"c5.large": 0.085, "c5.xlarge": 0.17, "c5.2xlarge": 0.34}
LARGE = Resources(2, 4096, 0)


@dataclass(frozen=True)
class N:
    node_id: str
    status: NodeStatus = NodeStatus.ACTIVE
    capacity: Resources = field(default_factory=lambda: LARGE)
    free: Resources = field(default_factory=lambda: LARGE)
    idle_since_ms: int | None = None
    draining: bool = False
    compute_environment: str = "ce"


def env(
    types: Sequence[str] = ("c5",),
    low: int = 0,
    high: int = 16,
    desired: int = 0,
    strategy: str = "BEST_FIT",
    launch_after_ms: int = 0,
) -> dict[str, Ec2Env]:
    scale = Ec2Scale(tuple(CATALOGUE.expand(types)), strategy, low, high, desired, prices=PRICES)
    return {"ce": Ec2Env("ce", True, scale, launch_after_ms)}


def run(
    envs: dict[str, Ec2Env],
    jobs: Sequence[Job] = (),
    nodes: Sequence[N] = (),
    now: int = 100_000,
) -> list[object]:
    return list(plan(envs, nodes, [("q", ("ce",))], {"q": jobs}, set(), now, 60_000))


def launched(actions: list[object]) -> list[InstanceLaunch]:
    return [x for a in actions if isinstance(a, LaunchInstances) for x in a.launches]


def desired(actions: list[object]) -> int | None:
    return next((a.vcpus for a in actions if isinstance(a, SetDesiredVcpus)), None)


def test_demand_launches_the_cheapest_fitting_type_packed_in_one_batch() -> None:
    actions = run(env(), [single(f"j{i}", 1) for i in range(3)])
    assert [a for a in actions if isinstance(a, LaunchInstances)] == [
        LaunchInstances("ce", (InstanceLaunch("c5.large", 2, LARGE),))
    ]  # 3 one-vCPU jobs on two 2-vCPU instances, one launch call
    assert desired(actions) == 4


def test_room_on_launching_nodes_is_taken_before_launching_more() -> None:
    coming = [N("ce-1", NodeStatus.LAUNCHING), N("ce-2", NodeStatus.LAUNCHING)]
    actions = run(env(), [single(f"j{i}", 1) for i in range(4)], coming)
    assert launched(actions) == []
    assert run(env(desired=4), [single("j", 1)], coming) == []  # nothing changes


def test_best_fit_never_passes_max_vcpus() -> None:
    got = launched(run(env(high=8), [single(f"j{i}", 2) for i in range(10)]))
    assert got == [InstanceLaunch("c5.large", 4, LARGE)]


def test_a_gang_gets_its_own_instances_launched_together() -> None:
    got = launched(run(env(), [gang("g", 4, Resources(2, 1024, 0)), single("s", 1)]))
    assert InstanceLaunch("c5.large", 4, LARGE, gang="g") in got
    assert InstanceLaunch("c5.large", 1, LARGE) in got


def test_a_job_larger_than_every_type_launches_nothing() -> None:
    assert launched(run(env(types=("c5.large",)), [single("big", 4)])) == []


def test_min_and_desired_vcpus_are_kept_with_the_cheapest_type() -> None:
    assert launched(run(env(low=4))) == [InstanceLaunch("c5.large", 2, LARGE)]
    assert launched(run(env(desired=6))) == [InstanceLaunch("c5.large", 3, LARGE)]
    assert launched(run(env(low=4), nodes=[N("a"), N("b")])) == []


def test_idle_instances_are_drained_down_to_min_vcpus() -> None:
    idle = [N("a", idle_since_ms=1_000), N("b", idle_since_ms=2_000), N("c", idle_since_ms=3_000)]
    actions = run(env(low=2, desired=6), nodes=idle)
    assert [a for a in actions if isinstance(a, DrainNodes)] == [DrainNodes("ce", ("a", "b"))]
    assert desired(actions) == 2
    busy = [N("a"), N("b", idle_since_ms=90_000)]  # idle for 10 s only
    assert [a for a in run(env(desired=4), nodes=busy) if isinstance(a, DrainNodes)] == []


def test_a_lowered_max_drains_the_idlest_and_drained_idle_nodes_retire() -> None:
    nodes = [N("a"), N("b", idle_since_ms=5_000), N("c", draining=True, idle_since_ms=1)]
    actions = run(env(high=2, desired=4), nodes=nodes)
    assert DrainNodes("ce", ("b",)) in actions
    assert RetireNodes("ce", ("c",)) in actions


def test_nothing_launches_while_backing_off() -> None:
    assert launched(run(env(launch_after_ms=200_000), [single("j", 1)])) == []
    assert launched(run(env(launch_after_ms=50_000), [single("j", 1)])) != []


def test_jobs_that_get_no_instance_say_why() -> None:
    actions = run(env(high=2), [single("a", 2), single("b", 2)])
    waits = [a for a in actions if isinstance(a, WaitReason)]
    assert [w.job_id for w in waits] == ["b"]
    assert waits[0].reason.startswith("CAPACITY:WAITING - maxvCpus 2 reached"), waits


def test_while_backing_off_the_waiting_jobs_say_what_failed() -> None:
    scale = env(launch_after_ms=200_000)["ce"].scale
    failed = "CLIENT_ERROR - launching nodes failed: NoSuchEntity: Instance profile x not found"
    envs = {"ce": Ec2Env("ce", True, scale, 200_000, failed)}
    waits = [a for a in run(envs, [single("j", 1)]) if isinstance(a, WaitReason)]
    assert waits == [WaitReason("j", "CAPACITY:WAITING - " + failed)]
