"""The head node's behaviour, one method per operation (AWS Batch's names and shapes).

Both front doors (the native API, and the AWS Batch wire protocol) call these. Each method
takes the JSON body as received and returns the JSON answer; invalid input raises
:class:`~mnp.errors.InvalidInput` before anything is written. Methods that change state flush
it to the store before returning. Not thread-safe: call from the head node's event loop.
"""

from __future__ import annotations

from typing import Any

from mnp.scheduler.loop import Runtime
from mnp.scheduler.state import HeadState
from mnp.service.base import JOB_DEFINITION_MAX, MNP_SUBMIT_MAX, SUBMIT_MAX
from mnp.service.jobs import JobOps
from mnp.service.render import (
    node_detail,
)
from mnp.service.resources import ResourceOps
from mnp.spec.model import (
    NodeStatus,
    Resources,
    SchedulingPolicy,
)
from mnp.spec.states import JobStatus

__all__ = ["JOB_DEFINITION_MAX", "MNP_SUBMIT_MAX", "SUBMIT_MAX", "Service"]


class Service(JobOps, ResourceOps):
    def __init__(self, state: HeadState, runtime: Runtime) -> None:
        self.s = state
        self.rt = runtime
        self.policies: dict[str, SchedulingPolicy] = {}
        """Fair-share scheduling policies by name."""

    # --- loading ------------------------------------------------------------------------------
    def load(self) -> None:
        """Rebuild memory from the store (start and restart)."""
        s = self.s
        for d in s.store.load_definitions():
            s.definitions.setdefault(d.name, []).append(d)
        s.queues = {q.name: q for q in s.store.load_queues()}
        s.ces = {c.name: c for c in s.store.load_ces()}
        self.policies = {p.name: p for p in s.store.load_policies()}
        from mnp.scheduler.state import NodeRuntime

        for n in s.store.load_nodes():
            s.nodes[n.node_id] = n
            s.node_rt[n.node_id] = NodeRuntime()
        for job in s.store.load_active_jobs():
            s.add_job(job)
            attempt = job.current_attempt
            if job.status in (JobStatus.STARTING, JobStatus.RUNNING) and attempt is not None:
                rt = s.node_rt.get(attempt.node_id)
                if rt is None:
                    continue
                aid = f"{job.job_id}/{attempt.number}"
                rt.running[aid] = job
                if job.is_node:  # an MNP node holds the whole node
                    node = s.nodes[attempt.node_id]
                    rt.used = Resources(
                        node.capacity.vcpus, node.capacity.memory_mib, node.capacity.gpus
                    )
                    rt.gang_of = job.parent_id
                else:
                    rt.used = rt.used.plus(job.resources)
                if job.status == JobStatus.STARTING:
                    rt.unacked[aid] = (self.rt.assignment(job, attempt), 0)
            if job.is_mnp_parent and job.status == JobStatus.RUNNABLE and job.gang:
                self.rt.gangs.retrying.add(job.job_id)
            if job.is_mnp_parent and job.gang_state.get("hang_after"):
                self.rt.gangs.watched.add(job.job_id)
        s.dirty.clear()
        self.rt.adopt_nodes()
        s.flush()

    # --- mnp's own --------------------------------------------------------------------------------
    def list_nodes(self, body: dict[str, Any]) -> dict[str, Any]:
        ce = body.get("computeEnvironment")
        nodes = [n for n in self.s.nodes.values() if ce is None or n.compute_environment == ce]
        if not body.get("includeGone"):
            nodes = [n for n in nodes if n.status in (NodeStatus.ACTIVE, NodeStatus.LAUNCHING)]
        return {
            "nodes": [
                node_detail(n, self.s.node_rt.get(n.node_id))
                for n in sorted(nodes, key=lambda n: (n.compute_environment, n.slot))
            ]
        }

    def ensure_defaults(self) -> None:
        """Create the embedded default (local environment + default queue) when configured."""
        local = self.s.config.local
        if local is None:
            return
        if local.name not in self.s.ces:
            self.create_compute_environment(
                {
                    "computeEnvironmentName": local.name,
                    "type": "MANAGED",
                    "mnp": {
                        "provider": "local",
                        "nodes": local.nodes,
                        "vcpus": local.vcpus,
                        "memoryMiB": local.memory_mib,
                        "gpus": local.gpus,
                        "firstAddress": local.first_address,
                    },
                }
            )
        else:
            ce = self.s.ces[local.name]
            ce.node_resources = Resources(local.vcpus, local.memory_mib, local.gpus)
            self._resize(ce, local.nodes)
            with self.s.store.transaction():
                self.s.store.save_ce(ce)
        if self.s.config.default_queue not in self.s.queues:
            self.create_job_queue(
                {
                    "jobQueueName": self.s.config.default_queue,
                    "priority": 1,
                    "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": local.name}],
                }
            )
