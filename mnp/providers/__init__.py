"""Providers bring nodes up and down. Looked up by name, imported only when used."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mnp.spec.environments import Node

_REGISTRY = {
    "local": "mnp.providers.local:LocalProvider",
    "ssh": "mnp.providers.ssh:SshProvider",  # hosts of UNMANAGED environments (addHost)
    "fake": "mnp.providers.fake:FakeProvider",  # fault injection for the unit tables
}


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    """One node to bring up. ``request_id`` is the node id: never reused, so a launch
    repeated with the same id (a retry after a lost answer) is harmless."""

    request_id: str
    node: Node
    """The provider's own copy of the record (with its one-time ``join_token``)."""


@dataclass(frozen=True, slots=True)
class LaunchOutcome:
    """What became of one :class:`LaunchRequest`: started (``pid`` when known) or ``error``."""

    request_id: str
    pid: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class Instance:
    """A node the substrate runs now (what :meth:`Provider.list` finds)."""

    node_id: str
    pid: int | None = None


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
