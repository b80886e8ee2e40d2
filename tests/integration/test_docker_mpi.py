"""A 2-node MPI job in containers: mpiexec in the main node's container reaches the other
node over SSH and lands inside that node's container, so every rank runs in the job's image."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.docker_support import DockerEngine
from tests.integration.cluster import Cluster, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.docker]

RANKS = """
import os
from mpi4py import MPI
comm = MPI.COMM_WORLD
total = comm.allreduce(comm.Get_rank() + 1)
in_image = "mnpuser" in open("/etc/passwd").read()  # the test image's own account
node = os.environ.get("AWS_BATCH_JOB_NODE_INDEX")
print(f"rank={comm.Get_rank()} size={comm.Get_size()} node={node} total={total} "
      f"docker={os.path.exists('/.dockerenv')} image={in_image}", flush=True)
"""


@pytest.fixture(scope="module")
def two(docker_engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # a long grace: the holding node still ends at once when the main node is done; loopback
    # nodes: a container keeps the machine's network, where namespace nodes' addresses are not
    with Cluster(
        tmp_path_factory.mktemp("docker-mpi") / "home", nodes=2, vcpus=2, kill_grace=30,
        network="loopback",
    ) as c:  # fmt: skip
        yield c


def test_two_node_mpi_job_runs_every_rank_in_the_image(
    two: Cluster, docker_engine: DockerEngine
) -> None:
    image = docker_engine.images["mpi"]
    ranges: list[dict[str, Any]] = [
        {"targetNodes": "0", "container": {"image": image, "command": ["python3", "-c", RANKS]}},
        {"targetNodes": "1", "container": {"image": image}},
    ]
    two.client.register_job_definition(
        {
            "jobDefinitionName": "mpi-in-containers",
            "type": "multinode",
            "nodeProperties": {
                "numNodes": 2,
                "mainNode": 0,
                "nodeRangeProperties": ranges,
                "mnp": {"mpi": "mpich", "tasksPerNode": 2, "readyTimeoutSeconds": 30},
            },
        }
    )
    job = two.submit("mpi", "mpi-in-containers")
    d = two.wait_status(job, "SUCCEEDED", "FAILED", timeout=120)
    out = two.logs(f"{job}#0")
    assert d["status"] == "SUCCEEDED", (d, out)
    lines = sorted(line for line in out.splitlines() if line.startswith("rank="))
    assert len(lines) == 4, out
    assert {line.split()[2] for line in lines} == {"node=0", "node=1"}, out
    for line in lines:
        assert "size=4" in line and "total=10" in line, out
        assert "docker=True image=True" in line, out

    def none_left() -> bool:
        return not any(
            docker_engine.api().containers(all=True, filters={"label": f"mnp.job-id={job}#{i}"})
            for i in range(2)
        )

    wait_for("the node containers to be removed", none_left, timeout=10)
