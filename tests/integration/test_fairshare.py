"""Fair share on a real head with local node agents: two shares weighted 1 and 3 queue many
short jobs at once; the jobs that start first are split by weight, not by submission order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration

EACH = 12
FIRST = 12


def test_first_jobs_started_follow_the_share_weights(tmp_path: Path) -> None:
    gate = tmp_path / "go"
    with Cluster(tmp_path / "home", nodes=2, vcpus=2) as c:
        policy = c.client.call(
            "createSchedulingPolicy",
            {
                "name": "weights",
                "fairsharePolicy": {
                    "shareDistribution": [
                        {"shareIdentifier": "light", "weightFactor": 1.0},
                        {"shareIdentifier": "heavy", "weightFactor": 3.0},
                    ]
                },
            },
        )
        c.client.call(
            "createJobQueue",
            {
                "jobQueueName": "fair",
                "priority": 10,
                "schedulingPolicyArn": policy["arn"],
                "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "local"}],
            },
        )
        vcpu = {"resourceRequirements": [{"type": "VCPU", "value": "1"}]}
        short = c.register("short", ["sleep", "0.3"], container=vcpu)
        wait = c.register(
            "gate", ["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.05; done"], container=vcpu
        )

        def submit(name: str, definition: str, share: str, **extra: Any) -> str:
            return c.client.submit(
                {
                    "jobName": name,
                    "jobQueue": "fair",
                    "jobDefinition": definition,
                    "shareIdentifier": share,
                    **extra,
                }
            )

        # every job waits for the gate, so all of them become RUNNABLE in one pass; the heavy
        # share's go in first (FIFO would start them all before any light one)
        opener = submit("gate", wait, "gate")
        after = [{"jobId": opener}]
        ids = {submit(f"heavy{i}", short, "heavy", dependsOn=after): "heavy" for i in range(EACH)}
        ids |= {submit(f"light{i}", short, "light", dependsOn=after): "light" for i in range(EACH)}
        gate.touch()

        def all_done() -> list[dict[str, Any]] | None:
            jobs = c.client.describe_jobs(list(ids))
            return jobs if all(j["status"] in ("SUCCEEDED", "FAILED") for j in jobs) else None

        jobs = wait_for("every job to end", all_done, timeout=30)
        assert {j["status"] for j in jobs} == {"SUCCEEDED"}, [j["statusReason"] for j in jobs]
        order = [ids[j["jobId"]] for j in sorted(jobs, key=lambda j: j["startedAt"])]
        light = order[:FIRST].count("light")
        # ideal 3 of 4: 9 of the first 12; at least 7 (FIFO would give 0)
        assert light >= 7, order
