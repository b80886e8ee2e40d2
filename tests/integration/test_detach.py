"""Upgrades that keep work: ``mnp down`` detaches from the nodes, ``mnp up`` finds them again.

A real head (``mnp up`` in the foreground) with a real local node; ``mnp down`` without a flag
must leave the agent and its job running, a head started again on the same home but another
port must adopt them (the agent re-reads ``<home>/head.url``), and ``mnp down --stop-nodes``
must leave no agent behind.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster, free_port, pid_alive, wait_for

pytestmark = pytest.mark.integration


def mnp_down(home: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "mnp", "--home", str(home), "down", *flags]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_down_detaches_and_a_head_on_another_port_adopts_the_running_job(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "home", nodes=1, vcpus=1)
    gate, job_pid_file = tmp_path / "gate", tmp_path / "job.pid"
    try:
        c.start()
        # a long job that ends only when the test says so (no timing assumptions)
        script = (
            f'echo $$ > "{job_pid_file}"; while [ ! -e "{gate}" ]; do sleep 0.05; done; '
            "echo done-$AWS_BATCH_JOB_ID"
        )
        job = c.submit("long", c.register("long", ["sh", "-c", script]))
        c.wait_status(job, "RUNNING")
        job_pid = wait_for("the job's pid", lambda: int(job_pid_file.read_text() or 0))
        agents = c.agent_pids()
        assert agents and all(pid_alive(p) for p in agents.values())
        head = c.proc
        assert head is not None

        down = mnp_down(c.home)
        assert down.returncode == 0, down.stderr
        assert head.wait(timeout=30) is not None  # the head process exited
        assert all(pid_alive(p) for p in agents.values()), "mnp down stopped an agent"
        assert pid_alive(job_pid), "mnp down stopped the job"

        old_port = c.port
        c.restart(port=free_port())
        assert c.port != old_port
        d = c.client.describe(job)
        assert d["status"] == "RUNNING", d
        assert c.agent_pids() == agents  # adopted, not relaunched
        gate.write_text("")
        d = c.wait_status(job, "SUCCEEDED", "FAILED")
        assert d["status"] == "SUCCEEDED", d
        assert len(d["attempts"]) == 1
        assert c.logs(job).strip() == f"done-{job}"

        head = c.proc
        assert head is not None
        down = mnp_down(c.home, "--stop-nodes")
        assert down.returncode == 0, down.stderr
        assert head.wait(timeout=30) is not None
        wait_for("no agent left", lambda: not any(pid_alive(p) for p in agents.values()), 10)
    finally:
        c.stop()
