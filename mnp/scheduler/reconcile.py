# ~455 lines: the snapshot and action types and the one pure decision that reads them, together.
"""Scheduling as a pure function: ``reconcile(snapshot) -> list[Action]``.

No I/O and no mutation happens here; the head node's loop gathers a :class:`Snapshot`, calls
:func:`reconcile`, and applies the actions (``mnp.scheduler.loop``). Tests drive it with tables of
snapshots.

Policy, in AWS Batch's terms:

- SUBMITTED jobs become PENDING (unmet dependencies, array parents) or RUNNABLE.
- A PENDING job becomes RUNNABLE when its dependencies are satisfied and FAILED when they no
  longer can be. Each dependency has a condition (AWS's: SUCCEEDED; mnp's: ended, FAILED, or
  started); with ``dependency_mode`` ``ALL`` every one must hold, with ``ANY`` one is enough.
  ``singleton`` jobs also wait for the earlier jobs of their name to end.
- An array with ``array_max_running`` keeps children PENDING (``JobArrayTaskLimit``) while
  that many are RUNNABLE, STARTING or RUNNING; lower indices go first.
- Queues are evaluated by descending ``priority``; each queue's RUNNABLE jobs in FIFO order;
  each job tries the queue's ENABLED compute environments in ascending ``order`` and takes the
  least-loaded node there that fits (most vCPUs free, so work spreads over node agents).
  A job that does not fit now is skipped (later, smaller jobs may start: backfill); a job
  that could never fit any node of the queue's environments gets a
  ``MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT`` reason.
- A node silent for longer than its allowance is lost. MANAGED environments scale between
  their minimum and maximum from the demand placement left over (:mod:`mnp.scheduler.scaling`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from mnp.scheduler.ec2scaling import (
    Ec2Env,
    Ec2Scale,
    LaunchInstances,
    SetDesiredVcpus,
    WaitReason,
)
from mnp.scheduler.ec2scaling import plan as ec2_plan
from mnp.scheduler.scaling import (
    LaunchNodes as LaunchNodes,
)
from mnp.scheduler.scaling import ScaleAction, plan
from mnp.spec.definitions import Condition
from mnp.spec.environments import NodeStatus
from mnp.spec.jobs import DEPENDENCY_PREFIX, NEVER_FITS, Job
from mnp.spec.resources import Resources
from mnp.spec.states import JobStatus

STARTED = frozenset({JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED})


@dataclass(frozen=True, slots=True)
class NodeView:
    node_id: str
    compute_environment: str
    status: NodeStatus
    capacity: Resources
    free: Resources
    last_seen_ms: int
    """Last heartbeat (or launch time while LAUNCHING)."""
    placement_group: str = ""
    """Nodes of one placement group sit close together; a gang never spans two."""
    ssh: bool = True
    """The node serves SSH, which multi-node jobs need."""
    idle_since_ms: int | None = None
    """Since when it holds no work (None: busy, or not registered yet)."""
    draining: bool = False


@dataclass(frozen=True, slots=True)
class CEView:
    name: str
    enabled: bool
    desired_nodes: int
    node_capacities: tuple[Resources, ...]
    """Every node shape this environment can have; empty when unknown."""
    max_nodes: int | None = None
    """How many nodes it can have at once (a gang larger than this never fits); None: unknown."""
    managed: bool = False
    """Its nodes are launched and stopped by the head (:mod:`mnp.scheduler.scaling`)."""
    min_nodes: int = 0
    launch_after_ms: int = 0
    """No launch before this (backing off after a failed one)."""
    settling: bool = False
    """CREATING or UPDATING: this tick takes the change in (:class:`SettleStatus`)."""
    ec2: Ec2Scale | None = None
    """An EC2 environment's sizing (:mod:`mnp.scheduler.ec2scaling`), sized in vCPUs."""
    launch_error: str | None = None
    """Why its last launch failed, while it backs off (None: it did not fail)."""


@dataclass(frozen=True, slots=True)
class QueueView:
    name: str
    priority: int
    compute_environments: tuple[str, ...]
    """In the order they are tried."""


@dataclass(slots=True)
class Snapshot:
    now_ms: int
    queues: Sequence[QueueView]
    compute_environments: Mapping[str, CEView]
    nodes: Sequence[NodeView]
    submitted: Sequence[Job]
    """SUBMITTED jobs, oldest first."""
    pending: Sequence[Job]
    """PENDING jobs whose dependencies may have changed (array parents excluded)."""
    dependency_status: Mapping[str, JobStatus | None]
    """Status of every dependency of ``submitted`` and ``pending`` jobs (None: unknown id)."""
    runnable: Mapping[str, Collection[Job]]
    """Per queue name, RUNNABLE jobs in FIFO order (iterated lazily: placement stops early
    once the queue's environments are full, so a long backlog costs little)."""
    lost_after_ms: int
    launch_timeout_ms: int
    waiting_gangs: frozenset[str] = frozenset()
    """RUNNABLE multi-node jobs whose last attempt's nodes have not all stopped yet."""
    scale_in_after_ms: int = 60_000
    """A MANAGED environment's node idle this long is drained (down to its minimum)."""
    array_room: Mapping[str, int] = field(default_factory=dict)
    """Per array parent with ``array_max_running`` (of a ``pending`` child): how many more
    children may become RUNNABLE now."""


@dataclass(frozen=True, slots=True)
class Advance:
    job_id: str
    status: JobStatus
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ExpandArray:
    job_id: str


@dataclass(frozen=True, slots=True)
class Place:
    job_id: str
    node_id: str


@dataclass(frozen=True, slots=True)
class PlaceGang:
    """Hold whole nodes for every node of a multi-node parallel job (index order)."""

    job_id: str
    node_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HoldForLimit:
    """A child whose dependencies are met stays PENDING: its array is at its running limit.
    Look at it again when a sibling ends."""

    job_id: str
    parent_id: str


@dataclass(frozen=True, slots=True)
class SetReason:
    job_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class LoseNode:
    node_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class SettleStatus:
    """A CREATING or UPDATING environment has been taken in: VALID (or INVALID)."""

    compute_environment: str


Action = (
    Advance
    | ExpandArray
    | Place
    | PlaceGang
    | SetReason
    | LoseNode
    | HoldForLimit
    | SettleStatus
    | ScaleAction
    | LaunchInstances
    | SetDesiredVcpus
    | WaitReason
)


def reconcile(snap: Snapshot) -> list[Action]:
    actions: list[Action] = []
    lost = _nodes(snap, actions)
    _dependencies(snap, actions)
    _place(snap, actions, lost)
    _scale(snap, actions, lost)
    return actions


def _scale(snap: Snapshot, actions: list[Action], lost: set[str]) -> None:
    """Settle new or updated environments; scale the MANAGED ones, after placement."""
    actions.extend(SettleStatus(c.name) for c in snap.compute_environments.values() if c.settling)
    placed = {a.job_id for a in actions if isinstance(a, Place | PlaceGang)}
    actions.extend(plan(snap, placed, lost))
    envs = {
        c.name: Ec2Env(c.name, c.enabled, c.ec2, c.launch_after_ms, c.launch_error)
        for c in snap.compute_environments.values()
        if c.managed and c.ec2 is not None
    }
    if envs:
        actions.extend(ec2_plan(
            envs, [n for n in snap.nodes if n.node_id not in lost],
            [(q.name, q.compute_environments) for q in snap.queues], snap.runnable,
            placed | snap.waiting_gangs, snap.now_ms, snap.scale_in_after_ms,
        ))  # fmt: skip


def _nodes(snap: Snapshot, actions: list[Action]) -> set[str]:
    """Lose silent nodes; keep a fixed-size (not ``managed``) environment at its size."""
    lost: set[str] = set()
    live: dict[str, int] = {}
    for n in snap.nodes:
        if n.status == NodeStatus.ACTIVE and snap.now_ms - n.last_seen_ms > snap.lost_after_ms:
            silent = (snap.now_ms - n.last_seen_ms) / 1000
            actions.append(LoseNode(n.node_id, f"stopped heartbeating ({silent:.1f} s silent)"))
            lost.add(n.node_id)
        elif (
            n.status == NodeStatus.LAUNCHING
            and snap.now_ms - n.last_seen_ms > snap.launch_timeout_ms
        ):
            actions.append(LoseNode(n.node_id, "did not register after launch"))
            lost.add(n.node_id)
        elif n.status in (NodeStatus.ACTIVE, NodeStatus.LAUNCHING):
            live[n.compute_environment] = live.get(n.compute_environment, 0) + 1
    for ce in snap.compute_environments.values():
        missing = ce.desired_nodes - live.get(ce.name, 0)
        if missing > 0 and not ce.managed:
            actions.append(LaunchNodes(ce.name, missing))
    return lost


def _dependencies(snap: Snapshot, actions: list[Action]) -> None:
    room = dict(snap.array_room)
    for job in snap.submitted:
        if job.is_array_parent:
            actions.append(ExpandArray(job.job_id))
            continue
        verdict = _dependency_verdict(job, snap.dependency_status)
        if verdict is None:
            actions.append(Advance(job.job_id, JobStatus.RUNNABLE))
        else:
            actions.append(Advance(job.job_id, JobStatus.PENDING))
            if verdict.status == JobStatus.FAILED:
                actions.append(verdict)
    for job in snap.pending:
        verdict = _dependency_verdict(job, snap.dependency_status)
        if verdict is None:
            parent = job.parent_id
            if parent is not None and parent in room:
                if room[parent] <= 0:
                    actions.append(HoldForLimit(job.job_id, parent))
                    continue
                room[parent] -= 1
            actions.append(Advance(job.job_id, JobStatus.RUNNABLE))
        elif verdict.status == JobStatus.FAILED:
            actions.append(verdict)


def _dependency_verdict(job: Job, status: Mapping[str, JobStatus | None]) -> Advance | None:
    """None: the job may run. Advance(FAILED): it never can. Advance(PENDING): wait.

    Each dependency is met, not yet met, or can never be met (its condition cannot hold any
    more, or the job does not exist). ``ALL`` fails on the first that never can be; ``ANY``
    fails when none can be any more. Singleton predecessors must end in any case (an
    unknown one counts as ended).
    """
    for earlier in job.spec.extras.singleton_after:
        s = status.get(earlier)
        if s is not None and not s.terminal:
            return Advance(job.job_id, JobStatus.PENDING)
    deps = job.dependencies()
    if not deps:
        return None
    any_mode = job.spec.extras.dependency_mode == "ANY"
    failures: list[str] = []
    waiting = False
    for dep, condition in deps:
        s = status.get(dep)
        if s is None:
            failures.append(f"{DEPENDENCY_PREFIX}NOT_FOUND - dependency {dep} does not exist")
        elif _met(condition, s):
            if any_mode:
                return None
            continue
        elif _never(condition, s):
            failures.append(_never_reason(dep, condition, s))
        else:
            waiting = True
        if failures and not any_mode:
            return Advance(job.job_id, JobStatus.FAILED, failures[0])
    if any_mode and not waiting:
        reason = failures[0] if len(failures) == 1 else f"{failures[0]} (and every other)"
        return Advance(job.job_id, JobStatus.FAILED, reason)
    return Advance(job.job_id, JobStatus.PENDING) if waiting else None


def _met(condition: Condition, s: JobStatus) -> bool:
    if condition is Condition.OK:
        return s == JobStatus.SUCCEEDED
    if condition is Condition.NOT_OK:
        return s == JobStatus.FAILED
    if condition is Condition.ANY:
        return s.terminal
    return s in STARTED


def _never(condition: Condition, s: JobStatus) -> bool:
    return (condition is Condition.OK and s == JobStatus.FAILED) or (
        condition is Condition.NOT_OK and s == JobStatus.SUCCEEDED
    )


def _never_reason(dep: str, condition: Condition, s: JobStatus) -> str:
    if condition is Condition.NOT_OK:
        return (
            f"{DEPENDENCY_PREFIX}SUCCEEDED - dependency {dep} succeeded"
            " (this job runs after a failure)"
        )
    return f"{DEPENDENCY_PREFIX}FAILED - dependency {dep} failed"


def _place(snap: Snapshot, actions: list[Action], lost: set[str]) -> None:
    free: dict[str, Resources] = {}
    by_ce: dict[str, list[str]] = {}
    for n in snap.nodes:
        if n.status == NodeStatus.ACTIVE and n.node_id not in lost:
            free[n.node_id] = n.free
            by_ce.setdefault(n.compute_environment, []).append(n.node_id)
    for queue in sorted(snap.queues, key=lambda q: (-q.priority, q.name)):
        jobs = snap.runnable.get(queue.name, ())
        if not jobs:
            continue
        ces = [
            snap.compute_environments[c]
            for c in queue.compute_environments
            if c in snap.compute_environments
        ]
        capacities = [cap for c in ces for cap in c.node_capacities]
        usable = [c.name for c in ces if c.enabled]
        blocked: set[tuple[float, int, int]] = set()
        never: dict[tuple[float, int, int], str | None] = {}
        for job in jobs:
            if job.spec.nodes is not None:
                if job.job_id in snap.waiting_gangs:
                    continue
                _place_gang(job, ces, usable, by_ce, free, snap, actions)
                continue
            need = job.resources
            shape = (need.vcpus, need.memory_mib, need.gpus)
            if shape not in never:
                never[shape] = _never_fits(need, capacities)
            reason = never[shape]
            if reason is not None:
                if job.status_reason != reason:
                    actions.append(SetReason(job.job_id, reason))
                continue
            if shape in blocked:
                continue
            node = _best_fit(need, usable, by_ce, free)
            if node is None:
                blocked.add(shape)
                if not any(free[n].vcpus >= 1e-9 for c in usable for n in by_ce.get(c, ())):
                    break  # nothing left anywhere in this queue's environments
                continue
            free[node] = free[node].minus(need)
            actions.append(Place(job.job_id, node))


def _place_gang(
    job: Job,
    ces: list[CEView],
    usable: list[str],
    by_ce: dict[str, list[str]],
    free: dict[str, Resources],
    snap: Snapshot,
    actions: list[Action],
) -> None:
    """All of a multi-node job's nodes at once, in one environment (its placement group), on
    idle nodes only (nodes are single-tenant); or nothing, so no gang holds partial capacity."""
    spec = job.spec.nodes
    assert spec is not None  # callers check
    needs = [c.resources for c in spec.containers]
    known = [c for c in ces if c.max_nodes is not None]
    if known and all((c.max_nodes or 0) < spec.num_nodes for c in known):
        most = max(c.max_nodes or 0 for c in known)
        reason = (
            f"{NEVER_FITS} - needs {spec.num_nodes} nodes, "
            f"the largest compute environment has {most}"
        )
        if job.status_reason != reason:
            actions.append(SetReason(job.job_id, reason))
        return
    capacities = [cap for c in ces for cap in c.node_capacities]
    for need in needs:
        never = _never_fits(need, capacities)
        if never is not None:
            if job.status_reason != never:
                actions.append(SetReason(job.job_id, never))
            return
    caps = {n.node_id: n.capacity for n in snap.nodes}
    groups = {n.node_id: n.placement_group for n in snap.nodes}
    with_ssh = {n.node_id for n in snap.nodes if n.ssh}
    # the biggest needs choose first, each the smallest idle node that fits it
    order = sorted(range(len(needs)), key=lambda i: _size(needs[i]), reverse=True)
    for ce in usable:
        by_group: dict[str, list[str]] = {}
        for n in by_ce.get(ce, ()):
            if n in with_ssh and _is_idle(free[n], caps[n]):
                by_group.setdefault(groups[n], []).append(n)
        for idle in by_group.values():
            idle.sort(key=lambda n: (_size(caps[n]), n))
            chosen: dict[int, str] = {}
            for i in order:
                taken = set(chosen.values())
                pick = next((n for n in idle if n not in taken and needs[i].fits_in(caps[n])), None)
                if pick is None:
                    break
                chosen[i] = pick
            if len(chosen) == len(needs):
                for n in chosen.values():
                    free[n] = Resources(0, 0, 0)
                actions.append(PlaceGang(job.job_id, tuple(chosen[i] for i in range(len(needs)))))
                return


def _size(r: Resources) -> tuple[float, int, int]:
    return (r.vcpus, r.memory_mib, r.gpus)


def _is_idle(free: Resources, capacity: Resources) -> bool:
    return (
        free.vcpus >= capacity.vcpus - 1e-9
        and free.memory_mib >= capacity.memory_mib
        and free.gpus >= capacity.gpus
    )


def _never_fits(need: Resources, capacities: list[Resources]) -> str | None:
    """The reason ``need`` fits no node shape at all (named against the largest), or None."""
    if not capacities or any(need.fits_in(c) for c in capacities):
        return None
    largest = max(capacities, key=lambda c: (c.vcpus, c.memory_mib, c.gpus))
    biggest = Resources(
        max(c.vcpus for c in capacities),
        max(c.memory_mib for c in capacities),
        max(c.gpus for c in capacities),
    )
    reason = need.shortfall(biggest) or need.shortfall(largest) or "no single node has all of it"
    return f"{NEVER_FITS} - {reason}"


def _best_fit(
    need: Resources, ces: list[str], by_ce: dict[str, list[str]], free: dict[str, Resources]
) -> str | None:
    for ce in ces:
        best: tuple[float, str] | None = None
        for node_id in by_ce.get(ce, ()):
            f = free[node_id]
            if need.fits_in(f):
                key = (need.vcpus - f.vcpus, node_id)
                if best is None or key < best:
                    best = key
        if best is not None:
            return best[1]
    return None
