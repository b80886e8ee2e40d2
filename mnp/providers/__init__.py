"""Providers bring nodes up and down. Looked up by name, imported only when used."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol

from mnp.spec.environments import Node

_REGISTRY = {
    "local": "mnp.providers.local:LocalProvider",
    "ssh": "mnp.providers.ssh:SshProvider",  # hosts of UNMANAGED environments (addHost)
}


class Provider(Protocol):
    """What the head node needs from a provider.

    Assumptions: ``launch`` is asked once per node id (node ids are never reused, so a retry
    with the same id is harmless); the node's agent registers with the head by itself;
    ``stop`` and ``is_alive`` may be called for nodes launched by an earlier head process
    (after a restart), so they work from the node record alone.
    """

    def launch(self, node: Node) -> int | None:
        """Start the node; return its agent's pid when known. Raises ProviderError."""
        ...

    def is_alive(self, node: Node) -> bool: ...

    def stop(self, nodes: list[Node], grace_seconds: float) -> None:
        """Stop the nodes' agents (SIGTERM, then SIGKILL after the grace)."""
        ...


def make_provider(name: str, head_url: str, home: Path, token: str | None) -> Provider:
    target = _REGISTRY.get(name)
    if target is None:
        raise KeyError(f"unknown provider {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    module, cls = target.split(":")
    factory = getattr(importlib.import_module(module), cls)
    provider: Provider = factory(head_url=head_url, home=home, token=token)
    return provider
