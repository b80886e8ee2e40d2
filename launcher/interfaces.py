"""Which network interface holds the node's address (``eth0`` on an EC2 instance or a test
host, ``ib0``, ``bond0`` …), so the head can pin a gang's MPI, NCCL and gloo traffic to it.

Read from the kernel without a tool: IPv4 from each interface's primary address
(``SIOCGIFADDR``), IPv6 from ``/proc/net/if_inet6``. An address held by no interface (a
loopback alias such as 127.0.0.2, which ``lo`` answers for without holding it; a node behind
NAT) gives None: the head then decides from the address alone.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from pathlib import Path

SIOCGIFADDR = 0x8915
IF_INET6 = Path("/proc/net/if_inet6")


def _ipv4_of(sock: socket.socket, name: str) -> str | None:
    try:
        packed = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
    except OSError:  # no IPv4 address on it
        return None
    return socket.inet_ntoa(packed[20:24])


def _ipv6_holder(address: ipaddress.IPv6Address) -> str | None:
    try:
        lines = IF_INET6.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) == 6 and ipaddress.IPv6Address(int(parts[0], 16)) == address:
            return parts[5]
    return None


def interface_of(address: str) -> str | None:
    """The name of the interface that holds ``address`` on this machine (this network
    namespace), or None."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # a host name: whatever it resolves to is not ours to guess
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        return _ipv6_holder(ip)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            if _ipv4_of(sock, name) == address:
                return name
    return None
