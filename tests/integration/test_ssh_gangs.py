"""Multi-node jobs across four SSH hosts, each a network namespace with a real OpenSSH
``sshd``: an 8-rank mpi4py job (MPICH's ``mpiexec`` over the gang's SSH wiring) in which
every rank proves its host by its own ``eth0`` address, the AWS-style wrapper script
unchanged, torch.distributed (gloo), and a head restarted under ACTIVE hosts that keeps them
and runs on them again. Everything is removed afterwards, also on failure."""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mnp.providers import netns
from tests.integration.cluster import Cluster, wait_for
from tests.integration.sshhosts import Hosts, add_body, ssh_cluster, wait_host

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not netns.available() or not Path("/usr/sbin/sshd").exists(),
        reason="needs root, ip netns and openssh-server",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
IP = shutil.which("ip") or "/usr/sbin/ip"
HOSTS = ("g1", "g2", "g3", "g4")
VCPUS = 2
RANK = re.compile(r"^rank=(\d+) size=(\d+) eth0=(\S+) sum=(\d+)$", re.M)
RANKS = f"""
import re, subprocess
from mpi4py import MPI
comm = MPI.COMM_WORLD
out = subprocess.run([{IP!r}, "-4", "-o", "addr", "show", "eth0"], capture_output=True, text=True)
eth0 = re.search(r"inet ([0-9.]+)/", out.stdout).group(1)
total = comm.allreduce(comm.Get_rank())
print(f"rank={{comm.Get_rank()}} size={{comm.Get_size()}} eth0={{eth0}} sum={{total}}", flush=True)
"""


@pytest.fixture(scope="module")
def gang_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Hosts, str]]:
    ce = f"gang{os.getpid()}"
    with ssh_cluster(tmp_path_factory.mktemp("sshgang"), ce) as (c, hosts):
        for name in HOSTS:
            h = hosts.add(name)
            c.client.call("addHost", add_body(hosts, ce, h, vcpus=VCPUS, memoryMiB=2048))
        for name in HOSTS:
            wait_host(c, ce, name, "ACTIVE", timeout=60)
        yield c, hosts, ce


def multinode(c: Cluster, name: str, nodes: int, main: list[str], others: list[str] | None,
              mpi: str = "none", tasks: int | None = None) -> None:  # fmt: skip
    rest: dict[str, Any] = {} if others is None else {"command": others}
    settings: dict[str, Any] = {"mpi": mpi, "readyTimeoutSeconds": 30}
    if tasks is not None:
        settings["tasksPerNode"] = tasks
    c.client.register_job_definition({
        "jobDefinitionName": name, "type": "multinode",
        "nodeProperties": {"numNodes": nodes, "mainNode": 0, "mnp": settings,
                           "nodeRangeProperties": [
                               {"targetNodes": "0", "container": {"command": main}},
                               {"targetNodes": "1:", "container": rest}]},
    })  # fmt: skip


def submit(c: Cluster, name: str, definition: str) -> str:
    return c.client.submit({"jobName": name, "jobQueue": "hosts", "jobDefinition": definition})


def addresses(hosts: Hosts) -> set[str]:
    return {hosts.hosts[n].address for n in HOSTS}


def test_eight_mpi4py_ranks_over_four_hosts(gang_hosts: tuple[Cluster, Hosts, str]) -> None:
    c, hosts, _ = gang_hosts
    multinode(c, "ranks8", 4, [sys.executable, "-c", RANKS], None, mpi="mpich", tasks=VCPUS)
    job = submit(c, "ranks8", "ranks8")
    d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=90)
    out = c.logs(f"{job}#0")
    assert d["status"] == "SUCCEEDED", (d, out)
    found = RANK.findall(out)
    assert sorted(int(r) for r, *_ in found) == list(range(8)), out
    assert {(size, total) for _, size, _, total in found} == {("8", str(sum(range(8))))}, out
    per_host = Counter(eth0 for _, _, eth0, _ in found)
    assert set(per_host) == addresses(hosts) and set(per_host.values()) == {2}, per_host
    described = c.client.describe_jobs([f"{job}#{i}" for i in range(4)])
    assert {n["nodeAddress"] for n in described} == addresses(hosts)


WRAPPER_APP = [
    "/bin/sh", "-c",
    f"echo rank=$OMPI_COMM_WORLD_RANK eth0=$({IP} -4 -o addr show eth0 | "
    "sed -n 's/.*inet \\([0-9.]*\\)\\/.*/\\1/p')",
]  # fmt: skip


def test_the_aws_wrapper_runs_unchanged_on_ssh_hosts(
    gang_hosts: tuple[Cluster, Hosts, str],
) -> None:
    c, hosts, _ = gang_hosts
    wrapper = ["bash", str(Path(__file__).with_name("aws_mpi_run.sh")), *WRAPPER_APP]
    multinode(c, "mpi-run", 3, wrapper, wrapper)
    job = submit(c, "mpi-run", "mpi-run")
    d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=90)
    main = c.logs(f"{job}#0")
    assert d["status"] == "SUCCEEDED", (d, main, [c.logs(f"{job}#{i}") for i in (1, 2)])
    used = {n["nodeAddress"] for n in c.client.describe_jobs([f"{job}#{i}" for i in range(3)])}
    assert len(used) == 3 and used <= addresses(hosts), used
    # each child appended its eth0 address and nproc (a host's own CPUs) to the main node's
    # private /tmp over a bare `ssh <address>`
    nproc = len(os.sched_getaffinity(0))
    hostfile = set(re.findall(r"^(\d+\.\d+\.\d+\.\d+) slots=(\d+)$", main, re.M))
    assert hostfile == {(a, str(nproc)) for a in used}, main
    ranks = dict(re.findall(r"^rank=(\d+) eth0=(\S+)$", main, re.M))
    assert sorted(ranks, key=int) == [str(i) for i in range(3 * nproc)], main
    assert set(ranks.values()) == used, main

    def children_done() -> list[str] | None:  # a child's last output may still be on its way
        got = [c.logs(f"{job}#{i}") for i in (1, 2)]
        return got if all("done! goodbye" in o for o in got) else None

    for out in wait_for("both children's goodbye in their logs", children_done, timeout=20):
        assert "reporting to the master node" in out, out


def test_torch_gloo_across_ssh_hosts(gang_hosts: tuple[Cluster, Hosts, str]) -> None:
    pytest.importorskip("torch")
    c, hosts, _ = gang_hosts
    cmd = [sys.executable, str(ROOT / "examples" / "torch_ddp.py")]
    multinode(c, "ddp", 2, cmd, cmd)
    job = submit(c, "ddp", "ddp")
    d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=120)
    assert d["status"] == "SUCCEEDED", (d, [c.logs(f"{job}#{i}") for i in range(2)])

    def outs() -> list[str] | None:  # a node's last output may still be on its way
        got = [c.logs(f"{job}#{i}") for i in range(2)]
        return got if all("ok=True" in o for o in got) else None

    got = wait_for("both nodes' ok=True in their logs", outs, timeout=20)
    nodes = {m.group(1) for o in got if (m := re.search(r"node=(\S+)", o))}
    assert len(nodes) == 2 and nodes <= addresses(hosts), got


def test_a_restarted_head_keeps_its_active_hosts(gang_hosts: tuple[Cluster, Hosts, str]) -> None:
    c, _, ce = gang_hosts
    before = {n["nodeId"]: n for n in c.client.nodes() if n["nodeId"].startswith(f"{ce}-")}
    pids = {nid: int((Path.home() / ".mnp-node" / "nodes" / nid / "agent.pid").read_text())
            for nid in before}  # fmt: skip
    c.kill9()  # the head dies; the hosts' agents and tunnels' far ends stay
    c.restart()
    for name in HOSTS:
        wait_host(c, ce, name, "ACTIVE", timeout=60)
    after = {n["nodeId"]: n for n in c.client.nodes() if n["nodeId"].startswith(f"{ce}-")}
    assert set(after) == set(before)
    assert all(n["status"] == "ACTIVE" for n in after.values()), after
    for nid, pid in pids.items():  # the agents were kept, not started again
        assert int((Path.home() / ".mnp-node" / "nodes" / nid / "agent.pid").read_text()) == pid
        assert Path(f"/proc/{pid}").exists(), nid
    multinode(c, "ranks8b", 4, [sys.executable, "-c", RANKS], None, mpi="mpich", tasks=VCPUS)
    job = submit(c, "ranks8b", "ranks8b")
    d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=90)
    assert d["status"] == "SUCCEEDED", (d, c.logs(f"{job}#0"))
    assert len(RANK.findall(c.logs(f"{job}#0"))) == 8
