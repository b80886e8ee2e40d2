"""Per-node credentials at the agent door (issue 11), through the head's real HTTP app: a
node's calls need its own secret, issued when it joins (join token, or the head's token for
an UNMANAGED environment's new node); a report about another node's attempt is refused
whole; a re-registration cannot change what the node is. End to end with real agents:
tests/integration/test_node_credentials.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mnp.spec import protocol
from mnp.spec.environments import Node, NodeStatus, new_secret
from mnp.spec.protocol import Event
from mnp.spec.resources import Resources
from tests.unit.doors import Doors


@pytest.fixture
def doors(tmp_path: Path) -> Iterator[Doors]:
    d = Doors(tmp_path / "home")
    yield d
    d.close()


def running(doors: Doors, node_id: str) -> str:
    """A job whose first attempt the head placed on ``node_id`` (the only node with room)."""
    body = {
        "jobDefinitionName": "d",
        "type": "container",
        "containerProperties": {"command": ["true"]},
    }
    assert doors.native("registerJobDefinition", body).status_code == 200
    r = doors.native("submitJob", {"jobName": "j", "jobQueue": "default", "jobDefinition": "d"})
    job_id = str(r.json()["jobId"])
    doors.tick()
    doors.tick()
    assert [a["jobId"] for a in doors.poll(node_id).json()["assignments"]] == [job_id]
    return job_id


def status(doors: Doors, job_id: str) -> str:
    return str(doors.native("describeJobs", {"jobs": [job_id]}).json()["jobs"][0]["status"])


def test_a_joined_node_needs_its_secret_for_every_later_call(doors: Doors) -> None:
    r = doors.register("n1")
    assert r.status_code == 200
    secret = r.json()[protocol.NODE_SECRET_KEY]
    stored = doors.head.scheduler.s.nodes["n1"].secret_hash
    assert stored and secret not in stored, "only a hash is kept"
    doors.secrets.clear()  # from here on, the head's token alone
    for r in (doors.poll("n1"), doors.report([], "n1")):
        assert r.status_code == 403
        assert r.json()["__type"] == "AccessDeniedException"
    # a join whose answer was lost may be repeated until the secret is first used
    rejoined = doors.register("n1")
    assert rejoined.status_code == 200
    secret = rejoined.json()[protocol.NODE_SECRET_KEY]
    doors.secrets["n1"] = "not-" + secret
    assert doors.poll("n1").status_code == 403
    doors.secrets["n1"] = secret
    assert doors.poll("n1").status_code == 200
    doors.secrets.clear()  # the secret has been used: the head's token alone is refused
    for r in (doors.poll("n1"), doors.report([], "n1"), doors.register("n1")):
        assert r.status_code == 403
    doors.secrets["n1"] = secret
    again = doors.register("n1")
    assert again.status_code == 200 and protocol.NODE_SECRET_KEY not in again.json()


def test_a_report_about_another_nodes_attempt_is_refused_whole(doors: Doors) -> None:
    assert doors.register("n1").status_code == 200
    job_id = running(doors, "n1")
    assert doors.register("n2").status_code == 200
    aid = f"{job_id}/1"
    started = Event(aid, "started", 1, seq=1, pid=7)
    assert doors.report([started], "n1").status_code == 200
    exited = Event(aid, "exited", 2, seq=10, exit_code=0)
    r = doors.report([exited], "n2")
    assert r.status_code == 403
    assert r.json() == {
        "__type": "AccessDeniedException",
        "message": f"node n2 reported on attempt {aid} of node n1",
    }
    assert status(doors, job_id) == "RUNNING"
    assert doors.report([Event(aid, "exited", 3, seq=2, exit_code=0)], "n1").status_code == 200
    assert status(doors, job_id) == "SUCCEEDED", "n1's own later report is still applied"


@pytest.mark.parametrize(
    ("field", "value"),
    [("memoryMiB", 8192), ("address", "127.0.0.99"), ("gpus", 1), ("sshHostKey", "ssh-ed25519 B")],
)
def test_a_reregistration_cannot_change_the_node(doors: Doors, field: str, value: object) -> None:
    first = protocol.Register("n1", "ce", "127.0.0.9", 4, 4096, 0, 1, ssh_host_key="ssh-ed25519 A")
    assert doors.agent(protocol.REGISTER_PATH, first.to_wire()).status_code == 200
    r = doors.agent(protocol.REGISTER_PATH, {**first.to_wire(), field: value})
    assert r.status_code == 409
    assert r.json()["message"].startswith(f"{field}: node n1 is registered with ")
    node = doors.head.scheduler.s.nodes["n1"]
    assert (node.address, node.capacity, node.ssh_host_key) == (
        "127.0.0.9",
        Resources(4, 4096, 0),
        "ssh-ed25519 A",
    )
    moved = {**first.to_wire(), "sshPort": 2222, "pid": 2}  # a restarted agent's new port
    assert doors.agent(protocol.REGISTER_PATH, moved).status_code == 200


def test_a_launched_node_joins_once_with_its_join_token(doors: Doors) -> None:
    token, token_hash = new_secret()
    s = doors.head.scheduler.s
    s.add_node(
        Node(
            "m1",
            "ce",
            "127.0.0.9",
            Resources(4, 4096, 0),
            NodeStatus.LAUNCHING,
            join_hash=token_hash,
        )
    )
    body = protocol.Register("m1", "ce", "127.0.0.9", 4, 4096, 0, 1).to_wire()
    assert doors.agent(protocol.REGISTER_PATH, body).status_code == 403, "no token"

    def join() -> str:
        r = doors.http.post(
            protocol.REGISTER_PATH,
            json=body,
            headers={protocol.TOKEN_HEADER: "test-token", protocol.JOIN_TOKEN_HEADER: token},
        )
        assert r.status_code == 200, r.text
        return str(r.json()[protocol.NODE_SECRET_KEY])

    doors.secrets["m1"] = join()  # its answer lost: the agent may join again
    doors.secrets["m1"], lost = join(), doors.secrets["m1"]
    assert doors.poll("m1").status_code == 200
    doors.secrets["m1"], newer = lost, doors.secrets["m1"]
    assert doors.poll("m1").status_code == 403, "only the newer secret counts"
    doors.secrets["m1"] = newer
    assert s.nodes["m1"].join_hash is None, "the secret was used: the token is spent"
    r = doors.http.post(
        protocol.REGISTER_PATH,
        json=body,
        headers={protocol.TOKEN_HEADER: "test-token", protocol.JOIN_TOKEN_HEADER: token},
    )
    assert r.status_code == 403


def test_a_joined_node_needs_no_head_token_and_a_stranger_cannot_join_without_it(
    doors: Doors,
) -> None:
    assert doors.register("n1").status_code == 200
    secret = doors.secrets["n1"]
    poll = protocol.Poll("n1", [], 0, epoch=doors.head.state.nodes["n1"].session_epoch)

    def post(path: str, body: dict[str, object], headers: dict[str, str]) -> int:
        return int(doors.http.post(path, content=json.dumps(body), headers=headers).status_code)

    # its own secret alone (the head's token never left the head) is enough
    assert post(protocol.POLL_PATH, poll.to_wire(), {protocol.NODE_SECRET_HEADER: secret}) == 200
    stranger = protocol.Register("n9", "ce", "127.0.0.9", 4, 4096, 0, 1).to_wire()
    assert post(protocol.REGISTER_PATH, stranger, {}) == 401  # no credential at all
    faked = {protocol.NODE_SECRET_HEADER: "made-up"}
    assert post(protocol.REGISTER_PATH, stranger, faked) == 403  # a new node needs the token
    assert "n9" not in doors.head.state.nodes
    assert post(protocol.POLL_PATH, poll.to_wire(), faked) == 403
