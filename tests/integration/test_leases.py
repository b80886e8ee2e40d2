"""Leases, fencing, session epochs and rejoin (issue 11), end to end: a real head, real agents.

A frozen agent's job is stopped by the node's fence before the head retries it elsewhere (the
two runs never overlap, by the job's own marks) and killed once the agent learns its session
ended; the agent then rejoins as a new session and takes work again. A killed agent's job dies
at once (the fence sees EOF). A poll or report of an old session is refused with nothing
applied."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mnp.spec.protocol import NODE_SECRET_HEADER, POLL_PATH, REPORT_PATH, TOKEN_HEADER
from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration

LOST_AFTER = 3.0  # the lease is then 1.5 s


def post(c: Cluster, path: str, body: dict[str, Any], secret: str) -> tuple[int, Any]:
    headers = {
        "Content-Type": "application/json",
        TOKEN_HEADER: (c.home / "token").read_text().strip(),
        NODE_SECRET_HEADER: secret,
    }
    req = urllib.request.Request(c.url + path, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def state_of(pid: int) -> str | None:
    """The process's state letter (``T`` stopped, ``Z`` zombie), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def start_agent(c: Cluster, node: str, address: str) -> subprocess.Popen[bytes]:
    root = c.home / "unmanaged" / node
    root.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "launcher.agent", "--head", c.url, "--node-id", node,
            "--compute-environment", "um", "--address", address, "--vcpus", "1",
            "--memory-mib", "512", "--root", str(root), "--no-ssh"]  # fmt: skip
    env = {**os.environ, "MNP_AGENT_TOKEN": (c.home / "token").read_text().strip()}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    log = open(root / "agent.log", "ab")  # noqa: SIM115 - closed below
    try:
        return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


@pytest.fixture
def unmanaged(tmp_path: Path) -> Iterator[tuple[Cluster, list[subprocess.Popen[bytes]]]]:
    """A head with one managed node and two agents of an UNMANAGED environment (the head never
    stops those itself), behind queue ``uq``."""
    with Cluster(tmp_path / "home", nodes=1, lost_after=LOST_AFTER) as c:
        ce = {"computeEnvironmentName": "um", "type": "UNMANAGED"}
        c.client.call("createComputeEnvironment", ce)
        order = [{"order": 1, "computeEnvironment": "um"}]
        queue = {"jobQueueName": "uq", "priority": 1, "computeEnvironmentOrder": order}
        c.client.call("createJobQueue", queue)
        agents = [start_agent(c, f"u{i}", f"127.0.0.{40 + i}") for i in (1, 2)]
        try:
            wait_for("the unmanaged nodes", lambda: len(active(c, "um")) == 2)
            yield c, agents
        finally:
            for a in agents:
                with_cont(a.pid)
                a.kill()
                a.wait(10)


def active(c: Cluster, ce: str) -> list[str]:
    return [n["nodeId"] for n in c.client.nodes(ce) if n["status"] == "ACTIVE"]


def with_cont(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def test_a_frozen_agents_job_is_fenced_before_the_retry_and_the_node_rejoins(
    unmanaged: tuple[Cluster, list[subprocess.Popen[bytes]]], tmp_path: Path
) -> None:
    c, agents = unmanaged
    marks, pids = tmp_path / "marks", tmp_path / "pids"
    # each run marks the time every 50 ms; the second stops after a few marks
    script = (
        f'echo "$AWS_BATCH_JOB_ATTEMPT $$" >> {pids}; n=0; while [ $n -lt 300 ]; do '
        f'echo "$AWS_BATCH_JOB_ATTEMPT $(date +%s.%N)" >> {marks}; n=$((n+1)); '
        '[ "$AWS_BATCH_JOB_ATTEMPT" = 2 ] && [ $n -gt 5 ] && exit 0; sleep 0.05; done'
    )
    jd = c.register("mark", ["sh", "-c", script], retryStrategy={"attempts": 2})
    job = c.submit("mark", jd, jobQueue="uq")
    node = c.wait_status(job, "RUNNING")["nodeId"]
    agent = next(a for a, n in zip(agents, ("u1", "u2"), strict=True) if n == node)
    wait_for("the first run's pid", lambda: pids.exists() and pids.read_text().strip())
    first_pid = int(pids.read_text().split()[1])
    os.kill(agent.pid, signal.SIGSTOP)
    try:
        d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=30)
        assert d["status"] == "SUCCEEDED", d
        assert d["attempts"][0]["statusReason"].startswith(f"Host lost: node {node}")
        assert d["nodeId"] != node
        assert state_of(first_pid) in ("T", None), "the fence stopped the first run"
    finally:
        os.kill(agent.pid, signal.SIGCONT)
    runs: dict[str, list[float]] = {"1": [], "2": []}
    for line in marks.read_text().splitlines():
        attempt, at = line.split()
        runs[attempt].append(float(at))
    assert runs["1"] and runs["2"]
    assert max(runs["1"]) < min(runs["2"]), "the two runs overlapped"
    wait_for("the fenced run to be killed", lambda: state_of(first_pid) in (None, "Z"))
    log = c.home / "unmanaged" / node / "agent.log"
    wait_for("a new session", lambda: f"registered node {node} (session 2)" in log.read_text())
    assert node in active(c, "um")
    again = c.client.describe(job)
    assert again["attempts"][0]["statusReason"].startswith("Host lost"), "stale report refused"
    # the rejoined node takes new work: the other node is kept busy
    hold = c.register("hold", ["sleep", "20"])
    busy = c.submit("busy", hold, jobQueue="uq")
    c.wait_status(busy, "RUNNING")
    quick = c.register("quick", ["sh", "-c", "echo on $MNP_NODE_ID"])
    later = c.submit("later", quick, jobQueue="uq")
    assert c.wait_status(later, "SUCCEEDED", "FAILED")["status"] == "SUCCEEDED"
    assert {c.client.describe(busy)["nodeId"], c.client.describe(later)["nodeId"]} == {"u1", "u2"}
    c.client.terminate(busy, "done")


def test_a_killed_agents_job_dies_at_once(tmp_path: Path) -> None:
    with Cluster(tmp_path / "home", nodes=1, lost_after=LOST_AFTER) as c:
        pid_file = tmp_path / "pid"
        jd = c.register("long", ["sh", "-c", f"echo $$ > {pid_file}; exec sleep 60"])
        job = c.submit("long", jd)
        node = c.wait_status(job, "RUNNING")["nodeId"]
        wait_for("the job's pid", lambda: pid_file.exists() and pid_file.read_text().strip())
        job_pid = int(pid_file.read_text())
        os.kill(c.agent_pids()[node], signal.SIGKILL)
        # well before the head would declare the node lost (and its provider sweep it)
        wait_for("the fence to kill the job", lambda: state_of(job_pid) in (None, "Z"), 1.5)


def test_a_poll_or_report_of_an_old_session_is_refused(tmp_path: Path) -> None:
    with Cluster(tmp_path / "home", nodes=1, lost_after=LOST_AFTER) as c:
        jd = c.register("long", ["sleep", "60"])
        job = c.submit("long", jd)
        node = c.wait_status(job, "RUNNING")["nodeId"]
        secret = (c.home / "nodes" / node / "node.secret").read_text().strip()
        aid = f"{job}/1"
        status, answer = post(c, POLL_PATH, {"nodeId": node, "running": [], "epoch": 0}, secret)
        assert (status, answer["__type"]) == (409, "StaleSession"), answer
        assert "stale session" in answer["message"]
        exited = {"attempt_id": aid, "kind": "exited", "time_ms": 1, "seq": 2**52, "exit_code": 0}
        body = {"nodeId": node, "events": [exited], "epoch": 0}
        status, answer = post(c, REPORT_PATH, body, secret)
        assert (status, answer["__type"]) == (409, "StaleSession"), answer
        d = c.client.describe(job)
        assert d["status"] == "RUNNING", "nothing was applied (neither the exit nor a loss)"
        c.client.terminate(job, "done")
        c.wait_status(job, "FAILED")
