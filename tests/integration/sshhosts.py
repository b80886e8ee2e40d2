"""Test hosts reached over SSH: each is a network namespace running a real OpenSSH ``sshd``
(its own config, host key and pid file) on port 22 of its own address. The head reaches them
through OpenSSH's ProxyCommand run inside the hub, so nothing of the network appears in the
machine's own namespace. :meth:`Hosts.stop` kills every process in the namespaces by PID and
removes them. Shared by the SSH integration tests and the bring-up benchmark."""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnp.providers.netns import Network
from tests.integration.cluster import Cluster, wait_for

SSHD_CONFIG = """\
ListenAddress {address}:22
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
"""
ADDR = "ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1"


@dataclass
class SshHost:
    name: str
    namespace: str
    address: str
    host_key: str
    """The host's public key line (what addHost pins)."""
    sshd: subprocess.Popen[bytes] | None


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def _listening(namespace: str) -> bool:
    """Whether something listens on port 22 inside ``namespace``."""
    r = subprocess.run(["ip", "netns", "exec", namespace, "ss", "-ltnH", "sport = :22"],
                       capture_output=True, text=True)  # fmt: skip
    return bool(r.stdout.strip())


class Hosts:
    """A network of namespace hosts. The head reaches them through OpenSSH's ProxyCommand
    run inside the hub (whose bridge alone has an address there), so nothing of the network
    appears in the machine's own namespace."""

    def __init__(self, root: Path) -> None:
        self.root = root
        tag = f"s{os.getpid() % 100000}"
        self.net = Network(tag, ipaddress.IPv4Network(f"10.201.{os.getpid() % 250}.0/24"))
        self.hosts: dict[str, SshHost] = {}
        self.client_key = root / "client_key"

    @property
    def proxy_command(self) -> str:
        """How the head's ssh reaches a host: a TCP pipe started inside the hub."""
        pipe = Path(__file__).with_name("tcp_pipe.py")
        return f"ip netns exec {self.net.hub} {sys.executable} {pipe} %h %p"

    def start(self) -> Hosts:
        self.net.create()
        gw = str(next(self.net.subnet.hosts()))  # the address Network leaves unused
        subprocess.run(["ip", "-n", self.net.hub, "addr", "add", f"{gw}/24", "dev", "br0"],
                       check=True)  # fmt: skip
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        _keygen(self.client_key)
        return self

    def add(self, name: str, sshd: bool = True, authorize: bool = True) -> SshHost:
        node = self.net.add_node(name)
        d = self.root / name
        d.mkdir()
        host_key = _keygen(d / "host_key")
        _keygen(d / "other_key")
        pub = self.client_key.with_suffix(".pub") if authorize else d / "other_key.pub"
        (d / "authorized_keys").write_text(pub.read_text())
        cfg = d / "sshd_config"
        cfg.write_text(SSHD_CONFIG.format(address=node.address, host_key=d / "host_key",
                                          pid_file=d / "sshd.pid",
                                          authorized=d / "authorized_keys"))  # fmt: skip
        proc = None
        if sshd:
            with open(d / "sshd.log", "wb") as log:
                proc = subprocess.Popen(
                    ["ip", "netns", "exec", node.namespace, "/usr/sbin/sshd", "-D", "-e",
                     "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip
            wait_for(f"sshd of {name}", lambda: _listening(node.namespace), timeout=10)
        host = SshHost(name, node.namespace, node.address, host_key, proc)
        self.hosts[name] = host
        return host

    def stop(self) -> None:
        """Every process in the test's namespaces (sshd, agents, jobs) by PID, then the
        namespaces."""
        for h in self.hosts.values():
            pids = subprocess.run(["ip", "netns", "pids", h.namespace], capture_output=True,
                                  text=True).stdout.split()  # fmt: skip
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if h.sshd is not None:
                h.sshd.wait(timeout=10)
        self.net.destroy()
        assert self.net.node_namespaces() == []


def add_body(hosts: Hosts, ce: str, h: SshHost, **extra: Any) -> dict[str, Any]:
    """The ``addHost`` request that adds ``h`` to ``ce`` with its key pinned."""
    return {"computeEnvironment": ce, "name": h.name, "address": h.address,
            "identityFile": str(hosts.client_key), "hostKey": h.host_key,
            "proxyCommand": hosts.proxy_command, **extra}  # fmt: skip


@contextmanager
def ssh_cluster(root: Path, ce: str) -> Iterator[tuple[Cluster, Hosts]]:
    """A head with no nodes of its own, an UNMANAGED environment ``ce`` and a job queue
    ``hosts`` onto it, and an empty :class:`Hosts` network; everything removed afterwards
    (the head, the namespaces with their sshd and agents, the agents' folders)."""
    hosts = Hosts(root)
    cluster = Cluster(root / "home", nodes=0)
    node_home = Path.home() / ".mnp-node"  # the hosts share this machine's home
    agent_dir = node_home / "agent"
    had_home, had_agent = node_home.exists(), agent_dir.exists()
    try:
        hosts.start()
        cluster.start(wait_nodes=False)
        c = cluster.client
        c.call("createComputeEnvironment", {"computeEnvironmentName": ce, "type": "UNMANAGED"})
        c.call("createJobQueue", {"jobQueueName": "hosts", "priority": 1,
               "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": ce}]})  # fmt: skip
        yield cluster, hosts
    finally:
        try:
            cluster.stop()
        finally:
            hosts.stop()
            for d in (node_home / "nodes").glob(f"{ce}-*"):
                shutil.rmtree(d, ignore_errors=True)
            if not had_home:
                shutil.rmtree(node_home, ignore_errors=True)
            elif not had_agent:
                shutil.rmtree(agent_dir, ignore_errors=True)


def host_status(c: Cluster, ce: str, name: str) -> dict[str, Any] | None:
    listed = c.client.call("listHosts", {"computeEnvironment": ce})["hosts"]
    return next((h for h in listed if h["name"] == name), None)


def wait_host(c: Cluster, ce: str, name: str, status: str, timeout: float = 30) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        h = host_status(c, ce, name)
        return h if h is not None and h["status"] == status else None

    return wait_for(f"host {name} {status} (now {host_status(c, ce, name)})", check, timeout)
