"""mnp: a self-hosted batch computing system with AWS Batch semantics.

The package root stays light: ``launcher`` (the node side) imports the plain-data modules
(``mnp.states``, ``mnp.protocol``) without pulling in the HTTP server or its dependencies.
``mnp.Client`` is imported lazily for the same reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from mnp.api import After as After
    from mnp.api import ArrayJob as ArrayJob
    from mnp.api import Job as Job
    from mnp.api import MpiJob as MpiJob
    from mnp.api import NToN as NToN
    from mnp.api_run import JobFailed as JobFailed
    from mnp.api_run import Run as Run
    from mnp.api_run import submit as submit
    from mnp.client import Client as Client

_LAZY = {
    "Client": "mnp.client",
    "Job": "mnp.api",
    "ArrayJob": "mnp.api",
    "MpiJob": "mnp.api",
    "After": "mnp.api",
    "NToN": "mnp.api",
    "submit": "mnp.api_run",
    "Run": "mnp.api_run",
    "JobFailed": "mnp.api_run",
}
"""Public names imported on first use (the Python API: ``from mnp import Job, submit``)."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(module), name)
