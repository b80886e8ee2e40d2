"""The head node's moving parts: the scheduling tick, node agents, attempts and their ends.

Every entry point here runs on the event loop, mutates :class:`HeadState`, and flushes it to
the store before returning, so what an agent or client is told next is already durable.
"""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path

from mnp.build.container import attempt_container
from mnp.build.environment import job_environment
from mnp.build.outputs import attempt_files
from mnp.errors import NotFound
from mnp.nodes.logstreams import record_chunk_time
from mnp.providers import Provider, make_provider
from mnp.scheduler.gangs import Gangs
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
    Snapshot,
    reconcile,
)
from mnp.scheduler.state import HOLDS_A_SLOT, HeadState, NodeRuntime
from mnp.spec.model import Attempt, Job, Node, NodeStatus, Resources
from mnp.spec.protocol import (
    Assignment,
    Event,
    Kill,
    Poll,
    PollReply,
    Ready,
    Register,
    Report,
    attempt_id,
)
from mnp.spec.states import HistoryEntry, JobStatus

log = logging.getLogger("mnp.scheduler.loop")

RESEND_AFTER_MS = 2_000
TIMEOUT_REASON = "Job attempt duration exceeded timeout"
EXIT_REASON = "Essential container in task exited"


class NodeGone(Exception):
    """The node was declared lost or stopped; its agent must stop."""


def safe_name(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", value)


class Runtime:
    def __init__(self, state: HeadState, head_url: str) -> None:
        self.s = state
        self.head_url = head_url
        self._providers: dict[str, Provider] = {}
        self.gangs = Gangs(self)

    def provider(self, name: str) -> Provider:
        if name not in self._providers:
            self._providers[name] = make_provider(
                name, self.head_url, self.s.config.home, self.s.config.token
            )
        return self._providers[name]

    # --- the scheduling tick ------------------------------------------------------------------
    def tick(self) -> None:
        """Gather a snapshot, reconcile, apply, flush, then tell nodes about new work."""
        self.gangs.check_hangs()
        snap = self.snapshot()
        actions = reconcile(snap)
        touched = self.apply(actions)
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

    def snapshot(self) -> Snapshot:
        s = self.s
        now = s.clock()
        pending_ids = list(s.pending_dirty)
        s.pending_dirty.clear()
        pending = [s.active[j] for j in pending_ids if j in s.active]
        room = self._array_room(pending)
        if room:  # limited arrays start their lowest indices first
            pending.sort(key=lambda j: (j.parent_id or "", j.array_index or 0))
        submitted = list(s.submitted.values())
        dep_status: dict[str, JobStatus | None] = {}
        for job in (*submitted, *pending):
            for dep in job.dependency_ids():
                if dep not in dep_status:
                    dep_status[dep] = s.status_of(dep)
        nodes = [
            NodeView(
                node_id=n.node_id,
                compute_environment=n.compute_environment,
                status=n.status,
                capacity=n.capacity,
                free=n.capacity.minus(s.node_rt[n.node_id].used),
                last_seen_ms=n.last_heartbeat_ms,
                placement_group=self._placement_group(n.compute_environment),
                ssh=n.ssh_port is not None and bool(n.ssh_host_key),
            )
            for n in s.nodes.values()
            if n.status in (NodeStatus.ACTIVE, NodeStatus.LAUNCHING)
        ]
        ces = {
            ce.name: CEView(
                name=ce.name,
                enabled=ce.state.value == "ENABLED",
                desired_nodes=ce.node_count if ce.type == "MANAGED" else 0,
                node_capacities=(ce.node_resources,)
                if ce.type == "MANAGED"
                else self._shapes(ce.name),
                max_nodes=ce.node_count if ce.type == "MANAGED" else len(self._shapes(ce.name)),
            )
            for ce in s.ces.values()
        }
        queues = [QueueView(q.name, q.priority, tuple(q.ce_names)) for q in s.queues.values()]
        snap = Snapshot(
            now_ms=now,
            queues=queues,
            compute_environments=ces,
            nodes=nodes,
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
            array_room=room,
        )
        return snap

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
                if job is not None and job.status != a.status and not job.status.terminal:
                    s.set_status(job, a.status, a.reason)
            elif isinstance(a, ExpandArray):
                self._expand(a.job_id)
            elif isinstance(a, Place):
                job = s.active.get(a.job_id)
                if job is not None and job.status == JobStatus.RUNNABLE:
                    self._place(job, s.nodes[a.node_id])
                    touched.add(a.node_id)
            elif isinstance(a, PlaceGang):
                job = s.active.get(a.job_id)
                if job is not None and job.status == JobStatus.RUNNABLE:
                    try:
                        touched |= self.gangs.place(job, a.node_ids)
                    except Exception as e:  # a broken gang must not stop the scheduler
                        log.exception("placing %s failed", a.job_id)
                        self.gangs.abandon(job, f"could not wire the nodes: {e}")
            elif isinstance(a, HoldForLimit):
                job = s.active.get(a.job_id)
                if job is not None and job.status == JobStatus.PENDING:
                    s.hold(job)
            elif isinstance(a, SetReason):
                job = s.active.get(a.job_id)
                if job is not None:
                    job.status_reason = a.reason
                    s.mark(job)
            elif isinstance(a, LoseNode):
                self.lose_node(a.node_id, a.reason)
            elif isinstance(a, LaunchNodes):
                for _ in range(a.count):
                    self._launch(a.compute_environment)
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
            child = Job(
                job_id=f"{parent_id}:{i}",
                spec=parent.spec,
                status=JobStatus.PENDING,
                created_at=now,
                parent_id=parent_id,
                array_index=i,
                history=[HistoryEntry(JobStatus.PENDING, now, None)],
            )
            s.add_job(child)

    # --- placing and running attempts -------------------------------------------------------
    def _place(self, job: Job, node: Node) -> None:
        s = self.s
        rt = s.node_rt[node.node_id]
        number = len(job.attempts) + 1
        attempt = Attempt(
            number=number,
            node_id=node.node_id,
            address=node.address,
            compute_environment=node.compute_environment,
            log_stream_name=f"{job.spec.definition_name[:200]}/default/{uuid.uuid4().hex}",
            placed_at=s.clock(),
        )
        job.attempts.append(attempt)
        s.set_status(job, JobStatus.STARTING, None)
        aid = attempt_id(job.job_id, number)
        rt.running[aid] = job
        rt.used = rt.used.plus(job.resources)
        assignment = self.assignment(job, attempt)
        rt.outbox.append(assignment)
        rt.unacked[aid] = (assignment, s.clock())

    def assignment(self, job: Job, attempt: Attempt) -> Assignment:
        if job.is_node:
            return self.gangs.assignment(job, attempt)
        return Assignment(
            attempt_id=attempt_id(job.job_id, attempt.number),
            job_id=job.job_id,
            attempt=attempt.number,
            command=list(job.container.command),
            environment=job_environment(job, attempt),
            timeout_seconds=job.spec.timeout_seconds,
            kill_grace_seconds=self.s.config.kill_grace_seconds,
            container=attempt_container(job, self.s.ces, attempt.compute_environment),
            **attempt_files(job, attempt),
        )

    def end_attempt(
        self,
        job: Job,
        *,
        exit_code: int | None,
        reason: str | None,
        status_reason: str,
        timed_out: bool = False,
    ) -> None:
        """Record how the current attempt ended and decide: SUCCEEDED, retry, or FAILED."""
        s = self.s
        attempt = job.current_attempt
        if attempt is None or job.status not in (JobStatus.STARTING, JobStatus.RUNNING):
            return
        if job.is_node:
            self.gangs.ended(
                job,
                exit_code=exit_code,
                reason=reason,
                status_reason=status_reason,
                timed_out=timed_out,
            )
            return
        now = s.clock()
        attempt.stopped_at = now
        attempt.exit_code = exit_code
        attempt.reason = reason
        rt = s.node_rt.get(attempt.node_id)
        if rt is not None:
            aid = attempt_id(job.job_id, attempt.number)
            if rt.running.pop(aid, None) is not None:
                rt.used = rt.used.minus(job.resources)
            rt.unacked.pop(aid, None)
        if job.is_terminated:
            attempt.status_reason = job.status_reason
            s.set_status(job, JobStatus.FAILED, job.status_reason)
        elif timed_out:
            attempt.status_reason = TIMEOUT_REASON
            s.set_status(job, JobStatus.FAILED, TIMEOUT_REASON)
        elif exit_code == 0 and job.status == JobStatus.RUNNING:
            attempt.status_reason = status_reason
            s.set_status(job, JobStatus.SUCCEEDED, status_reason)
        else:
            attempt.status_reason = status_reason
            retry = job.spec.retry.should_retry(len(job.attempts), exit_code, reason, status_reason)
            s.set_status(job, JobStatus.RUNNABLE if retry else JobStatus.FAILED, status_reason)
        s.on_wake()

    def kill(self, job: Job, reason: str) -> None:
        """Ask the node running the job's current attempt to stop it."""
        attempt = job.current_attempt
        if attempt is None:
            return
        rt = self.s.node_rt.get(attempt.node_id)
        node = self.s.nodes.get(attempt.node_id)
        if rt is None or node is None or node.status != NodeStatus.ACTIVE:
            self.end_attempt(job, exit_code=None, reason=reason, status_reason=reason)
            return
        aid = attempt_id(job.job_id, attempt.number)
        rt.outbox.append(Kill(aid, reason))
        self.s.on_node_work(attempt.node_id)

    # --- nodes ------------------------------------------------------------------------------
    def _launch(self, ce_name: str) -> None:
        s = self.s
        ce = s.ces[ce_name]
        used_slots = {
            n.slot
            for n in s.nodes.values()
            if n.compute_environment == ce_name
            and n.status in (NodeStatus.ACTIVE, NodeStatus.LAUNCHING)
        }
        slot = next(i for i in range(len(used_slots) + 1) if i not in used_slots)
        node = Node(
            node_id=f"{ce.name}-{ce.next_node_number}",
            compute_environment=ce.name,
            address=_address(ce.first_address, slot),
            capacity=Resources(
                ce.node_resources.vcpus, ce.node_resources.memory_mib, ce.node_resources.gpus
            ),
            status=NodeStatus.LAUNCHING,
            slot=slot,
            launched_at=s.clock(),
            last_heartbeat_ms=s.clock(),
        )
        ce.next_node_number += 1
        s.store.save_ce(ce)
        s.nodes[node.node_id] = node
        s.node_rt[node.node_id] = NodeRuntime()
        s.mark_node(node)
        s.flush()  # the node exists in the store before its agent can register
        try:
            node.pid = self.provider(ce.provider).launch(node)
        except Exception as e:  # a provider failure loses the node, not the head
            log.error("launching %s failed: %s", node.node_id, e)
            node.status = NodeStatus.LOST
        s.mark_node(node)

    def lose_node(self, node_id: str, why: str) -> None:
        """Declare a node lost: fail its attempts (the retry strategy decides) and stop it."""
        s = self.s
        node = s.nodes.get(node_id)
        if node is None or node.status in (NodeStatus.LOST, NodeStatus.STOPPED):
            return
        self._retire(
            node, NodeStatus.LOST, f"Host lost: node {node.node_id} ({node.address}) {why}"
        )
        try:
            ce = s.ces.get(node.compute_environment)
            if ce is not None and ce.type == "MANAGED":
                self.provider(ce.provider).stop([node], grace_seconds=0)
        except Exception as e:
            log.warning("stopping lost node %s: %s", node_id, e)

    def _retire(self, node: Node, status: NodeStatus, reason: str) -> None:
        s = self.s
        node.status = status
        s.mark_node(node)
        rt = s.node_rt.setdefault(node.node_id, NodeRuntime())
        for job in list(rt.running.values()):
            self.end_attempt(job, exit_code=None, reason=None, status_reason=reason)
        rt.outbox.clear()
        rt.unacked.clear()
        log.warning("%s", reason)

    def stop_nodes(self, nodes: list[Node], reason: str) -> None:
        by_provider: dict[str, list[Node]] = {}
        for node in nodes:
            if node.status in (NodeStatus.ACTIVE, NodeStatus.LAUNCHING):
                self._retire(
                    node, NodeStatus.STOPPED, f"Host stopped: node {node.node_id} {reason}"
                )
                ce = self.s.ces.get(node.compute_environment)
                if ce is not None and ce.type == "MANAGED":
                    by_provider.setdefault(ce.provider, []).append(node)
        self.s.flush()
        for name, group in by_provider.items():
            self.provider(name).stop(group, grace_seconds=5.0)

    def adopt_nodes(self) -> None:
        """After a restart: give live nodes a fresh heartbeat allowance; the rest are lost."""
        s = self.s
        now = s.clock()
        for node in s.nodes.values():
            if node.status not in (NodeStatus.ACTIVE, NodeStatus.LAUNCHING):
                continue
            node.last_heartbeat_ms = now
            ce = s.ces.get(node.compute_environment)
            if ce is not None and ce.type == "MANAGED":
                try:
                    alive = self.provider(ce.provider).is_alive(node)
                except Exception:
                    alive = True
                if not alive:
                    self.lose_node(node.node_id, "was gone when the head node restarted")

    # --- agents -------------------------------------------------------------------------------
    def register(self, r: Register) -> None:
        s = self.s
        node = s.nodes.get(r.node_id)
        now = s.clock()
        if node is None:
            ce = s.ces.get(r.compute_environment)
            if ce is None:
                raise NotFound(f"compute environment {r.compute_environment!r} does not exist")
            if ce.type == "MANAGED":
                raise NotFound(f"node {r.node_id!r} was not launched by this head node")
            node = Node(
                r.node_id,
                ce.name,
                r.address,
                Resources(r.vcpus, r.memory_mib, r.gpus),
                NodeStatus.LAUNCHING,
                pid=r.pid,
                launched_at=now,
            )
            s.nodes[node.node_id] = node
            s.node_rt[node.node_id] = NodeRuntime()
        if node.status in (NodeStatus.LOST, NodeStatus.STOPPED):
            raise NodeGone(node.node_id)
        node.status = NodeStatus.ACTIVE
        node.registered_at = node.registered_at or now
        node.last_heartbeat_ms = now
        node.pid = r.pid or node.pid
        node.capacity = Resources(r.vcpus, r.memory_mib, r.gpus)
        node.ssh_port = r.ssh_port
        node.ssh_host_key = r.ssh_host_key
        s.mark_node(node)
        s.flush()
        s.on_wake()

    def poll(self, p: Poll) -> PollReply:
        """Heartbeat; hand over queued work and re-send unconfirmed assignments."""
        s = self.s
        node = s.nodes.get(p.node_id)
        if node is None:
            raise NotFound(f"unknown node {p.node_id}")
        if node.status in (NodeStatus.LOST, NodeStatus.STOPPED):
            raise NodeGone(node.node_id)
        now = s.clock()
        node.last_heartbeat_ms = now
        if node.status == NodeStatus.LAUNCHING:
            node.status = NodeStatus.ACTIVE
            s.mark_node(node)
            s.flush()
        rt = s.node_rt[node.node_id]
        items = rt.outbox
        rt.outbox = []
        assignments = [a for a in items if isinstance(a, Assignment)]
        kills = [k for k in items if isinstance(k, Kill)]
        ready = [r for r in items if isinstance(r, Ready)]
        sent = {a.attempt_id for a in assignments}
        running = set(p.running)
        for aid, (assignment, at) in list(rt.unacked.items()):
            if aid not in sent and aid not in running and now - at > RESEND_AFTER_MS:
                assignments.append(assignment)
                rt.unacked[aid] = (assignment, now)
        return PollReply(assignments=assignments, kills=kills, ready=ready)

    def report(self, r: Report) -> int:
        """Apply a node's events in order; duplicates and stale events are ignored."""
        s = self.s
        node = s.nodes.get(r.node_id)
        if node is None:
            raise NotFound(f"unknown node {r.node_id}")
        node.last_heartbeat_ms = s.clock()
        rt = s.node_rt[node.node_id]
        accepted = 0
        for ev in r.events:
            if ev.seq <= rt.last_seq:
                continue
            rt.last_seq = ev.seq
            self._event(node, rt, ev)
            accepted += 1
        s.flush()
        return accepted

    def _event(self, node: Node, rt: NodeRuntime, ev: Event) -> None:
        job_id, _, number_text = ev.attempt_id.rpartition("/")
        job = self.s.active.get(job_id)
        if ev.kind == "log":
            self._write_log(job_id, int(number_text), ev)
            return
        if job is None or job.current_attempt is None:
            return
        attempt = job.current_attempt
        if str(attempt.number) != number_text or attempt.node_id != node.node_id:
            return
        if ev.kind == "session_started":
            if job.is_node and job.status == JobStatus.RUNNING:
                self.gangs.session_started(job)
        elif ev.kind == "session_exited":
            if job.is_node and job.status == JobStatus.RUNNING:
                self.gangs.session_ended(job, ev.exit_code, ev.reason or "")
        elif ev.kind == "started":
            rt.unacked.pop(ev.attempt_id, None)
            if job.status == JobStatus.STARTING:
                attempt.started_at = ev.time_ms
                job.started_at = ev.time_ms
                self.s.set_status(job, JobStatus.RUNNING, None)
                if job.is_node:
                    self.gangs.started(job)
                if job.is_terminated and job.status_reason:
                    self.kill(job, job.status_reason)  # terminated while it was starting
        elif ev.kind == "start_failed":
            self.end_attempt(
                job,
                exit_code=None,
                reason=ev.reason,
                status_reason=f"Task failed to start: {ev.reason}",
            )
        elif ev.kind == "exited":
            if job.status == JobStatus.STARTING:
                attempt.started_at = ev.time_ms
                self.s.set_status(job, JobStatus.RUNNING, None)
                if job.is_node:
                    self.gangs.started(job)
            self.end_attempt(
                job,
                exit_code=ev.exit_code,
                reason=ev.reason,
                status_reason=EXIT_REASON,
                timed_out=ev.timed_out,
            )

    # --- logs ---------------------------------------------------------------------------------
    def log_path(self, job_id: str, attempt: int, stream: str) -> Path:
        return self.s.config.logs_dir / safe_name(job_id) / str(attempt) / f"{stream}.log"

    def _write_log(self, job_id: str, attempt: int, ev: Event) -> None:
        path = self.log_path(job_id, attempt, ev.stream or "stdout")
        path.parent.mkdir(parents=True, exist_ok=True)
        data = ev.data.encode()
        with open(path, "ab") as f:
            size = f.tell()
            if ev.offset + len(data) <= size:
                return  # already have it (a re-sent event)
            if ev.offset < size:
                data = data[size - ev.offset :]
            record_chunk_time(path, size, ev.time_ms)
            f.write(data)


def _address(first: str, slot: int) -> str:
    a, b, c, d = (int(x) for x in first.split("."))
    n = (b << 16) + (c << 8) + d + slot
    return f"{a}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
