"""The head's side of its node agents: register, poll (heartbeat + work), report (events and
output), each one HTTP call of :mod:`mnp.spec.protocol`.

An agent's events drive its attempts through the scheduler (:class:`Scheduler`): a start moves
the job to RUNNING, an exit ends the attempt and decides it. Output arrives as ``log`` events
and is appended to the attempt's files. Every entry point runs on the head's event loop and
flushes the head state before it returns, so what the agent is told next is already durable.
Events are applied in sequence order, once: a re-sent report changes nothing.

Credentials (issue 11): the HTTP layer admits each call first (:meth:`NodeSessions.admit`,
:meth:`NodeSessions.admit_register`): a node joins with the join token the head minted when
it launched it and is issued its own secret (:meth:`NodeSessions.issue_secret`, kept hashed
in the node record); every later call must carry that secret. The methods applying a call
then check what no credential may do: :meth:`NodeSessions.register` refuses a changed
identity, capacity or host key, :meth:`NodeSessions.report` an event of another node's
attempt.

Sessions, leases and rejoin (issue 11): every successful register starts a new *session* of
the node: ``session_epoch`` is incremented and stored before the reply, which carries it; every
poll and report carries the epoch it belongs to. A poll or report of another epoch, or from a
LOST or STOPPED node, is stale: refused (:class:`StaleSession`, 409) with nothing applied, and
the agent, which has stopped its attempts at its lease's end, kills them and registers again.
Replies grant a lease (``HeadConfig.lease``) shorter than the lost-node allowance, so a node
cut off stops its work (its fence) before the head fails and retries it. A LOST node that
registers again with its own secret rejoins as a new session, ACTIVE with its full capacity;
whatever it still runs is killed by the reconcile (its attempts were failed when it was lost).
A STOPPED node stays gone (:class:`NodeGone`, 410): the operator stopped it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, assert_never

from mnp.errors import Conflict, NotFound
from mnp.nodes.logstreams import times_path
from mnp.scheduler.attempts import EXIT_REASON, AttemptEnd
from mnp.scheduler.loop import Scheduler
from mnp.scheduler.state import NodeRuntime
from mnp.spec.environments import (
    ComputeEnvironmentType,
    Node,
    NodeStatus,
    new_secret,
    secret_matches,
)
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

log = logging.getLogger(__name__)

HOST_ATTEMPT_LOST = "Host: attempt lost on node"
"""The start of the reason an attempt the head placed fails with when its node no longer
runs it (an agent restarted under the same node id, a process gone)."""
UNKNOWN_ATTEMPT_REASON = "Host: the head node has no such running attempt"
RESEND_AFTER_MS = 2_000
"""An assignment not confirmed started (nor listed running) this long after it was sent goes
again with the next poll."""


class NodeGone(Exception):
    """The node was stopped by the operator; its agent must stop (410)."""


class StaleSession(Exception):
    """The call belongs to an ended session (an older epoch, or a LOST/STOPPED node); nothing
    was applied (409): the agent kills what it runs and registers again."""


class Forbidden(Exception):
    """The call's credential does not allow it (the agent door answers 403); nothing changed."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """What an agent call presented besides the head's token (its headers)."""

    secret: str | None = None
    """The node's own secret (``X-Mnp-Node-Secret``)."""
    join_token: str | None = None
    """The one-time join token (``X-Mnp-Join-Token``)."""
    head_token: bool = True
    """Whether the call carried the head's own token (a node that joined with a join token
    need not have it; a node joining an UNMANAGED environment by itself must)."""


class NodeSessions:
    """The agents of one head's nodes, as the HTTP layer hands their calls in."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.rt = scheduler
        self.s = scheduler.s
        self._appenders = _Appenders()

    # --- credentials ---------------------------------------------------------------------------
    def admit(self, node_id: str, creds: Credentials) -> Node:
        """The node a poll or report may act for: it exists (else :class:`NotFound`, the agent
        registers again) and ``creds`` carries its secret (else :class:`Forbidden`). The
        first call made with the secret retires the join token."""
        node = self.s.nodes.get(node_id)
        if node is None:
            raise NotFound(f"unknown node {node_id}")
        if not secret_matches(creds.secret, node.secret_hash):
            raise Forbidden(f"node {node_id}: missing or wrong X-Mnp-Node-Secret")
        if node.join_hash is not None or not node.secret_used:
            node.join_hash = None  # the agent has its secret: the join token is spent
            node.secret_used = True
            self.s.mark_node(node)
        return node

    def admit_register(self, r: Register, creds: Credentials) -> bool:
        """Whether ``r`` may register, and how: returns True when it joins (the caller then
        issues the node's secret after :meth:`register`), False for a re-registration made
        with the node's secret. A node the head knows joins with its join token (kept until
        the secret is first used, so a join whose answer was lost may be repeated); a new node
        may join only an UNMANAGED environment (nobody minted a token for it; the head's token
        admitted the call), and may join again on the head's token until its secret is first
        used (its first answer may have been lost). Raises :class:`Forbidden` otherwise;
        changes nothing."""
        node = self.s.nodes.get(r.node_id)
        if node is None:
            if not creds.head_token:
                raise Forbidden(f"node {r.node_id}: a new node joins with the head's token")
            return True  # register() refuses a new node of a MANAGED environment
        if node.secret_hash is not None and secret_matches(creds.secret, node.secret_hash):
            self.admit(r.node_id, creds)
            return False
        if secret_matches(creds.join_token, node.join_hash):
            return True
        if not node.secret_used and creds.head_token and self._unmanaged(node):
            return True
        raise Forbidden(
            f"node {r.node_id} exists: register with its X-Mnp-Node-Secret"
            " (or, before it joined, the X-Mnp-Join-Token it was launched with)"
        )

    def _unmanaged(self, node: Node) -> bool:
        ce = self.s.ces.get(node.compute_environment)
        return ce is not None and ce.type == ComputeEnvironmentType.UNMANAGED

    def issue_secret(self, node_id: str) -> str:
        """A new secret for a node that just joined (replacing any earlier one), stored hashed
        and durable before it is returned."""
        node = self.s.nodes[node_id]
        secret, node.secret_hash = new_secret()
        node.secret_used = False
        self.s.mark_node(node)
        self.s.flush()
        return secret

    # --- calls -----------------------------------------------------------------------------------
    def register(self, r: Register) -> None:
        """A node's agent starts (or starts again). An UNMANAGED environment's node joins
        here; a MANAGED one must have been launched by this head. Raises :class:`NotFound`
        for an unknown environment or node, :class:`NodeGone` for a STOPPED node,
        :class:`~mnp.errors.Conflict` naming the field when a known node announces another
        compute environment, address, capacity or SSH host key than it has (the operator
        removes the node to change them). Success starts a new session (the node's
        ``session_epoch``, incremented and durable before this returns); a LOST node rejoins
        this way."""
        s = self.s
        node = s.nodes.get(r.node_id)
        now = s.clock()
        if node is not None and node.status == NodeStatus.STOPPED:
            raise NodeGone(node.node_id)
        if node is not None:
            _check_unchanged(node, r)
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
        if node.status == NodeStatus.LOST:
            s.node_rt[node.node_id] = NodeRuntime()  # its attempts were failed when lost
        node.session_epoch += 1
        node.status = NodeStatus.ACTIVE
        node.registered_at = node.registered_at or now
        node.last_heartbeat_ms = now
        node.pid = r.pid or node.pid
        node.capacity = Resources(r.vcpus, r.memory_mib, r.gpus)
        node.address = node.address or r.address  # an EC2 node's, at its first registration
        if r.instance is not None:  # what its metadata service says
            node.instance_id = r.instance.instance_id
            node.instance_type = r.instance.instance_type
            node.zone = r.instance.availability_zone
        node.ssh_port = r.ssh_port
        node.ssh_host_key = r.ssh_host_key
        node.interface = r.interface
        s.mark_node(node)
        self._reconcile(node, s.node_rt[node.node_id], set(r.running))
        s.flush()
        s.on_wake()

    def poll(self, p: Poll) -> PollReply:
        """Heartbeat; hand over queued work and re-send unconfirmed assignments; the reply
        grants a lease. Raises :class:`NotFound` for an unknown node, :class:`StaleSession`
        (nothing applied) for another session's poll or a LOST or STOPPED node."""
        s = self.s
        node = s.nodes.get(p.node_id)
        if node is None:
            raise NotFound(f"unknown node {p.node_id}")
        check_session(node, p.epoch)
        now = s.clock()
        node.last_heartbeat_ms = now
        if p.notice is not None and not node.draining:
            # nothing new lands; what runs goes on until the instance goes (then it is lost)
            node.draining = True
            node.status_reason = f"interruption notice: {p.notice}"
            s.mark_node(node)
            log.warning("node %s drained: %s", node.node_id, node.status_reason)
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
        lease = s.config.lease
        return PollReply(assignments=assignments, kills=kills, ready=ready, lease_seconds=lease)

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
        many were new. Raises :class:`NotFound` for an unknown node, :class:`StaleSession`
        for another session's report or a LOST or STOPPED node, :class:`Forbidden` when an
        event names an attempt the head placed on another node (both apply none)."""
        s = self.s
        node = s.nodes.get(r.node_id)
        if node is None:
            raise NotFound(f"unknown node {r.node_id}")
        self._check_own(node, r.events)
        check_session(node, r.epoch)
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

    def _check_own(self, node: Node, events: list[Event]) -> None:
        """Raise :class:`Forbidden` if an event names an attempt of an active job that the
        head placed on another node. (An ended job's attempts are no longer held here; its
        late events change no state, only its ``log`` events still append output.)"""
        for ev in events:
            job_id, _, number_text = ev.attempt_id.rpartition("/")
            job = self.s.active.get(job_id)
            if job is None:
                continue
            for attempt in job.attempts:
                if str(attempt.number) == number_text and attempt.node_id != node.node_id:
                    raise Forbidden(
                        f"node {node.node_id} reported on attempt {ev.attempt_id}"
                        f" of node {attempt.node_id}"
                    )

    def _event(self, node: Node, rt: NodeRuntime, ev: Event) -> None:
        """One event of the attempt it names; events of an attempt no longer current are
        dropped (a late report from before a retry)."""
        job_id, _, number_text = ev.attempt_id.rpartition("/")
        job = self.s.active.get(job_id)
        if ev.kind == "log":
            self._write_log(job_id, int(number_text), ev)
            return
        if ev.kind in ("exited", "start_failed"):
            self._appenders.ended(job_id, int(number_text))
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
        stream = ev.stream or "stdout"
        data = ev.data.encode()
        key = (job_id, attempt, stream)
        log_file, times = self._appenders.get(key, lambda: self.rt.log_path(*key))
        try:
            size = log_file.tell()
            if ev.offset + len(data) <= size:
                return  # already have it (a re-sent event)
            if ev.offset < size:
                data = data[size - ev.offset :]
            times.write(f"{size} {ev.time_ms}\n".encode())  # first: no bytes without a time
            log_file.write(data)
        except OSError:
            self._appenders.drop(key)
            raise
        if data:
            self._saw_output(job_id, attempt)

    def _saw_output(self, job_id: str, number: int) -> None:
        """Note that the attempt has output: in the attempt (saved with its job), or, for a
        job that has ended (its late output), straight in the store's stream index."""
        job = self.s.active.get(job_id)
        if job is None:
            self.s.store.stream_has_output(job_id, number)
            return
        for attempt in job.attempts:
            if attempt.number == number:
                attempt.output = True


LOG_HANDLES = 64
"""Logs kept open for appending (two files each: the log and its times, see
:func:`mnp.nodes.logstreams.record_chunk_time`): the attempts writing most recently."""

_LogKey = tuple[str, int, str]
"""(job id, attempt number, stream)."""


class _Appenders:
    """Open append handles of the logs being written, so a ``log`` event costs two writes, not
    a ``mkdir`` and two opens. Unbuffered: a reader sees every byte once it is written. The
    head is the files' only writer, so a handle's position is the file's size. Bounded (the
    least recently written closed first); an attempt's are closed once it has ended."""

    def __init__(self, limit: int = LOG_HANDLES) -> None:
        self._limit = limit
        self._open: dict[_LogKey, tuple[BinaryIO, BinaryIO]] = {}

    def get(self, key: _LogKey, path: Callable[[], Path]) -> tuple[BinaryIO, BinaryIO]:
        handles = self._open.pop(key, None)
        if handles is None:
            where = path()
            log_file = _append(where)
            try:
                handles = (log_file, _append(times_path(where)))
            except OSError:
                log_file.close()
                raise
        self._open[key] = handles  # the most recent last
        while len(self._open) > self._limit:
            self.drop(next(iter(self._open)))
        return handles

    def drop(self, key: _LogKey) -> None:
        for f in self._open.pop(key, ()):
            f.close()

    def ended(self, job_id: str, attempt: int) -> None:
        """The attempt has ended: its output is complete (the agent reports every byte
        before the exit); a late re-sent event opens its files again."""
        if self._open:
            for stream in ("stdout", "stderr"):
                self.drop((job_id, attempt, stream))


def _append(path: Path) -> BinaryIO:
    """``path`` opened to append, unbuffered; its folder is made only when missing (the first
    event of an attempt's log)."""
    try:
        return open(path, "ab", buffering=0)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "ab", buffering=0)


def check_session(node: Node, epoch: int) -> None:
    """Raise :class:`StaleSession` unless a call of session ``epoch`` may act for ``node``:
    the node is LAUNCHING or ACTIVE and ``epoch`` is its current session."""
    if node.status in (NodeStatus.LOST, NodeStatus.STOPPED):
        raise StaleSession(f"stale session: node {node.node_id} is {node.status.value}")
    if epoch != node.session_epoch:
        raise StaleSession(
            f"stale session: epoch {epoch} of node {node.node_id} ended"
            f" (its session is {node.session_epoch}); register again"
        )


def _check_unchanged(node: Node, r: Register) -> None:
    """Raise :class:`~mnp.errors.Conflict` naming the first field of ``r`` that differs from
    the known node's record. The SSH port may change (a restarted agent picks a free one); the
    host key may be set once (the first registration of a launched node)."""
    have = node.capacity
    fields: list[tuple[str, object, object]] = [
        ("computeEnvironment", node.compute_environment, r.compute_environment),
        # an EC2 node's address is known once its instance runs: the first one given stands
        ("address", node.address or r.address, r.address),
        ("vcpus", int(have.vcpus), r.vcpus),  # a launched agent is told int(vcpus)
        ("memoryMiB", have.memory_mib, r.memory_mib),
        ("gpus", have.gpus, r.gpus),
    ]
    if node.ssh_host_key is not None:
        fields.append(("sshHostKey", node.ssh_host_key, r.ssh_host_key))
    if node.instance_id is not None and r.instance is not None:  # the one launched for it
        fields.append(("instance.instanceId", node.instance_id, r.instance.instance_id))
    for name, was, now in fields:
        if was != now:
            raise Conflict(
                f"{name}: node {node.node_id} is registered with {was!r}, not {now!r}; a node's"
                " identity, capacity and host key cannot change (remove the node instead)"
            )
