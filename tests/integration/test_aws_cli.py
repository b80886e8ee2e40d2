"""The `aws` CLI end to end against a head node, configured only by `eval "$(mnp env)"`."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration


def test_aws_cli_runs_an_array_job_and_reads_its_logs(cluster: Cluster, tmp_path: Path) -> None:
    aws = shutil.which("aws")
    assert aws is not None, "the aws CLI (pip install awscli) is part of the test tier"
    env_cmd = f"{shlex.quote(sys.executable)} -m mnp --home {shlex.quote(str(cluster.home))} env"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    clean["HOME"] = str(tmp_path)  # nothing from the machine's ~/.aws

    def aws_cli(*args: str) -> Any:
        script = f'eval "$({env_cmd})" && {shlex.quote(aws)} {shlex.join(args)} --output json'
        done = subprocess.run(
            ["sh", "-c", script], env=clean, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else {}

    ce = aws_cli(
        "batch", "create-compute-environment", "--compute-environment-name", "cli-ce",
        "--type", "UNMANAGED",
    )  # fmt: skip
    assert ce["computeEnvironmentName"] == "cli-ce"
    aws_cli(
        "batch", "create-job-queue", "--job-queue-name", "cli-q", "--priority", "5",
        "--compute-environment-order", "order=1,computeEnvironment=local",
        "order=2,computeEnvironment=cli-ce",
    )  # fmt: skip
    definition = tmp_path / "jobdef.json"
    definition.write_text(json.dumps({
        "jobDefinitionName": "cli-square",
        "type": "container",
        "containerProperties": {
            "command": ["sh", "-c", "i=$AWS_BATCH_JOB_ARRAY_INDEX; echo square=$((i * i))"],
            "resourceRequirements": [
                {"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "64"},
            ],
        },
    }))  # fmt: skip
    registered = aws_cli(
        "batch", "register-job-definition", "--cli-input-json", f"file://{definition}"
    )
    assert registered["revision"] == 1
    job = aws_cli(
        "batch", "submit-job", "--job-name", "squares", "--job-queue", "cli-q",
        "--job-definition", "cli-square", "--array-properties", "size=3",
    )["jobId"]  # fmt: skip

    def finished() -> dict[str, Any] | None:
        d = aws_cli("batch", "describe-jobs", "--jobs", job)["jobs"][0]
        return d if d["status"] in ("SUCCEEDED", "FAILED") else None

    parent = wait_for("the array to finish", finished, timeout=60, interval=0.5)
    assert parent["status"] == "SUCCEEDED"
    assert parent["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 3
    child = aws_cli("batch", "describe-jobs", "--jobs", f"{job}:2")["jobs"][0]
    events = aws_cli(
        "logs", "get-log-events", "--log-group-name", "/aws/batch/job",
        "--log-stream-name", child["container"]["logStreamName"], "--start-from-head",
    )  # fmt: skip
    assert [e["message"] for e in events["events"]] == ["square=4"]
    children = aws_cli("batch", "list-jobs", "--array-job-id", job, "--job-status", "SUCCEEDED")
    assert sorted(j["jobId"] for j in children["jobSummaryList"]) == [
        f"{job}:{i}" for i in range(3)
    ]
    # terminate a running job through the CLI
    slow = tmp_path / "slow.json"
    slow.write_text(
        json.dumps(
            {
                "jobDefinitionName": "cli-slow",
                "type": "container",
                "containerProperties": {"command": ["sleep", "60"]},
            }
        )
    )
    aws_cli("batch", "register-job-definition", "--cli-input-json", f"file://{slow}")
    running = aws_cli(
        "batch",
        "submit-job",
        "--job-name",
        "slow",
        "--job-queue",
        "cli-q",
        "--job-definition",
        "cli-slow",
    )["jobId"]
    wait_for("the slow job to run", lambda: aws_cli("batch", "describe-jobs", "--jobs", running)
             ["jobs"][0]["status"] == "RUNNING", timeout=30, interval=0.5)  # fmt: skip
    aws_cli("batch", "terminate-job", "--job-id", running, "--reason", "enough")
    done = wait_for(
        "the slow job to stop", finished_job(aws_cli, running), timeout=30, interval=0.5
    )
    assert done["status"] == "FAILED" and done["statusReason"] == "enough"


def finished_job(aws_cli: Any, job_id: str) -> Any:
    def check() -> dict[str, Any] | None:
        d: dict[str, Any] = aws_cli("batch", "describe-jobs", "--jobs", job_id)["jobs"][0]
        return d if d["status"] in ("SUCCEEDED", "FAILED") else None

    return check
