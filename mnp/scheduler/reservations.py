"""Reservations, the part of :func:`mnp.scheduler.reconcile.reconcile` that keeps a job that
has waited long enough from starving behind backfill.

The first job of a queue RUNNABLE for ``reserve_after_ms`` that still does not fit reserves
the nodes it needs: those whose room is expected free soonest, by the timeouts of the work
on them (a multi-node job's, wholly idle, in one placement group). Until it starts, those
nodes take only work that ends before the reservation does: a job whose
``attemptDurationSeconds`` (plus the kill grace) is known and ends by then. Reservations are
made afresh each pass, in queue order: the reserving job, first in its queue's order, is
placed as soon as its nodes are free. Pure: everything comes from the snapshot.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from mnp.scheduler.reasons import with_default_memory
from mnp.spec.jobs import Job
from mnp.spec.resources import Resources
from mnp.spec.states import JobStatus


class NodeFacts(Protocol):
    """What reservations read of a node (:class:`~mnp.scheduler.reconcile.NodeView`;
    described here, not imported: reconcile imports this module)."""

    @property
    def node_id(self) -> str: ...
    @property
    def capacity(self) -> Resources: ...
    @property
    def placement_group(self) -> str: ...
    @property
    def ssh(self) -> bool: ...
    @property
    def draining(self) -> bool: ...
    @property
    def releases(self) -> tuple[tuple[int | None, Resources], ...]: ...


class CEView(Protocol):
    @property
    def default_memory_mib(self) -> int | None: ...


class Snapshot(Protocol):
    """What reservations read of the pass's :class:`~mnp.scheduler.reconcile.Snapshot`."""

    @property
    def now_ms(self) -> int: ...
    @property
    def kill_grace_ms(self) -> int: ...
    @property
    def default_memory_mib(self) -> int | None: ...
    @property
    def nodes(self) -> Sequence[NodeFacts]: ...
    @property
    def compute_environments(self) -> Mapping[str, CEView]: ...


@dataclass(slots=True)
class Hold:
    """Nodes reserved this pass for a job that waited long enough (:class:`Book`)."""

    job_id: str
    nodes: tuple[str, ...]
    start_ms: int | None
    """When they are all expected free (None: not known: work there has no timeout)."""


class Book:
    """The pass's reservations, and when each node's room is expected to come free.

    A reserved node takes only work that ends before the reservation starts (a job whose
    ``attemptDurationSeconds`` is known and short enough); the reserving job itself, placed
    when the nodes are free, comes first in its queue's order anyway."""

    def __init__(
        self, snap: Snapshot, free: dict[str, Resources], index: FreeIndex | None = None
    ) -> None:
        self.now = snap.now_ms
        self.grace = snap.kill_grace_ms
        self.free = free
        self.index = index
        """Kept in step with ``free`` as work is placed (None: none is kept)."""
        self.given = {n.node_id: n.releases for n in snap.nodes}
        self.added: dict[str, list[tuple[int | None, Resources]]] = {}
        """Work placed this pass, per node (what frees later, with ``given``'s)."""
        self.held: dict[str, Hold] = {}
        self.unavailable = {n.node_id for n in snap.nodes if n.draining}
        """Nodes no reservation may count on (draining: their host is being removed)."""

    def end_of(self, job: Job) -> int | None:
        """When ``job`` placed now ends at the latest (None: it has no timeout)."""
        t = job.spec.timeout_seconds
        return None if t is None else self.now + int(t * 1000) + self.grace

    def blocker(self, node_id: str, end: int | None, job_id: str) -> Hold | None:
        """The reservation keeping work ending at ``end`` off ``node_id`` (None: may use it)."""
        h = self.held.get(node_id)
        if h is None or h.job_id == job_id:
            return None
        if h.start_ms is not None and end is not None and end <= h.start_ms:
            return None
        return h

    def took(self, node_id: str, held: Resources, end: int | None) -> None:
        before = self.free[node_id].vcpus
        self.free[node_id] = self.free[node_id].minus(held)
        if self.index is not None:
            self.index.moved(node_id, before)
        self.added.setdefault(node_id, []).append((end, held))

    def free_at(self, node_id: str, need: Resources) -> int | None:
        """When ``need`` fits the node's free room, by its work's ends (None: not known)."""
        room = self.free[node_id]
        if need.fits_in(room):
            return self.now
        work: list[tuple[int | None, Resources]] = [
            *self.given.get(node_id, ()),
            *self.added.get(node_id, ()),
        ]
        for end, held in sorted(work, key=_known_first):
            if end is None:
                return None
            room = room.plus(held)
            if need.fits_in(room):
                return max(end, self.now)
        return None

    def reserve(self, job_id: str, nodes: tuple[str, ...], start: int | None) -> Hold:
        hold = Hold(job_id, nodes, start)
        for n in nodes:
            self.held[n] = hold
        return hold


class FreeIndex:
    """Per environment, its nodes grouped by free vCPUs, the levels in order and each
    level's node ids sorted: placement reads the roomiest nodes first and stops at the first
    that fits, instead of looking at every node for every job. Moving a node to another
    level when work is placed on it costs a bisection, so a pass costs what it places, not
    backlog × nodes. It reads the free room it was built over (the :class:`Book`'s), which
    calls :meth:`moved` whenever that changes."""

    def __init__(self, by_ce: Mapping[str, Sequence[str]], free: Mapping[str, Resources]) -> None:
        self._free = free
        self._ce_of: dict[str, str] = {}
        self._levels: dict[str, list[float]] = {}
        """Per environment, the distinct free vCPUs of its nodes, ascending."""
        self._nodes: dict[str, dict[float, list[str]]] = {}
        """Per environment and level, its node ids, ascending."""
        for ce, ids in by_ce.items():
            at: dict[float, list[str]] = {}
            for n in ids:
                self._ce_of[n] = ce
                at.setdefault(free[n].vcpus, []).append(n)
            for level in at.values():
                level.sort()
            self._nodes[ce] = at
            self._levels[ce] = sorted(at)

    def moved(self, node_id: str, before: float) -> None:
        """``node_id`` had ``before`` vCPUs free; file it under what it has now."""
        ce = self._ce_of.get(node_id)
        after = self._free[node_id].vcpus
        if ce is None or after == before:
            return
        at, levels = self._nodes[ce], self._levels[ce]
        old = at[before]
        del old[bisect_left(old, node_id)]
        if not old:
            del at[before]
            del levels[bisect_left(levels, before)]
        new = at.get(after)
        if new is None:
            at[after] = [node_id]
            insort(levels, after)
        else:
            insort(new, node_id)

    def most_free(self, ce: str) -> float | None:
        """The most vCPUs free on one node of ``ce`` (None: it has no node)."""
        levels = self._levels.get(ce)
        return levels[-1] if levels else None

    def fitting(self, ce: str, vcpus: float) -> Iterator[tuple[float, list[str]]]:
        """The levels of ``ce`` with at least ``vcpus`` free, most first, with their nodes
        (ascending ids). Not to be changed while iterated."""
        levels = self._levels.get(ce, ())
        at = self._nodes.get(ce, {})
        for i in range(len(levels) - 1, -1, -1):
            v = levels[i]
            if vcpus > v + 1e-9:
                return
            yield v, at[v]


def _known_first(r: tuple[int | None, Resources]) -> tuple[bool, int]:
    return (r[0] is None, r[0] or 0)


def _soonest(t: int | None) -> tuple[bool, int]:
    return (t is None, t or 0)


def runnable_since(job: Job) -> int:
    """Since when the job has been RUNNABLE (its latest transition; else its creation), read
    from its history once and kept in :attr:`Job.runnable_at` until its next transition."""
    at = job.runnable_at
    if at is None:
        last = job.history[-1] if job.history else None
        at = last.at if last is not None and last.status == JobStatus.RUNNABLE else job.created_at
        job.runnable_at = at
    return at


def held_on(
    need: Resources, node: str, ce: CEView, snap: Snapshot, caps: Mapping[str, Resources]
) -> tuple[Resources, str | None]:
    """What ``need`` holds on ``node`` (a default MEMORY filled in) and where that came from."""
    return with_default_memory(need, caps[node], ce.default_memory_mib, snap.default_memory_mib)


def reserve_one(
    job: Job,
    need: Resources,
    usable: list[str],
    by_ce: dict[str, list[str]],
    snap: Snapshot,
    book: Book,
) -> Hold | None:
    """Reserve the node where ``need`` fits soonest (None: no node of the queue's could)."""
    caps = {n.node_id: n.capacity for n in snap.nodes}
    best: tuple[tuple[bool, int], float, str, int | None] | None = None
    for ce in usable:
        view = snap.compute_environments[ce]
        for n in by_ce.get(ce, ()):
            if n in book.held or n in book.unavailable:
                continue
            held, _ = held_on(need, n, view, snap, caps)
            if not held.fits_in(caps[n]):
                continue
            t = book.free_at(n, held)
            key = (_soonest(t), -book.free[n].vcpus, n, t)
            if best is None or key[:3] < best[:3]:
                best = key
    if best is None:
        return None
    return book.reserve(job.job_id, (best[2],), best[3])


def reserve_gang(
    job: Job,
    usable: list[str],
    by_ce: dict[str, list[str]],
    caps: Mapping[str, Resources],
    snap: Snapshot,
    book: Book,
) -> Hold | None:
    """Reserve, in one placement group, the nodes a multi-node job's nodes fit that will be
    wholly idle soonest (None: no group has enough of them)."""
    spec = job.spec.nodes
    assert spec is not None
    needs = [c.resources for c in spec.containers]
    order = sorted(range(len(needs)), key=lambda i: size(needs[i]), reverse=True)
    groups = {n.node_id: n.placement_group for n in snap.nodes}
    with_ssh = {n.node_id for n in snap.nodes if n.ssh}
    best: tuple[tuple[bool, int], tuple[str, ...], int | None] | None = None
    for ce in usable:
        by_group: dict[str, list[tuple[tuple[bool, int], float, str, int | None]]] = {}
        for n in by_ce.get(ce, ()):
            if n in with_ssh and n not in book.held and n not in book.unavailable:
                t = book.free_at(n, caps[n])
                by_group.setdefault(groups[n], []).append((_soonest(t), -book.free[n].vcpus, n, t))
        for nodes in by_group.values():
            nodes.sort()
            chosen: dict[int, tuple[str, int | None]] = {}
            for i in order:
                taken = {c[0] for c in chosen.values()}
                pick = next(
                    (x for x in nodes if x[2] not in taken and needs[i].fits_in(caps[x[2]])), None
                )
                if pick is None:
                    break
                chosen[i] = (pick[2], pick[3])
            if len(chosen) < len(needs):
                continue
            times = [t for _, t in chosen.values()]
            start = None if any(t is None for t in times) else max(t or 0 for t in times)
            ids = tuple(sorted(n for n, _ in chosen.values()))
            if best is None or _soonest(start) < best[0]:
                best = (_soonest(start), ids, start)
    if best is None:
        return None
    return book.reserve(job.job_id, best[1], best[2])


def size(r: Resources) -> tuple[float, int, int]:
    return (r.vcpus, r.memory_mib, r.gpus)
