"""Node namespaces for real: two nodes on a hub's bridge reach each other by name and address,
see only their own ``eth0`` address, nothing appears in the machine's namespace, and
everything is gone after ``destroy`` — also what a crashed run of the same tag left."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mnp.providers import netns
from mnp.providers.netns import Network

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not netns.available(), reason="needs root and ip netns"),
]


def _ns_exec(ns: str, *argv: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=timeout
    )


def _ours(tag: str) -> list[str]:
    return sorted(p.name for p in Path("/run/netns").glob(f"mnp-{tag}-*"))


@pytest.fixture
def network() -> Iterator[Network]:
    net = Network(f"t{os.getpid() % 100000}")
    try:
        yield net.create()
    finally:
        net.destroy()
        assert _ours(net.tag) == []


def test_nodes_reach_each_other_by_name_and_only_see_their_own_address(
    network: Network,
) -> None:
    a = network.add_node("node-a")
    b = network.add_node("node-b")
    assert a.address != b.address
    shown = _ns_exec(a.namespace, "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout
    assert f"inet {a.address}/24" in shown and b.address not in shown
    # nothing of the network exists in the machine's own namespace
    machine = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True)
    assert a.address not in machine.stdout
    server = subprocess.Popen(
        ["ip", "netns", "exec", b.namespace, sys.executable, "-c",
         "import socket,sys\n"
         "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
         "s.bind(('0.0.0.0', 22)); s.listen(); print('up', flush=True)\n"
         "c, peer = s.accept(); c.sendall(peer[0].encode()); c.close()"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "up"
        got = _ns_exec(
            a.namespace, sys.executable, "-c",
            "import socket; c=socket.create_connection(('node-b', 22), timeout=5);"
            "print(c.recv(100).decode())",
        )  # fmt: skip
        assert got.returncode == 0, got.stderr
        assert got.stdout.strip() == a.address  # the peer saw node-a's own address
        assert server.wait(timeout=10) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    resolved = _ns_exec(a.namespace, "getent", "hosts", "node-b").stdout.split()
    assert resolved[:2] == [b.address, "node-b"]


def test_a_removed_node_is_gone_and_no_longer_resolves(network: Network) -> None:
    network.add_node("node-a")
    b = network.add_node("node-b")
    network.remove_node("node-b")
    assert b.namespace not in _ours(network.tag)
    assert _ns_exec(network.namespace_of("node-a"), "getent", "hosts", "node-b").returncode != 0
    assert network.free_address() == b.address  # its address is free again


def test_destroy_removes_what_a_crashed_run_of_the_same_tag_left() -> None:
    tag = f"c{os.getpid() % 100000}"
    crashed = Network(tag).create()
    crashed.add_node("left-behind")
    orphan = Path("/etc/netns") / f"mnp-{tag}-gone"  # a hosts folder whose namespace went
    orphan.mkdir(parents=True)
    (orphan / "hosts").write_text("127.0.0.1\tlocalhost\n")
    again = Network(tag)  # a new run knows nothing of the old one's nodes
    try:
        again.create()
        assert _ours(tag) == [again.hub]
    finally:
        again.destroy()
    assert _ours(tag) == []
    assert sorted(p.name for p in Path("/etc/netns").glob(f"mnp-{tag}-*")) == []


def test_bad_names_and_addresses_are_refused_before_anything_is_made(network: Network) -> None:
    with pytest.raises(ValueError, match="node name"):
        network.add_node("../etc")
    with pytest.raises(ValueError, match="not in"):
        network.add_node("node-x", "10.9.9.9")
    with pytest.raises(ValueError, match="tag"):
        Network("Bad Tag")
    assert _ours(network.tag) == [network.hub]


def test_the_agent_listens_inside_a_node_and_runs_commands_there(network: Network) -> None:
    from launcher import netns as node_net

    a = network.add_node("node-a")
    b = network.add_node("node-b")
    before = os.stat("/proc/thread-self/ns/net").st_ino
    listener = node_net.socket_in(b.namespace, b.address, 22)
    try:
        assert os.stat("/proc/thread-self/ns/net").st_ino == before  # the thread came back
        got = subprocess.Popen(
            [*node_net.exec_prefix(a.namespace), sys.executable, "-c",
             "import socket; socket.create_connection(('node-b', 22), timeout=5).sendall(b'hi')"],
        )  # fmt: skip
        listener.settimeout(10)
        conn, peer = listener.accept()
        with conn:
            assert peer[0] == a.address and conn.recv(10) == b"hi"
        assert got.wait(timeout=10) == 0
    finally:
        listener.close()
    with pytest.raises(node_net.NetnsUnavailable):
        node_net.exec_prefix("mnp-nosuch-node")
    with pytest.raises(node_net.NetnsUnavailable, match="not an mnp"):
        node_net.exec_prefix("../../proc/1/ns/net")
