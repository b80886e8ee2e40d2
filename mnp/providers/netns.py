"""Nodes with a network of their own: Linux network namespaces joined by a bridge of mnp's own.

One network is one *hub* namespace holding a bridge (``br0``) and, per node, one namespace
whose ``eth0`` is a veth pair's end, the other end a port of the hub's bridge. Both ends are
created directly inside their namespaces (``ip link add … netns A type veth peer … netns
B``), so nothing of a network ever appears in the machine's own namespace: its addresses
exist only inside namespaces this module created, and traffic between nodes crosses only the
hub's bridge. The bridge has no address; the head node is not on this network (node agents
stay in the machine's namespace and reach the head on loopback; only what runs *on* a node —
its jobs and its SSH endpoint — lives in the node's namespace).

Names: namespaces are ``mnp-<tag>-hub`` and ``mnp-<tag>-<node>``; every node's
``/etc/netns/<namespace>/hosts`` maps every node's name to its address, so a name resolves on
every node of the network (``ip netns exec`` bind-mounts that file over ``/etc/hosts``).

Everything here needs root and ``ip`` from iproute2 (:func:`available`). :meth:`destroy`
removes every namespace and hosts file of the tag, also those of an earlier run of the same
tag that crashed (it lists them), and is safe to call twice.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

NETNS_DIR = Path("/run/netns")
HOSTS_ROOT = Path("/etc/netns")
TAG_RE = re.compile(r"[a-z0-9]{1,8}")
NODE_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
_IP_TIMEOUT = 10.0

NODE_SUBNET = ipaddress.IPv4Network("10.200.0.0/16")
"""Where local namespace nodes get their addresses: private, and only ever inside namespaces
of mnp's own, so every head may use the whole range (its network is its own bridge)."""
NAMESPACE_FIRST_ADDRESS = "10.200.0.2"
"""The first node address of the default environment on namespace nodes."""


class NetnsError(RuntimeError):
    """An ``ip`` command failed; the message has its command line and error output."""


def available() -> bool:
    """Root, ``ip`` on the PATH and ``ip netns`` usable here."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    try:
        r = subprocess.run(["ip", "netns", "list"], capture_output=True, timeout=_IP_TIMEOUT)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


def wanted(setting: str) -> bool:
    """Whether a head with node-network ``setting`` (:func:`mnp.config.node_network_setting`)
    puts its local nodes in namespaces: ``namespace`` always, ``loopback`` never, ``auto``
    when :func:`available`."""
    return setting == "namespace" or (setting == "auto" and available())


def is_namespace_address(address: str) -> bool:
    """A node address a namespace node has (anything else is a loopback alias)."""
    try:
        return ipaddress.IPv4Address(address) in NODE_SUBNET
    except ValueError:
        return False


def interface_of(addresses: list[str]) -> str | None:
    """The interface a gang of local nodes pins MPI to: ``lo`` for loopback-alias nodes,
    ``eth0`` for namespace nodes (each its own, so a launcher listens on its node's address
    only), None (MPI picks) for a mix or other hosts."""
    kinds = {
        "namespace" if is_namespace_address(a) else "loopback" if a.startswith("127.") else a
        for a in addresses
    }
    return {"loopback": "lo", "namespace": "eth0"}.get(kinds.pop()) if len(kinds) == 1 else None


def home_tag(home: Path) -> str:
    """The network tag of a head's home: 8 hex characters of its resolved path's hash."""
    return hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:8]


def node_name(node_id: str) -> str:
    """The name a node has on its network (and in its namespace's name): the node id when it
    is one already (lower case, letters, digits, ``-``), else ``n`` + 12 hex of its hash."""
    if NODE_NAME_RE.fullmatch(node_id) and node_id != "hub":
        return node_id
    return "n" + hashlib.sha256(node_id.encode()).hexdigest()[:12]


def _ip(*args: str) -> str:
    argv = ["ip", *args]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=_IP_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as e:
        raise NetnsError(f"{' '.join(argv)}: {e}") from None
    if r.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {r.stderr.strip() or r.returncode}")
    return r.stdout


@dataclass(slots=True)
class NodeNamespace:
    name: str
    """The node's name on the network (resolves on every node)."""
    namespace: str
    address: str
    port: str
    """The hub's end of the node's veth pair."""


@dataclass(slots=True)
class Network:
    """One hub and its nodes; ``subnet`` holds the nodes' addresses (the first host address
    is left unused, as a router's would be)."""

    tag: str
    subnet: ipaddress.IPv4Network = field(
        default_factory=lambda: ipaddress.IPv4Network("10.200.0.0/24")
    )
    nodes: dict[str, NodeNamespace] = field(default_factory=dict)
    _next_port: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if TAG_RE.fullmatch(self.tag) is None:
            raise ValueError(f"network tag {self.tag!r} must match {TAG_RE.pattern}")
        if not self.subnet.is_private:
            raise ValueError(f"subnet {self.subnet} is not a private range")

    @property
    def hub(self) -> str:
        return f"mnp-{self.tag}-hub"

    def namespace_of(self, node: str) -> str:
        return f"mnp-{self.tag}-{node}"

    def create(self) -> Network:
        """The hub namespace and its bridge (after removing what a crashed run left)."""
        self.destroy()
        self._make_hub()
        return self

    def _make_hub(self) -> None:
        _ip("netns", "add", self.hub)
        _ip("-n", self.hub, "link", "set", "lo", "up")
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")

    def open(self) -> Network:
        """Take over the network as an earlier process of the same tag left it (its nodes may
        still be running): the hub is made if it is missing (a hub-less node namespace left
        by a crash is removed, it is cut off anyway), every node namespace found is known
        again by its ``eth0`` address, and new veth ports are numbered past the hub's."""
        prefix = f"mnp-{self.tag}-"
        found = sorted(p.name for p in NETNS_DIR.glob(prefix + "*")) if NETNS_DIR.is_dir() else []
        if self.hub not in found:
            self.destroy()
            self._make_hub()
            return self
        ports = re.findall(r"^\d+: p(\d+)[@:]", _ip("-n", self.hub, "-o", "link"), re.M)
        self._next_port = max((int(p) for p in ports), default=0)
        for ns in found:
            if ns == self.hub:
                continue
            out = _ip("-n", ns, "-4", "-o", "addr", "show", "dev", "eth0")
            m = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", out)
            if m is None:  # half made: no address, so no node can be using it
                _delete_namespace(ns)
                continue
            name = ns[len(prefix) :]
            self.nodes[name] = NodeNamespace(name, ns, m.group(1), "")
        return self

    def node_namespaces(self) -> list[str]:
        """The node namespaces of this tag that exist now (known here or not)."""
        prefix = f"mnp-{self.tag}-"
        found = {p.name for p in NETNS_DIR.glob(prefix + "*")} if NETNS_DIR.is_dir() else set()
        return sorted(found - {self.hub})

    def free_address(self) -> str:
        used = {n.address for n in self.nodes.values()}
        for host in list(self.subnet.hosts())[1:]:
            if str(host) not in used:
                return str(host)
        raise NetnsError(f"no free address left in {self.subnet}")

    def add_node(self, name: str, address: str | None = None) -> NodeNamespace:
        """A node namespace with ``eth0`` at ``address`` (default: the next free one) on the
        hub's bridge, its loopback up, and every node's hosts file rewritten."""
        if NODE_NAME_RE.fullmatch(name) is None or name == "hub":
            raise ValueError(f"node name {name!r} must match {NODE_NAME_RE.pattern}, not hub")
        if name in self.nodes:
            raise ValueError(f"node {name!r} is already on network {self.tag}")
        address = address or self.free_address()
        if ipaddress.IPv4Address(address) not in self.subnet:
            raise ValueError(f"address {address} is not in {self.subnet}")
        ns = self.namespace_of(name)
        self._next_port += 1
        port = f"p{self._next_port}"
        _ip("netns", "add", ns)
        node = NodeNamespace(name, ns, address, port)
        self.nodes[name] = node
        _ip("link", "add", "name", "eth0", "netns", ns, "type", "veth",
            "peer", "name", port, "netns", self.hub)  # fmt: skip
        _ip("-n", self.hub, "link", "set", port, "master", "br0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        self._write_hosts()
        return node

    def remove_node(self, name: str) -> None:
        """Delete the node's namespace (its veth pair goes with it), also one this object
        did not know of; none: no-op."""
        node = self.nodes.pop(name, None)
        _delete_namespace(self.namespace_of(name) if node is None else node.namespace)
        if node is not None:
            self._write_hosts()

    def destroy(self) -> None:
        """Remove every namespace and hosts file of this tag, known here or left by a crash
        (also a hosts folder whose namespace is gone already)."""
        prefix = f"mnp-{self.tag}-"
        names = {p.name for p in NETNS_DIR.glob(prefix + "*")} if NETNS_DIR.is_dir() else set()
        if HOSTS_ROOT.is_dir():
            names |= {p.name for p in HOSTS_ROOT.glob(prefix + "*")}
        names |= {n.namespace for n in self.nodes.values()}
        for ns in [*sorted(names - {self.hub}), self.hub]:
            _delete_namespace(ns)
        self.nodes.clear()

    def _write_hosts(self) -> None:
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        lines += [f"{n.address}\t{n.name}" for n in self.nodes.values()]
        text = "\n".join(lines) + "\n"
        for node in self.nodes.values():
            d = HOSTS_ROOT / node.namespace
            d.mkdir(parents=True, exist_ok=True)
            tmp = d / "hosts.tmp"
            tmp.write_text(text)
            tmp.chmod(0o644)
            tmp.replace(d / "hosts")


def _delete_namespace(ns: str) -> None:
    if (NETNS_DIR / ns).exists():
        _ip("netns", "delete", ns)
    shutil.rmtree(HOSTS_ROOT / ns, ignore_errors=True)
