"""An AWS-style multi-node wrapper script, unchanged, on namespace nodes of a real head.

The script (``aws_mpi_run.sh``) is written in the style of the public MPI examples for AWS Batch
(``mpi-run.sh``): the main node collects a hostfile in ``/tmp`` from the children, which find
their ``eth0`` address and ``nproc`` and append them over a bare ``ssh`` to
``$AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS``, then idle so the main node's ``mpirun`` can
start its daemons on them. Only the example's ``/usr/sbin/sshd -D &`` line is left out: every
node serves SSH already. It needs, from mnp: the gang's SSH wiring on every node with a bare
``ssh`` using it, ``nproc`` answering the node's vCPUs, each attempt's own ``/tmp`` (shared
with its gang's SSH sessions on that node), and each node its own ``eth0``.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mnp.providers import netns
from tests.integration.cluster import Cluster, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not netns.available()
        or os.environ.get("MNP_NODE_NETWORK") == "loopback"
        or not os.path.exists("/usr/bin/mpirun.openmpi"),
        reason="namespace nodes need root and `ip netns`; the test needs Debian's Open MPI",
    ),
]

IP = shutil.which("ip") or "/usr/sbin/ip"

MPI_RUN = Path(__file__).with_name("aws_mpi_run.sh")
"""The wrapper, as a file of its own (run by bash, as its first line says)."""

RANK_LINE = re.compile(r"^rank=(\d+) eth0=(\d+\.\d+\.\d+\.\d+)$", re.M)
APP = [
    "/bin/sh", "-c",
    f"echo rank=$OMPI_COMM_WORLD_RANK eth0=$({IP} -4 -o addr show eth0 | "
    "sed -n 's/.*inet \\([0-9.]*\\)\\/.*/\\1/p')",
]  # fmt: skip


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("awswrap") / "home", nodes=3, vcpus=1) as c:
        yield c


def test_the_aws_wrapper_runs_unchanged_across_three_namespace_nodes(
    three: Cluster,
) -> None:
    three.client.register_job_definition(
        {
            "jobDefinitionName": "mpi-run",
            "type": "multinode",
            "nodeProperties": {
                "numNodes": 3,
                "mainNode": 0,
                "nodeRangeProperties": [
                    {"targetNodes": "0:", "container": {"command": ["bash", str(MPI_RUN), *APP]}}
                ],
            },
        }
    )
    job = three.submit("mpi-run", "mpi-run")
    d = three.wait_status(job, "SUCCEEDED", "FAILED", timeout=60)
    main = three.logs(f"{job}#0")
    children = [three.logs(f"{job}#{i}") for i in (1, 2)]
    assert d["status"] == "SUCCEEDED", (d, main, children)
    addresses = {n["address"] for n in three.client.nodes()}
    # each child reached the main node's /tmp over a bare `ssh <address>`, with nproc = 1 vCPU
    hostfile = set(re.findall(r"^(\d+\.\d+\.\d+\.\d+) slots=(\d+)$", main, re.M))
    assert hostfile == {(a, "1") for a in addresses}, main
    ranks = dict(RANK_LINE.findall(main))
    assert sorted(ranks) == ["0", "1", "2"], main
    assert set(ranks.values()) == addresses and len(addresses) == 3, (ranks, addresses)
    for out in children:
        assert "reporting to the master node" in out and "done! goodbye" in out, out
    # DescribeJobs shows each node job's address, as AWS does
    for i in range(3):
        node_job = three.client.describe(f"{job}#{i}")
        interfaces = node_job["container"]["networkInterfaces"]
        assert interfaces[0]["privateIpv4Address"] == node_job["nodeAddress"], node_job
        assert {a["privateIpv4Address"] for a in interfaces} <= addresses


def test_a_child_reaches_every_peer_by_address_and_by_name(three: Cluster) -> None:
    probe = (
        "for peer in $MNP_NODE_ALIASES; do ssh $peer hostname >/dev/null && echo name-ok $peer; "
        "done; for a in $PEERS; do ssh $a echo addr-ok $a; done"
    )
    nodes = three.client.nodes()
    peers = " ".join(n["address"] for n in nodes)
    three.client.register_job_definition(
        {
            "jobDefinitionName": "peers",
            "type": "multinode",
            "nodeProperties": {
                "numNodes": 3,
                "mainNode": 0,
                "nodeRangeProperties": [
                    {"targetNodes": "0", "container": {"command": ["sleep", "60"]}},
                    {"targetNodes": "1:", "container": {
                        "command": ["/bin/sh", "-c", probe],
                        "environment": [{"name": "PEERS", "value": peers}]}},
                ],
            },
        }
    )  # fmt: skip
    job = three.submit("peers", "peers")
    out = ""

    def probed() -> str | None:
        text = three.logs(f"{job}#2")
        return text if text.count("addr-ok") == 3 else None

    try:
        out = wait_for("the child to ssh to every peer", probed, timeout=60)
    finally:
        three.client.terminate(job, "done")
    assert all(f"name-ok {n['nodeId']}" in out for n in nodes), out
    assert all(f"addr-ok {n['address']}" in out for n in nodes), out


def test_each_attempt_has_its_own_tmp(three: Cluster) -> None:
    mark = f"mnp-probe-{uuid.uuid4().hex}"
    three.register("write-tmp", ["/bin/sh", "-c", f"echo x > /tmp/{mark} && ls -a /tmp"])
    three.register("list-tmp", ["/bin/sh", "-c", "ls -a /tmp; echo listed"])
    first = three.submit("write-tmp", "write-tmp")
    assert three.wait_status(first, "SUCCEEDED", "FAILED")["status"] == "SUCCEEDED"
    assert mark in three.logs(first)
    for _ in range(3):  # wherever each lands (on 1-vCPU nodes, often where the first ran)
        second = three.submit("list-tmp", "list-tmp")
        assert three.wait_status(second, "SUCCEEDED", "FAILED")["status"] == "SUCCEEDED"
        out = three.logs(second)
        assert "listed" in out and mark not in out, out
    assert not Path("/tmp", mark).exists(), "the job wrote into the machine's /tmp"
    # each private /tmp goes with its attempt
    wait_for(
        "the attempts' /tmp to go", lambda: not list(three.home.glob("nodes/*/jobs/*/.mnp-tmp"))
    )
