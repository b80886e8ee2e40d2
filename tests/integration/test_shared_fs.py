"""A compute environment's shared filesystem on namespace nodes: every node sees one
directory at its ``mountPath``.

The mount path lies under ``/tmp``, which each attempt sees privately (its own folder bound
over it): without the bind of ``source`` done in the attempt's mount namespace, a file one
node writes there would be invisible to every other node and to the machine.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mnp.providers import netns
from tests.integration.cluster import Cluster

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not netns.available() or os.environ.get("MNP_NODE_NETWORK") == "loopback",
        reason="namespace nodes need root and `ip netns`",
    ),
]

CE, QUEUE = "withfs", "fsq"

RANKS = """
import os, sys, time
from mpi4py import MPI
comm = MPI.COMM_WORLD
mount = sys.argv[1]
with open(os.path.join(mount, f"rank-{comm.Get_rank()}"), "w") as f:
    f.write(os.uname().nodename)
comm.Barrier()
seen = sorted(n for n in os.listdir(mount) if n.startswith("rank-"))
print(f"rank={comm.Get_rank()} seen={','.join(seen)}", flush=True)
comm.Barrier()
"""


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Path, str]]:
    """A head whose environment ``withfs`` (2 namespace nodes of 1 vCPU) shares ``source``
    (a directory of this machine standing in for an NFS mount) at a ``/tmp`` mount path."""
    base = tmp_path_factory.mktemp("sharedfs")
    source = base / "nfs export"  # a space: the path goes through argv, never a shell
    source.mkdir()
    source.chmod(0o777)
    mount = f"/tmp/mnp-fs-{uuid.uuid4().hex[:8]}/shared"
    c = Cluster(base / "home", nodes=1, vcpus=1)
    try:
        c.start()
        c.client.call(
            "createComputeEnvironment",
            {
                "computeEnvironmentName": CE,
                "type": "MANAGED",
                "mnp": {"nodes": 2, "vcpus": 1, "memoryMiB": 256, "firstAddress": "10.200.0.66",
                        "sharedFilesystem": {"kind": "nfs", "source": str(source),
                                             "mountPath": mount}},
            },
        )  # fmt: skip
        c.client.call(
            "createJobQueue",
            {
                "jobQueueName": QUEUE,
                "priority": 1,
                "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": CE}],
            },
        )
        c.wait_nodes(3)
        yield c, source, mount
    finally:
        c.stop()
        shutil.rmtree(base, ignore_errors=True)
        assert not os.path.exists(mount), "the mount path was made on the machine"


def _node(c: Cluster, job: str) -> str:
    return str(c.client.describe(job)["nodeId"])


def test_environment_describes_its_shared_filesystem(shared: tuple[Cluster, Path, str]) -> None:
    c, source, mount = shared
    d = c.client.call("describeComputeEnvironments", {"computeEnvironments": [CE]})
    got = d["computeEnvironments"][0]["mnp"]["sharedFilesystem"]
    assert got == {"kind": "nfs", "source": str(source), "mountPath": mount}


def test_two_jobs_on_two_nodes_share_one_file(shared: tuple[Cluster, Path, str]) -> None:
    c, source, mount = shared
    wait = (
        'echo "$AWS_BATCH_JOB_ID" > "$1/from-a" || exit 1; i=0; '
        'while [ ! -e "$1/from-b" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; '
        'cat "$1/from-b"'
    )
    c.register("fs-a", ["sh", "-c", wait, "a", mount])
    c.register("fs-b", ["sh", "-c", 'cat "$1/from-a" && echo "b saw it" > "$1/from-b"', "b", mount])
    a = c.client.submit({"jobName": "a", "jobQueue": QUEUE, "jobDefinition": "fs-a"})
    c.wait_status(a, "RUNNING")
    # a holds its node's only vCPU: b lands on the other node
    b = c.client.submit({"jobName": "b", "jobQueue": QUEUE, "jobDefinition": "fs-b"})
    db = c.wait_status(b, "SUCCEEDED", "FAILED")
    da = c.wait_status(a, "SUCCEEDED", "FAILED")
    assert (da["status"], db["status"]) == ("SUCCEEDED", "SUCCEEDED"), (c.logs(a), c.logs(b))
    assert _node(c, a) != _node(c, b)
    assert a in c.logs(b) and "b saw it" in c.logs(a)
    assert (source / "from-a").read_text() == f"{a}\n"  # it is the machine's directory


def test_working_directory_and_output_may_live_on_it(shared: tuple[Cluster, Path, str]) -> None:
    c, source, mount = shared
    c.register("fs-wd", ["sh", "-c", "pwd; echo here > made-here"])
    job = c.client.submit({"jobName": "wd", "jobQueue": QUEUE, "jobDefinition": "fs-wd",
                           "mnp": {"workingDirectory": f"{mount}/wd",
                                   "stdout": f"{mount}/out-%j.log"}})  # fmt: skip
    d = c.wait_status(job, "SUCCEEDED", "FAILED")
    assert d["status"] == "SUCCEEDED", (d, c.logs(job))
    assert (source / "wd" / "made-here").read_text() == "here\n"
    # the job saw its working directory at the mount path, and its output landed there
    number = d["jobNumber"]  # %j is the job's Slurm id
    assert (source / f"out-{number}.log").read_text() == f"{mount}/wd\n"


def test_mpi_ranks_on_two_nodes_see_one_directory(shared: tuple[Cluster, Path, str]) -> None:
    c, source, mount = shared
    ranges = [
        {"targetNodes": "0", "container": {"command": [sys.executable, "-c", RANKS, mount]}},
        {"targetNodes": "1", "container": {}},
    ]
    c.client.register_job_definition(
        {
            "jobDefinitionName": "fs-ranks",
            "type": "multinode",
            "nodeProperties": {
                "numNodes": 2,
                "mainNode": 0,
                "nodeRangeProperties": ranges,
                "mnp": {"mpi": "mpich", "tasksPerNode": 1, "readyTimeoutSeconds": 20},
            },
        }
    )
    job = c.client.submit({"jobName": "ranks", "jobQueue": QUEUE, "jobDefinition": "fs-ranks"})
    d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=60)
    logs = c.logs(f"{job}#0")
    assert d["status"] == "SUCCEEDED", (d, logs)
    assert "rank=0 seen=rank-0,rank-1" in logs and "rank=1 seen=rank-0,rank-1" in logs, logs
    assert sorted(p.name for p in source.glob("rank-*")) == ["rank-0", "rank-1"]


@pytest.mark.skipif(not shutil.which("sshd") and not os.path.exists("/usr/sbin/sshd"),
                    reason="needs openssh-server")  # fmt: skip
def test_an_ssh_host_without_the_mount_path_fails_bring_up(tmp_path: Path) -> None:
    """An SSH host must already have the shared filesystem at ``mountPath``: one without it
    is FAILED with ``SharedFilesystemMissing`` at bring-up (before anything is installed)."""
    from tests.integration.test_ssh_hosts import Hosts, add_host, wait_host

    hosts = Hosts(tmp_path)
    c = Cluster(tmp_path / "home", nodes=0)
    missing = f"/mnp-no-such-fs-{uuid.uuid4().hex[:8]}"
    try:
        hosts.start()
        c.start(wait_nodes=False)
        c.client.call(
            "createComputeEnvironment",
            {
                "computeEnvironmentName": "ownfs",
                "type": "UNMANAGED",
                "mnp": {"sharedFilesystem": {"kind": "lustre", "source": "/fsx-export",
                                             "mountPath": missing}},
            },
        )  # fmt: skip
        add_host(c, hosts, "ownfs", hosts.add("hf"))
        got = wait_host(c, "ownfs", "hf", "FAILED", timeout=20)
        assert got["statusReason"].startswith(f"SharedFilesystemMissing: {missing} "), got
    finally:
        try:
            c.stop()
        finally:
            hosts.stop()
            # nothing should have been installed; if a regression did, it goes too
            for d in (Path.home() / ".mnp-node" / "nodes").glob("ownfs-*"):
                shutil.rmtree(d, ignore_errors=True)
