"""An elastic environment on a real head with the local provider: AWS's getting-started
shape (minvCpus 0, maxvCpus 256) starts no agent until work arrives, brings up no more nodes
than the work needs, runs it, and after the idle delay its agents are gone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.cluster import Cluster, pid_alive, wait_for

pytestmark = pytest.mark.integration


def tutorial_nodes(c: Cluster) -> list[dict[str, Any]]:
    return c.client.nodes("tutorial")


def test_an_elastic_environment_costs_nothing_until_work_arrives(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "home", nodes=1, vcpus=2, memory_mib=1024)
    cluster.extra_env["MNP_SCALE_IN_AFTER_SECONDS"] = "1"
    with cluster as c:
        c.client.call(
            "createComputeEnvironment",
            {
                "computeEnvironmentName": "tutorial",
                "type": "MANAGED",
                "computeResources": {"type": "EC2", "minvCpus": 0, "maxvCpus": 256,
                                     "instanceTypes": ["optimal"], "subnets": []},
            },
        )  # fmt: skip
        c.client.call(
            "createJobQueue",
            {
                "jobQueueName": "tq",
                "priority": 1,
                "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "tutorial"}],
            },
        )
        wait_for(
            "the environment to be VALID",
            lambda: (
                c.client.call("describeComputeEnvironments", {"computeEnvironments": ["tutorial"]})[
                    "computeEnvironments"
                ][0]["status"]
                == "VALID"
            ),
        )
        assert tutorial_nodes(c) == []  # taken in, and not one agent started
        c.client.register_job_definition(
            {
                "jobDefinitionName": "two-vcpus",
                "type": "container",
                "containerProperties": {
                    "command": ["sleep", "0.5"],
                    "resourceRequirements": [
                        {"type": "VCPU", "value": "2"},
                        {"type": "MEMORY", "value": "64"},
                    ],
                },
            }
        )
        jobs = [
            c.client.submit({"jobName": f"j{i}", "jobQueue": "tq", "jobDefinition": "two-vcpus"})
            for i in range(3)
        ]
        assert c.client.wait(jobs, timeout=60) == {j: "SUCCEEDED" for j in jobs}
        nodes = tutorial_nodes(c)
        pids = [int(n["pid"]) for n in nodes if n.get("pid")]
        # three 2-vCPU jobs on 2-vCPU nodes: three nodes, launched together, never more
        assert len(nodes) == 3 and len(pids) == 3, nodes
        wait_for(
            "the idle nodes to be stopped",
            lambda: all(n["status"] == "STOPPED" for n in tutorial_nodes(c)),
            timeout=30,
        )
        wait_for("their agents to exit", lambda: not any(pid_alive(p) for p in pids), timeout=15)
        got = c.client.call("describeComputeEnvironments", {"computeEnvironments": ["tutorial"]})
        assert got["computeEnvironments"][0]["computeResources"]["desiredvCpus"] == 0
        assert [n["status"] for n in c.client.nodes("local")] == ["ACTIVE"]  # the default stays
