# ~670 lines: the snapshot and action types and the one pure decision that reads them, together.
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
- Queues are evaluated by descending ``priority``; each queue's RUNNABLE jobs in FIFO order,
  or, on a queue with a fair-share policy, lowest weighted share usage first with the capacity
  held back for shares not yet active (:mod:`mnp.scheduler.fairshare`);
  each job tries the queue's ENABLED compute environments in ascending ``order`` and takes the
  least-loaded node there that fits (most vCPUs free, so work spreads over node agents).
  A job that does not fit now is skipped (later, smaller jobs may start: backfill); a job
  that could never fit any node of the queue's environments gets a
  ``MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT`` reason.
- Reservations: the first job of a queue that has been RUNNABLE for ``reserve_after_ms``
  and still does not fit reserves the nodes it needs, those expected free soonest (by the
  timeouts of the work on them; a multi-node job's in one placement group). Until it starts,
  those nodes take only work that ends before the reservation does (a job whose
  ``attemptDurationSeconds`` is known and short enough), so no job starves behind backfill.
- A job stating no MEMORY holds a default (:func:`mnp.scheduler.reasons.with_default_memory`):
  its environment's ``mnp:defaultMemoryMiB`` tag, else the head's default up to its vCPUs'
  share of the node, so memory others state is not handed out again.
- Every RUNNABLE job that waits is told why (``explain``; texts in :mod:`mnp.scheduler.reasons`),
  with a ``SetReason`` only when the text changes: the first ``reasons.DETAILED`` of each
  queue their own cause, the ones behind a bucketed count of the jobs ahead.
- A node silent for longer than its allowance is lost. MANAGED environments scale between
  their minimum and maximum from the demand placement left over (:mod:`mnp.scheduler.scaling`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mnp.scheduler import reasons
from mnp.scheduler.ec2scaling import (
    Ec2Env,
    Ec2Scale,
    LaunchInstances,
    SetDesiredVcpus,
    WaitReason,
)
from mnp.scheduler.ec2scaling import plan as ec2_plan
from mnp.scheduler.fairshare import FairOrder, FairShareView
from mnp.scheduler.reservations import (
    Book,
    FreeIndex,
    Hold,
    held_on,
    reserve_gang,
    reserve_one,
    runnable_since,
)
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
    releases: tuple[tuple[int | None, Resources], ...] = ()
    """What each piece of work on it holds and when it ends at the latest (placement plus
    its timeout and kill grace; None: it has no timeout). Busy room it does not list frees
    at an unknown time."""


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
    default_memory_mib: int | None = None
    """Its ``mnp:defaultMemoryMiB`` tag: what a job stating no MEMORY holds here (None: the
    head's :attr:`Snapshot.default_memory_mib`)."""


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
    fairshare: Mapping[str, FairShareView] = field(default_factory=dict)
    """Per queue with a fair-share policy: its policy and share usage at ``now_ms``."""
    reserve_after_ms: int | None = None
    """A RUNNABLE job waiting this long that does not fit reserves nodes (None: none does)."""
    kill_grace_ms: int = 0
    """How long past its timeout a job may still hold its node (SIGTERM to SIGKILL)."""
    default_memory_mib: int | None = None
    """What a job stating no MEMORY holds, at most its vCPUs' share of the node's memory
    (:func:`mnp.scheduler.reasons.with_default_memory`); None: nothing unless its
    environment's tag says (the head always gives its setting)."""
    explain: bool = False
    """Give every waiting RUNNABLE job its reason (:mod:`mnp.scheduler.reasons`); the head
    always does, placement tables may leave it off. A job that never fits is told in any case."""
    explain_rest: bool = True
    """With ``explain``: also walk on past the point where placing stops, only to tell the
    jobs there why they wait (False: those keep the reason they have; the head walks a deep
    queue so at most once a second, :meth:`mnp.scheduler.loop.Scheduler.snapshot`)."""
    runnable_floors: dict[str, int] | None = None
    """Per queue, a time none of its RUNNABLE jobs has waited since before (the least
    :func:`runnable_since`), as the last pass that read every job's found it; the scheduler
    keeps it between passes and :func:`reconcile` updates it (None: not kept). A pass that
    does not walk the whole queue (``explain_rest`` False) believes it: while the oldest job
    is younger than ``reserve_after_ms``, none can reserve, and the pass need not read past
    the point where placing stops to look for one. A walking pass reads every job anyway, so
    a job that came back with an older time than the floor is found there (within
    :data:`mnp.scheduler.loop.EXPLAIN_EVERY_MS`)."""
    runnable_shapes: Mapping[str, Mapping[Shape, int]] | None = None
    """Per queue, how many of its RUNNABLE jobs have each shape (resources and time limit,
    :func:`shape`; :data:`GANG` for multi-node jobs). A pass that does
    not walk the whole queue, looks for no reservation and has no fair share stops once every
    shape there has failed to fit or has no job left: no job after that point could be placed
    (placing only takes room), so a queue full of jobs that fit nowhere costs its shapes, not
    its jobs."""


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
    resources: Resources | None = None
    """What it holds there when not its own request: a default MEMORY filled in."""
    default_source: str | None = None
    """Where that default came from (shown with the job)."""


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
    return _one_reason(actions)


def _one_reason(actions: list[Action]) -> list[Action]:
    """A job an EC2 environment's chooser explains (:class:`WaitReason`, its own words, e.g.
    ``maxvCpus`` reached) is not also given the placement's reason, so the two never take
    turns rewriting it."""
    chosen = {a.job_id for a in actions if isinstance(a, WaitReason)}
    if not chosen:
        return actions
    return [
        a
        for a in actions
        if not (isinstance(a, SetReason) and a.job_id in chosen and reasons.is_waiting(a.reason))
    ]


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


class _Tell:
    """A queue's :class:`reasons.Explainer`, writing what it says as ``SetReason``."""

    def __init__(self, queue: str, fair: bool, actions: list[Action], on: bool) -> None:
        self.explainer = reasons.Explainer(queue, fair, on)
        self.actions = actions

    @property
    def detailed(self) -> bool:
        return self.explainer.detailed

    def wait(self, job: Job, text: str | None) -> None:
        said = self.explainer.wait(job.status_reason, text)
        if said is not None:
            self.actions.append(SetReason(job.job_id, said))


def _place(snap: Snapshot, actions: list[Action], lost: set[str]) -> None:
    if not any(snap.runnable.get(q.name) for q in snap.queues):
        return  # nothing waits to be placed: no node's room need be looked at
    free: dict[str, Resources] = {}
    by_ce: dict[str, list[str]] = {}
    for n in snap.nodes:
        if n.status == NodeStatus.ACTIVE and n.node_id not in lost:
            free[n.node_id] = n.free
            by_ce.setdefault(n.compute_environment, []).append(n.node_id)
    index = FreeIndex(by_ce, free)
    book = Book(snap, free, index)
    caps = {n.node_id: n.capacity for n in snap.nodes}
    live: dict[str, int] = {}
    for n in snap.nodes:
        if n.node_id not in lost and n.status in (NodeStatus.ACTIVE, NodeStatus.LAUNCHING):
            live[n.compute_environment] = live.get(n.compute_environment, 0) + 1
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
        growing = next(
            (c.name for c in ces
             if c.enabled and c.managed and live.get(c.name, 0) < (c.max_nodes or 0)),
            None,
        )  # fmt: skip
        blocked: dict[Shape, str] = {}
        never: dict[tuple[float, int, int], str | None] = {}
        view = snap.fairshare.get(queue.name)
        fair = FairOrder(view, jobs) if view is not None else None
        tell = _Tell(queue.name, fair is not None, actions, snap.explain)
        stop = reasons.env_disabled(queue.name, [c.name for c in ces]) if not usable else None
        reserved = False  # one reservation per queue and pass: its oldest waiting job's
        late = True  # once the queue is full, the first aged job still gets to reserve
        full = False  # ``stop`` is for capacity (not a DISABLED queue or the share reserve)
        after = snap.reserve_after_ms
        floors = snap.runnable_floors
        if after is not None and floors is not None and not snap.explain_rest:
            floor = floors.get(queue.name)
            if floor is not None and snap.now_ms - floor < after:
                after = None  # no job has waited long enough to reserve: none is looked for
        least: int | None = None  # the least runnable_since read, while every job's is read
        every = after is not None and floors is not None
        walked = True  # not left early
        shapes = snap.runnable_shapes.get(queue.name) if snap.runnable_shapes else None
        if shapes is None or fair is not None or after is not None or snap.explain_rest:
            shapes = None  # every job is looked at (see Snapshot.runnable_shapes)
        left = dict(shapes) if shapes is not None else None  # per shape, jobs not looked at
        for job in fair if fair is not None else jobs:
            # cheap tests first: most jobs stop here
            if after is not None and not reserved and (stop is None or (late and full)):
                since = runnable_since(job)
                if least is None or since < least:
                    least = since
                aged = snap.now_ms - since >= after
            else:
                aged = every = False
            if stop is not None and aged and late and full:
                late = False  # go on: it fails to fit, then reserves
            elif stop is not None:
                # the walk past the point where placing stopped, only to keep reasons: every
                # waiting job comes here, so it reads each thing once (no property chains)
                if not (snap.explain and snap.explain_rest):
                    if after is None or reserved or not full:
                        walked = False
                        break  # placing is over here, and nothing is to be said
                    continue
                spec = job.spec
                if spec.nodes is not None and full:
                    tell.wait(job, reasons.gang(spec.nodes.num_nodes, usable[0], 0))
                    continue
                if spec.nodes is None:  # a job that never fits says so wherever it is
                    need = spec.container.resources  # a job with no nodes: its spec's
                    size = (need.vcpus, need.memory_mib, need.gpus)
                    try:
                        reason = never[size]
                    except KeyError:  # once per shape
                        reason = never[size] = _never_fits(need, capacities)
                    if reason is not None:
                        if job.status_reason != reason:
                            actions.append(SetReason(job.job_id, reason))
                        continue
                explainer = tell.explainer
                said = explainer.wait(
                    job.status_reason, stop if explainer.waiting < reasons.DETAILED else None
                )
                if said is not None:
                    actions.append(SetReason(job.job_id, said))
                continue
            if fair is not None and not fair.fits(job):
                if fair.room < 1e-9:
                    stop = reasons.share_reserved(queue.name)  # held for shares not active yet
                tell.wait(job, reasons.share_reserved(queue.name))
                continue
            if job.spec.nodes is not None:
                if job.job_id in snap.waiting_gangs:
                    tell.wait(job, reasons.gang_settling())
                    continue
                why = _place_gang(job, ces, usable, by_ce, free, snap, actions, book)
                if why is None:
                    if fair is not None:
                        fair.placed(job)
                    continue
                if why.startswith(NEVER_FITS):
                    if job.status_reason != why:
                        actions.append(SetReason(job.job_id, why))
                    continue
                if aged:
                    hold = reserve_gang(job, usable, by_ce, caps, snap, book)
                    if hold is not None:
                        reserved = True
                        why = reasons.reserving(hold.nodes, hold.start_ms)
                tell.wait(job, why)
                continue
            need = job.resources
            key = shape(job)  # (vcpus, memory, gpus, time limit)
            size = (need.vcpus, need.memory_mib, need.gpus)
            if size not in never:
                never[size] = _never_fits(need, capacities)
            reason = never[size]
            if reason is not None:
                if job.status_reason != reason:
                    actions.append(SetReason(job.job_id, reason))
                if left is not None and _none_fit(left, blocked, never):
                    walked = False
                    break
                continue
            end = book.end_of(job)
            if left is not None:
                left[key] = left.get(key, 0) - 1
            if key in blocked and not aged:
                tell.wait(job, blocked[key])
                continue
            fit = _best_fit(job, need, usable, by_ce, caps, book, end, snap)
            if isinstance(fit, str):
                up = growing is not None and fit.startswith(reasons.SHORT)
                text = reasons.scaling(growing) if up and growing else fit
                blocked[key] = text
                if aged:
                    hold = reserve_one(job, need, usable, by_ce, snap, book)
                    if hold is not None:
                        reserved = True
                        text = reasons.reserving(hold.nodes, hold.start_ms)
                tell.wait(job, text)
                if not any((index.most_free(c) or 0.0) >= 1e-9 for c in usable):
                    stop = text if not text.startswith(reasons.RESERVING) else blocked[key]
                    full = True
                elif left is not None and _none_fit(left, blocked, never):
                    walked = False
                    break  # every shape queued here failed: no later job can be placed
                continue
            node, held, source = fit
            book.took(node, held, end)
            actions.append(Place(job.job_id, node, held if source else None, source))
            if fair is not None:
                fair.placed(job)
            if left is not None and left[key] <= 0 and _none_fit(left, blocked, never):
                walked = False
                break  # the last job of its shape, and every other shape failed
        if walked and every and floors is not None:  # every job's time was read
            if least is None:
                floors.pop(queue.name, None)
            else:
                floors[queue.name] = least


Shape = tuple[float, int, int, int | None] | tuple[str]
"""What placement tells RUNNABLE jobs apart by (:func:`shape`)."""
GANG: Shape = ("gang",)


def shape(job: Job) -> Shape:
    """A RUNNABLE job's resources and time limit, the key a pass keeps what failed to fit by
    (a multi-node job: :data:`GANG`, placed its own way)."""
    if job.spec.nodes is not None:
        return GANG
    need = job.resources
    return (need.vcpus, need.memory_mib, need.gpus, job.spec.timeout_seconds)


def _none_fit(
    left: Mapping[Shape, int],
    blocked: Mapping[Shape, str],
    never: Mapping[tuple[Any, ...], str | None],
) -> bool:
    """Whether every shape queued has failed to fit in this pass, never fits, or has no job
    left to look at (``left``: per shape, the jobs not looked at yet)."""
    return all(
        n <= 0 or k in blocked or never.get(k[:3]) is not None
        for k, n in left.items()
    )


def _place_gang(
    job: Job,
    ces: list[CEView],
    usable: list[str],
    by_ce: dict[str, list[str]],
    free: dict[str, Resources],
    snap: Snapshot,
    actions: list[Action],
    book: Book,
) -> str | None:
    """All of a multi-node job's nodes at once, in one environment (its placement group), on
    idle nodes only (nodes are single-tenant); or nothing, so no gang holds partial capacity.
    Returns None when placed, else why not (a ``NEVER_FITS`` reason when it never can)."""
    spec = job.spec.nodes
    assert spec is not None  # callers check
    needs = [c.resources for c in spec.containers]
    known = [c for c in ces if c.max_nodes is not None]
    if known and all((c.max_nodes or 0) < spec.num_nodes for c in known):
        most = max(c.max_nodes or 0 for c in known)
        return (
            f"{NEVER_FITS} - needs {spec.num_nodes} nodes, "
            f"the largest compute environment has {most}"
        )
    capacities = [cap for c in ces for cap in c.node_capacities]
    for need in needs:
        never = _never_fits(need, capacities)
        if never is not None:
            return never
    caps = {n.node_id: n.capacity for n in snap.nodes}
    groups = {n.node_id: n.placement_group for n in snap.nodes}
    with_ssh = {n.node_id for n in snap.nodes if n.ssh}
    end = book.end_of(job)
    hold: Hold | None = None
    most_idle = (0, usable[0] if usable else "")
    # the biggest needs choose first, each the smallest idle node that fits it
    order = sorted(range(len(needs)), key=lambda i: _size(needs[i]), reverse=True)
    for ce in usable:
        by_group: dict[str, list[str]] = {}
        for n in by_ce.get(ce, ()):
            if n in with_ssh and _is_idle(free[n], caps[n]):
                h = book.blocker(n, end, job.job_id)
                if h is not None:
                    hold = hold or h
                    continue
                by_group.setdefault(groups[n], []).append(n)
        for idle in by_group.values():
            most_idle = max(most_idle, (len(idle), ce))
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
                    book.took(n, free[n], end)
                actions.append(PlaceGang(job.job_id, tuple(chosen[i] for i in range(len(needs)))))
                return None
    if hold is not None:
        return reasons.held(hold.job_id, hold.nodes, hold.start_ms)
    return reasons.gang(spec.num_nodes, most_idle[1], most_idle[0])


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
    job: Job,
    need: Resources,
    ces: list[str],
    by_ce: dict[str, list[str]],
    caps: Mapping[str, Resources],
    book: Book,
    end: int | None,
    snap: Snapshot,
) -> tuple[str, Resources, str | None] | str:
    """What :func:`_scan_fit` answers, read from the book's :class:`FreeIndex`: each
    environment's nodes from the most vCPUs free down, the first that fits and is not held
    for a reservation wins (ties on free vCPUs go to the lowest node id, as in the scan). Only
    a job that fits nowhere is handed to the scan, for its reason."""
    index = book.index
    if index is None:
        return _scan_fit(job, need, ces, by_ce, caps, book, end, snap)
    views = snap.compute_environments
    for ce in ces:
        view = views[ce]
        best: tuple[float, str, Resources, str | None] | None = None
        for vcpus, nodes in index.fitting(ce, need.vcpus):
            key = need.vcpus - vcpus
            if best is not None and key != best[0]:
                break  # only a level whose key rounds to the same value can tie
            for node_id in nodes:
                if best is not None and node_id >= best[1]:
                    break
                held, source = held_on(need, node_id, view, snap, caps)
                if (
                    held.fits_in(book.free[node_id])
                    and book.blocker(node_id, end, job.job_id) is None
                ):
                    best = (key, node_id, held, source)
                    break
        if best is not None:
            return best[1:]
    return _scan_fit(job, need, ces, by_ce, caps, book, end, snap)


def _scan_fit(
    job: Job,
    need: Resources,
    ces: list[str],
    by_ce: dict[str, list[str]],
    caps: Mapping[str, Resources],
    book: Book,
    end: int | None,
    snap: Snapshot,
) -> tuple[str, Resources, str | None] | str:
    """The node to place ``job`` on, what it holds there and where a default MEMORY came
    from; or why none: held by a reservation, else what it is short of and where."""
    views = snap.compute_environments
    hold: Hold | None = None
    roomiest: tuple[tuple[float, int, int], str, Resources, Resources] | None = None
    for ce in ces:
        best: tuple[float, str] | None = None
        held_at: dict[str, tuple[Resources, str | None]] = {}
        for node_id in by_ce.get(ce, ()):
            f = book.free[node_id]
            held, source = held_on(need, node_id, views[ce], snap, caps)
            if held.fits_in(f):
                h = book.blocker(node_id, end, job.job_id)
                if h is not None:
                    hold = hold or h
                    continue
                key = (need.vcpus - f.vcpus, node_id)
                held_at[node_id] = (held, source)
                if best is None or key < best:
                    best = key
            elif roomiest is None or _size(f) > roomiest[0]:
                roomiest = (_size(f), ce, f, held)
        if best is not None:
            return (best[1], *held_at[best[1]])
    if hold is not None:
        return reasons.held(hold.job_id, hold.nodes, hold.start_ms)
    if roomiest is None:
        return reasons.short(ces[0] if ces else "(none)", need, None)
    return reasons.short(roomiest[1], roomiest[3], roomiest[2])
