"""Where a head's local nodes get their addresses, which also says how they are networked.

A local environment's ``first_address`` decides its nodes' network (the node record's address
is the truth, so a restarted head, an older store and ``mnp nodes`` all read it back): an
address in 127/8 means loopback-alias nodes on the machine's own network; an address in
:data:`mnp.providers.netns.NODE_SUBNET` means nodes with a network namespace each, whose
``eth0`` has that address. Which one a *new* environment gets is the head's node-network
setting (``HeadConfig.node_network``): ``auto`` takes namespaces when the head runs as root
with ``ip netns``. Every environment of a head gets its own block of 64 addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from mnp.config import network_kind as _kind
from mnp.errors import FieldError, InvalidInput
from mnp.providers import netns
from mnp.spec.environments import ComputeEnvironment

LOOPBACK_FIRST_ADDRESS = "127.0.0.2"
BLOCK = 64
"""Addresses per environment (an environment has at most 64 nodes)."""


class NodeAddresses:
    """The head's choice of node network, made once (``ip netns`` is asked on first use)."""

    def __init__(self, setting: str) -> None:
        self._setting = setting
        self._namespaces: bool | None = None

    @property
    def namespaces(self) -> bool:
        """Whether new local environments get namespace nodes. Raises ValueError when the
        setting forces namespaces on a machine that cannot make them."""
        if self._namespaces is None:
            self._namespaces = netns.wanted(self._setting)
            if self._namespaces and not netns.available():
                raise ValueError("node network 'namespace' needs root and a usable `ip netns`")
        return self._namespaces

    def default_first(self) -> str:
        """The first address of the embedded default environment."""
        return netns.NAMESPACE_FIRST_ADDRESS if self.namespaces else LOOPBACK_FIRST_ADDRESS

    def next_first(self, ces: Iterable[ComputeEnvironment], reserved: str | None) -> str:
        """A first address for one more environment: past every environment's block of the
        same kind, and past ``reserved`` (the default environment's, even before it exists)."""
        base = self.default_first()
        same = [c.first_address for c in ces if _kind(c.first_address) == _kind(base)]
        if reserved is not None:
            same.append(reserved)
        start = max([int(ipaddress.IPv4Address(a)) + BLOCK for a in same], default=0)
        return str(ipaddress.IPv4Address(max(start, int(ipaddress.IPv4Address(base)))))

    def check(self, first: str, field: str = "mnp.firstAddress") -> None:
        """Refuse a first address this head cannot give nodes (InvalidInput naming ``field``):
        loopback needs 127/8 with room for a block; namespace addresses need the node subnet
        and a head that can make namespaces."""
        address = ipaddress.IPv4Address(first)
        if _kind(first) == "loopback":
            if int(address) + BLOCK - 1 > int(ipaddress.IPv4Address("127.255.255.254")):
                raise InvalidInput([FieldError(field, f"{first}: no room for {BLOCK} nodes")])
            return
        last = ipaddress.IPv4Address(int(address) + BLOCK - 1)
        if address not in netns.NODE_SUBNET or last not in netns.NODE_SUBNET:
            raise InvalidInput(
                [FieldError(field, f"{first}: must be in 127.0.0.0/8 (loopback nodes) or "
                            f"leave {BLOCK} addresses in {netns.NODE_SUBNET} (namespace nodes)")]
            )  # fmt: skip
        if not netns.available():
            raise InvalidInput(
                [FieldError(field, f"{first}: namespace nodes need a head running as root "
                            "with `ip netns`; use a 127.x.y.z address")]
            )  # fmt: skip
