"""A node's interruption notice and an EC2 node's end, through the real sessions and
scheduler: the notice drains the node (nothing new lands there, what runs goes on); a lost
node that is an EC2 instance ends its attempts with AWS's words, which ``onStatusReason:
"Host EC2*"`` retry rules match."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mnp.errors import InvalidInput
from mnp.spec.protocol import Poll
from tests.unit.helpers_core import Head


@pytest.fixture
def head(tmp_path: Path) -> Iterator[Head]:
    h = Head.open(tmp_path / "home")
    h.basic(("n1", "n2"))
    yield h
    h.close()


def test_a_notice_drains_the_node_and_new_work_goes_elsewhere(head: Head) -> None:
    first = head.submit("first")
    head.ticks(3)
    busy = head.state.nodes[head.describe(first)["nodeId"]]
    a = head.run_next(busy.node_id)
    other = "n2" if busy.node_id == "n1" else "n1"
    notice = "spot instance-action terminate at 2026-12-01T16:00:00Z"
    head.sessions.poll(Poll(busy.node_id, [a.attempt_id], 0.0, epoch=head.epoch(busy.node_id),
                            notice=notice))  # fmt: skip
    assert busy.draining and busy.status_reason == f"interruption notice: {notice}"
    second = head.submit("second")
    head.run_next(other)
    assert head.describe(second)["nodeId"] == other
    assert head.status(first) in ("STARTING", "RUNNING")  # what ran there goes on


def test_a_notice_must_be_short_text() -> None:
    body = Poll("n1", [], 0.0, notice="x" * 257).to_wire()
    with pytest.raises(InvalidInput, match="notice"):
        Poll.from_wire(body)
    assert Poll.from_wire({**body, "notice": "ok"}).notice == "ok"


def test_a_lost_ec2_node_ends_its_attempts_as_aws_says(head: Head) -> None:
    job = head.submit("on-ec2")
    head.ticks(3)
    node_id = head.describe(job)["nodeId"]
    head.run_next(node_id)
    head.state.nodes[node_id].instance_id = "i-0123456789abcdef0"
    head.scheduler.fleet.lose(node_id, "stopped heartbeating")
    attempts = head.describe(job)["attempts"]
    assert attempts[-1]["statusReason"] == "Host EC2 (instance i-0123456789abcdef0) terminated."


def test_an_ec2_node_says_which_instance_it_is_and_cannot_claim_another(head: Head) -> None:
    from mnp.errors import Conflict
    from mnp.spec.protocol import InstanceIdentity, Register

    node = head.state.nodes["n1"]
    me = InstanceIdentity("i-0123456789abcdef0", "c5.large", "us-east-1a", "mnp-pg")
    body = Register("n1", "ce", node.address, 4, 4096, 0, 4242, instance=me)
    head.sessions.register(body)
    assert (node.instance_id, node.instance_type, node.zone) == (
        "i-0123456789abcdef0", "c5.large", "us-east-1a")  # fmt: skip
    other = InstanceIdentity("i-0fedcba9876543210", "c5.large", "us-east-1a")
    with pytest.raises(Conflict, match=r"instance\.instanceId"):
        head.sessions.register(Register("n1", "ce", node.address, 4, 4096, 0, 4242,
                                        instance=other))  # fmt: skip
    wire = body.to_wire()
    wire["instance"] = {**wire["instance"], "instanceId": "i-$(reboot)"}
    with pytest.raises(InvalidInput, match=r"instance\.instanceId"):
        Register.from_wire(wire)
