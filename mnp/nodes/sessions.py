"""The head's side of its node agents: register, poll (heartbeat + work), report (events and
output), each one HTTP call of :mod:`mnp.spec.protocol`.

An agent's events drive its attempts through the scheduler (:class:`Scheduler`): a start moves
the job to RUNNING, an exit ends the attempt and decides it. Output arrives as ``log`` events
and is appended to the attempt's files. Every entry point runs on the head's event loop and
flushes the head state before it returns, so what the agent is told next is already durable.
Events are applied in sequence order, once: a re-sent report changes nothing.
"""

from __future__ import annotations

from typing import assert_never

from mnp.errors import NotFound
from mnp.nodes.logstreams import record_chunk_time
from mnp.scheduler.attempts import EXIT_REASON, AttemptEnd
from mnp.scheduler.loop import Scheduler
from mnp.scheduler.state import NodeRuntime
from mnp.spec.environments import ComputeEnvironmentType, Node, NodeStatus
from mnp.spec.jobs import Attempt, Job
from mnp.spec.protocol import (
    Assignment,
    Event,
    Kill,
    Poll,
    PollReply,
    Register,
    Report,
    attempt_id,
)
from mnp.spec.resources import Resources
from mnp.spec.states import JobStatus

HOST_ATTEMPT_LOST = "Host: attempt lost on node"
"""The start of the reason an attempt the head placed fails with when its node no longer
runs it (an agent restarted under the same node id, a process gone)."""
UNKNOWN_ATTEMPT_REASON = "Host: the head node has no such running attempt"
RESEND_AFTER_MS = 2_000
"""An assignment not confirmed started (nor listed running) this long after it was sent goes
again with the next poll."""


class NodeGone(Exception):
    """The node was declared lost or stopped; its agent must stop."""


class NodeSessions:
    """The agents of one head's nodes, as the HTTP layer hands their calls in."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.rt = scheduler
        self.s = scheduler.s

    def register(self, r: Register) -> None:
        """A node's agent starts (or starts again). An UNMANAGED environment's node joins
        here; a MANAGED one must have been launched by this head. Raises :class:`NotFound`
        for an unknown environment or node, :class:`NodeGone` for a node already lost."""
        s = self.s
        node = s.nodes.get(r.node_id)
        now = s.clock()
        if node is None:
            ce = s.ces.get(r.compute_environment)
            if ce is None:
                raise NotFound(f"compute environment {r.compute_environment!r} does not exist")
            if ce.type == ComputeEnvironmentType.MANAGED:
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
            s.add_node(node)
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
        self._reconcile(node, s.node_rt[node.node_id], set(r.running))
        s.flush()
        s.on_wake()

    def poll(self, p: Poll) -> PollReply:
        """Heartbeat; hand over queued work and re-send unconfirmed assignments. Raises
        :class:`NotFound` for an unknown node, :class:`NodeGone` for a lost or stopped one."""
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
        running = set(p.running)
        self._reconcile(node, rt, running)
        s.flush()  # an attempt failed as lost is durable before the node hears more
        items = rt.outbox
        rt.outbox = []
        assignments = [a for a in items if isinstance(a, Assignment)]
        sent = {a.attempt_id for a in assignments}
        for aid, (assignment, at) in list(rt.unacked.items()):
            if aid not in sent and aid not in running and now - at > RESEND_AFTER_MS:
                assignments.append(assignment)
                rt.unacked[aid] = (assignment, now)
        control = self.rt.control
        kills = control.kills_due(node.node_id, running, set(rt.running), now)
        ready = control.ready_due(node.node_id, running, set(p.ready), now)
        return PollReply(assignments=assignments, kills=kills, ready=ready)

    def _reconcile(self, node: Node, rt: NodeRuntime, running: set[str]) -> None:
        """Match the attempts the node says it runs with the head's (on every register and
        poll). The node listing an attempt acknowledges its assignment. One the head has and
        the node lacks is lost (failed; the retry strategy decides) once it is acknowledged
        (RUNNING, or listed before): an unacknowledged assignment may still be in flight and
        is re-sent instead. One the node runs that the head lacks (or has ended) is killed."""
        for aid in running & rt.unacked.keys():
            rt.unacked.pop(aid, None)
        reason = f"{HOST_ATTEMPT_LOST} {node.node_id}"
        for aid, job in list(rt.running.items()):
            if aid in running or aid in rt.unacked:
                continue
            attempt = job.current_attempt
            if attempt is not None and attempt_id(job.job_id, attempt.number) == aid:
                self.rt.end_attempt(job, AttemptEnd(None, None, reason))
            rt.release(aid)
        for aid in running - rt.running.keys():
            self.rt.control.kill(node.node_id, Kill(aid, UNKNOWN_ATTEMPT_REASON))

    def report(self, r: Report) -> int:
        """Apply a node's events in order; duplicates and stale events are ignored. Returns how
        many were new. Raises :class:`NotFound` for an unknown node."""
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
        """One event of the attempt it names; events of an attempt no longer current are
        dropped (a late report from before a retry)."""
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
        match ev.kind:
            case "session_started":
                if job.is_node and job.status == JobStatus.RUNNING:
                    self.rt.gangs.session_started(job)
            case "session_exited":
                if job.is_node and job.status == JobStatus.RUNNING:
                    self.rt.gangs.session_ended(job, ev.exit_code, ev.reason or "")
            case "started":
                if self._started(rt, job, attempt, ev) and job.is_terminated and job.status_reason:
                    self.rt.kill(job, job.status_reason)  # terminated while it was starting
            case "start_failed":
                start_failure = f"Task failed to start: {ev.reason}"
                self.rt.end_attempt(job, AttemptEnd(None, ev.reason, start_failure))
            case "exited":
                self._started(rt, job, attempt, ev)  # an exit seen with no start before it
                end = AttemptEnd(ev.exit_code, ev.reason, EXIT_REASON, timed_out=ev.timed_out)
                self.rt.end_attempt(job, end)
            case _:
                assert_never(ev.kind)

    def _started(self, rt: NodeRuntime, job: Job, attempt: Attempt, ev: Event) -> bool:
        """The one rule for an attempt's start (its ``started`` event, or an ``exited`` that
        came first): the node confirmed the assignment; a STARTING job is RUNNING from the
        event's time, and an MNP node's gang is told. Returns whether the job started now."""
        rt.unacked.pop(ev.attempt_id, None)
        if job.status != JobStatus.STARTING:
            return False
        attempt.started_at = ev.time_ms
        job.started_at = ev.time_ms
        self.s.set_status(job, JobStatus.RUNNING, None)
        if job.is_node:
            self.rt.gangs.started(job)
        return True

    # --- output -------------------------------------------------------------------------------
    def _write_log(self, job_id: str, attempt: int, ev: Event) -> None:
        """Append a ``log`` event's bytes at its offset; bytes already written (a re-sent
        event) are skipped, so the file holds each byte once, in order."""
        path = self.rt.log_path(job_id, attempt, ev.stream or "stdout")
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
