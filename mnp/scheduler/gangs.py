# ~410 lines: one gang's life (start, ready, hang watch, teardown, outcome) reads as one story.
"""Multi-node parallel jobs at run time: a gang of whole nodes, main node first.

Lifecycle of one attempt of an MNP job ``P`` with node jobs ``P#0 … P#n-1``:

1. :meth:`Gangs.place` holds every node of the gang at once (the scheduler found them idle
   in one environment), moves ``P`` to STARTING and starts the main node.
2. When the main node reports started, ``P`` is RUNNING and every other node is started.
   The main node's command runs under ``launcher.wire``, which waits until every node
   answers over SSH with the job's key before the user's command (or mpiexec) begins.
3. The main node's end decides the attempt (:meth:`Gangs._decide`, with the rule every
   attempt follows: :func:`mnp.scheduler.attempts.attempt_outcome`): SUCCEEDED, FAILED or a
   retry with a fresh gang. Every other node is then stopped. A node that is lost or fails
   first records why and stops the main node, so the attempt fails within seconds.
4. Each node job settles to its parent's outcome once its own attempt has ended; a node's
   hold is released as its attempt ends. A retry is placed only when every node has settled.
"""

from __future__ import annotations

from typing import Protocol

from mnp.build.environment import slurm_request_environment
from mnp.build.multinode import (
    GangNode,
    build_wiring,
    main_command,
    master_port,
    node_environment,
    wiring_files,
)
from mnp.build.outputs import attempt_files
from mnp.providers import netns
from mnp.scheduler.attempts import AttemptEnd, AttemptRun, attempt_outcome, record_end
from mnp.scheduler.sshkeys import generate_job_key
from mnp.scheduler.state import HeadState
from mnp.spec.environments import Node
from mnp.spec.jobs import HOST_PREFIX, Attempt, GangAttemptState, Job, node_job_id
from mnp.spec.protocol import SCRIPT_PLACEHOLDER, Ready, attempt_id
from mnp.spec.states import JobStatus

LIVE = (JobStatus.STARTING, JobStatus.RUNNING)


class AttemptRunner(Protocol):
    """What gangs need of the scheduling loop (:class:`mnp.scheduler.loop.Scheduler`)."""

    def start_attempt(self, job: Job, node: Node) -> Attempt:
        """Make the job's next attempt on ``node`` and queue its assignment."""
        ...

    def kill(self, job: Job, reason: str) -> None:
        """Ask the node of the job's current attempt to stop it."""
        ...

    def ready(self, node_id: str, ready: Ready) -> None:
        """Tell ``node_id`` (at least once) that its main-node attempt may go."""
        ...


class Gangs:
    """The MNP jobs of one head (single-threaded: the head's event loop)."""

    def __init__(self, state: HeadState, runner: AttemptRunner) -> None:
        self.rt = runner
        self.s = state
        self.watched: set[str] = set()
        """MNP jobs with a hang deadline (see :meth:`session_ended`)."""
        self.retrying: set[str] = set()
        """MNP jobs back in RUNNABLE whose old nodes may still be stopping."""

    # --- helpers ------------------------------------------------------------------------------
    def nodes_of(self, parent: Job) -> list[Job]:
        spec = parent.spec.nodes
        assert spec is not None
        ids = (node_job_id(parent.job_id, i) for i in range(spec.num_nodes))
        return [j for jid in ids if (j := self.s.job(jid))]

    def parent_of(self, node_job: Job) -> Job | None:
        """The node's MNP job (read from the store once it finished and left memory)."""
        return self.s.job(node_job.parent_id or "") if node_job.parent_id else None

    def gang(self, parent: Job) -> list[GangNode]:
        return [
            GangNode(int(i), self.s.nodes[nid])
            for i, nid in sorted(parent.gang.items(), key=lambda kv: int(kv[0]))
        ]

    def settled(self, parent: Job) -> bool:
        """No node job of the parent has a live attempt (a retry may take a new gang)."""
        return not any(j.status in LIVE for j in self.nodes_of(parent)) if parent.gang else True

    # --- placing --------------------------------------------------------------------------------
    def place(self, parent: Job, node_ids: tuple[str, ...]) -> set[str]:
        s = self.s
        spec = parent.spec.nodes
        assert spec is not None
        self.retrying.discard(parent.job_id)
        taken = {
            j.gang_state.port
            for j in s.active.values()
            if j.gang_state.port and j.status in LIVE and j is not parent
        }
        key = generate_job_key(f"mnp-{parent.job_id}")
        parent.gang = {str(i): nid for i, nid in enumerate(node_ids)}
        parent.gang_state = GangAttemptState(port=master_port(parent.job_id, taken), key=key)
        s.set_status(parent, JobStatus.STARTING, None)
        for nid in node_ids:
            s.node_rt[nid].reserve_whole(s.nodes[nid].capacity, parent.job_id)
        now = s.clock()
        for i in range(spec.num_nodes):
            if self.s.job(node_job_id(parent.job_id, i)) is None:
                s.add_child(parent, JobStatus.RUNNABLE, now, node_index=i)
        main = s.active[node_job_id(parent.job_id, spec.main_node)]
        self._start(main, s.nodes[node_ids[spec.main_node]])
        return {node_ids[spec.main_node]}

    def _start(self, job: Job, node: Node) -> None:
        self.rt.start_attempt(job, node)
        self.s.on_node_work(node.node_id)

    def run(self, job: Job, attempt: Attempt, env: dict[str, str]) -> AttemptRun:
        """What one node of the gang runs (every node gets the wiring files), for
        :meth:`Scheduler.assignment`; ``env`` (the job's environment) gets the gang's
        variables added."""
        parent = self.s.active.get(job.parent_id or "") or self.s.job(job.parent_id or "")
        assert parent is not None and parent.spec.nodes is not None and job.node_index is not None
        spec = parent.spec.nodes
        gang = self.gang(parent)
        index = job.node_index
        iface = gang_interface([g.node for g in gang])
        port, key = parent.gang_state.port, parent.gang_state.key
        assert port is not None and key is not None  # set when the gang was placed
        env.update(node_environment(parent, gang, index, port, iface))
        env.update(slurm_request_environment(parent))
        command = list(job.container.command)
        is_main = index == spec.main_node
        hold = not command and not (is_main and parent.spec.extras.script is not None)
        private, public = key
        # every node gets the key, ssh_config and known_hosts: `ssh <peer>` works from any node
        slots = [spec.tasks_per_node or int(g.node.capacity.vcpus) for g in gang]
        files = wiring_files(gang, slots, private, spec.main_node)
        if is_main:
            if parent.spec.extras.script is not None:
                command = [SCRIPT_PLACEHOLDER, *command]
            command = main_command(parent, command)
        return AttemptRun(
            command=command,
            timeout_seconds=parent.spec.timeout_seconds if is_main else None,
            files=attempt_files(parent, attempt, main=is_main),
            wiring=build_wiring(gang, index, spec.main_node, public, files, env, hold),
        )

    # --- events ---------------------------------------------------------------------------------
    def started(self, job: Job) -> None:
        """A node reported its process started (the caller moved it to RUNNING)."""
        parent = self.parent_of(job)
        spec = parent.spec.nodes if parent else None
        if parent is None or spec is None or parent.gang_state.outcome is not None:
            return
        if job.node_index == spec.main_node and parent.status == JobStatus.STARTING:
            parent.started_at = job.started_at
            self.s.set_status(parent, JobStatus.RUNNING, None)
            for child in self.nodes_of(parent):
                if child.node_index != spec.main_node and child.status == JobStatus.RUNNABLE:
                    self._start(child, self.s.nodes[parent.gang[str(child.node_index)]])
        self._maybe_ready(parent)

    def _maybe_ready(self, parent: Job) -> None:
        """Once every node of the attempt has started, tell the main node to go."""
        spec = parent.spec.nodes
        assert spec is not None
        if parent.gang_state.ready_sent or parent.status != JobStatus.RUNNING:
            return
        nodes = self.nodes_of(parent)
        if any(
            j.current_attempt is None or j.current_attempt.started_at is None
            for j in nodes
            if j.status != JobStatus.RUNNABLE or j.node_index == spec.main_node
        ) or any(j.status == JobStatus.RUNNABLE for j in nodes):
            return
        main = nodes[spec.main_node]
        attempt = main.current_attempt
        assert attempt is not None
        parent.gang_state.ready_sent = True
        self.s.mark(parent)
        self.rt.ready(attempt.node_id, Ready(attempt_id(main.job_id, attempt.number)))

    def ended(self, job: Job, end: AttemptEnd) -> None:
        """A node's attempt ended (exit, start failure, lost node, kill)."""
        s = self.s
        attempt = job.current_attempt
        if attempt is None:
            return
        record_end(attempt, end, s.clock())
        attempt.status_reason = end.status_reason
        aid = attempt_id(job.job_id, attempt.number)
        rt = s.node_rt.get(attempt.node_id)
        if rt is not None:
            rt.release(aid)
            rt.release_whole(job.parent_id)
        parent = self.parent_of(job)
        if parent is None or parent.spec.nodes is None:
            return
        spec = parent.spec.nodes
        is_main = job.node_index == spec.main_node
        if parent.gang_state.outcome is None:
            if is_main:
                self._decide(parent, attempt, end)
            else:
                clean = end.exit_code == 0 and not end.status_reason.startswith(HOST_PREFIX)
                if not clean:
                    failure = (
                        f"Node {job.job_id} on {attempt.node_id} ({attempt.address}) failed: "
                        f"{end.exit_code}"
                        if end.exit_code is not None
                        else end.status_reason
                    )
                    parent.gang_state.failure = failure
                    self.s.mark(parent)
                    self._stop_others(parent, job, failure)
                    return  # settles once the main node's end decides the attempt
                return  # a node that finished cleanly waits for the main node
        self._settle(job, parent)
        s.on_wake()

    def restored(self, job: Job) -> None:
        """A job loaded at a restart (:meth:`Scheduler.restore`): an MNP job waiting for a
        retry, or watched for a hung MPI launch, is so again."""
        if job.is_mnp_parent and job.status == JobStatus.RUNNABLE and job.gang:
            self.retrying.add(job.job_id)
        if job.is_mnp_parent and job.gang_state.hang_after is not None:
            self.watched.add(job.job_id)

    def resend_after_restart(self, job: Job) -> None:
        """A node job loaded at a restart: what its gang had decided before is told again
        (:class:`~mnp.scheduler.control.Control` kept it in memory only). A node of an attempt
        whose outcome or failure was decided, or the main node of a terminated job, is killed
        again; a main node whose Ready was decided is told Ready again."""
        parent = self.parent_of(job)
        attempt = job.current_attempt
        spec = parent.spec.nodes if parent else None
        if parent is None or spec is None or attempt is None or job.status not in LIVE:
            return
        if attempt.stopped_at is not None:
            return
        state = parent.gang_state
        is_main = job.node_index == spec.main_node
        if state.outcome is not None:
            self.rt.kill(job, f"main node finished: {parent.status_reason}")
        elif state.failure is not None and (is_main or state.failure != state.hang_reason):
            self.rt.kill(job, state.failure)  # a hang stops the main node; a failure all
        elif parent.is_terminated and is_main:
            self.rt.kill(job, parent.status_reason or "terminated")
        elif state.ready_sent and is_main and parent.status == JobStatus.RUNNING:
            self.rt.ready(attempt.node_id, Ready(attempt_id(job.job_id, attempt.number)))

    def session_started(self, job: Job) -> None:
        parent = self.parent_of(job)
        if parent is None or parent.gang_state.outcome is not None:
            return
        parent.gang_state.sessions += 1
        self.s.mark(parent)

    def session_ended(self, job: Job, exit_code: int | None, command: str) -> None:
        """An MPI daemon/proxy on a node ended. When one launch ends normally, all its
        daemons end together; if others of the job stay for ``mpi_hang_seconds``, it hung."""
        parent = self.parent_of(job)
        if (
            parent is None
            or parent.gang_state.outcome is not None
            or parent.status != JobStatus.RUNNING
        ):
            return
        state = parent.gang_state
        state.sessions = max(0, state.sessions - 1)
        self.s.mark(parent)
        if state.sessions == 0:  # the whole launch ended (a script may start the next one)
            state.hang_after = None
            state.hang_reason = None
            self.watched.discard(parent.job_id)
            return
        if state.hang_after is not None:
            return
        attempt = job.current_attempt
        where = f"{attempt.node_id} ({attempt.address})" if attempt else job.job_id
        grace = self.s.config.mpi_hang_seconds
        state.hang_after = self.s.clock() + int(grace * 1000)
        state.hang_reason = (
            f"MPI process on node {where} ended (exit {exit_code}) while the job's others on "
            f"the other nodes went on for {grace:g} s: stopped as hung ({command[:120]})"
        )
        self.watched.add(parent.job_id)

    def check_hangs(self) -> None:
        """Fail attempts that kept running after one of their MPI processes ended."""
        now = self.s.clock()
        for job_id in list(self.watched):
            parent = self.s.active.get(job_id)
            if parent is None:
                self.watched.discard(job_id)
                continue
            state = parent.gang_state
            if (
                state.outcome is not None
                or parent.status != JobStatus.RUNNING
                or state.failure is not None
                or state.hang_after is None
            ):
                self.watched.discard(job_id)
                continue
            if now >= state.hang_after and state.sessions > 0:
                failure = state.failure = state.hang_reason or ""
                self.s.mark(parent)
                spec = parent.spec.nodes
                assert spec is not None
                main = self.s.active.get(node_job_id(parent.job_id, spec.main_node))
                if main is not None and main.status in LIVE:
                    self.rt.kill(main, failure)

    def _decide(self, parent: Job, main_attempt: Attempt, end: AttemptEnd) -> None:
        """The main node's end is the attempt's end: the parent records it as its own attempt,
        takes the outcome, and every node still running is stopped (the rest settle now)."""
        copy = Attempt.from_doc(main_attempt.to_doc())
        copy.requeued = parent.gang_state.requeued
        parent.attempts.append(copy)
        outcome = attempt_outcome(parent, end, parent.gang_state.failure)
        why = copy.status_reason = outcome.reason
        parent.gang_state.outcome = outcome.status
        self.s.set_status(parent, outcome.status, why)
        if outcome.status == JobStatus.RUNNABLE:
            self.retrying.add(parent.job_id)
        for node_job in self.nodes_of(parent):
            if (
                node_job.status in LIVE
                and node_job.current_attempt is not None
                and node_job.current_attempt.stopped_at is None
            ):
                self.rt.kill(node_job, f"main node finished: {why}")
            else:
                self._settle(node_job, parent)

    def _stop_others(self, parent: Job, failed: Job, why: str) -> None:
        for node_job in self.nodes_of(parent):
            if (
                node_job is not failed
                and node_job.status in LIVE
                and node_job.current_attempt
                and node_job.current_attempt.stopped_at is None
            ):
                self.rt.kill(node_job, why)

    def _settle(self, job: Job, parent: Job) -> None:
        """Give a node job its parent's outcome (it has no live attempt by now). When that
        was the last node of the attempt, the attempt is over: its SSH key is dropped (every
        end, whether success, failure, teardown or a lost node, comes through here)."""
        self._give_outcome(job, parent)
        state = parent.gang_state
        if state.key is not None and state.outcome is not None and self.settled(parent):
            state.end()
            self.s.mark(parent)

    def _give_outcome(self, job: Job, parent: Job) -> None:
        target = parent.gang_state.outcome
        if target is None or job.status.terminal:
            return
        if target == JobStatus.SUCCEEDED and job.status != JobStatus.RUNNING:
            target = JobStatus.FAILED
        if target == job.status:
            return
        if target == JobStatus.RUNNABLE and job.status == JobStatus.RUNNABLE:
            return
        self.s.set_status(job, target, parent.status_reason)

    def cancelled(self, parent: Job) -> None:
        """The parent failed before it started again (cancel): its node jobs fail too; nodes
        still running from the last attempt are stopped and settle when they end."""
        parent.gang_state.outcome = JobStatus.FAILED
        self.s.mark(parent)
        for node_job in self.nodes_of(parent):
            attempt = node_job.current_attempt
            if node_job.status in LIVE and attempt is not None and attempt.stopped_at is None:
                self.rt.kill(node_job, parent.status_reason or "cancelled")
            else:
                self._settle(node_job, parent)

    def abandon(self, parent: Job, why: str) -> None:
        """Placing the gang failed half way: release the nodes and fail the job."""
        for nid in parent.gang.values():
            rt = self.s.node_rt.get(nid)
            if rt is not None and not rt.running:
                rt.release_whole(parent.job_id)
        for node_job in self.nodes_of(parent):
            attempt = node_job.current_attempt
            if node_job.status in LIVE and attempt is not None and attempt.stopped_at is None:
                self.rt.kill(node_job, why)
        if not parent.status.terminal:
            parent.gang_state.outcome = JobStatus.FAILED
            self.s.set_status(parent, JobStatus.FAILED, why)
            for node_job in self.nodes_of(parent):
                self._settle(node_job, parent)

    def terminate(self, parent: Job, reason: str) -> None:
        spec = parent.spec.nodes
        assert spec is not None
        main = self.s.active.get(node_job_id(parent.job_id, spec.main_node))
        if main is not None and main.status in LIVE:
            self.rt.kill(main, reason)


def gang_interface(nodes: list[Node]) -> str | None:
    """The interface a gang pins MPI, NCCL and gloo to: the one every node's agent reported
    holding its address (``eth0`` on each of several hosts) when they all name the same;
    else what the addresses say of local nodes (``lo`` for loopback aliases, ``eth0`` for
    namespace nodes); else None (MPI picks, and hydra falls back to host names)."""
    reported = {n.interface for n in nodes}
    if len(reported) == 1 and None not in reported:
        return reported.pop()
    return netns.interface_of([n.address for n in nodes])
