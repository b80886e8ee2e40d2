"""Why a job is where it is (``explainJob``, behind ``mnp why``): its status and
``statusReason``, its place in its queue in the order jobs would start, the capacity of the
queue's compute environments, and on a fair-share queue how its share's usage compares.

One call gathers what DescribeJobs, GetJobQueueSnapshot, DescribeComputeEnvironments and
``describeShares`` would give separately, read at one moment, so the picture is consistent.
Every identity may ask, as each of those is open to every identity; a caller who neither owns
the job nor is an admin sees the jobs ahead by id only (as GetJobQueueSnapshot names them),
without their names or owners.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from mnp.errors import InvalidInput, NotFound
from mnp.scheduler.fairshare import FairShareView, job_vcpus
from mnp.scheduler.timelimits import queue_limits, scheduling_order
from mnp.service.base import Context
from mnp.service.policies import PolicyOps
from mnp.service.requests import ByName
from mnp.service.users import Caller
from mnp.spec.environments import ComputeEnvironmentType, NodeStatus
from mnp.spec.jobs import Job
from mnp.spec.resources import Resources
from mnp.spec.states import JobStatus

JSON = dict[str, Any]
AHEAD_LISTED = 5
"""How many of the jobs ahead are named (all of them are counted)."""


class ExplainOps:
    def __init__(self, ctx: Context, policies: PolicyOps) -> None:
        self.ctx = ctx
        self.policies = policies

    def explain_job(self, req: ByName, caller: Caller) -> JSON:
        s = self.ctx.s
        job = s.job(self.ctx.job_id(req.ref)) if req.ref else None
        if job is None:
            raise NotFound(f"job {req.ref!r} does not exist")
        full = caller.is_admin or caller.owns(job.submitted_by)
        q = s.queues.get(job.queue)
        answer: JSON = {
            "jobId": job.job_id,
            "jobName": job.spec.name,
            "status": job.status.value,
            "statusReason": job.status_reason,
            "jobQueue": job.queue,
            "shareIdentifier": job.spec.share_identifier,
            "schedulingPriority": job.spec.scheduling_priority or 0,
            "needs": _needs(job),
        }
        if q is None:  # its queue was deleted since
            return answer
        view = self.ctx.rt.fair_share_views(s.clock()).get(q.name)
        answer["queue"] = {
            "name": q.name,
            "state": q.state.value,
            "priority": q.priority,
            "order": "FAIR_SHARE" if view is not None else "FIFO",
            "runnableJobs": len(s.runnable.get(q.name, {})),
            "jobStateTimeLimitActions": [
                {"reason": t.reason, "maxTimeSeconds": t.max_seconds,
                 "action": "TERMINATE" if t.terminate else "CANCEL"}
                for t in queue_limits(q.time_limit_actions)
            ],
        }  # fmt: skip
        if job.status == JobStatus.RUNNABLE:
            answer["position"] = self._position(job, view, full)
        answer["computeEnvironments"] = [self._capacity(name) for name in q.ce_names]
        if view is not None:
            try:
                answer["shares"] = self.policies.describe_shares(ByName(q.name))
            except InvalidInput:  # the policy went away in between
                pass
        return answer

    def _position(self, job: Job, view: FairShareView | None, full: bool) -> JSON:
        """How many RUNNABLE jobs of the queue would start before this one, what they need,
        and the first few of them."""
        ahead: list[Job] = []
        for other in scheduling_order(self.ctx.s.runnable.get(job.queue, {}).values(), view):
            if other.job_id == job.job_id:
                break
            ahead.append(other)
        listed = []
        for other in islice(ahead, AHEAD_LISTED):
            row: JSON = {"jobId": other.job_id, "vcpus": job_vcpus(other)}
            if full:
                row["jobName"] = other.spec.name
            if other.spec.share_identifier is not None:
                row["shareIdentifier"] = other.spec.share_identifier
            listed.append(row)
        return {
            "jobsAhead": len(ahead),
            "vcpusAhead": sum(job_vcpus(o) for o in ahead),
            "ahead": listed,
        }

    def _capacity(self, name: str) -> JSON:
        """One compute environment's capacity now: its live nodes, what they have free in
        all and on the emptiest node, and how many nodes (or vCPUs) it wants and may have."""
        s = self.ctx.s
        ce = s.ces.get(name)
        if ce is None:
            return {"computeEnvironmentName": name, "status": "DELETED"}
        active = [
            n for n in s.nodes.values()
            if n.compute_environment == name and n.status == NodeStatus.ACTIVE
        ]  # fmt: skip
        launching = sum(
            1 for n in s.nodes.values()
            if n.compute_environment == name and n.status == NodeStatus.LAUNCHING
        )  # fmt: skip
        free = [
            Resources(0, 0, 0) if n.draining else n.capacity.minus(s.node_rt[n.node_id].used)
            for n in active
            if n.node_id in s.node_rt
        ]
        managed = ce.type == ComputeEnvironmentType.MANAGED
        given = ce.doc.get("computeResources") or {}
        per_node = int(ce.node_resources.vcpus)
        if ce.ec2:
            desired, most = ce.desired_vcpus, given.get("maxvCpus")
        elif managed:
            desired, most = ce.desired_nodes * per_node, ce.node_count * per_node
        else:
            desired, most = None, ce.doc.get("unmanagedvCpus")
        biggest = max(free, key=lambda r: (r.vcpus, r.memory_mib), default=Resources(0, 0, 0))
        return {
            "computeEnvironmentName": name,
            "type": ce.type.value,
            "state": ce.state.value,
            "status": ce.status.value,
            "activeNodes": len(active),
            "launchingNodes": launching,
            "totalVcpus": sum(n.capacity.vcpus for n in active),
            "totalMemoryMiB": sum(n.capacity.memory_mib for n in active),
            "freeVcpus": sum(f.vcpus for f in free),
            "freeMemoryMiB": sum(f.memory_mib for f in free),
            "freeGpus": sum(f.gpus for f in free),
            "largestFree": {"vcpus": biggest.vcpus, "memoryMiB": biggest.memory_mib,
                            "gpus": biggest.gpus},
            "desiredNodes": ce.desired_nodes if managed and not ce.ec2 else None,
            "maxNodes": ce.node_count if managed and not ce.ec2 else None,
            "desiredvCpus": desired,
            "maxvCpus": most,
        }  # fmt: skip


def _needs(job: Job) -> JSON:
    """What the job needs to start: vCPUs (every node's, for a multi-node job), memory and
    GPUs of one container, and its node count."""
    nodes = job.spec.nodes
    r = job.resources
    return {
        "vcpus": job_vcpus(job),
        "memoryMiB": r.memory_mib,
        "gpus": r.gpus,
        "nodes": nodes.num_nodes if nodes is not None else 1,
    }
