"""mnp: a self-hosted batch computing system with AWS Batch semantics.

The package root stays light: ``launcher`` (the node side) imports the plain-data modules
(``mnp.spec.states``, ``mnp.spec.protocol``) without pulling in the HTTP server or its dependencies.
``mnp.Client`` is imported lazily for the same reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from mnp.client.client import Client as Client
    from mnp.client.dsl import After as After
    from mnp.client.dsl import ArrayJob as ArrayJob
    from mnp.client.dsl import Job as Job
    from mnp.client.dsl import MpiJob as MpiJob
    from mnp.client.dsl import NToN as NToN
    from mnp.client.run import JobFailed as JobFailed
    from mnp.client.run import Run as Run
    from mnp.client.run import submit as submit

_LAZY = {
    "Client": "mnp.client.client",
    "Job": "mnp.client.dsl",
    "ArrayJob": "mnp.client.dsl",
    "MpiJob": "mnp.client.dsl",
    "After": "mnp.client.dsl",
    "NToN": "mnp.client.dsl",
    "submit": "mnp.client.run",
    "Run": "mnp.client.run",
    "JobFailed": "mnp.client.run",
}
"""Public names imported on first use (the Python API: ``from mnp import Job, submit``)."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(module), name)
