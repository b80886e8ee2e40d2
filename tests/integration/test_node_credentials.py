"""Per-node credentials (issue 11), end to end with a real head and real local agents: the
head's token alone no longer speaks for a node, a node speaks only about its own attempts,
a re-registration cannot change what the node is, and a restarted agent keeps its secret."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from mnp.spec.protocol import (
    NODE_SECRET_HEADER,
    REGISTER_PATH,
    REPORT_PATH,
    TOKEN_HEADER,
)
from tests.integration.cluster import Cluster, pid_alive, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # one vCPU a node: two one-vCPU jobs run on both nodes at once
    home = tmp_path_factory.mktemp("cred") / "home"
    with Cluster(home, nodes=2, vcpus=1, lost_after=20.0) as c:
        yield c


def post(c: Cluster, path: str, body: dict[str, Any], secret: str | None = None) -> Any:
    """(status, answer) of one agent call made with the head's token (and ``secret``)."""
    headers = {"Content-Type": "application/json", TOKEN_HEADER: head_token(c)}
    if secret is not None:
        headers[NODE_SECRET_HEADER] = secret
    req = urllib.request.Request(
        c.url + path, json.dumps(body).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def head_token(c: Cluster) -> str:
    return (c.home / "token").read_text().strip()


def secret_of(c: Cluster, node_id: str) -> str:
    return (c.home / "nodes" / node_id / "node.secret").read_text().strip()


def registration(c: Cluster, node_id: str, **change: Any) -> dict[str, Any]:
    """What the node's agent announces (as the head recorded it), with ``change`` applied."""
    node = next(n for n in c.client.nodes() if n["nodeId"] == node_id)
    private = asyncssh.read_private_key(c.home / "nodes" / node_id / "ssh_host_ed25519_key")
    key = " ".join(private.export_public_key("openssh").decode().split()[:2])
    body = {
        "nodeId": node_id,
        "computeEnvironment": node["computeEnvironment"],
        "address": node["address"],
        "vcpus": int(node["vcpus"]),
        "memoryMiB": node["memoryMiB"],
        "gpus": node["gpus"],
        "pid": node["pid"],
        "sshPort": 1,
        "sshHostKey": key,
    }
    return {**body, **change}


def node_ids(c: Cluster) -> list[str]:
    return sorted(n["nodeId"] for n in c.client.nodes() if n["status"] == "ACTIVE")


def running_job(c: Cluster, name: str) -> tuple[str, str]:
    jd = c.register(name, ["sleep", "60"])
    job = c.submit(name, jd)
    return job, c.wait_status(job, "RUNNING")["nodeId"]


def test_the_head_token_alone_cannot_register_or_report_for_a_node(two_nodes: Cluster) -> None:
    c = two_nodes
    node = node_ids(c)[0]
    status, answer = post(c, REGISTER_PATH, registration(c, node))
    assert (status, answer["__type"]) == (403, "AccessDeniedException"), answer
    assert "X-Mnp-Node-Secret" in answer["message"]
    status, _ = post(c, REGISTER_PATH, registration(c, node, nodeId="intruder-1"))
    assert status == 404, "a managed environment's nodes are only those the head launched"
    job, on = running_job(c, "hijack")
    event = {"attempt_id": f"{job}/1", "kind": "exited", "time_ms": 1, "seq": 1, "exit_code": 0}
    status, answer = post(c, REPORT_PATH, {"nodeId": on, "events": [event]})
    assert (status, answer["__type"]) == (403, "AccessDeniedException"), answer
    assert c.client.describe(job)["status"] == "RUNNING"
    c.client.terminate(job, "done")
    c.wait_status(job, "FAILED")


def test_a_node_reporting_another_nodes_attempt_is_refused(two_nodes: Cluster) -> None:
    c = two_nodes
    job, on = running_job(c, "theirs")
    other = next(n for n in node_ids(c) if n != on)
    event = {"attempt_id": f"{job}/1", "kind": "exited", "time_ms": 1, "seq": 2**52, "exit_code": 0}
    status, answer = post(c, REPORT_PATH, {"nodeId": other, "events": [event]}, secret_of(c, other))
    assert (status, answer["__type"]) == (403, "AccessDeniedException"), answer
    assert f"of node {on}" in answer["message"]
    d = c.client.describe(job)
    assert (d["status"], d["nodeId"]) == ("RUNNING", on), "nothing of the report was applied"
    c.client.terminate(job, "done")
    c.wait_status(job, "FAILED")


@pytest.mark.parametrize(
    ("field", "value"), [("vcpus", 7), ("sshHostKey", "ssh-ed25519 AAAAnotthisnodeskey")]
)
def test_a_reregistration_cannot_change_capacity_or_host_key(
    two_nodes: Cluster, field: str, value: Any
) -> None:
    c = two_nodes
    node = node_ids(c)[0]
    before = next(n for n in c.client.nodes() if n["nodeId"] == node)
    body = registration(c, node, **{field: value})
    status, answer = post(c, REGISTER_PATH, body, secret_of(c, node))
    assert status == 409, answer
    assert answer["message"].startswith(f"{field}: "), answer
    after = next(n for n in c.client.nodes() if n["nodeId"] == node)
    assert after["vcpus"] == before["vcpus"] and after["status"] == "ACTIVE"


def test_an_agent_restarted_under_its_node_id_keeps_its_secret(two_nodes: Cluster) -> None:
    c = two_nodes
    node = node_ids(c)[-1]
    secret_file = c.home / "nodes" / node / "node.secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    pid = c.agent_pids()[node]
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    env_items = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    env = dict(item.split(b"=", 1) for item in env_items if b"=" in item)
    env.pop(b"MNP_JOIN_TOKEN", None)  # a spent token: the saved secret must do
    os.kill(pid, signal.SIGTERM)
    wait_for("the agent to stop", lambda: not pid_alive(pid))
    log = open(c.home / "agent-restarted.log", "ab")  # noqa: SIM115 - closed below
    try:
        agent = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()
    try:
        wait_for(
            "the restarted agent to register",
            lambda: any(
                n["nodeId"] == node and n["pid"] == agent.pid and n["status"] == "ACTIVE"
                for n in c.client.nodes()
            ),
        )
        jd = c.register("both", ["sleep", "60"])
        jobs = [c.submit(f"both-{i}", jd) for i in range(2)]  # one vCPU each: one a node
        ran_on = {c.wait_status(j, "RUNNING")["nodeId"] for j in jobs}
        assert node in ran_on, "the restarted node takes work again"
        for j in jobs:
            c.client.terminate(j, "done")
        for j in jobs:
            assert c.wait_status(j, "FAILED")["statusReason"] == "done"
    finally:
        agent.terminate()
        agent.wait(10)
