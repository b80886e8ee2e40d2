"""The ``mnp`` command line against a running head node, and the README's demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def mnp(c: Cluster, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mnp", "--home", str(c.home), "--url", c.url, *args],
        input=stdin, capture_output=True, text=True, timeout=120, cwd=ROOT,
    )


def test_register_submit_wait_list_describe_logs(shared_cluster: Cluster) -> None:
    c = shared_cluster
    r = mnp(c, "register", "examples/jobdef-hello.json")
    assert r.returncode == 0, r.stderr
    r = mnp(c, "submit", "examples/submit-hello.json", "--wait")
    assert r.returncode == 0, r.stderr
    name, job_id, status = r.stdout.strip().split("\t")
    assert (name, status) == ("hello", "SUCCEEDED")
    r = mnp(c, "jobs", "--json")
    assert r.returncode == 0
    assert job_id in {j["jobId"] for j in json.loads(r.stdout)}
    r = mnp(c, "describe", job_id, "--json")
    assert json.loads(r.stdout)["status"] == "SUCCEEDED"
    r = mnp(c, "logs", job_id)
    assert job_id in r.stdout


def test_bad_definition_is_refused_with_every_field_and_nothing_written(
    shared_cluster: Cluster,
) -> None:
    c = shared_cluster
    before = c.client.call("describeJobDefinitions", {})["jobDefinitions"]
    bad = {
        "jobDefinitionName": "bad name",
        "type": "container",
        "containerProperties": {
            "command": ["true"],
            "environment": [{"name": "AWS_BATCH_JOB_ID", "value": "x"}],
            "resourceRequirements": [{"type": "VCPU", "value": "lots"}],
        },
        "retryStrategy": {"attempts": 11},
    }
    r = mnp(c, "register", "-", stdin=json.dumps(bad))
    assert r.returncode == 1
    assert "jobDefinitionName" in r.stderr and "retryStrategy.attempts" in r.stderr
    assert c.client.call("describeJobDefinitions", {})["jobDefinitions"] == before


def test_python_jobspec_array_and_dependent(shared_cluster: Cluster) -> None:
    r = mnp(shared_cluster, "submit", "examples/pipeline.py", "--wait")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("SUCCEEDED") >= 2


def test_readme_demo_runs_end_to_end(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mnp", "--home", str(tmp_path / "demo"), "demo", "--nodes", "3"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCEEDED" in r.stdout
    assert "FAILED" not in r.stdout
