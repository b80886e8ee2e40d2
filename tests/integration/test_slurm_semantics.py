"""The scheduler's Slurm-flavoured rules on a real head node with local agents, judged from
what the head recorded: the array running limit from every child's status history, and the
dependency conditions in both modes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from typing import Any

import pytest

from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration

ENDED = ("SUCCEEDED", "FAILED")


def running_spans(detail: dict[str, Any]) -> tuple[int, int]:
    """(became RUNNING, ended) from a job's recorded history."""
    history = detail["history"]
    start = next(h["at"] for h in history if h["status"] == "RUNNING")
    end = next(h["at"] for h in history if h["status"] in ENDED)
    return start, end


def most_at_once(spans: list[tuple[int, int]]) -> int:
    return max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)


def test_array_limit_holds_from_the_recorded_history(shared_cluster: Cluster) -> None:
    c = shared_cluster
    definition = c.register("limited", ["sh", "-c", "sleep 0.4"])
    size, limit = 8, 3
    parent = c.submit(
        "limited", definition, arrayProperties={"size": size}, mnp={"arrayMaxRunning": limit}
    )
    c.wait_status(parent, "SUCCEEDED", timeout=60)
    kids = [c.client.describe(f"{parent}:{i}") for i in range(size)]
    spans = [running_spans(k) for k in kids]
    # never more than the limit, and the limit was used (3 nodes × 2 vCPUs could run 6)
    assert most_at_once(spans) == limit, spans
    starts = [s for s, _ in spans]
    assert max(starts[:limit]) <= min(starts[limit:]), starts  # lowest indices go first


def test_dependency_conditions_and_any_mode(shared_cluster: Cluster) -> None:
    c = shared_cluster
    ok = c.register("ok", ["true"])
    bad = c.register("bad", ["false"])
    good_job = c.submit("good", ok)
    bad_job = c.submit("bad", bad)
    after_failure = c.submit("cleanup", ok, dependsOn=[{"jobId": bad_job, "type": "AFTER_NOT_OK"}])
    not_after_success = c.submit(
        "skipped", ok, dependsOn=[{"jobId": good_job, "type": "AFTER_NOT_OK"}]
    )
    either = c.submit(
        "either",
        ok,
        dependsOn=[{"jobId": bad_job}, {"jobId": good_job}],
        mnp={"dependencyMode": "ANY"},
    )
    anyway = c.submit("anyway", ok, dependsOn=[{"jobId": bad_job, "type": "AFTER_ANY"}])
    assert c.wait_status(after_failure, *ENDED)["status"] == "SUCCEEDED"
    skipped = c.wait_status(not_after_success, *ENDED)
    assert skipped["status"] == "FAILED"
    assert skipped["statusReason"].startswith("DEPENDENCY:SUCCEEDED")
    assert c.wait_status(either, *ENDED)["status"] == "SUCCEEDED"
    assert c.wait_status(anyway, *ENDED)["status"] == "SUCCEEDED"


def test_ctrl_c_to_mnp_run_ends_the_job_on_every_node(shared_cluster: Cluster) -> None:
    c = shared_cluster
    name = f"ctrl-c-{uuid.uuid4().hex[:8]}"
    cli = [sys.executable, "-m", "mnp", "--home", str(c.home), "--url", c.url]
    proc = subprocess.Popen(
        [*cli, "run", "-N", "3", "--every-node", "-J", name, "--", "sleep", "60"],
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        parent = wait_for(
            f"{name} to run", lambda: c.client.list_jobs(name=name, status="RUNNING"), 30
        )[0]["jobId"]
        nodes = [f"{parent}#{i}" for i in range(3)]
        wait_for(
            "every node to run",
            lambda: all(c.client.describe(n)["status"] == "RUNNING" for n in nodes),
            30,
        )
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode != 0, out + err
    detail = c.wait_status(parent, *ENDED)
    assert detail["status"] == "FAILED" and detail["isTerminated"] is True
    for n in nodes:  # each node's agent reported its process ended
        node = c.wait_status(n, *ENDED)
        assert node["status"] == "FAILED" and node["stoppedAt"] >= node["startedAt"]
        # 143: SIGTERM, as the agent reported the process exiting
        assert node["attempts"][-1]["container"].get("exitCode") == 143, node["attempts"]
