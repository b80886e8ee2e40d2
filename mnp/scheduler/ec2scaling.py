"""EC2 environments' scaling, the pure part: which instances to launch for the RUNNABLE
demand placement left over, and which idle ones to let go.

An EC2 environment's nodes are instances of several types, so it is sized in vCPUs, as AWS
Batch sizes it: between ``minvCpus`` and ``maxvCpus``, aiming at ``desiredvCpus``. Each tick,
per environment (after :func:`mnp.scheduler.reconcile` placed what fits the nodes up):

- **Demand**: each RUNNABLE job not placed is counted in the first enabled EC2 environment of
  its queue that has an instance type it fits; a single-node job first takes room left on
  the environment's LAUNCHING nodes (they will take work), a multi-node job whole empty
  LAUNCHING nodes; the rest goes to :func:`mnp.ec2.choose.choose` — each gang on its own
  (its instances are launched together, of one type), then every single-node job at once.
- **Launch**: what was chosen, and more of the cheapest type while the environment is below
  ``minvCpus`` or ``desiredvCpus``; nothing while it backs off after a failed launch.
- **Scale in**: with no demand, nodes idle for ``scale_in_after_ms`` are drained (idlest
  first) as long as ``minvCpus`` stays covered; drained nodes that hold nothing are stopped.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from mnp.ec2.catalog import Catalogue, InstanceType
from mnp.ec2.choose import Decision, Need, choose
from mnp.scheduler import scaling
from mnp.scheduler.scaling import DrainNodes, RetireNodes, holds_nothing, idlest
from mnp.spec.environments import ComputeEnvironment, NodeStatus
from mnp.spec.jobs import Job
from mnp.spec.resources import Resources

SCAN_LIMIT = 10_000
"""RUNNABLE jobs looked at per queue, at most."""
MAX_FILL = 1_000
"""Instances launched at most in one tick to reach ``minvCpus``/``desiredvCpus``."""


@dataclass(frozen=True, slots=True)
class Ec2Scale:
    """What an EC2 environment's scaling reads (its ``computeResources``, the head's
    catalogue and price table)."""

    types: tuple[InstanceType, ...]
    """Its ``instanceTypes``, expanded by the catalogue."""
    strategy: str
    min_vcpus: int
    max_vcpus: int
    desired_vcpus: int
    spot: bool = False
    bid_percentage: int | None = None
    prices: Mapping[str, float] | None = None


@dataclass(frozen=True, slots=True)
class InstanceLaunch:
    instance_type: str
    count: int
    capacity: Resources
    """One instance's capacity (the node's)."""
    gang: str | None = None
    """The multi-node job these instances are for (launched together), or None."""


@dataclass(frozen=True, slots=True)
class LaunchInstances:
    """Launch these instances in the environment: one batched provider launch."""

    compute_environment: str
    launches: tuple[InstanceLaunch, ...]


@dataclass(frozen=True, slots=True)
class WaitReason:
    """Why a RUNNABLE job gets no instance this tick (the chooser's words), for its
    ``statusReason``: ``CAPACITY:WAITING - maxvCpus 8 reached (8 vCPUs running or launching)``."""

    job_id: str
    reason: str


WAIT_PREFIX = "CAPACITY:WAITING - "


@dataclass(frozen=True, slots=True)
class SetDesiredVcpus:
    compute_environment: str
    vcpus: int


class NodeFacts(scaling.NodeFacts, Protocol):
    """What is read of each node (:class:`mnp.scheduler.reconcile.NodeView`)."""

    @property
    def free(self) -> Resources: ...


@dataclass(frozen=True, slots=True)
class Ec2Env:
    """One EC2 environment as the tick sees it."""

    name: str
    enabled: bool
    scale: Ec2Scale
    launch_after_ms: int = 0
    launch_error: str | None = None
    """Why its last launch failed (while it backs off, its waiting jobs say so)."""


def node_capacity(t: InstanceType) -> Resources:
    return Resources(float(t.vcpus), t.memory_mib, t.gpus)


def _fits(need: Resources, t: InstanceType) -> bool:
    return need.fits_in(node_capacity(t))


def _gang_need(job: Job) -> Need:
    spec = job.spec.nodes
    assert spec is not None
    rs = [c.resources for c in spec.containers]
    return Need(
        job.job_id,
        max(max(r.vcpus for r in rs), 1e-9),
        max(r.memory_mib for r in rs),
        max(r.gpus for r in rs),
        nodes=spec.num_nodes,
    )


def _single_need(job: Job) -> Need:
    r = job.resources
    return Need(job.job_id, max(r.vcpus, 1e-9), r.memory_mib, r.gpus)


def _as_resources(n: Need) -> Resources:
    return Resources(n.vcpus, n.memory_mib, n.gpus)


def demand(
    ces: Mapping[str, Ec2Scale],
    enabled: Collection[str],
    launching: Mapping[str, list[Resources]],
    queues: Sequence[tuple[str, tuple[str, ...]]],
    runnable: Mapping[str, Collection[Job]],
    skip: Collection[str],
) -> dict[str, tuple[list[Need], list[Need]]]:
    """Per environment: (gangs, single-node jobs) that need new instances. ``launching``:
    each environment's LAUNCHING nodes' free room (consumed here); ``skip``: jobs placed
    this tick, and gangs waiting for their last nodes to stop."""
    out: dict[str, tuple[list[Need], list[Need]]] = {c: ([], []) for c in ces}
    free = {c: list(v) for c, v in launching.items()}
    for q, ce_names in queues:
        targets = [c for c in ce_names if c in ces and c in enabled]
        if not targets:
            continue
        for scanned, job in enumerate(runnable.get(q, ())):
            if scanned >= SCAN_LIMIT:
                break
            if job.job_id in skip:
                continue
            gang = job.spec.nodes is not None
            need = _gang_need(job) if gang else _single_need(job)
            r = _as_resources(need)
            target = next((c for c in targets if any(_fits(r, t) for t in ces[c].types)), None)
            if target is None:
                continue  # it fits no instance type: reconcile says so (never fits)
            room = free.setdefault(target, [])
            if gang:
                empty = [i for i, f in enumerate(room) if r.fits_in(f) and f.vcpus >= r.vcpus]
                if len(empty) >= need.nodes:
                    for i in empty[: need.nodes]:
                        room[i] = Resources(0, 0, 0)
                    continue
                out[target][0].append(need)
                continue
            for i, f in enumerate(room):
                if r.fits_in(f):
                    room[i] = f.minus(r)
                    break
            else:
                out[target][1].append(need)
    return out


@functools.lru_cache(maxsize=16)
def _catalogue(types: tuple[InstanceType, ...]) -> tuple[Catalogue, tuple[str, ...]]:
    """An environment's types as the chooser reads them: made once, not per decision."""
    return Catalogue(types), tuple(t.name for t in types)


def _decide(ce: Ec2Scale, needs: Sequence[Need], running: int) -> Decision:
    catalogue, names = _catalogue(ce.types)
    return choose(
        needs,
        catalogue,
        names,
        ce.strategy,
        ce.max_vcpus,
        running,
        prices=ce.prices or {},
        spot=ce.spot,
        bid_percentage=ce.bid_percentage,
    )


def launches_for(
    ce: Ec2Scale,
    gangs: Sequence[Need],
    singles: Sequence[Need],
    live_vcpus: int,
    waiting: list[WaitReason] | None = None,
) -> list[InstanceLaunch]:
    """The instances to launch for one environment: each gang's (one type), the single
    jobs', then the cheapest type's up to ``minvCpus`` and ``desiredvCpus``. The jobs the
    chooser launches nothing for are added to ``waiting``, with its reason."""
    by_name = {t.name: t for t in ce.types}
    out: list[InstanceLaunch] = []
    running = live_vcpus
    decisions: list[Decision] = []
    for g in gangs:
        d = _decide(ce, [g], running)
        decisions.append(d)
        for name, count in d.pairs():
            out.append(InstanceLaunch(name, count, node_capacity(by_name[name]), g.key))
        running += d.vcpus
    if singles:
        d = _decide(ce, singles, running)
        decisions.append(d)
        for name, count in d.pairs():
            out.append(InstanceLaunch(name, count, node_capacity(by_name[name])))
        running += d.vcpus
    if waiting is not None:
        waiting.extend(WaitReason(w.key, WAIT_PREFIX + w.reason) for d in decisions
                       for w in d.waiting)  # fmt: skip
    floor = min(ce.max_vcpus, max(ce.min_vcpus, ce.desired_vcpus))
    for _ in range(MAX_FILL):
        if running >= floor:
            break
        d = _decide(ce, [Need("minvCpus", 1, 0)], running)
        if not d.launches or running + d.vcpus > ce.max_vcpus:
            break
        name = d.launches[0].instance_type
        out.append(InstanceLaunch(name, 1, node_capacity(by_name[name])))
        running += d.vcpus
    return _merged(out)


def _merged(launches: list[InstanceLaunch]) -> list[InstanceLaunch]:
    """Same type, same gang (or none): one entry."""
    merged: dict[tuple[str, str | None], InstanceLaunch] = {}
    for launch in launches:
        key = (launch.instance_type, launch.gang)
        have = merged.get(key)
        merged[key] = launch if have is None else InstanceLaunch(
            launch.instance_type, have.count + launch.count, launch.capacity, launch.gang
        )
    return list(merged.values())


_LIVE = (NodeStatus.ACTIVE, NodeStatus.LAUNCHING)


def plan(
    envs: Mapping[str, Ec2Env],
    nodes: Sequence[NodeFacts],
    queues: Sequence[tuple[str, tuple[str, ...]]],
    runnable: Mapping[str, Collection[Job]],
    skip: Collection[str],
    now_ms: int,
    idle_after_ms: int,
) -> list[LaunchInstances | SetDesiredVcpus | DrainNodes | RetireNodes | WaitReason]:
    """Every EC2 environment's actions this tick (see the module). ``nodes``: the live and
    draining nodes, those declared lost this tick left out; ``skip``: jobs placed this tick
    and gangs waiting for their last nodes to stop."""
    mine = [n for n in nodes if n.compute_environment in envs]
    launching = {
        c: [n.free for n in mine
            if n.compute_environment == c and n.status == NodeStatus.LAUNCHING and not n.draining]
        for c in envs
    }  # fmt: skip
    enabled = {c for c, e in envs.items() if e.enabled}
    wanted = demand({c: e.scale for c, e in envs.items()}, enabled, launching, queues,
                    runnable, skip)  # fmt: skip
    out: list[LaunchInstances | SetDesiredVcpus | DrainNodes | RetireNodes | WaitReason] = []
    for env in envs.values():
        ns = [n for n in mine if n.compute_environment == env.name]
        live = [n for n in ns if n.status in _LIVE and not n.draining]
        live_vcpus = sum(int(n.capacity.vcpus) for n in live)
        retire = tuple(n.node_id for n in ns if n.draining and holds_nothing(n))
        if retire:
            out.append(RetireNodes(env.name, retire))
        gangs, singles = wanted.get(env.name, ([], []))
        launches: list[InstanceLaunch] = []
        waits: list[WaitReason] = []
        if env.enabled and now_ms >= env.launch_after_ms:
            launches = launches_for(env.scale, gangs, singles, live_vcpus, waits)
        elif env.launch_error is not None:  # backing off: the jobs waiting say what failed
            waits = [WaitReason(n.key, WAIT_PREFIX + env.launch_error) for n in (*gangs, *singles)]
        if launches:
            out.append(LaunchInstances(env.name, tuple(launches)))
        out.extend(waits)
        desired = live_vcpus + sum(int(x.capacity.vcpus) * x.count for x in launches)
        drain: list[str] = []
        left = live_vcpus
        if live_vcpus > env.scale.max_vcpus:  # the most was lowered: the idlest go first
            for n in sorted(live, key=idlest):
                if left <= env.scale.max_vcpus:
                    break
                drain.append(n.node_id)
                left -= int(n.capacity.vcpus)
        elif not gangs and not singles and not launches:
            expired = sorted(
                (n for n in live if n.idle_since_ms is not None
                 and now_ms - n.idle_since_ms >= idle_after_ms),
                key=idlest,
            )  # fmt: skip
            for n in expired:
                if left - int(n.capacity.vcpus) >= env.scale.min_vcpus:
                    drain.append(n.node_id)
                    left -= int(n.capacity.vcpus)
        if drain:
            out.append(DrainNodes(env.name, tuple(drain)))
            desired = left
        if desired != env.scale.desired_vcpus:
            out.append(SetDesiredVcpus(env.name, desired))
    return out


def scale_of(
    ce: ComputeEnvironment, catalogue: Catalogue, prices: Mapping[str, float]
) -> Ec2Scale:
    """An EC2 environment's :class:`Ec2Scale` from its ``computeResources`` (validated at
    creation and update) and the head's catalogue and prices."""
    cr = ce.doc.get("computeResources") or {}
    low, high = ce.vcpu_bounds()
    kind = str(cr.get("type") or "EC2")
    strategy = str(cr.get("allocationStrategy") or "BEST_FIT")
    bid = cr.get("bidPercentage")
    return Ec2Scale(
        types=tuple(catalogue.expand(cr.get("instanceTypes") or ["optimal"])),
        strategy=strategy,
        min_vcpus=low,
        max_vcpus=high,
        desired_vcpus=ce.desired_vcpus,
        spot=kind == "SPOT",
        bid_percentage=bid if isinstance(bid, int) and not isinstance(bid, bool) else None,
        prices=prices,
    )
