"""Providers bring nodes up and down. Looked up by name, imported only when used."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from mnp.spec.environments import Node

if TYPE_CHECKING:
    from mnp.ec2.userdata import NodeBoot

_REGISTRY = {
    "local": "mnp.providers.local:LocalProvider",
    "ssh": "mnp.providers.ssh:SshProvider",  # hosts of UNMANAGED environments (addHost)
    "fake": "mnp.providers.fake:FakeProvider",  # fault injection for the unit tables
    "ec2": "mnp.providers.ec2:Ec2Provider",  # instances of EC2/SPOT environments (boto3)
}


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    """One node to bring up. ``request_id`` is the node id: never reused, so a launch
    repeated with the same id (a retry after a lost answer) is harmless."""

    request_id: str
    node: Node
    """The provider's own copy of the record (with its one-time ``join_token``)."""
    instance_type: str | None = None
    """The instance type to launch (EC2: required; others ignore it)."""
    compute_resources: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """The environment's ``computeResources`` document (EC2: subnets, security groups,
    ``instanceRole``, ``placementGroup``, ``launchTemplate``, ``type``, ``bidPercentage``,
    ``tags``); empty for providers that need none."""
    boot: NodeBoot | None = None
    """What the node's user data needs (EC2: required; it carries the join token)."""
    gang: str | None = None
    """Requests with the same gang key are nodes of one multi-node job: launched together,
    and if one cannot be, none is kept (each fails with the reason)."""


@dataclass(frozen=True, slots=True)
class LaunchOutcome:
    """What became of one :class:`LaunchRequest`: started (``pid`` when known) or ``error``."""

    request_id: str
    pid: int | None = None
    error: str | None = None
    """Why it failed; from EC2, starting with the AWS error code
    (``InsufficientInstanceCapacity: …``)."""
    retryable: bool = False
    """With ``error``: whether the same launch may succeed later unchanged (capacity,
    limits, throttling, a fault on the substrate's side): back off and try again. False:
    something must change first (credentials, permissions, parameters)."""
    instance_id: str | None = None
    """The substrate's id for the node (EC2: ``i-…``), when it has one."""

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class Instance:
    """A node the substrate runs now (what :meth:`Provider.list` finds)."""

    node_id: str
    pid: int | None = None
    instance_id: str | None = None
    """EC2: the instance's id (``i-…``)."""
    instance_type: str | None = None
    private_ip: str | None = None


class Provider(Protocol):
    """What the head node needs from a provider that launches nodes (MANAGED environments).

    Assumptions:

    - Calls are batched: one :meth:`launch` carries every node a tick asks for, one
      :meth:`terminate` every node to stop; each request is identified by its node id, which
      is never reused, so repeating a call is harmless (a node already up is not started
      twice; terminating a node that is gone does nothing).
    - The substrate is the truth: :meth:`list` answers from it (processes, instances), not
      from memory, so a restarted head — or another provider object for the same home —
      rebuilds its view from it; nodes a restarted head finds missing are lost.
    - The node's agent registers with the head by itself; a launch returning means the
      agent was started, not that it joined.
    - Calls may block (namespaces, processes, grace periods): the head makes them off its
      event loop, from one thread at a time per call but possibly concurrently across calls.
    - A failure of one request is reported in its :class:`LaunchOutcome`, not raised; a
      raised :class:`~mnp.errors.ProviderError` fails the whole batch.
    """

    def launch(self, requests: Sequence[LaunchRequest]) -> list[LaunchOutcome]:
        """Start the nodes; one outcome per request, in any order."""
        ...

    def list(self) -> list[Instance]:
        """Every node of this head's home that the substrate runs now."""
        ...

    def terminate(self, ids: Sequence[str], grace_seconds: float) -> None:
        """Stop these nodes (SIGTERM, SIGKILL after the grace) and whatever they left."""
        ...


def make_provider(name: str, head_url: str, home: Path, token: str | None) -> Provider:
    target = _REGISTRY.get(name)
    if target is None:
        raise KeyError(f"unknown provider {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    module, cls = target.split(":")
    factory = getattr(importlib.import_module(module), cls)
    provider: Provider = factory(head_url=head_url, home=home, token=token)
    return provider
