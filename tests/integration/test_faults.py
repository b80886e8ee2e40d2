"""Crashes: the head node killed with SIGKILL, a node agent killed mid-job."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration


def test_head_kill9_loses_nothing_and_work_resumes(cluster: Cluster) -> None:
    c = cluster
    slow = c.register("slow", ["sh", "-c", "sleep 2; echo done-$AWS_BATCH_JOB_ID"])
    quick = c.register("quick", ["sh", "-c", "echo quick"])
    running = c.submit("running", slow)
    waiting = c.submit("waiting", quick, dependsOn=[{"jobId": running}])
    array = c.submit("array", quick, arrayProperties={"size": 4}, dependsOn=[{"jobId": running}])
    finished = c.submit("finished", quick)
    c.wait_status(finished, "SUCCEEDED")
    c.wait_status(running, "RUNNING")
    before = {j: c.client.describe(j) for j in (running, waiting, array, finished)}
    agents = c.agent_pids()

    c.kill9()
    c.restart()

    # the agents were not restarted: the same processes reconnect and carry on
    assert c.agent_pids() == agents
    for job_id, old in before.items():
        new = c.client.describe(job_id)
        assert new["jobName"] == old["jobName"]
        assert new["history"][: len(old["history"])] == old["history"], job_id
    for job_id in (running, waiting, array, finished):
        assert c.wait_status(job_id, "SUCCEEDED", "FAILED")["status"] == "SUCCEEDED", job_id
    assert c.logs(running).strip() == f"done-{running}"
    assert len(c.client.describe(running)["attempts"]) == 1  # it was not re-run
    assert c.client.describe(array)["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 4
    # and new work still runs
    assert (
        c.wait_status(c.submit("after-restart", quick), "SUCCEEDED", "FAILED")["status"]
        == "SUCCEEDED"
    )


def test_lost_node_fails_attempt_and_retry_runs_elsewhere(cluster: Cluster) -> None:
    c = cluster
    jd = c.register(
        "victim",
        [
            "sh",
            "-c",
            'if [ "$AWS_BATCH_JOB_ATTEMPT" = 1 ]; then sleep 30; fi; '
            'echo "attempt $AWS_BATCH_JOB_ATTEMPT on $MNP_NODE_ID"',
        ],
        retryStrategy={
            "attempts": 2,
            "evaluateOnExit": [
                {"onStatusReason": "Host*", "action": "RETRY"},
                {"onReason": "*", "action": "EXIT"},
            ],
        },
    )
    job = c.submit("victim", jd)
    d = c.wait_status(job, "RUNNING")
    node = d["nodeId"]
    pid = c.agent_pids()[node]
    os.kill(pid, signal.SIGKILL)

    d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=30)
    assert d["status"] == "SUCCEEDED", d
    first, _second = d["attempts"]
    assert node in first["statusReason"] and first["statusReason"].startswith("Host lost")
    assert d["nodeId"] != node
    assert c.logs(job).strip() == f"attempt 2 on {d['nodeId']}"
    # the first attempt's process, orphaned by its killed agent, was swept up
    def leftovers() -> list[str]:
        found = []
        for proc in Path("/proc").iterdir():
            try:
                env = (proc / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"AWS_BATCH_JOB_ID={job}".encode() in env:
                found.append(proc.name)
        return found

    wait_for("the orphaned first attempt to be swept", lambda: not leftovers())
    nodes = {n["nodeId"]: n for n in c.client.nodes()}
    assert node not in nodes  # lost nodes leave the active list
    # the environment is brought back to its size with a new node
    wait_for(
        "a replacement node",
        lambda: len([n for n in c.client.nodes() if n["status"] == "ACTIVE"]) == 3,
    )
