"""A provider with fault injection, for the unit tables: every call recorded; a launch may
be failed, held (blocks until released) or lost later (the node vanishes from :meth:`list`).
No processes: the test registers the nodes' agents itself."""

from __future__ import annotations

import builtins
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mnp.providers import Instance, LaunchOutcome, LaunchRequest, Provider


@dataclass(slots=True)
class Call:
    """One call the provider received: ``launch`` / ``terminate`` with its node ids."""

    kind: str
    ids: tuple[str, ...]


@dataclass
class FakeProvider:
    """Thread-safe (a lock around its books), like the real providers must be."""

    head_url: str = ""
    home: Path = Path()
    token: str | None = None
    calls: list[Call] = field(default_factory=list)
    fail_with: str | None = None
    """Every launch fails with this error (None: launches succeed)."""
    fail_retryable: bool = False
    """Those failures say the same launch may work later (EC2 short of capacity)."""
    held: threading.Event | None = None
    """When set to an unset Event, launches block until it is set (a slow substrate)."""
    running: dict[str, int] = field(default_factory=dict)
    """node id → fake pid of what the substrate runs."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next_pid: int = 1000

    def launch(self, requests: Sequence[LaunchRequest]) -> list[LaunchOutcome]:
        with self._lock:
            self.calls.append(Call("launch", tuple(r.request_id for r in requests)))
        if self.held is not None:
            self.held.wait(30)
        out = []
        with self._lock:
            for r in requests:
                if self.fail_with is not None:
                    error, retryable = self.fail_with, self.fail_retryable
                    out.append(LaunchOutcome(r.request_id, error=error, retryable=retryable))
                    continue
                if r.request_id not in self.running:  # a repeated request starts nothing new
                    self._next_pid += 1
                    self.running[r.request_id] = self._next_pid
                out.append(LaunchOutcome(r.request_id, pid=self.running[r.request_id]))
        return out

    def list(self) -> list[Instance]:
        with self._lock:
            return [Instance(n, pid) for n, pid in sorted(self.running.items())]

    def terminate(self, ids: Sequence[str], grace_seconds: float) -> None:
        with self._lock:
            self.calls.append(Call("terminate", tuple(ids)))
            for n in ids:
                self.running.pop(n, None)

    def lose(self, node_id: str) -> None:
        """The substrate loses the node (its machine died): it is no longer listed."""
        with self._lock:
            self.running.pop(node_id, None)

    def of(self, kind: str) -> builtins.list[tuple[str, ...]]:
        """The node ids of every call of ``kind``, in order."""
        with self._lock:
            return [c.ids for c in self.calls if c.kind == kind]


def _is_a_provider(p: FakeProvider) -> Provider:
    return p  # mypy checks here that the fake keeps the protocol's shape
