"""``mnp why`` against a real head: a job waiting behind a big one that holds the only node is
told it is RUNNABLE, has one job ahead of it, and that the node has nothing free."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def mnp(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mnp", "--home", str(c.home), "--url", c.url, *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip


def test_why_says_a_job_waits_behind_a_big_one(tmp_path: Path) -> None:
    gate = tmp_path / "go"
    with Cluster(tmp_path / "home", nodes=1, vcpus=2) as c:
        both = {"resourceRequirements": [{"type": "VCPU", "value": "2"}]}
        hold = c.register(
            "big", ["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.05; done"], container=both
        )
        big = c.submit("big", hold)
        c.wait_status(big, "RUNNING")
        first = c.submit("next", hold)
        second = c.submit("after", hold)
        wait_for("both to be RUNNABLE", lambda: all(
            c.client.describe(j)["status"] == "RUNNABLE" for j in (first, second)
        ))  # fmt: skip
        r = mnp(c, "why", second)
        assert r.returncode == 0, r.stderr
        out = r.stdout
        assert f"job {second} (after) is RUNNABLE in queue default" in out
        assert "position: 1 job ahead of it (FIFO order), needing 2 vCPUs" in out
        assert f"ahead: {first} next (2 vCPUs)" in out
        assert "0 of 2" in out  # the node's vCPUs, none free
        r = mnp(c, "why", second, "--json")
        answer = json.loads(r.stdout)
        (ce,) = answer["computeEnvironments"]
        assert (ce["activeNodes"], ce["freeVcpus"], ce["totalVcpus"]) == (1, 0, 2)
        gate.touch()
        for job in (big, first, second):
            c.wait_status(job, "SUCCEEDED")
        r = mnp(c, "why", second)
        assert r.returncode == 0 and "is SUCCEEDED" in r.stdout and "position" not in r.stdout
