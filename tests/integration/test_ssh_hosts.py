"""Your own hosts over SSH, for real: each test host is a network namespace running a real
OpenSSH ``sshd`` (its own config, host key and pid file); the head adds them with
``addHost``, installs its agent there over ssh, keeps a reverse tunnel to each, and runs
standard, array and Open MPI jobs on them. Wrong host key, refused key and a host without
sshd get their named statuses; removing a host drains it. Everything the fixture made —
namespaces, sshd, agents, tunnels — is removed afterwards, also on failure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mnp.providers import netns
from tests.integration.cluster import Cluster, wait_for
from tests.integration.sshhosts import (
    ADDR,
    Hosts,
    SshHost,
    add_body,
    host_status,
    ssh_cluster,
    wait_host,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not netns.available() or not Path("/usr/sbin/sshd").exists(),
        reason="needs root, ip netns and openssh-server",
    ),
]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Hosts, str]]:
    ce = f"own{os.getpid()}"
    with ssh_cluster(tmp_path_factory.mktemp("ssh"), ce) as (cluster, hosts):
        yield cluster, hosts, ce


def add_host(c: Cluster, hosts: Hosts, ce: str, h: SshHost, **extra: Any) -> dict[str, Any]:
    return dict(c.client.call("addHost", add_body(hosts, ce, h, **extra))["host"])


def submit(c: Cluster, name: str, definition: str, **extra: Any) -> str:
    return c.client.submit({"jobName": name, "jobQueue": "hosts", "jobDefinition": definition,
                            **extra})  # fmt: skip


def test_two_hosts_run_standard_array_and_mpi_jobs(env: tuple[Cluster, Hosts, str]) -> None:
    c, hosts, ce = env
    a, b = hosts.add("ha"), hosts.add("hb")
    add_host(c, hosts, ce, a, vcpus=2, memoryMiB=1024)
    add_host(c, hosts, ce, b)  # vCPUs and memory detected
    wait_host(c, ce, "ha", "ACTIVE")
    detected = wait_host(c, ce, "hb", "ACTIVE")
    assert detected["node"]["vcpus"] == len(os.sched_getaffinity(0)), detected
    c.register("where", ["sh", "-c", f"echo addr=$({ADDR})"])
    job = submit(c, "where", "where")
    d = c.wait_status(job, "SUCCEEDED", "FAILED")
    assert d["status"] == "SUCCEEDED", d
    got = c.logs(job).split("addr=")[1].split()[0]
    assert got in (a.address, b.address)
    assert d["nodeId"] == f"{ce}-{'ha' if got == a.address else 'hb'}"  # its host's own eth0
    c.register("where-slow", ["sh", "-c", f"echo addr=$({ADDR}); sleep 1"])
    parent = submit(c, "arr", "where-slow", arrayProperties={"size": 4})
    assert c.wait_status(parent, "SUCCEEDED", "FAILED", timeout=40)["status"] == "SUCCEEDED"
    seen = {c.logs(f"{parent}:{i}").split("addr=")[1].split()[0] for i in range(4)}
    assert seen == {a.address, b.address}  # 4 one-vCPU children at once: on both hosts
    # Open MPI's mpirun across the two hosts, 2 ranks each, pinned to eth0
    rank = f"echo rank=$OMPI_COMM_WORLD_RANK addr=$({ADDR})"
    env_vars = [{"name": "OMPI_MCA_btl_tcp_if_include", "value": "eth0"},
                {"name": "OMPI_MCA_oob_tcp_if_include", "value": "eth0"}]  # fmt: skip
    c.client.register_job_definition({
        "jobDefinitionName": "mpi-hosts", "type": "multinode",
        "nodeProperties": {"numNodes": 2, "mainNode": 0, "mnp": {
            "mpi": "openmpi", "tasksPerNode": 2, "readyTimeoutSeconds": 20},
            "nodeRangeProperties": [
                {"targetNodes": "0", "container": {"command": ["sh", "-c", rank],
                                                   "environment": env_vars}},
                {"targetNodes": "1:", "container": {"environment": env_vars}}]},
    })  # fmt: skip
    mpi = submit(c, "mpi", "mpi-hosts")
    d = c.wait_status(mpi, "SUCCEEDED", "FAILED", timeout=60)
    out = c.logs(f"{mpi}#0")
    assert d["status"] == "SUCCEEDED", (d, out)
    ranks = sorted(line.split() for line in out.splitlines() if line.startswith("rank="))
    assert len(ranks) == 4, out
    per_host = sorted(r[1] for r in ranks)
    assert per_host == sorted([f"addr={a.address}"] * 2 + [f"addr={b.address}"] * 2), out


def test_failures_have_named_statuses(env: tuple[Cluster, Hosts, str]) -> None:
    c, hosts, ce = env
    wrong, refused, down = hosts.add("hk"), hosts.add("hr", authorize=False), \
        hosts.add("hd", sshd=False)  # fmt: skip
    t0 = time.monotonic()
    add_host(c, hosts, ce, down)
    add_host(c, hosts, ce, wrong, hostKey=refused.host_key)  # another host's key pinned
    add_host(c, hosts, ce, refused)
    got = wait_host(c, ce, "hd", "FAILED", timeout=15)
    assert time.monotonic() - t0 < 10, "a host that is down must say so within seconds"
    assert got["statusReason"].startswith("Unreachable: "), got
    assert got["node"]["status"] == "LOST" and got["node"]["statusReason"].startswith("Unreachable")
    got = wait_host(c, ce, "hk", "FAILED", timeout=15)
    assert got["statusReason"].startswith("HostKeyMismatch: "), got
    got = wait_host(c, ce, "hr", "FAILED", timeout=15)
    assert got["statusReason"].startswith("AuthenticationRefused: "), got
    assert "hk: HostKeyMismatch" in got["environmentStatusReason"], got
    described = c.client.call("describeComputeEnvironments", {"computeEnvironments": [ce]})
    assert "hd: Unreachable" in described["computeEnvironments"][0]["statusReason"]
    listed = subprocess.run([sys.executable, "-m", "mnp", "--home", str(c.home), "hosts",
                             "list", ce], capture_output=True, text=True, timeout=30)  # fmt: skip
    assert "hr" in listed.stdout and "AuthenticationRefused: " in listed.stdout, listed
    nopy = hosts.add("hp")
    add_host(c, hosts, ce, nopy, python="/opt/nowhere/python3")
    got = wait_host(c, ce, "hp", "FAILED", timeout=15)
    assert got["statusReason"].startswith("NoUsablePython: /opt/nowhere/python3"), got
    for name in ("hd", "hk", "hr", "hp"):
        c.client.call("removeHost", {"computeEnvironment": ce, "name": name, "graceSeconds": 0})
    wait_for("failed hosts removed", lambda: all(
        host_status(c, ce, n) is None for n in ("hd", "hk", "hr", "hp")), timeout=20)  # fmt: skip


def test_bad_host_fields_are_named(env: tuple[Cluster, Hosts, str]) -> None:
    c, _, ce = env
    with pytest.raises(Exception) as err:
        c.client.call("addHost", {"computeEnvironment": ce, "name": "Bad Name", "address": "x",
                                  "identityFile": "/nonexistent", "port": 70000})  # fmt: skip
    text = str(err.value)
    for field in ("name", "identityFile", "port", "hostKey"):
        assert field in text, text


def _tunnel_pid(node_id: str) -> int | None:
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[:1] == [b"ssh"] and b"-N" in argv and any(
            a.endswith(f"{node_id}.known_hosts".encode()) for a in argv
        ):
            return int(entry.name)
    return None


def test_a_dropped_tunnel_is_brought_back(env: tuple[Cluster, Hosts, str]) -> None:
    c, _, ce = env
    wait_host(c, ce, "ha", "ACTIVE")
    old = wait_for("the tunnel of ha", lambda: _tunnel_pid(f"{ce}-ha"), timeout=5)
    os.kill(old, signal.SIGKILL)
    wait_for("a new tunnel", lambda: (_tunnel_pid(f"{ce}-ha") or old) != old, timeout=15)
    wait_host(c, ce, "ha", "ACTIVE")
    c.register("where-a", ["sh", "-c", f"echo addr=$({ADDR})"])
    job = submit(c, "a", "where-a", arrayProperties={"size": 4})
    assert c.wait_status(job, "SUCCEEDED", "FAILED", timeout=30)["status"] == "SUCCEEDED"
    nodes = {d["nodeId"] for d in c.client.describe_jobs([f"{job}:{i}" for i in range(4)])}
    assert f"{ce}-ha" in nodes, nodes  # its agent reaches the head through the new tunnel


def test_removing_a_host_drains_it(env: tuple[Cluster, Hosts, str]) -> None:
    c, _, ce = env
    wait_host(c, ce, "ha", "ACTIVE")
    wait_host(c, ce, "hb", "ACTIVE")
    c.register("long", ["sh", "-c", f"sleep 3; echo addr=$({ADDR})"],
               container={"resourceRequirements": [{"type": "VCPU", "value": "1"}]})
    job = submit(c, "long", "long")
    running = c.wait_status(job, "RUNNING")
    node = running["nodeId"]
    name = node.rsplit("-", 1)[1]
    other = "hb" if name == "ha" else "ha"
    c.client.call("removeHost", {"computeEnvironment": ce, "name": name, "graceSeconds": 60})
    assert wait_host(c, ce, name, "DRAINING")["node"]["draining"] is True
    # nothing new lands on the draining host, though it has a vCPU free
    later = submit(c, "later", "where-slow", arrayProperties={"size": 4})
    assert c.wait_status(later, "SUCCEEDED", "FAILED", timeout=30)["status"] == "SUCCEEDED"
    children = c.client.describe_jobs([f"{later}:{i}" for i in range(4)])
    assert {d["nodeId"] for d in children} == {f"{ce}-{other}"}
    done = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=30)
    assert done["status"] == "SUCCEEDED", done  # the running job finished on the drained host
    wait_for(f"host {name} gone", lambda: host_status(c, ce, name) is None, timeout=20)
    pid_file = Path.home() / ".mnp-node" / "nodes" / node / "agent.pid"
    pid = int(pid_file.read_text())
    wait_for("its agent stopped", lambda: not Path(f"/proc/{pid}").exists(), timeout=15)
    nodes = {n["nodeId"]: n for n in c.client.call("listNodes", {"includeGone": True})["nodes"]}
    assert nodes[node]["status"] == "STOPPED"
