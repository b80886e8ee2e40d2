"""Node sessions that heal (issue 11), end to end: an agent killed with SIGKILL and started
again under the same node id, its job process gone, makes the head fail the attempt as lost
on that node (its retry strategy then decides) instead of leaving it RUNNING forever."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster, pid_alive, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def one_node(tmp_path: Path) -> Iterator[Cluster]:
    # a generous heartbeat allowance: the restarted agent must come back before the head
    # would declare the node lost (that is another path, tested in test_faults.py)
    with Cluster(tmp_path / "home", nodes=1, lost_after=20.0) as c:
        yield c


def _restart_agent(c: Cluster, node: str, job_pid_file: Path) -> subprocess.Popen[bytes]:
    """SIGKILL the node's agent and its job's process group, then start the agent again
    with the same command line and environment (same node id, root and head)."""
    pid = c.agent_pids()[node]
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    env_items = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    env = dict(item.split(b"=", 1) for item in env_items if b"=" in item)
    os.kill(pid, signal.SIGKILL)
    wait_for("the agent to die", lambda: not pid_alive(pid))
    job_pid = int(job_pid_file.read_text().strip())
    with contextlib.suppress(ProcessLookupError):  # the node's fence may have killed it
        os.killpg(job_pid, signal.SIGKILL)  # the job went with its agent (a node reboot)
    wait_for("the job process to die", lambda: not pid_alive(job_pid))
    log = open(c.home / "agent-restarted.log", "ab")  # noqa: SIM115 - closed below
    try:
        return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def test_a_restarted_agent_without_its_job_fails_the_attempt_as_lost(
    one_node: Cluster, tmp_path: Path
) -> None:
    c = one_node
    marker = tmp_path / "job.pid"
    jd = c.register(
        "victim",
        [
            "sh",
            "-c",
            f'if [ "$AWS_BATCH_JOB_ATTEMPT" = 1 ]; then echo $$ > {marker}; exec sleep 60; fi; '
            'echo "attempt $AWS_BATCH_JOB_ATTEMPT"',
        ],
        retryStrategy={"attempts": 2},
    )
    job = c.submit("victim", jd)
    node = c.wait_status(job, "RUNNING")["nodeId"]
    wait_for("the job to write its pid", lambda: marker.exists() and marker.read_text())
    agent = _restart_agent(c, node, marker)
    try:
        d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=30)
        assert d["status"] == "SUCCEEDED", d
        first, _second = d["attempts"]
        assert first["statusReason"] == f"Host: attempt lost on node {node}"
        assert c.logs(job, 2).strip() == "attempt 2"
    finally:
        agent.kill()
        agent.wait(10)
