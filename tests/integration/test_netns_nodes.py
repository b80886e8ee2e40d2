"""Local nodes with a network of their own: every node a network namespace on the head's bridge.

A real head (``mnp up``) as root with ``ip netns`` puts its nodes in namespaces: a job sees
its node's address on ``eth0``, MPI (MPICH's wheel, Open MPI 4 from Debian) runs across
nodes over those addresses, nothing a job listens on is reachable from the machine's own
namespace, and no namespace outlives the head that stopped with its nodes.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mnp.providers import netns
from tests.integration.cluster import Cluster, pid_alive, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not netns.available() or os.environ.get("MNP_NODE_NETWORK") == "loopback",
        reason="namespace nodes need root and `ip netns`",
    ),
]

IP = shutil.which("ip") or "/usr/sbin/ip"
SS = shutil.which("ss") or "/usr/bin/ss"
OPENMPI_LIBMPI = "/usr/lib/x86_64-linux-gnu/libmpi.so.40"
ADDRESS = re.compile(r"inet (10\.200\.\d+\.\d+)/")
RANK = re.compile(r"rank=(\d+) eth0=(\d+\.\d+\.\d+\.\d+)")

RANKS = f"""
import os, re, subprocess, sys, time
from mpi4py import MPI
comm = MPI.COMM_WORLD
out = subprocess.run([{IP!r}, "-4", "-o", "addr", "show", "eth0"], capture_output=True, text=True)
eth0 = re.search(r"inet ([0-9.]+)/", out.stdout).group(1)
print(f"rank={{comm.Get_rank()}} eth0={{eth0}}", flush=True)
go = sys.argv[1]
deadline = time.monotonic() + 60
while comm.Get_rank() == 0 and not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.05)  # held until the test has looked at the sockets
comm.Barrier()
"""


def namespaces(tag: str) -> set[str]:
    listed = subprocess.run([IP, "netns", "list"], capture_output=True, text=True, check=True)
    return {
        line.split()[0] for line in listed.stdout.splitlines() if line.startswith(f"mnp-{tag}-")
    }


def job_pids(home: Path) -> set[int]:
    """Every process of a job on the home's nodes (they carry MNP_NODE_ROOT under it)."""
    marker = f"MNP_NODE_ROOT={home / 'nodes'}".encode()
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes():
                    pids.add(int(entry.name))
            except OSError:
                continue
    return pids


def listeners(namespace: str | None) -> set[int]:
    """The pids owning a listening TCP socket in ``namespace`` (None: the machine's)."""
    argv = [SS, "-Hltnp"] if namespace is None else [IP, "netns", "exec", namespace, SS, "-Hltnp"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return {int(p) for p in re.findall(r"pid=(\d+)", out)}


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("netns") / "home", nodes=2, vcpus=2) as c:
        yield c


def test_nodes_are_namespace_nodes_and_a_job_sees_its_eth0(two: Cluster) -> None:
    nodes = {n["nodeId"]: n for n in two.client.nodes()}
    assert {n["network"] for n in nodes.values()} == {"namespace"}, nodes
    tag = netns.home_tag(two.home)
    assert {f"mnp-{tag}-{nid}" for nid in nodes} | {f"mnp-{tag}-hub"} == namespaces(tag)
    two.register("eth0", [IP, "-4", "-o", "addr", "show", "eth0"])
    job = two.submit("eth0", "eth0")
    d = two.wait_status(job, "SUCCEEDED", "FAILED")
    assert d["status"] == "SUCCEEDED", d
    seen = ADDRESS.findall(two.logs(job))
    assert len(seen) == 1 and seen[0] in {n["address"] for n in nodes.values()}, seen


@pytest.mark.parametrize("flavour", ["mpich", "openmpi"])
def test_mpi_across_namespace_nodes_listens_only_inside(
    two: Cluster, flavour: str, tmp_path: Path
) -> None:
    env = [{"name": "MPI4PY_LIBMPI", "value": OPENMPI_LIBMPI},
           {"name": "MNP_MPI_FORWARD_ENV", "value": "MPI4PY_LIBMPI"}] \
        if flavour == "openmpi" else []  # fmt: skip
    go = tmp_path / "go"
    ranges = [
        {"targetNodes": "0", "container": {
            "command": [sys.executable, "-c", RANKS, str(go)], "environment": env}},
        {"targetNodes": "1", "container": {"environment": env}},
    ]  # fmt: skip
    two.client.register_job_definition(
        {
            "jobDefinitionName": f"ranks-{flavour}",
            "type": "multinode",
            "nodeProperties": {
                "numNodes": 2,
                "mainNode": 0,
                "nodeRangeProperties": ranges,
                "mnp": {"mpi": flavour, "tasksPerNode": 2, "readyTimeoutSeconds": 20},
            },
        }
    )
    job = two.submit("ranks", f"ranks-{flavour}")
    tag = netns.home_tag(two.home)
    launcher = re.compile(rb"(^|/)(mpiexec|mpirun|mpiexec\.hydra|orterun)$")

    def listening_launcher() -> tuple[int, str] | None:
        """The launcher, once it listens in its node's namespace (the ``mpiexec --version``
        probe before it is another, short-lived, process: looked for afresh each time)."""
        for pid in job_pids(two.home):
            try:
                argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
                env = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            node = re.search(rb"MNP_NODE_ID=([^\0]+)", env)
            if launcher.search(argv0) and node is not None:
                ns = f"mnp-{tag}-{node.group(1).decode()}"
                if pid in listeners(ns):
                    return pid, ns
        return None

    wait_for("the MPI launcher to listen in its node's namespace", listening_launcher, 40)
    assert not (job_pids(two.home) & listeners(None)), "a job listens in the machine's namespace"
    go.touch()
    d = two.wait_status(job, "SUCCEEDED", "FAILED", timeout=60)
    out = two.logs(f"{job}#0")
    assert d["status"] == "SUCCEEDED", (d, out)
    ranks = dict(RANK.findall(out))
    assert sorted(ranks) == ["0", "1", "2", "3"], out
    addresses = {n["address"] for n in two.client.nodes()}
    assert set(ranks.values()) == addresses and len(addresses) == 2, (ranks, addresses)


def test_a_new_head_removes_leftovers_and_stopping_the_nodes_removes_all(tmp_path: Path) -> None:
    home = tmp_path / "home"
    tag = netns.home_tag(home)
    c = Cluster(home, nodes=2, vcpus=1).start()
    try:
        first = {n["nodeId"] for n in c.client.nodes()}
        assert namespaces(tag) == {f"mnp-{tag}-{n}" for n in first} | {f"mnp-{tag}-hub"}
        # a crash of everything: head and agents killed, their namespaces left behind
        c.kill9()
        for pid in c.agent_pids().values():
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        wait_for("the agents to die", lambda: not any(map(pid_alive, c.agent_pids().values())))
        assert {f"mnp-{tag}-{n}" for n in first} <= namespaces(tag)
        c.restart()

        def replaced() -> set[str] | None:
            now = {n["nodeId"] for n in c.client.nodes() if n["status"] == "ACTIVE"}
            return now if len(now) == 2 and not now & first else None

        second = wait_for("two new nodes", replaced, timeout=30)
        assert namespaces(tag) == {f"mnp-{tag}-{n}" for n in second} | {f"mnp-{tag}-hub"}
        mnp = [sys.executable, "-m", "mnp", "--home", str(home)]
        shown = subprocess.run([*mnp, "nodes"], capture_output=True, text=True, check=True)
        assert "NETWORK" in shown.stdout and shown.stdout.count("namespace") == 2, shown.stdout
        subprocess.run([*mnp, "down", "--stop-nodes"], capture_output=True, check=True)
        assert c.proc is not None
        c.proc.wait(30)
        # the head removed them itself (Cluster.stop would remove what it left, too)
        assert namespaces(tag) == set()
        assert not list(Path("/etc/netns").glob(f"mnp-{tag}-*"))
    finally:
        c.stop()
