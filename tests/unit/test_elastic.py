"""Elastic MANAGED environments through the fault-injecting fake provider: the exact batched
launch and terminate calls from demand 0 → N → back to the minimum after the idle delay, a
gang launching whole nodes, a failing launch backing off and showing INVALID with its
reason, desiredvCpus honoured and kept current, a busy node drained rather than stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mnp.config import SCALE_IN_ENV, HeadConfig, scale_in_setting
from mnp.errors import InvalidInput
from mnp.providers.fake import FakeProvider
from mnp.spec.environments import NodeStatus
from mnp.spec.protocol import Register
from tests.unit.doors import Doors
from tests.unit.helpers_core import Head

IDLE = 60  # HeadConfig.scale_in_after_seconds' default
FOUR_VCPUS = {"resourceRequirements": [{"type": "VCPU", "value": "4"}]}


@pytest.fixture
def head(tmp_path: Path) -> Iterator[Head]:
    h = Head.open(tmp_path / "home")
    h.scheduler.fleet._providers["local"] = FakeProvider()  # fault injection, records calls
    h.definition()
    yield h
    h.close()


def fake(h: Head) -> FakeProvider:
    p = h.scheduler.fleet._providers["local"]
    assert isinstance(p, FakeProvider)
    return p


def elastic(h: Head, **resources: Any) -> None:
    """Environment ``aws`` (4-vCPU local nodes) with these computeResources; queue ``q``."""
    h.api["createComputeEnvironment"](
        {
            "computeEnvironmentName": "aws",
            "type": "MANAGED",
            "computeResources": {"type": "EC2", "subnets": [], **resources},
        }
    )
    h.queue("q", ces=("aws",))


def env(h: Head) -> dict[str, Any]:
    (got,) = h.api["describeComputeEnvironments"]({"computeEnvironments": ["aws"]})[
        "computeEnvironments"
    ]
    return got


def register(h: Head, *ids: str) -> None:
    for n in ids:
        node = h.state.nodes[n]
        h.sessions.register(Register(n, "aws", node.address, 4, 4096, 0, 4242))
        h.seq.setdefault(n, 0)


def run_to_end(h: Head, *ids: str) -> None:
    """Each node runs its one assignment to success."""
    for n in ids:
        a = h.run_next(n)
        h.exited(n, a.attempt_id, 0)
    h.ticks(1)


def pass_time(h: Head, seconds: float) -> None:
    """Let ``seconds`` go by on the fake clock, the ACTIVE nodes heartbeating and the
    scheduler ticking every 2 s (as the head's loop does)."""
    left = seconds
    while left > 0:
        step = min(2.0, left)
        h.clock.advance(step)
        left -= step
        for n in [n for n, node in h.state.nodes.items() if node.status == NodeStatus.ACTIVE]:
            h.poll(n)
        h.ticks(1)


def live(h: Head) -> list[str]:
    return sorted(
        n.node_id
        for n in h.state.nodes.values()
        if n.status in (NodeStatus.ACTIVE, NodeStatus.LAUNCHING)
    )


def test_demand_brings_nodes_up_in_one_batch_and_idle_ones_go_back_to_the_minimum(
    head: Head,
) -> None:
    elastic(head, minvCpus=4, maxvCpus=256)
    head.ticks(2)
    assert fake(head).of("launch") == [("aws-1",)]  # the minimum, there from the start
    assert (env(head)["status"], env(head)["computeResources"]["desiredvCpus"]) == ("VALID", 4)
    register(head, "aws-1")
    head.ticks(2)
    assert fake(head).of("launch") == [("aws-1",)]  # no demand, nothing more
    jobs = [head.submit(f"j{i}", containerOverrides=FOUR_VCPUS) for i in range(3)]
    head.ticks(3)
    # one job fits the idle node; the other two need two more nodes: one call, never more
    assert fake(head).of("launch") == [("aws-1",), ("aws-2", "aws-3")]
    assert env(head)["computeResources"]["desiredvCpus"] == 12
    register(head, "aws-2", "aws-3")
    run_to_end(head, "aws-1", "aws-2", "aws-3")
    assert [head.status(j) for j in jobs] == ["SUCCEEDED"] * 3
    pass_time(head, IDLE - 1)
    assert fake(head).of("terminate") == []  # not idle long enough yet
    pass_time(head, 2)
    (stopped,) = fake(head).of("terminate")  # one batched call, down to the minimum
    assert len(stopped) == 2 and len(live(head)) == 1 and live(head)[0] not in stopped
    assert {head.state.nodes[n].status for n in stopped} == {NodeStatus.STOPPED}
    assert env(head)["computeResources"]["desiredvCpus"] == 4
    pass_time(head, 3 * IDLE)
    assert len(fake(head).of("terminate")) == 1  # the minimum stays, idle or not


def test_an_empty_environment_starts_nothing_and_scales_to_zero(head: Head) -> None:
    elastic(head, minvCpus=0, maxvCpus=256)
    head.ticks(3)
    assert fake(head).calls == []
    assert env(head)["computeResources"]["desiredvCpus"] == 0
    head.submit("small")  # 1 vCPU: one node is enough
    head.ticks(3)
    assert fake(head).of("launch") == [("aws-1",)]
    register(head, "aws-1")
    run_to_end(head, "aws-1")
    pass_time(head, IDLE + 1)
    assert fake(head).of("terminate") == [("aws-1",)]
    assert live(head) == [] and env(head)["computeResources"]["desiredvCpus"] == 0


def test_a_gang_launches_whole_nodes(head: Head) -> None:
    elastic(head, minvCpus=0, maxvCpus=64)
    head.api["registerJobDefinition"](
        {
            "jobDefinitionName": "mnp",
            "type": "multinode",
            "nodeProperties": {
                "numNodes": 3,
                "mainNode": 0,
                "nodeRangeProperties": [
                    {"targetNodes": ":", "container": {"command": ["true"], **_one_vcpu()}}
                ],
            },
        }
    )
    head.submit(jobDefinition="mnp")
    head.ticks(3)
    # 3 vCPUs would fit one node, but a gang takes one whole node per node of the job
    assert fake(head).of("launch") == [("aws-1", "aws-2", "aws-3")]


def test_a_launch_that_keeps_failing_backs_off_and_shows_invalid(head: Head) -> None:
    elastic(head, minvCpus=0, maxvCpus=16)
    fake(head).fail_with = "InsufficientInstanceCapacity: no room on this substrate"
    head.submit("j")
    head.ticks(3)
    assert fake(head).of("launch") == [("aws-1",)]
    assert head.state.nodes["aws-1"].status == NodeStatus.LOST
    head.ticks(5)  # no new attempt (and no new node record) every tick: it backs off
    assert len(fake(head).of("launch")) == 1 and len(head.state.nodes) == 1
    head.clock.advance(1)
    head.ticks(2)
    assert fake(head).of("launch") == [("aws-1",), ("aws-2",)]
    head.clock.advance(1.5)
    head.ticks(2)
    assert len(fake(head).of("launch")) == 2  # the wait doubled: 2 s now
    head.clock.advance(0.5)
    head.ticks(1)
    assert len(fake(head).of("launch")) == 3
    got = env(head)
    assert got["status"] == "INVALID"
    assert "InsufficientInstanceCapacity: no room on this substrate" in got["statusReason"]
    fake(head).fail_with = None  # the substrate recovers
    head.clock.advance(4)
    head.ticks(2)
    assert fake(head).of("launch")[-1] == ("aws-4",)
    assert env(head)["status"] == "VALID"


def test_a_launch_short_of_capacity_backs_off_but_stays_valid_saying_why(head: Head) -> None:
    """As AWS: an environment EC2 cannot launch into for want of capacity is VALID, its
    ``statusReason`` naming the error, and it keeps trying (backing off)."""
    elastic(head, minvCpus=0, maxvCpus=16)
    fake(head).fail_with = "InsufficientInstanceCapacity: no room now"
    fake(head).fail_retryable = True
    head.submit("j")
    for _ in range(5):
        head.ticks(2)
        head.clock.advance(60)
    assert len(fake(head).of("launch")) >= 4
    got = env(head)
    assert got["status"] == "VALID", got
    assert "InsufficientInstanceCapacity: no room now" in got["statusReason"]
    fake(head).fail_with = None
    head.clock.advance(60)
    head.ticks(2)
    got = env(head)
    assert got["status"] == "VALID" and "Insufficient" not in got.get("statusReason", ""), got


def test_desired_vcpus_set_by_an_update_is_honoured_then_scaled_in(head: Head) -> None:
    elastic(head, minvCpus=0, maxvCpus=32)
    head.ticks(1)
    head.api["updateComputeEnvironment"](
        {"computeEnvironment": "aws", "computeResources": {"desiredvCpus": 8}}
    )
    assert env(head)["status"] == "UPDATING"
    head.ticks(1)
    assert fake(head).of("launch") == [("aws-1", "aws-2")]
    assert (env(head)["status"], env(head)["computeResources"]["desiredvCpus"]) == ("VALID", 8)
    register(head, "aws-1", "aws-2")
    pass_time(head, IDLE + 2)  # idle from the first tick after they joined
    assert fake(head).of("terminate") == [("aws-1", "aws-2")]
    assert env(head)["computeResources"]["desiredvCpus"] == 0


def test_a_busy_node_beyond_a_lowered_maximum_is_drained_not_killed(head: Head) -> None:
    elastic(head, minvCpus=8, maxvCpus=8)
    head.ticks(1)
    register(head, "aws-1", "aws-2")
    a = head.submit("a", containerOverrides=FOUR_VCPUS)
    b = head.submit("b", containerOverrides=FOUR_VCPUS)
    run_a, run_b = head.run_next("aws-1"), head.run_next("aws-2")
    head.api["updateComputeEnvironment"](
        {"computeEnvironment": "aws", "computeResources": {"minvCpus": 0, "maxvCpus": 4}}
    )
    head.ticks(2)
    assert fake(head).of("terminate") == []  # both busy: one is draining, none is killed
    draining = [n for n in ("aws-1", "aws-2") if head.state.nodes[n].draining]
    assert len(draining) == 1
    c = head.submit("c", containerOverrides=FOUR_VCPUS)
    node_of = {"aws-1": run_a, "aws-2": run_b}
    (kept,) = {"aws-1", "aws-2"} - set(draining)
    head.exited(draining[0], node_of[draining[0]].attempt_id, 0)
    head.ticks(2)
    assert fake(head).of("terminate") == [(draining[0],)]
    assert head.status(c) == "RUNNABLE"  # nothing new landed on the draining node
    head.exited(kept, node_of[kept].attempt_id, 0)
    head.ticks(1)
    assert [head.status(j) for j in (a, b)] == ["SUCCEEDED"] * 2
    assert head.status(c) == "STARTING"


def test_a_fixed_environment_keeps_its_size(head: Head) -> None:
    head.api["createComputeEnvironment"](
        {"computeEnvironmentName": "aws", "type": "MANAGED", "mnp": {"nodes": 4}}
    )
    head.queue("q", ces=("aws",))
    head.ticks(1)
    assert fake(head).of("launch") == [("aws-1", "aws-2", "aws-3", "aws-4")]
    register(head, "aws-1", "aws-2", "aws-3", "aws-4")
    pass_time(head, 3 * IDLE)
    assert fake(head).of("terminate") == [] and len(live(head)) == 4


@pytest.mark.parametrize(
    ("resources", "field", "rule"),
    [
        ({"minvCpus": 8, "maxvCpus": 4}, "computeResources.minvCpus", "must be <= maxvCpus (4)"),
        (
            {"minvCpus": 0, "maxvCpus": 4, "desiredvCpus": 8},
            "computeResources.desiredvCpus",
            "must be between minvCpus (0) and maxvCpus (4)",
        ),
        ({"maxvCpus": -1}, "computeResources.maxvCpus", "must be an integer >= 0"),
        ({"maxvCpus": "many"}, "computeResources.maxvCpus", "must be an integer >= 0"),
    ],
)
def test_bounds_that_cannot_hold_are_refused_naming_the_field(
    head: Head, resources: dict[str, Any], field: str, rule: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        elastic(head, **resources)
    assert {e.path: e.message for e in err.value.errors}[field].startswith(rule)
    assert "aws" not in head.state.ces


def test_an_update_that_cannot_hold_changes_nothing(head: Head) -> None:
    elastic(head, minvCpus=4, maxvCpus=16)
    with pytest.raises(InvalidInput, match="must be <= maxvCpus"):
        head.api["updateComputeEnvironment"](
            {"computeEnvironment": "aws", "computeResources": {"maxvCpus": 2}, "state": "DISABLED"}
        )
    ce = head.state.ces["aws"]
    assert (ce.min_nodes, ce.node_count, ce.state.value) == (1, 4, "ENABLED")


def test_a_restarted_head_loses_the_nodes_its_provider_no_longer_lists(head: Head) -> None:
    elastic(head, minvCpus=8, maxvCpus=8)
    head.ticks(1)
    register(head, "aws-1", "aws-2")
    fake(head).lose("aws-2")  # its machine died while the head was down
    head.scheduler.restore()
    assert head.state.nodes["aws-1"].status == NodeStatus.ACTIVE
    assert head.state.nodes["aws-2"].status == NodeStatus.LOST


def _one_vcpu() -> dict[str, Any]:
    return {"resourceRequirements": [{"type": "VCPU", "value": "1"}]}


def test_the_aws_door_refuses_bounds_that_cannot_hold_as_a_client_exception(
    tmp_path: Path,
) -> None:
    doors = Doors(tmp_path / "doors")
    try:
        body = {
            "computeEnvironmentName": "tutorial",
            "type": "MANAGED",
            "computeResources": {"type": "EC2", "minvCpus": 16, "maxvCpus": 8, "subnets": []},
        }
        resp = doors.aws("createcomputeenvironment", body)
        assert resp.status_code == 400
        got = resp.json()
        assert got["__type"] == "ClientException"
        assert "computeResources.minvCpus: must be <= maxvCpus (8), got 16" in got["message"]
        body["computeResources"] = {"type": "EC2", "minvCpus": 0, "maxvCpus": 256, "subnets": []}
        assert doors.aws("createcomputeenvironment", body).status_code == 200
        doors.tick()
        described = doors.aws("describecomputeenvironments", {"computeEnvironments": ["tutorial"]})
        (ce,) = described.json()["computeEnvironments"]
        assert (ce["status"], ce["computeResources"]["desiredvCpus"]) == ("VALID", 0)
    finally:
        doors.close()


def test_the_idle_delay_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SCALE_IN_ENV, raising=False)
    assert HeadConfig().scale_in_after_seconds == 60
    monkeypatch.setenv(SCALE_IN_ENV, "1.5")
    assert HeadConfig().scale_in_after_seconds == 1.5
    for bad in ("-1", "soon", "nan", "inf"):
        monkeypatch.setenv(SCALE_IN_ENV, bad)
        with pytest.raises(ValueError, match=f"MNP_SCALE_IN_AFTER_SECONDS='{bad}': must be a"):
            scale_in_setting()


def test_demand_counts_the_default_memory_placement_will_hold(head: Head) -> None:
    """Jobs stating no MEMORY hold the environment's ``mnp:defaultMemoryMiB`` on its nodes:
    demand packs them so, and launches the nodes placement will need in one batch."""
    head.api["createComputeEnvironment"](
        {
            "computeEnvironmentName": "aws",
            "type": "MANAGED",
            "computeResources": {"type": "EC2", "subnets": [], "minvCpus": 0, "maxvCpus": 64},
            "tags": {"mnp:defaultMemoryMiB": "2048"},
        }
    )
    head.queue("q", ces=("aws",))
    head.definition(
        "nomem", containerProperties={"resourceRequirements": [{"type": "VCPU", "value": "1"}]}
    )
    shape = head.scheduler.snapshot().compute_environments["aws"].node_capacities[0]
    assert shape.vcpus == 4 and shape.memory_mib == 4096, shape  # two such jobs a node
    for i in range(4):
        head.submit(f"j{i}", jobDefinition="nomem")
    head.ticks(3)
    assert fake(head).of("launch") == [("aws-1", "aws-2")]  # not one node of 4 vCPUs
