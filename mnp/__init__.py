"""mnp: a self-hosted batch computing system with AWS Batch semantics.

The package root stays light: ``launcher`` (the node side) imports the plain-data modules
(``mnp.states``, ``mnp.protocol``) without pulling in the HTTP server or its dependencies.
``mnp.Client`` is imported lazily for the same reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from mnp.client import Client as Client


def __getattr__(name: str) -> Any:
    if name == "Client":
        from mnp.client import Client

        return Client
    raise AttributeError(name)
