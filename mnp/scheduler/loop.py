# ~415 lines: the tick and everything it applies (attempts, arrays, kills, node actions).
"""The scheduling loop: the tick (snapshot → :func:`reconcile` → apply), attempts placed and
ended, and restarts (the nodes themselves: :mod:`mnp.scheduler.fleet`).

What the nodes' agents send (register, poll, report) comes in through
:mod:`mnp.nodes.sessions`, which calls in here. Everything runs on the head's event loop and
mutates :class:`HeadState`; the tick flushes it to the store before any node is told of new
work, so what an agent or client is told next is already durable.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from mnp.build.container import attempt_container, attempt_shared_fs
from mnp.build.environment import ce_environment, job_environment
from mnp.build.outputs import attempt_files, safe_file_name
from mnp.errors import StorageError
from mnp.scheduler.attempts import (
    AttemptEnd,
    AttemptRun,
    attempt_outcome,
    new_attempt,
    record_end,
)
from mnp.scheduler.control import Control
from mnp.scheduler.ec2scaling import (
    LaunchInstances,
    SetDesiredVcpus,
    WaitReason,
    node_capacity,
)
from mnp.scheduler.fairshare import FairShareView, interval_usage
from mnp.scheduler.fleet import Fleet
from mnp.scheduler.gangs import Gangs
from mnp.scheduler.hosts import HostKeeper
from mnp.scheduler.jobkeys import job_keys
from mnp.scheduler.lag import LagGuard
from mnp.scheduler.reasons import DETAILED, default_memory, env_default_memory, is_waiting
from mnp.scheduler.reconcile import (
    Action,
    Advance,
    CEView,
    ExpandArray,
    HoldForLimit,
    LaunchNodes,
    LoseNode,
    NodeView,
    Place,
    PlaceGang,
    QueueView,
    SetReason,
    SettleStatus,
    Snapshot,
    reconcile,
)
from mnp.scheduler.scaling import DrainNodes, RetireNodes, SetDesired
from mnp.scheduler.state import HOLDS_A_SLOT, HeadState, NodeRuntime
from mnp.scheduler.timelimits import Expire, FrontWatch, front_of, queue_limits, watch
from mnp.spec.environments import (
    CEStatus,
    ComputeEnvironment,
    ComputeEnvironmentType,
    Node,
    NodeStatus,
    State,
)
from mnp.spec.jobs import Attempt, Job
from mnp.spec.protocol import Assignment, Kill, Ready, attempt_id
from mnp.spec.resources import Resources
from mnp.spec.states import JobStatus

Releases = tuple[tuple[int | None, Resources], ...]
"""A node's work: what each piece holds and when it ends at the latest (None: not known)."""

log = logging.getLogger("mnp.scheduler.loop")
PASSES_TIMED = 3
"""Passes whose deciding time :attr:`Scheduler.pass_seconds` takes the median of."""
LIVE_STATUSES = (JobStatus.STARTING, JobStatus.RUNNING)
DEFAULTS_LOGGED = 256
"""How many distinct default-MEMORY statements are remembered as logged at INFO (a few per
compute environment; past this many, each new one is logged at INFO every time)."""


EXPLAIN_EVERY_MS = 1_000
"""How often (at most) a pass walks a deep queue only to keep its waiting jobs' reasons."""
EXPLAIN_ALWAYS_UP_TO = DETAILED
"""Up to how many waiting jobs every pass tells each why (the ones given their own cause)."""
RETIRE_EVERY_MS = 600_000
"""How often (at most) a tick looks for LOST and STOPPED nodes past their retention."""


class Scheduler:
    """The head's scheduler: one per head, driven by :meth:`tick` (single-threaded)."""

    def __init__(self, state: HeadState, head_url: str) -> None:
        self.s = state
        self.head_url = head_url
        self.gangs = Gangs(state, self)
        state.store.on_failure = self.reload  # a failed write: memory goes back to the store
        self.control = Control()
        """Kills and Readies until their nodes show they took effect."""
        self.fleet = Fleet(state, self, head_url)
        """The nodes the head launches, loses and stops."""
        self.hosts = HostKeeper(state, self.fleet)
        """The SSH hosts of UNMANAGED environments: bring-up, retries, drain."""
        self.lag: LagGuard | None = None
        """The head's loop-lag guard (set by the head; unit tests drive the clock by hand, and
        every jump of a fake clock would look like a stall): observed before each decision,
        it keeps stalled time from counting as node silence."""
        self.time_limits = FrontWatch()
        """Each queue's front job and since when its reason has held (its queue's
        ``jobStateTimeLimitActions``, :mod:`mnp.scheduler.timelimits`)."""
        self._released: dict[str, tuple[NodeRuntime, int, int, Releases]] = {}
        """Per node, its releases (:meth:`_releases`) as of its runtime's version and the
        kill grace: built again only for the nodes whose work changed since the last tick."""
        self._defaults_logged: set[str] = set()
        """The default-MEMORY statements already logged at INFO (:meth:`_log_default_memory`)."""
        self._views: dict[str, tuple[NodeRuntime, tuple[object, ...], NodeView]] = {}
        """Per node, its last :class:`NodeView` and what it was built from: a tick builds
        views only for the nodes that changed (work placed or ended, a heartbeat)."""
        self._explained_at: int | None = None
        """When (epoch ms) a pass last told every waiting job why (:meth:`_explain_now`)."""
        self._runnable_floors: dict[str, int] = {}
        """Per queue, a time no RUNNABLE job of it has waited since before (kept by the passes:
        :attr:`mnp.scheduler.reconcile.Snapshot.runnable_floors`)."""
        self.explain_every_ms = EXPLAIN_EVERY_MS
        """How often a deep queue is walked for its reasons (0: at every pass)."""
        self._retired_at: int | None = None
        """When (epoch ms) :meth:`retire_old_nodes` last looked."""
        self._pass_seconds: deque[float] = deque(maxlen=PASSES_TIMED)
        """How long the last passes took to decide (snapshot and reconcile, no writes)."""
        self.placed = False
        """Whether the last pass placed work (slots are turning over: keep ticking often)."""

    # --- the scheduling tick ------------------------------------------------------------------
    def tick(self) -> None:
        """Gather a snapshot, reconcile, apply, flush, then tell nodes about new work.

        A tick that raises changes nothing and loses nothing: memory is rebuilt from the store
        (:meth:`reload`; a failed write has done so already), which puts every PENDING job up
        for a look again, so the wake-ups the tick had taken are there for the next one."""
        try:
            self._tick()
        except StorageError:
            raise
        except Exception:
            self.reload()
            raise

    def _tick(self) -> None:
        if self.lag is not None:  # a stall just ended is credited before anyone is lost
            self.lag.observe()
        self.gangs.check_hangs()
        self.hosts.tick()
        self.retire_old_nodes()
        started = time.perf_counter()
        snap = self.snapshot()
        actions = reconcile(snap)
        self._pass_seconds.append(time.perf_counter() - started)
        self.placed = any(isinstance(a, Place | PlaceGang) for a in actions)
        touched = self.apply(actions)
        self.enforce_time_limits(snap.fairshare)  # after the pass: its reasons are current
        for job in (*snap.pending, *snap.submitted):
            if job.status != JobStatus.PENDING:
                continue
            for dep in job.dependency_ids():
                status = self.s.status_of(dep)
                if status != snap.dependency_status.get(dep):
                    self.s.pending_dirty.add(job.job_id)  # changed while we looked: look again
                elif status is not None and not status.terminal:
                    self.s.waiters.setdefault(dep, set()).add(job.job_id)
        self.s.flush()
        for node_id in touched:
            self.s.on_node_work(node_id)
        if any(isinstance(a, Advance | ExpandArray) for a in actions):
            self.s.on_wake()  # newly RUNNABLE jobs can be placed in the next tick

    @property
    def pass_seconds(self) -> float:
        """What a pass costs now: the median of the last :data:`PASSES_TIMED` passes'
        deciding time (0 before any), so neither the walk for reasons made once a second nor
        one slow pass moves it."""
        return statistics.median(self._pass_seconds) if self._pass_seconds else 0.0

    def retire_old_nodes(self, force: bool = False) -> list[str]:
        """Every :data:`RETIRE_EVERY_MS` (or now, with ``force``): forget the LOST and STOPPED
        nodes past the store's retention (:meth:`HeadState.retire_old_nodes`) and what this
        scheduler kept of them. Returns their ids."""
        now = self.s.clock()
        last = self._retired_at
        if not force and last is not None and 0 <= now - last < RETIRE_EVERY_MS:
            return []
        self._retired_at = now
        gone = self.s.retire_old_nodes(now)
        for node_id in gone:
            self._views.pop(node_id, None)
            self._released.pop(node_id, None)
            self.control.forget_node(node_id)
        return gone

    def enforce_time_limits(
        self, views: Mapping[str, FairShareView] | None = None
    ) -> list[Expire]:
        """Look at the front of every queue with ``jobStateTimeLimitActions`` and end the jobs
        whose time is up (:mod:`mnp.scheduler.timelimits` decides): FAILED, flagged cancelled
        or terminated, as CancelJob/TerminateJob do for a job that has not started (a
        multi-node job's gang is told). Run after a pass's actions are applied, so the reasons
        it reads are current, with the pass's fair-share views (None: gathered here); the
        caller flushes. Returns what it ended."""
        s, memory = self.s, self.time_limits
        limits = {q.name: ls for q in s.queues.values()
                  if (ls := queue_limits(q.time_limit_actions))}  # fmt: skip
        if not limits:
            memory.fronts.clear()
            return []
        if views is None:
            views = self.fair_share_views(s.clock()) if any(s.share_policy(q) for q in limits) \
                else {}  # fmt: skip
        heads: dict[str, tuple[str, str | None]] = {}
        for queue in limits:
            job = front_of(s.runnable.get(queue, {}).values(), views.get(queue))
            if job is not None:
                heads[queue] = (job.job_id, job.status_reason)
        memory.fronts, expired = watch(limits, heads, memory.fronts, s.clock())
        done: list[Expire] = []
        for e in expired:
            job = s.active.get(e.job_id)
            if job is None or job.status != JobStatus.RUNNABLE:
                continue
            if e.terminate:
                job.is_terminated = True
            else:
                job.is_cancelled = True
            s.set_status(job, JobStatus.FAILED, e.reason)
            if job.is_mnp_parent:
                self.gangs.cancelled(job)
            memory.fronts.pop(e.queue, None)
            done.append(e)
        return done

    def snapshot(self) -> Snapshot:
        """What :func:`reconcile` sees now; takes the PENDING jobs marked for a look."""
        s = self.s
        pending_ids = list(s.pending_dirty)
        s.pending_dirty.clear()
        pending = [s.active[j] for j in pending_ids if j in s.active and not s.is_held(s.active[j])]
        room = self._array_room(pending)
        if room:  # limited arrays start their lowest indices first
            pending.sort(key=lambda j: (j.parent_id or "", j.array_index or 0))
        submitted = list(s.submitted.values())
        dep_status: dict[str, JobStatus | None] = {}
        for job in (*submitted, *pending):
            for dep in job.dependency_ids():
                if dep not in dep_status:
                    dep_status[dep] = s.status_of(dep)
        now = s.clock()
        ces = self._ce_views()
        return Snapshot(
            now_ms=now,
            queues=[QueueView(q.name, q.priority, tuple(q.ce_names)) for q in s.queues.values()],
            compute_environments=ces,
            nodes=self._node_views(),
            submitted=submitted,
            pending=pending,
            dependency_status=dep_status,
            runnable={q: jobs.values() for q, jobs in s.runnable.items() if jobs},
            waiting_gangs=frozenset(
                j
                for j in self.gangs.retrying
                if j in s.active and not self.gangs.settled(s.active[j])
            ),
            lost_after_ms=int(s.config.lost_after_seconds * 1000),
            launch_timeout_ms=max(30_000, int(s.config.lost_after_seconds * 1000)),
            scale_in_after_ms=int(s.config.scale_in_after_seconds * 1000),
            array_room=room,
            fairshare=self.fair_share_views(now, ces),
            reserve_after_ms=int(s.config.reserve_after_seconds * 1000),
            kill_grace_ms=int(s.config.kill_grace_seconds * 1000),
            default_memory_mib=s.config.default_memory_mib,
            explain=True,
            explain_rest=self._explain_now(now),
            runnable_floors=self._runnable_floors,
            runnable_shapes=s.runnable_shapes,
        )

    def _explain_now(self, now: int) -> bool:
        """Whether this pass walks on past the point where placing stops, only to tell the
        jobs there why they wait: always while few wait, else at most every
        :data:`EXPLAIN_EVERY_MS`. With a deep queue that walk was most of a pass (ticks follow
        each other every 10 ms while work arrives), and a reason a second old says as much.
        The jobs the pass tries to place are told at every pass."""
        waiting = sum(map(len, self.s.runnable.values()))
        last = self._explained_at
        recent = last is not None and 0 <= now - last < self.explain_every_ms  # set back: walk
        if waiting > EXPLAIN_ALWAYS_UP_TO and recent:
            return False
        self._explained_at = now
        return True

    def fair_share_views(
        self, now: int, ces: dict[str, CEView] | None = None
    ) -> dict[str, FairShareView]:
        """Per fair-share queue: the decayed vCPU-time of each share at ``now`` (the ledger's
        ended attempts plus the live ones so far), the vCPUs each holds, which shares are
        active, and the queue's maximum vCPUs (for the compute reservation)."""
        s = self.s
        policies = {q: p for q in s.queues if (p := s.share_policy(q)) is not None}
        if not policies:
            return {}
        usage = {q: s.ledger.usage(q, now, p.decay_seconds) for q, p in policies.items()}
        active = {q: s.ledger.recent(q, now, p.decay_seconds) for q, p in policies.items()}
        running: dict[str, dict[str, float]] = {q: {} for q in policies}
        for queue, share in s.share_jobs:  # the shares with jobs not yet ended
            if queue in active:
                active[queue].add(share)
        # vCPUs of the live attempts per queue, share and placement time (kept by the state
        # as attempts start and end): the jobs placed in one tick share it, so their decayed
        # usage is reckoned once, not once per job
        for (queue, share, placed_at), counts in s.live_shares.items():
            if queue not in policies:
                continue
            vcpus = sum(v * n for v, n in counts.items())
            held = running[queue]
            held[share] = held.get(share, 0.0) + vcpus
            used = usage[queue]
            used[share] = used.get(share, 0.0) + interval_usage(
                vcpus, placed_at, now, now, policies[queue].decay_seconds
            )
        for q, p in policies.items():
            if s.ledger.prune(q, now, p.decay_seconds):
                s.ledger_dirty = True
        for q in [q for q in s.ledger.entries if q not in s.queues]:  # a deleted queue
            s.ledger.forget_queue(q)
            s.ledger_dirty = True
        ces = self._ce_views() if ces is None else ces
        return {
            q: FairShareView(p, usage[q], running[q], frozenset(active[q]), self._max_vcpus(q, ces))
            for q, p in policies.items()
        }

    def _max_vcpus(self, queue: str, views: dict[str, CEView]) -> float:
        """The most vCPUs the queue's environments can have: a MANAGED one's maximum, an
        UNMANAGED one's ``unmanagedvCpus`` (AWS sizes the reservation by it), else its
        registered nodes."""
        total = 0.0
        q = self.s.queues.get(queue)
        for name in q.ce_names if q is not None else ():
            view = views.get(name)
            ce = self.s.ces.get(name)
            if view is None or ce is None:
                continue
            if view.ec2 is not None:
                total += view.ec2.max_vcpus
            elif view.managed:
                most = max((c.vcpus for c in view.node_capacities), default=0.0)
                total += (view.max_nodes or 0) * most
            else:
                given = ce.doc.get("unmanagedvCpus")
                total += (
                    float(given)
                    if isinstance(given, int | float) and given > 0
                    else sum(c.vcpus for c in view.node_capacities)
                )
        return total

    def _node_views(self) -> list[NodeView]:
        s = self.s
        seen = self.lag.credited if self.lag is not None else _as_is
        now = s.clock()
        groups: dict[str, str] = {}
        views: list[NodeView] = []
        kept = self._views
        grace = s.config.kill_grace_seconds  # the releases count it
        live = (NodeStatus.ACTIVE, NodeStatus.LAUNCHING)
        node_rt = s.node_rt
        for n in s.nodes.values():
            status = n.status
            if status not in live:
                continue
            rt = node_rt[n.node_id]
            # how long each registered node has held no work
            rt.note_idle(now, registered=status == NodeStatus.ACTIVE)
            ce = n.compute_environment
            group = groups.get(ce)
            if group is None:
                group = groups[ce] = self._placement_group(ce)
            ssh = n.ssh_port is not None and bool(n.ssh_host_key)
            last_seen = seen(n.last_heartbeat_ms)
            key = (status, n.draining, n.capacity, ce, group, ssh, rt.version,
                   rt.idle_since_ms, last_seen, grace)  # fmt: skip
            was = kept.get(n.node_id)
            if was is not None and was[0] is rt and was[1] == key:
                views.append(was[2])  # nothing it is built from changed: most nodes each tick
                continue
            view = NodeView(
                node_id=n.node_id,
                compute_environment=ce,
                status=n.status,
                capacity=n.capacity,
                # a draining node (its host being removed) takes nothing new
                free=Resources(0, 0, 0) if n.draining else n.capacity.minus(rt.used),
                last_seen_ms=last_seen,
                placement_group=group,
                ssh=ssh,
                idle_since_ms=rt.idle_since_ms,
                draining=n.draining,
                releases=self._releases(n),
            )
            if rt.gang_of is None:  # a gang's node follows its attempt: built each time
                kept[n.node_id] = (rt, key, view)
            views.append(view)
        if len(kept) > 2 * len(views):  # nodes gone since: forget them
            ids = {v.node_id for v in views}
            self._views = {k: v for k, v in kept.items() if k in ids}
        if len(self._released) > 2 * len(views):  # nodes gone since: forget them
            keep = {v.node_id for v in views}
            self._released = {k: v for k, v in self._released.items() if k in keep}
        return views

    def _releases(self, node: Node) -> Releases:
        """What each piece of work on ``node`` holds and when it ends at the latest: placed
        plus its ``attemptDurationSeconds`` and the kill grace (None: no timeout). A node a
        multi-node job holds frees all at once, when that job's attempt ends."""
        s = self.s
        rt = s.node_rt[node.node_id]
        grace = int(s.config.kill_grace_seconds * 1000)
        cached = self._released.get(node.node_id)
        if cached is not None and cached[0] is rt and cached[1:3] == (rt.version, grace):
            return cached[3]

        def end(job: Job | None) -> int | None:
            attempt = job.current_attempt if job is not None else None
            timeout = job.spec.timeout_seconds if job is not None else None
            if attempt is None or timeout is None or job is None:
                return None
            return attempt.placed_at + int(timeout * 1000) + grace

        if rt.gang_of is not None:  # not kept: it follows the gang's attempt, not the node
            self._released.pop(node.node_id, None)
            return ((end(s.active.get(rt.gang_of)), rt.used),)
        releases = tuple(
            (end(job), rt.holds.get(aid, job.resources))
            for aid, job in rt.running.items()
            if not job.is_node
        )
        self._released[node.node_id] = (rt, rt.version, grace, releases)
        return releases

    def _ce_views(self) -> dict[str, CEView]:
        views: dict[str, CEView] = {}
        for ce in self.s.ces.values():
            managed = ce.type == ComputeEnvironmentType.MANAGED
            if managed and ce.ec2:
                views[ce.name] = self._ec2_view(ce)
                continue
            shapes = (ce.node_resources,) if managed else self._shapes(ce.name)
            views[ce.name] = CEView(
                name=ce.name,
                enabled=ce.state == State.ENABLED,
                desired_nodes=ce.desired_nodes if managed else 0,
                node_capacities=shapes,
                max_nodes=ce.node_count if managed else len(shapes),
                managed=managed,
                min_nodes=ce.min_nodes,
                launch_after_ms=ce.next_launch_ms,
                settling=ce.status in (CEStatus.CREATING, CEStatus.UPDATING),
                default_memory_mib=env_default_memory(ce.doc.get("tags")),
            )
        return views

    def _ec2_view(self, ce: ComputeEnvironment) -> CEView:
        """An EC2 environment: its instance types' shapes, sized in vCPUs; without its
        catalogue (EC2 unreachable) it shows no shape and launches nothing."""
        scale = self.fleet.ec2_scale(ce)
        settling = ce.status in (CEStatus.CREATING, CEStatus.UPDATING)
        enabled = ce.state == State.ENABLED
        if scale is None or not scale.types:
            return CEView(ce.name, enabled, 0, (), managed=True, settling=settling)
        smallest = min(t.vcpus for t in scale.types)
        return CEView(
            name=ce.name,
            enabled=enabled,
            desired_nodes=0,
            node_capacities=tuple(node_capacity(t) for t in scale.types),
            max_nodes=max(1, scale.max_vcpus // max(1, smallest)),
            managed=True,
            launch_after_ms=ce.next_launch_ms,
            settling=settling,
            ec2=scale,
            launch_error=ce.status_reason if ce.launch_failures else None,
            default_memory_mib=env_default_memory(ce.doc.get("tags")),
        )

    def _array_room(self, pending: list[Job]) -> dict[str, int]:
        """For the arrays with a running limit among ``pending``: free slots now."""
        room: dict[str, int] = {}
        for job in pending:
            limit = job.spec.extras.array_max_running
            if limit is None or job.parent_id is None or job.parent_id in room:
                continue
            parent = self.s.active.get(job.parent_id)
            summary = (parent.status_summary if parent is not None else None) or {}
            busy = sum(summary.get(st.value, 0) for st in HOLDS_A_SLOT)
            room[job.parent_id] = limit - busy
        return room

    def _placement_group(self, ce_name: str) -> str:
        """``computeResources.placementGroup`` of the node's environment; else the environment
        itself is one group (local nodes all share this machine)."""
        ce = self.s.ces.get(ce_name)
        group = (ce.doc.get("computeResources") or {}).get("placementGroup") if ce else None
        return str(group) if group else ce_name

    def _shapes(self, ce_name: str) -> tuple[Resources, ...]:
        """The node shapes an UNMANAGED environment has now (its registered nodes)."""
        return tuple(
            n.capacity
            for n in self.s.nodes.values()
            if n.compute_environment == ce_name and n.status == NodeStatus.ACTIVE
        )

    def apply(self, actions: list[Action]) -> set[str]:
        """Carry out the actions; returns the nodes that got work."""
        s = self.s
        touched: set[str] = set()
        for a in actions:
            if isinstance(a, Advance):
                job = s.active.get(a.job_id)
                if job is not None and a.status == JobStatus.RUNNABLE and s.is_held(job):
                    if job.status != JobStatus.PENDING:  # held: waits PENDING until released
                        s.set_status(job, JobStatus.PENDING, s.held_reason(job))
                elif job is not None and job.status != a.status and not job.status.terminal:
                    s.set_status(job, a.status, a.reason)
            elif isinstance(a, ExpandArray):
                self._expand(a.job_id)
            elif isinstance(a, Place):
                job = s.active.get(a.job_id)
                if job is not None and job.status == JobStatus.RUNNABLE:
                    self.start_attempt(job, s.nodes[a.node_id], a.resources, a.default_source)
                    touched.add(a.node_id)
            elif isinstance(a, PlaceGang):
                job = s.active.get(a.job_id)
                if job is not None and job.status == JobStatus.RUNNABLE:
                    if is_waiting(job.status_reason):  # the wait is over
                        job.status_reason = None
                    try:
                        touched |= self.gangs.place(job, a.node_ids)
                    except Exception as e:  # a broken gang must not stop the scheduler
                        log.exception("placing %s failed", a.job_id)
                        self.gangs.abandon(job, f"could not wire the nodes: {e}")
            elif isinstance(a, HoldForLimit):
                job = s.active.get(a.job_id)
                if job is not None and job.status == JobStatus.PENDING:
                    s.hold(job)
            elif isinstance(a, SetReason | WaitReason):
                job = s.active.get(a.job_id)
                if job is not None and job.status_reason != a.reason:  # written once
                    job.status_reason = a.reason
                    s.mark(job)
            elif isinstance(a, LoseNode):
                self.lose_node(a.node_id, a.reason)
            elif isinstance(a, LaunchNodes):
                self.fleet.launch(a.compute_environment, a.count)
            elif isinstance(a, LaunchInstances):
                self.fleet.launch_instances(a.compute_environment, a.launches)
            elif isinstance(a, SetDesiredVcpus):
                self.fleet.set_desired_vcpus(a.compute_environment, a.vcpus)
            elif isinstance(a, SetDesired | DrainNodes | RetireNodes | SettleStatus):
                self.fleet.scale(a)
        return touched

    # --- arrays -------------------------------------------------------------------------------
    def _expand(self, parent_id: str) -> None:
        s = self.s
        parent = s.active.get(parent_id)
        if parent is None or parent.status != JobStatus.SUBMITTED:
            return
        size = parent.spec.array_size or 0
        now = s.clock()
        parent.status_summary = {st.value: 0 for st in JobStatus}
        parent.status_summary[JobStatus.PENDING.value] = size
        parent.summary_updated_at = now
        s.set_status(parent, JobStatus.PENDING, None)
        for i in range(size):
            child = s.add_child(parent, JobStatus.PENDING, now, array_index=i)
            if parent.held is not None:  # a held array's children wait for its release
                child.status_reason = s.held_reason(child)

    # --- placing and running attempts -------------------------------------------------------
    def start_attempt(
        self,
        job: Job,
        node: Node,
        held: Resources | None = None,
        default_source: str | None = None,
    ) -> Attempt:
        """Make the job's next attempt on ``node``: the job is STARTING, the attempt holds its
        resources there (``held``: its request with a default MEMORY, which its statusReason
        then states), and its assignment is queued for the node (re-sent by the node's
        session until the node confirms it started). The caller wakes the node."""
        s = self.s
        attempt = new_attempt(job, node, s.clock())
        job.attempts.append(attempt)
        if is_waiting(job.status_reason):  # the wait is over
            job.status_reason = None
        stated = None
        if held is not None and default_source is not None:
            stated = default_memory(held.memory_mib, default_source)
            self._log_default_memory(job.job_id, stated)
        s.set_status(job, JobStatus.STARTING, stated)
        aid = attempt_id(job.job_id, attempt.number)
        rt = s.node_rt[node.node_id]
        rt.reserve(aid, job, held)
        assignment = self.assignment(job, attempt)
        rt.outbox.append(assignment)
        rt.unacked[aid] = (assignment, s.clock())
        return attempt

    def _log_default_memory(self, job_id: str, stated: str) -> None:
        """Say in the head's log that a job was placed with a default MEMORY: at INFO the
        first time each default (its size and where it came from) is used, at DEBUG for every
        job after that. Each job's STARTING history entry and statusReason state it anyway;
        a line per attempt at INFO was a tenth of the head's time placing short jobs."""
        seen = self._defaults_logged
        if stated in seen:
            log.debug("%s: %s", job_id, stated)
            return
        if len(seen) < DEFAULTS_LOGGED:
            seen.add(stated)
        log.info("%s: %s (each later job placed so is logged at DEBUG)", job_id, stated)

    def assignment(self, job: Job, attempt: Attempt) -> Assignment:
        """What the node runs for the attempt (built again as it is re-sent after a restart):
        the one builder for every job; an MNP node's command, wiring and the rest come from
        its gang (:meth:`Gangs.run`)."""
        ce = self.s.ces.get(attempt.compute_environment)
        env = job_environment(job, attempt, ce_environment(ce.doc.get("tags") if ce else None))
        aid = attempt_id(job.job_id, attempt.number)
        run = (
            self.gangs.run(job, attempt, env)
            if job.is_node
            else AttemptRun(
                list(job.container.command), job.spec.timeout_seconds, attempt_files(job, attempt)
            )
        )
        return Assignment(
            attempt_id=aid,
            job_id=job.job_id,
            attempt=attempt.number,
            command=run.command,
            environment=env,
            timeout_seconds=run.timeout_seconds,
            kill_grace_seconds=self.s.config.kill_grace_seconds,
            wiring=run.wiring,
            container=attempt_container(job, self.s.ces, attempt.compute_environment),
            shared_filesystem=attempt_shared_fs(self.s.ces, attempt.compute_environment),
            # the account chosen at submit (mnp.service.users.run_as); None: the agent's own
            run_as=job.spec.run_as,
            # the job's own keys, as ECS gives a task its role's (mnp.scheduler.jobkeys)
            credentials=job_keys(self.s).for_attempt(aid).to_wire(),
            **run.files,
        )

    def end_attempt(self, job: Job, end: AttemptEnd) -> None:
        """Record how the current attempt ended and decide (:func:`attempt_outcome`):
        SUCCEEDED, retry, or FAILED. An MNP node's end goes to its gang. A job with no live
        attempt is left as it is (a second report of the same end is harmless)."""
        s = self.s
        attempt = job.current_attempt
        if attempt is None or job.status not in (JobStatus.STARTING, JobStatus.RUNNING):
            return
        if job.is_node:
            self.gangs.ended(job, end)
            return
        record_end(attempt, end, s.clock())
        rt = s.node_rt.get(attempt.node_id)
        if rt is not None:
            rt.release(attempt_id(job.job_id, attempt.number))
        outcome = attempt_outcome(job, end)
        attempt.status_reason = outcome.reason
        s.set_status(job, outcome.status, outcome.reason)
        s.on_wake()

    def kill(self, job: Job, reason: str) -> None:
        """Ask the node running the job's current attempt to stop it: the Kill goes until the
        node no longer runs the attempt (:class:`Control`); repeating it changes nothing."""
        attempt = job.current_attempt
        if attempt is None:
            return
        rt = self.s.node_rt.get(attempt.node_id)
        node = self.s.nodes.get(attempt.node_id)
        if rt is None or node is None or node.status != NodeStatus.ACTIVE:
            self.end_attempt(job, AttemptEnd(None, reason, reason))
            return
        aid = attempt_id(job.job_id, attempt.number)
        self.control.kill(attempt.node_id, Kill(aid, reason))
        self.s.on_node_work(attempt.node_id)

    def ready(self, node_id: str, ready: Ready) -> None:
        """Tell ``node_id`` its main-node attempt may go, until the node reports it did."""
        self.control.ready(node_id, ready)
        self.s.on_node_work(node_id)

    # --- nodes (the fleet's; these are what the service and the head call) -------------------
    def lose_node(self, node_id: str, why: str) -> None:
        """Declare a node lost: fail its attempts (the retry strategy decides) and stop it."""
        self.fleet.lose(node_id, why)

    def stop_nodes(self, nodes: list[Node], reason: str) -> None:
        """Stop these nodes: their attempts end with ``Host stopped: …`` first."""
        self.fleet.stop(nodes, reason)

    def restore(self) -> None:
        """Rebuild the head's state from the store (start and restart,
        :meth:`HeadState.restore`), its MNP jobs' watches with it, then adopt the nodes."""
        jobs = self.s.restore(self.assignment)
        for job in jobs:
            self.gangs.restored(job)
        self.fleet.adopt()
        for job in jobs:
            self._resend_after_restart(job)
        self.s.flush()

    def _resend_after_restart(self, job: Job) -> None:
        """A stop decided before the restart (TerminateJob; a gang's teardown, hang kill or
        Ready: :meth:`Gangs.resend_after_restart`) is told to the node again."""
        if job.is_node:
            self.gangs.resend_after_restart(job)
        elif job.is_terminated and not job.is_mnp_parent and job.status in LIVE_STATUSES:
            self.kill(job, job.status_reason or "terminated")
        elif job.status in LIVE_STATUSES and (reason := _requeue_pending(job)):
            if job.is_mnp_parent:
                self.gangs.terminate(job, reason)
            else:
                self.kill(job, reason)

    def reload(self) -> None:
        """Memory back to what the store holds (:meth:`HeadState.reload`), as a restart
        rebuilds it: the MNP jobs' watches, and the Kills and Readies the stored state decided
        (nothing a failed write decided goes to a node). Nothing is written here (the store
        may be unwritable just now); the nodes keep their heartbeat allowance."""
        self.gangs = Gangs(self.s, self)
        self.control = Control()
        jobs = self.s.reload(self.assignment)
        for job in jobs:
            self.gangs.restored(job)
        for job in jobs:
            self._resend_after_restart(job)

    # --- where attempts' output lives ------------------------------------------------------
    def log_path(self, job_id: str, attempt: int, stream: str) -> Path:
        """The file holding one stream (``stdout``/``stderr``) of an attempt's output: written by
        :mod:`mnp.nodes.sessions` as the node sends it, read by the log endpoints."""
        return self.s.config.logs_dir / safe_file_name(job_id) / str(attempt) / f"{stream}.log"


def _requeue_pending(job: Job) -> str | None:
    """The reason of a requeue whose attempt has not ended yet (None: none pending)."""
    if job.is_mnp_parent:
        state = job.gang_state
        return state.requeued if state.outcome is None else None
    attempt = job.current_attempt
    if attempt is None or attempt.stopped_at is not None:
        return None
    return attempt.requeued


def _as_is(last_seen_ms: int) -> int:
    return last_seen_ms
