"""The head node's in-memory state, its indexes, and the one path every status change takes.

Single-threaded: everything runs on the head node's event loop. Active (non-terminal) jobs
live in memory; a job that reaches SUCCEEDED/FAILED is written out and dropped from memory
at the next :meth:`HeadState.flush`, so memory grows with active work, not with history.
"""

from __future__ import annotations

import heapq
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from mnp.config import HeadConfig
from mnp.scheduler.fairshare import ShareLedger, SharePolicy
from mnp.scheduler.reasons import env_default_memory, with_default_memory
from mnp.scheduler.reconcile import Shape, shape
from mnp.spec.arns import name_from_arn
from mnp.spec.definitions import JobDefinition
from mnp.spec.environments import (
    ComputeEnvironment,
    JobQueue,
    Node,
    NodeStatus,
    SchedulingPolicy,
)
from mnp.spec.jobs import ARRAY_LIMIT_REASON, Attempt, Job, array_child_id, node_job_id
from mnp.spec.protocol import Assignment, Kill, Ready, attempt_id
from mnp.spec.resources import Resources
from mnp.spec.states import HistoryEntry, JobStatus, transition
from mnp.store.sqlite import Store

Clock = Callable[[], int]
log = logging.getLogger("mnp.scheduler.state")

HOLDS_A_SLOT = frozenset({JobStatus.RUNNABLE, JobStatus.STARTING, JobStatus.RUNNING})
"""Statuses that count against an array's running limit."""
PLACED = frozenset({JobStatus.STARTING, JobStatus.RUNNING})
TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED})
SHARE_USAGE_KEY = "fairshare_usage"
"""Meta key: the fair-share ledger (:class:`ShareLedger`), written with the jobs it counts."""


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class NodeRuntime:
    """What the head tracks about a node beyond its stored record."""

    running: dict[str, Job] = field(default_factory=dict)
    """attempt id → job placed there (STARTING or RUNNING)."""
    used: Resources = field(default_factory=lambda: Resources(0, 0, 0))
    outbox: list[Assignment | Kill | Ready] = field(default_factory=list)
    unacked: dict[str, tuple[Assignment, int]] = field(default_factory=dict)
    """Assignments sent but not yet confirmed started, with when they were last sent."""
    last_seq: int = -1
    gang_of: str | None = None
    """The MNP job holding this whole node, if any."""
    idle_since_ms: int | None = None
    """Since when the node holds no work (kept by the scheduler's snapshot; None: busy)."""
    holds: dict[str, Resources] = field(default_factory=dict)
    """attempt id → what it holds when not its job's own request (a default MEMORY)."""
    version: int = 0
    """Counts the changes to what the node holds, so what the scheduler derives from it each
    tick (the node's view and releases) is built again only when it changed."""

    def note_idle(self, now_ms: int, registered: bool) -> None:
        """Keep :attr:`idle_since_ms`: from the first look that finds a registered node
        holding nothing (no attempt, no gang); None while it holds something."""
        if not registered or self.running or self.gang_of is not None:
            self.idle_since_ms = None
        elif self.idle_since_ms is None:
            self.idle_since_ms = now_ms

    # --- the one place a node's capacity is marked busy or free ------------------------------
    def reserve(self, aid: str, job: Job, held: Resources | None = None) -> None:
        """Attempt ``aid`` of ``job`` runs here: it holds the job's resources (or ``held``,
        its request with a default MEMORY) until :meth:`release`. An MNP node's attempt holds
        nothing more: its gang already holds the whole node (:meth:`reserve_whole`)."""
        self.running[aid] = job
        self.version += 1
        if not job.is_node:
            if held is not None:
                self.holds[aid] = held
            self.used = self.used.plus(held if held is not None else job.resources)

    def release(self, aid: str) -> None:
        """Attempt ``aid`` ended here: what it held comes free and it is no longer awaited.
        Idempotent: an attempt already released (or never here) changes nothing."""
        job = self.running.pop(aid, None)
        held = self.holds.pop(aid, None)
        self.version += 1
        if job is not None and not job.is_node:
            self.used = self.used.minus(held if held is not None else job.resources)
        self.unacked.pop(aid, None)

    def reserve_whole(self, capacity: Resources, gang: str | None) -> None:
        """MNP job ``gang`` holds this whole node (of ``capacity``) for its attempt."""
        self.used = replace(capacity)  # a copy: the node's capacity changes on re-register
        self.gang_of = gang
        self.version += 1

    def release_whole(self, gang: str | None) -> None:
        """MNP job ``gang`` lets go of this node; a node another gang holds is left held."""
        if self.gang_of == gang:
            self.used = Resources(0, 0, 0)
            self.gang_of = None
            self.version += 1


HELD_USER = "JobHeldUser"
HELD_ADMIN = "JobHeldAdmin"
"""Slurm's reasons for a held job: held by its owner, or by an admin (only an admin releases)."""


class HeadState:
    def __init__(self, config: HeadConfig, store: Store, clock: Clock = wall_ms) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.on_wake: Callable[[], None] = lambda: None
        self.on_node_work: Callable[[str], None] = lambda node_id: None
        self.on_status: Callable[[Job, JobStatus], None] = lambda job, old: None
        """Told of every status change (the job, its old status) once the job is updated:
        metrics and events observe here; it only counts and enqueues, it decides nothing."""
        self.ended_count = 0
        """Jobs that reached SUCCEEDED or FAILED since this head started (throughput)."""
        self._forget()

    def _forget(self) -> None:
        """Empty every in-memory table (before :meth:`restore` fills them from the store)."""
        self.definitions: dict[str, list[JobDefinition]] = {}
        self.queues: dict[str, JobQueue] = {}
        self.ces: dict[str, ComputeEnvironment] = {}
        self.nodes: dict[str, Node] = {}
        self.node_rt: dict[str, NodeRuntime] = {}
        self.active: dict[str, Job] = {}
        self.submitted: dict[str, Job] = {}
        self.runnable: dict[str, dict[str, Job]] = {}
        self.runnable_shapes: dict[str, Counter[Shape]] = {}
        """Per queue, how many RUNNABLE jobs of each :func:`shape` it holds: a pass between
        walks stops once every shape there has failed to fit."""
        self.pending_dirty: set[str] = set()
        self.waiters: dict[str, set[str]] = {}
        self.array_held: dict[str, list[int]] = {}
        """Array parent → indices of PENDING children held by its running limit (a heap)."""
        self.held: set[str] = set()
        """The ids of those children."""
        self.dirty: dict[str, Job] = {}
        self.dirty_nodes: set[str] = set()
        self.dirty_ces: set[str] = set()
        self.finished: list[str] = []
        self.policies: dict[str, SchedulingPolicy] = {}
        """Scheduling policies by name (the service keeps them here as it changes them)."""
        self.ledger = ShareLedger()
        """Decayed vCPU-time of the ended attempts of fair-share queues, per share."""
        self.ledger_dirty = False
        self.share_jobs: dict[tuple[str, str], int] = {}
        """(queue, share) → how many of its jobs have not ended: fair share's active shares,
        kept as jobs come and end, so a pass does not walk every active job for them."""
        self.live_shares: dict[tuple[str, str, int], dict[float, int]] = {}
        """(queue, share, placement time) → vCPUs → how many live attempts (STARTING or
        RUNNING, not a parent's) of that share placed then hold that many: what fair share
        charges them so far, reckoned once per placement time (an exact count per vCPU
        figure, so adding and removing attempts leaves no rounding behind)."""
        self._live_key: dict[str, tuple[tuple[str, str, int], float]] = {}
        """job id → where its live attempt is counted in :attr:`live_shares`."""

    def _queue_runnable(self, job: Job) -> None:
        queued = self.runnable.setdefault(job.queue, {})
        if job.job_id not in queued:
            self._count_shape(job, +1)
        queued[job.job_id] = job

    def _count_shape(self, job: Job, delta: int) -> None:
        shapes = self.runnable_shapes.setdefault(job.queue, Counter())
        key = shape(job)
        shapes[key] += delta
        if shapes[key] <= 0:
            del shapes[key]

    # --- the one path for status changes ---------------------------------------------------
    def set_status(self, job: Job, target: JobStatus, reason: str | None = None) -> None:
        """Apply a transition and keep every index (queues, parents, waiters) consistent."""
        now = self.clock()
        old = job.status
        transition(job, target, now, reason)
        job_id = job.job_id
        self.dirty[job_id] = job
        if old == JobStatus.SUBMITTED:
            self.submitted.pop(job_id, None)
        elif (
            old == JobStatus.RUNNABLE
            and self.runnable.get(job.queue, {}).pop(job_id, None) is not None
        ):
            self._count_shape(job, -1)
        if target == JobStatus.RUNNABLE and job.node_index is None:
            # MNP nodes are placed with their gang, never from the queue
            self._queue_runnable(job)
        elif target == JobStatus.PENDING and not job.is_array_parent:
            self.pending_dirty.add(job_id)
        ended = target in TERMINAL
        if ended:
            job.stopped_at = now
            self.pending_dirty.discard(job_id)
            self.finished.append(job_id)
            self.ended_count += 1
        was_placed = old in PLACED
        if was_placed and target not in PLACED:
            self._charge_share(job, now)
            self._live_off(job_id)
        elif not was_placed and target in PLACED:
            self._live_on(job)
        if ended and old not in TERMINAL:
            self._count_share(job, -1)
        self.on_status(job, old)
        if ended or target == JobStatus.RUNNING:
            # RUNNING too: a job waiting for this one to start (AFTER_START) may go on; the
            # others go back to waiting at the next tick
            waiters = self.waiters.pop(job_id, None)
            if waiters:
                self.pending_dirty.update(waiters)
            self.on_wake()
        if job.parent_id is not None:
            if ended and old in HOLDS_A_SLOT:
                self.release_held(job.parent_id)
            self._child_changed(job, old, target, now)

    def placed_need(self, job: Job, node: Node) -> tuple[Resources | None, str | None]:
        """What ``job`` holds on ``node`` when not its own request (None: its own), and where
        its default MEMORY came from: as :func:`~mnp.scheduler.reconcile.reconcile` placed
        it (:func:`with_default_memory`), worked out again when the head restarts."""
        if job.is_node:
            return None, None
        ce = self.ces.get(node.compute_environment)
        tag = env_default_memory(ce.doc.get("tags") if ce is not None else None)
        held, source = with_default_memory(
            job.resources, node.capacity, tag, self.config.default_memory_mib
        )
        return (held, source) if source is not None else (None, None)

    def share_policy(self, queue: str) -> SharePolicy | None:
        """The fair-share policy ``queue`` is scheduled by; None: a FIFO queue."""
        q = self.queues.get(queue)
        if q is None or q.scheduling_policy_arn is None:
            return None
        policy = self.policies.get(name_from_arn(q.scheduling_policy_arn, "scheduling-policy"))
        return SharePolicy.from_doc(policy.fairshare) if policy is not None else None

    def _charge_share(self, job: Job, now: int) -> None:
        """The job's attempt stopped holding its capacity: on a fair-share queue its share is
        charged the vCPU-time from placement to the attempt's end (an MNP job is charged
        through its nodes, an array through its children)."""
        attempt = job.current_attempt
        if attempt is None or job.is_mnp_parent or job.is_array_parent:
            return
        policy = self.share_policy(job.queue)
        if policy is None:
            return
        end = attempt.stopped_at if attempt.stopped_at is not None else now
        self.ledger.credit(
            job.queue,
            job.spec.share_identifier or "",
            job.resources.vcpus,
            attempt.placed_at,
            end,
            policy.decay_seconds,
        )
        self.ledger_dirty = True

    def _count_share(self, job: Job, delta: int) -> None:
        key = (job.queue, job.spec.share_identifier or "")
        n = self.share_jobs.get(key, 0) + delta
        if n > 0:
            self.share_jobs[key] = n
        else:
            self.share_jobs.pop(key, None)

    def _live_on(self, job: Job) -> None:
        """The job's current attempt holds its capacity now: count it in
        :attr:`live_shares` (a parent is charged through its children and nodes)."""
        attempt = job.current_attempt
        if attempt is None or job.is_mnp_parent or job.is_array_parent:
            return
        self._live_off(job.job_id)
        key = (job.queue, job.spec.share_identifier or "", attempt.placed_at)
        vcpus = job.resources.vcpus
        counts = self.live_shares.setdefault(key, {})
        counts[vcpus] = counts.get(vcpus, 0) + 1
        self._live_key[job.job_id] = (key, vcpus)

    def _live_off(self, job_id: str) -> None:
        was = self._live_key.pop(job_id, None)
        if was is None:
            return
        key, vcpus = was
        counts = self.live_shares[key]
        if counts[vcpus] > 1:
            counts[vcpus] -= 1
            return
        del counts[vcpus]
        if not counts:
            del self.live_shares[key]

    def is_held(self, job: Job) -> bool:
        """Held by ``scontrol hold`` (or ``sbatch -H``), itself or as a child of a held array."""
        if job.held is not None:
            return True
        parent = self.active.get(job.parent_id or "") if job.array_index is not None else None
        return parent is not None and parent.held is not None

    def held_reason(self, job: Job) -> str:
        parent = self.active.get(job.parent_id or "") if job.array_index is not None else None
        kind = job.held or (parent.held if parent is not None else None) or HELD_USER
        return f"{kind}: held until released (scontrol release)"

    def hold(self, child: Job) -> None:
        """Keep a PENDING array child waiting for a free slot of its array's running limit."""
        if child.parent_id is None or child.array_index is None:
            return
        if child.job_id not in self.held:
            self.held.add(child.job_id)
            heapq.heappush(self.array_held.setdefault(child.parent_id, []), child.array_index)
        if child.status_reason != ARRAY_LIMIT_REASON:
            child.status_reason = ARRAY_LIMIT_REASON
            self.mark(child)

    def release_held(self, parent_id: str) -> None:
        """A slot of the array's limit came free: look again at its lowest held child."""
        heap = self.array_held.get(parent_id)
        while heap:
            child_id = array_child_id(parent_id, heapq.heappop(heap))
            self.held.discard(child_id)
            child = self.active.get(child_id)
            if child is not None and child.status == JobStatus.PENDING:
                self.pending_dirty.add(child.job_id)
                self.on_wake()
                break
        if not heap:
            self.array_held.pop(parent_id, None)

    def _child_changed(self, child: Job, old: JobStatus, new: JobStatus, now: int) -> None:
        parent = self.active.get(child.parent_id or "")
        if parent is None or parent.status_summary is None:
            return
        summary = parent.status_summary
        summary[old.value] = summary.get(old.value, 0) - 1
        summary[new.value] = summary.get(new.value, 0) + 1
        parent.summary_updated_at = now
        self.mark(parent)
        size = parent.spec.array_size or 0
        done = summary.get("SUCCEEDED", 0) + summary.get("FAILED", 0)
        if done == size and not parent.status.terminal:
            failed = summary.get("FAILED", 0)
            if failed:
                reason = (
                    parent.status_reason
                    if (parent.is_cancelled or parent.is_terminated)
                    else (f"ARRAY:CHILD_FAILED - {failed} of {size} child jobs failed")
                )
                self.set_status(parent, JobStatus.FAILED, reason)
            else:
                self.set_status(parent, JobStatus.SUCCEEDED, "All child jobs succeeded")

    def mark(self, job: Job) -> None:
        self.dirty[job.job_id] = job

    def add_job(self, job: Job) -> None:
        """A new job (or one loaded at start) joins the in-memory indexes."""
        was = self.active.get(job.job_id)
        if was is not None and not was.status.terminal:
            self._count_share(was, -1)
        self._live_off(job.job_id)
        self.active[job.job_id] = job
        self.mark(job)
        if not job.status.terminal:
            self._count_share(job, +1)
        if job.status in PLACED:
            self._live_on(job)
        if job.status == JobStatus.SUBMITTED:
            self.submitted[job.job_id] = job
        elif job.status == JobStatus.PENDING and not job.is_array_parent:
            self.pending_dirty.add(job.job_id)
        elif job.status == JobStatus.RUNNABLE and job.node_index is None:
            self._queue_runnable(job)

    def add_child(
        self,
        parent: Job,
        status: JobStatus,
        now: int,
        *,
        array_index: int | None = None,
        node_index: int | None = None,
    ) -> Job:
        """Make child ``array_index`` (an array's) or node ``node_index`` (an MNP job's) of
        ``parent``, created at ``now`` in ``status`` and sharing its spec; add it
        (:meth:`add_job`) and return it."""
        job_id = (
            array_child_id(parent.job_id, array_index)
            if array_index is not None
            else node_job_id(parent.job_id, node_index or 0)
        )
        child = Job(
            job_id=job_id,
            spec=parent.spec,
            status=status,
            created_at=now,
            parent_id=parent.job_id,
            array_index=array_index,
            node_index=node_index,
            history=[HistoryEntry(status, now, None)],
        )
        self.add_job(child)
        return child

    def add_node(self, node: Node) -> NodeRuntime:
        """A node (new, registered or loaded) joins with nothing placed on it yet."""
        self.nodes[node.node_id] = node
        rt = self.node_rt[node.node_id] = NodeRuntime()
        return rt

    def restore(self, assignment: Callable[[Job, Attempt], Assignment]) -> list[Job]:
        """Rebuild memory from the store (start and restart): definitions, queues,
        environments, nodes and the active jobs; each live attempt holds its node's capacity
        again and a STARTING one waits to be confirmed (``assignment`` rebuilds what is
        re-sent). Returns the active jobs loaded; nothing is left marked changed."""
        store = self.store
        self.policies = {p.name: p for p in store.load_policies()}
        saved = store.get_meta(SHARE_USAGE_KEY)
        self.ledger = ShareLedger.from_doc(json.loads(saved)) if saved else ShareLedger()
        for d in store.load_definitions():
            self.definitions.setdefault(d.name, []).append(d)
        self.queues = {q.name: q for q in store.load_queues()}
        self.ces = {c.name: c for c in store.load_ces()}
        for n in store.load_nodes():
            self.add_node(n)
        jobs = store.load_active_jobs()
        for job in jobs:
            self.add_job(job)
            attempt = job.current_attempt
            if job.status not in (JobStatus.STARTING, JobStatus.RUNNING) or attempt is None:
                continue
            if job.is_mnp_parent:  # its attempts record its main node's; its nodes run them
                continue
            rt = self.node_rt.get(attempt.node_id)
            if rt is None:
                continue
            aid = attempt_id(job.job_id, attempt.number)
            rt.reserve(aid, job, self.placed_need(job, self.nodes[attempt.node_id])[0])
            if job.is_node:  # an MNP node's gang holds the whole node
                rt.reserve_whole(self.nodes[attempt.node_id].capacity, job.parent_id)
            if job.status == JobStatus.STARTING:
                rt.unacked[aid] = (assignment(job, attempt), 0)
        self.dirty.clear()
        return list(jobs)

    def reload(self, assignment: Callable[[Job, Attempt], Assignment]) -> list[Job]:
        """After a failed write: forget everything in memory and :meth:`restore` it from the
        store, so memory equals disk again. What was not on disk is gone, as after a restart:
        unsaved transitions, queued messages (an assignment of an attempt the store does not
        have never leaves), wake-ups (every PENDING job is looked at again). Only what the
        nodes were last seen doing is kept (their heartbeat times: not a decision, an
        observation, and dropping it could declare live nodes lost)."""
        seen = {n.node_id: n.last_heartbeat_ms for n in self.nodes.values()}
        self._forget()
        jobs = self.restore(assignment)
        for node_id, at in seen.items():
            node = self.nodes.get(node_id)
            if node is not None:
                node.last_heartbeat_ms = max(node.last_heartbeat_ms, at)
        return jobs

    def job(self, job_id: str) -> Job | None:
        """An active job from memory, or any job from the store."""
        return self.active.get(job_id) or self.store.load_job(job_id)

    def status_of(self, job_id: str) -> JobStatus | None:
        job = self.active.get(job_id)
        return job.status if job is not None else self.store.job_status(job_id)

    # --- persistence -------------------------------------------------------------------------
    def flush(self) -> None:
        """Write every changed job and node in one transaction; drop finished jobs from memory.

        Raises :class:`~mnp.errors.StorageError` when the store cannot be written; the store
        has then called its ``on_failure`` (the scheduler's reload), so memory is what the
        store holds and nothing of the failed flush is acknowledged to anyone."""
        if not (self.dirty or self.dirty_nodes or self.dirty_ces or self.ledger_dirty):
            return  # the intake's jobs wait for the pass that takes them in (or a read)
        with self.store.transaction():
            self.store.save_jobs(self.dirty.values())
            if self.ledger_dirty:
                self.store.set_meta(SHARE_USAGE_KEY, json.dumps(self.ledger.to_doc()))
            for node_id in self.dirty_nodes:
                self.store.save_node(self.nodes[node_id])
            for name in self.dirty_ces:
                if name in self.ces:  # a deleted one is gone from the store already
                    self.store.save_ce(self.ces[name])
        self.dirty.clear()
        self.dirty_nodes.clear()
        self.dirty_ces.clear()
        self.ledger_dirty = False
        for job_id in self.finished:
            job = self.active.get(job_id)
            if job is not None and job.status.terminal:
                del self.active[job_id]
        self.finished.clear()

    def mark_node(self, node: Node) -> None:
        self.dirty_nodes.add(node.node_id)

    def retire_old_nodes(self, now_ms: int) -> list[str]:
        """Forget the LOST and STOPPED nodes whose last sign of life is more than the store's
        ``node_retention`` before ``now_ms``, as the store does when it opens
        (:meth:`~mnp.store.sqlite.Store.prune_nodes`), but while the head runs: a head that
        lives through thousands of short-lived nodes would otherwise look at each of them at
        every tick. A node that still holds work here, or has changes not yet saved, is kept.
        Their records go in one transaction; returns their ids."""
        cutoff = now_ms - self.store.node_retention
        gone = [
            n.node_id
            for n in self.nodes.values()
            if n.status in (NodeStatus.LOST, NodeStatus.STOPPED)
            and 0 < n.last_seen_ms < cutoff
            and n.node_id not in self.dirty_nodes
            and _holds_nothing(self.node_rt.get(n.node_id))
        ]
        if not gone:
            return []
        with self.store.transaction():
            self.store.delete_nodes(gone)
        for node_id in gone:
            del self.nodes[node_id]
            self.node_rt.pop(node_id, None)
        log.info("forgot %d LOST/STOPPED nodes last seen over %d ms ago", len(gone),
                 self.store.node_retention)  # fmt: skip
        return gone

    def mark_ce(self, ce: ComputeEnvironment) -> None:
        """The environment changed (its scaling or status): saved with the next flush."""
        self.dirty_ces.add(ce.name)


def _holds_nothing(rt: NodeRuntime | None) -> bool:
    """No attempt, message or gang of the head's is on the node."""
    return rt is None or not (rt.running or rt.outbox or rt.unacked or rt.gang_of)
