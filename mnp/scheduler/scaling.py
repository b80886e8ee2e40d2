"""Elastic MANAGED environments, the pure part of :func:`mnp.scheduler.reconcile.reconcile`:
how many nodes each environment should have, from the RUNNABLE demand placement left over.

Per environment, each tick:

- **Demand**: the RUNNABLE jobs of its queues that were not placed this tick (they fit no
  node's free room), each counted in the first enabled environment of its queue whose node
  shape fits it (holding the MEMORY placement fills in for a job stating none), packed
  first-fit onto the nodes still LAUNCHING (they will take work), then onto new nodes; a
  multi-node job needs whole empty nodes (one per node of the gang). The scan stops once
  every environment of the queue is at its largest.
- **Scale out**: ``desired = clamp(min, max, max(desired, live + new nodes needed))``; the
  nodes missing from ``desired`` are launched in one batch, unless the environment is
  backing off after a failed launch (``launch_after_ms``).
- **Scale in**: with no demand and nothing to launch, nodes idle (no attempt) for
  ``scale_in_after_ms`` are drained, down to ``min``; ``desired`` follows. Nodes beyond
  ``max`` (it was lowered) are drained too, the idlest first. A draining node of a MANAGED
  environment that holds no work is stopped (:class:`RetireNodes`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from mnp.scheduler.reasons import with_default_memory
from mnp.spec.environments import NodeStatus
from mnp.spec.jobs import Job
from mnp.spec.resources import Resources

SCAN_LIMIT = 10_000
"""RUNNABLE jobs looked at per queue for demand, at most (a backlog of jobs that fit no new
node must not make every tick long)."""


class Snap(Protocol):
    """What :func:`plan` reads of the tick's snapshot (:class:`~mnp.scheduler.reconcile.
    Snapshot`; described here, not imported: reconcile imports this module)."""

    @property
    def now_ms(self) -> int: ...
    @property
    def scale_in_after_ms(self) -> int: ...
    @property
    def compute_environments(self) -> Mapping[str, CEFacts]: ...
    @property
    def nodes(self) -> Sequence[NodeFacts]: ...
    @property
    def queues(self) -> Sequence[QueueFacts]: ...
    @property
    def runnable(self) -> Mapping[str, Collection[Job]]: ...
    @property
    def waiting_gangs(self) -> frozenset[str]: ...

    @property
    def default_memory_mib(self) -> int | None: ...


class CEFacts(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def managed(self) -> bool: ...
    @property
    def node_capacities(self) -> tuple[Resources, ...]: ...
    @property
    def min_nodes(self) -> int: ...
    @property
    def max_nodes(self) -> int | None: ...
    @property
    def desired_nodes(self) -> int: ...
    @property
    def launch_after_ms(self) -> int: ...

    @property
    def default_memory_mib(self) -> int | None: ...


class NodeFacts(Protocol):
    @property
    def node_id(self) -> str: ...
    @property
    def compute_environment(self) -> str: ...
    @property
    def status(self) -> NodeStatus: ...
    @property
    def capacity(self) -> Resources: ...
    @property
    def idle_since_ms(self) -> int | None: ...
    @property
    def draining(self) -> bool: ...


class QueueFacts(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def compute_environments(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class ScaleCE:
    name: str
    enabled: bool
    shape: Resources
    min_nodes: int
    max_nodes: int
    desired_nodes: int
    launch_after_ms: int = 0
    default_memory_mib: int | None = None
    """Its ``mnp:defaultMemoryMiB`` tag: what a job stating no MEMORY holds on its nodes."""
    head_memory_mib: int | None = None
    """The head's default MEMORY (:func:`~mnp.scheduler.reasons.with_default_memory`)."""

    def holds(self, need: Resources) -> Resources:
        """What ``need`` holds on one of its nodes, a default MEMORY filled in as placement
        fills it, so demand packs jobs as placement will."""
        return with_default_memory(need, self.shape, self.default_memory_mib,
                                   self.head_memory_mib)[0]  # fmt: skip


@dataclass(frozen=True, slots=True)
class LaunchNodes:
    """Launch this many more nodes in the environment: one batched provider launch."""

    compute_environment: str
    count: int


@dataclass(frozen=True, slots=True)
class SetDesired:
    compute_environment: str
    nodes: int


@dataclass(frozen=True, slots=True)
class DrainNodes:
    """Nothing new lands on these nodes; they are stopped once their work ends."""

    compute_environment: str
    node_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RetireNodes:
    """Stop these drained nodes (they hold no work): one batched provider terminate."""

    compute_environment: str
    node_ids: tuple[str, ...]


@dataclass(slots=True)
class _Bins:
    """Room on the environment's coming nodes, for packing demand."""

    shape: Resources
    headroom: int
    free: list[Resources] = field(default_factory=list)
    new: int = 0

    def full(self) -> bool:
        return self.new >= self.headroom

    def place(self, need: Resources) -> None:
        for i, f in enumerate(self.free):
            if need.fits_in(f):
                self.free[i] = f.minus(need)
                return
        self.free.append(self.shape.minus(need))
        self.new += 1

    def place_whole(self, count: int) -> None:
        empty = [i for i, f in enumerate(self.free) if _same(f, self.shape)]
        for i in empty[:count]:
            self.free[i] = Resources(0, 0, 0)
        missing = count - min(count, len(empty))
        self.free.extend(Resources(0, 0, 0) for _ in range(missing))
        self.new += missing


def demand(
    ces: Mapping[str, ScaleCE],
    nodes: Sequence[NodeFacts],
    queues: Sequence[tuple[str, tuple[str, ...]]],
    runnable: Mapping[str, Collection[Job]],
    placed: Collection[str],
    skip: Collection[str] = (),
) -> dict[str, int]:
    """New nodes each environment needs for the RUNNABLE jobs not ``placed`` (by id) this tick;
    ``skip``: jobs not to count (gangs waiting for their last nodes to stop)."""
    bins: dict[str, _Bins] = {}
    for ce in ces.values():
        live = [
            n
            for n in nodes
            if n.compute_environment == ce.name and n.status in _LIVE and not n.draining
        ]
        b = _Bins(ce.shape, max(0, ce.max_nodes - len(live)))
        b.free = [n.capacity for n in live if n.status == NodeStatus.LAUNCHING]
        bins[ce.name] = b
    for q, ce_names in queues:
        targets = [c for c in ce_names if c in ces and ces[c].enabled]
        if not targets:
            continue
        for scanned, job in enumerate(runnable.get(q, ())):
            if scanned >= SCAN_LIMIT or all(bins[c].full() for c in targets):
                break
            if job.job_id in placed or job.job_id in skip:
                continue
            _count(job, targets, ces, bins)
    return {name: b.new for name, b in bins.items() if b.new}


def _count(
    job: Job, targets: list[str], ces: Mapping[str, ScaleCE], bins: dict[str, _Bins]
) -> None:
    spec = job.spec.nodes
    if spec is not None:
        needs = [c.resources for c in spec.containers]
        for c in targets:
            b, ce = bins[c], ces[c]
            if b.new + len(needs) <= b.headroom and all(
                ce.holds(n).fits_in(ce.shape) for n in needs
            ):
                b.place_whole(len(needs))
                return
        return
    for c in targets:
        held = ces[c].holds(job.resources)
        if held.fits_in(ces[c].shape) and not bins[c].full():
            bins[c].place(held)
            return


ScaleAction = LaunchNodes | SetDesired | DrainNodes | RetireNodes


def plan(snap: Snap, placed: Collection[str], lost: Collection[str]) -> list[ScaleAction]:
    """Every MANAGED environment's actions this tick, after placement placed ``placed`` (job
    ids) and ``lost`` nodes were declared lost."""
    ces = {
        c.name: ScaleCE(
            c.name,
            c.enabled,
            c.node_capacities[0],
            c.min_nodes,
            c.max_nodes or 0,
            c.desired_nodes,
            c.launch_after_ms,
            c.default_memory_mib,
            snap.default_memory_mib,
        )
        for c in snap.compute_environments.values()
        if c.managed and c.node_capacities and getattr(c, "ec2", None) is None
    }
    nodes = [n for n in snap.nodes if n.node_id not in lost and n.compute_environment in ces]
    queues = [(q.name, q.compute_environments) for q in snap.queues]
    needed = demand(ces, nodes, queues, snap.runnable, placed, snap.waiting_gangs)
    out: list[ScaleAction] = []
    for ce in ces.values():
        mine = [n for n in nodes if n.compute_environment == ce.name]
        out.extend(scale(ce, mine, needed.get(ce.name, 0), snap.now_ms, snap.scale_in_after_ms))
    return out


def scale(
    ce: ScaleCE, nodes: Sequence[NodeFacts], needed: int, now_ms: int, idle_after_ms: int
) -> list[ScaleAction]:
    """The actions for one MANAGED environment (``nodes``: its live ones), given ``needed``
    new nodes of demand (:func:`demand`)."""
    out: list[ScaleAction] = []
    live = [n for n in nodes if n.status in _LIVE and not n.draining]
    retire = tuple(n.node_id for n in nodes if n.draining and holds_nothing(n))
    if retire:
        out.append(RetireNodes(ce.name, retire))
    want = min(ce.max_nodes, max(ce.min_nodes, len(live) + needed))
    desired = min(ce.max_nodes, max(ce.min_nodes, ce.desired_nodes, want))
    launch = desired - len(live)
    if launch > 0 and now_ms >= ce.launch_after_ms:
        out.append(LaunchNodes(ce.name, launch))
    drain: list[NodeFacts] = []
    if len(live) > ce.max_nodes:  # the most was lowered: the idlest go first
        drain = sorted(live, key=idlest)[: len(live) - ce.max_nodes]
    elif needed == 0 and launch <= 0:
        expired = sorted(
            (n for n in live if n.idle_since_ms is not None
             and now_ms - n.idle_since_ms >= idle_after_ms),
            key=idlest,
        )  # fmt: skip
        drain = expired[: max(0, len(live) - ce.min_nodes)]
    if drain:
        out.append(DrainNodes(ce.name, tuple(n.node_id for n in drain)))
        desired = max(ce.min_nodes, len(live) - len(drain))
    if desired != ce.desired_nodes:
        out.append(SetDesired(ce.name, desired))
    return out


_LIVE = (NodeStatus.ACTIVE, NodeStatus.LAUNCHING)


def holds_nothing(n: NodeFacts) -> bool:
    return n.status == NodeStatus.LAUNCHING or n.idle_since_ms is not None


def idlest(n: NodeFacts) -> tuple[int, float, str]:
    """Idle ones first (longest idle first), then busy ones; LAUNCHING ones before all."""
    if n.status == NodeStatus.LAUNCHING:
        return (0, 0, n.node_id)
    if n.idle_since_ms is not None:
        return (1, n.idle_since_ms, n.node_id)
    return (2, 0, n.node_id)


def _same(a: Resources, b: Resources) -> bool:
    return a.vcpus >= b.vcpus - 1e-9 and a.memory_mib >= b.memory_mib and a.gpus >= b.gpus
