# ~430 lines: queues and compute environments, which are created and checked against each other.
"""Job queues and compute environments (create, update, delete, describe), and queue snapshots.

Part of :class:`mnp.service.core.Service` (see there for the contract every operation keeps).
"""

from __future__ import annotations

import math
from itertools import islice
from typing import Any

from mnp.build.images import image_policy
from mnp.errors import Conflict, FieldError, InvalidInput, NotFound
from mnp.scheduler.timelimits import scheduling_order
from mnp.service.addresses import NodeAddresses
from mnp.service.base import (
    MAX_COMPUTE_ENVIRONMENTS,
    MAX_QUEUES,
    SNAPSHOT_JOBS,
    Context,
    _paginate,
)
from mnp.service.ec2envs import create_ec2, is_ec2, update_ec2
from mnp.service.filesystems import shared_filesystem
from mnp.service.jobs import JobOps
from mnp.service.models import (
    ComputeEnvironmentOrder,
    CreateComputeEnvironment,
    CreateJobQueue,
    LocalProviderSettings,
    UpdateComputeEnvironment,
    UpdateJobQueue,
)
from mnp.service.render import ce_detail, queue_detail
from mnp.service.requests import ByName, Described
from mnp.spec.arns import job_arn, name_from_arn, stored
from mnp.spec.environments import (
    CEStatus,
    ComputeEnvironment,
    ComputeEnvironmentType,
    JobQueue,
    NodeStatus,
    SchedulingPolicy,
    State,
)
from mnp.spec.jobs import Job
from mnp.spec.resources import Resources
from mnp.spec.states import JobStatus

JSON = dict[str, Any]


class ResourceOps:
    """Queues and environments; deleting a queue cancels its jobs through ``jobs``."""

    def __init__(self, ctx: Context, jobs: JobOps) -> None:
        self.ctx = ctx
        self.jobs = jobs
        self.addresses = NodeAddresses(ctx.s.config.node_network)

    # --- queues ---------------------------------------------------------------------------------
    def create_job_queue(self, req: CreateJobQueue) -> JSON:
        if req.jobQueueName in self.ctx.s.queues:
            raise Conflict(f"job queue {req.jobQueueName!r} already exists")
        if len(self.ctx.s.queues) >= MAX_QUEUES:
            raise InvalidInput(f"at most {MAX_QUEUES} job queues; delete one first")
        order = self._ce_order(req.computeEnvironmentOrder)
        policy = (
            self._policy_for_queue(req.schedulingPolicyArn) if req.schedulingPolicyArn else None
        )
        q = JobQueue(
            req.jobQueueName,
            req.priority,
            State(req.state),
            order,
            self.ctx.s.clock(),
            dict(req.tags or {}),
            stored(policy.arn) if policy else None,
            [a.model_dump() for a in req.jobStateTimeLimitActions or []],
        )
        with self.ctx.s.store.transaction():
            self.ctx.s.store.save_queue(q)
        self.ctx.s.queues[q.name] = q
        self.ctx.s.on_wake()
        return {"jobQueueName": q.name, "jobQueueArn": q.arn}

    def _ce_order(self, entries: list[ComputeEnvironmentOrder]) -> list[tuple[int, str]]:
        errors = []
        order = []
        for i, e in enumerate(entries):
            name = name_from_arn(e.computeEnvironment, "compute-environment")
            if name not in self.ctx.s.ces:
                errors.append(
                    FieldError(
                        f"computeEnvironmentOrder[{i}].computeEnvironment",
                        f"compute environment {name!r} does not exist",
                    )
                )
            order.append((e.order, name))
        if errors:
            raise InvalidInput(errors)
        return order

    def update_job_queue(self, req: UpdateJobQueue) -> JSON:
        q = self.ctx.queue(req.jobQueue)
        order = self._ce_order(req.computeEnvironmentOrder) if req.computeEnvironmentOrder else None
        if req.schedulingPolicyArn is not None:
            if q.scheduling_policy_arn is None:
                raise InvalidInput(
                    [
                        FieldError(
                            "schedulingPolicyArn",
                            f"job queue {q.name!r} is a FIFO queue: a scheduling policy can only "
                            "be given when the queue is created",
                        )
                    ]
                )
            if not req.schedulingPolicyArn:
                raise InvalidInput(
                    [
                        FieldError(
                            "schedulingPolicyArn",
                            "a job queue's scheduling policy can be replaced but not removed",
                        )
                    ]
                )
            q.scheduling_policy_arn = stored(self._policy_for_queue(req.schedulingPolicyArn).arn)
        if req.jobStateTimeLimitActions is not None:
            q.time_limit_actions = [a.model_dump() for a in req.jobStateTimeLimitActions]
        if req.state is not None:
            q.state = State(req.state)
        if req.priority is not None:
            q.priority = req.priority
        if order is not None:
            q.compute_environment_order = order
        with self.ctx.s.store.transaction():
            self.ctx.s.store.save_queue(q)
        self.ctx.s.on_wake()
        return {"jobQueueName": q.name, "jobQueueArn": q.arn}

    def delete_job_queue(self, req: ByName) -> JSON:
        """Cancels (terminates) the queue's jobs, then deletes it; it must be DISABLED."""
        q = self.ctx.queue(req.ref)
        if q.state != State.DISABLED:
            raise InvalidInput(
                [FieldError("jobQueue", f"job queue {q.name!r} must be DISABLED first")]
            )
        s = self.ctx.s
        for job in [j for j in s.active.values() if j.queue == q.name and j.parent_id is None]:
            self.jobs.cancel(job, "Job queue deleted", terminate=True)
        with self.ctx.s.store.transaction():
            self.ctx.s.store.delete_queue(q.name)
        del self.ctx.s.queues[q.name]
        self.ctx.s.flush()
        return {}

    def describe_job_queues(self, req: Described) -> JSON:
        names = [name_from_arn(n, "job-queue") for n in req.names]
        qs = [q for q in self.ctx.s.queues.values() if not names or q.name in names]
        return _paginate(
            "jobQueues", [queue_detail(q) for q in sorted(qs, key=lambda q: q.name)], req.page, 100
        )

    def _policy_for_queue(self, ref: str) -> SchedulingPolicy:
        try:
            return self.ctx.policy(ref)
        except NotFound as e:
            raise InvalidInput([FieldError("schedulingPolicyArn", str(e))]) from None

    # --- compute environments -------------------------------------------------------------------
    def create_compute_environment(self, req: CreateComputeEnvironment) -> JSON:
        """A new environment (CREATING until the scheduler's next tick takes it in). With an
        ``mnp`` block, a fixed number of nodes, there from the start; AWS-shaped (no ``mnp``
        block, ``computeResources`` given), elastic: between ``minvCpus`` and ``maxvCpus``
        from demand, starting at ``desiredvCpus`` (:meth:`_local_settings`, :func:`_bounds`).
        Bounds that cannot hold are refused naming the field, before anything is made."""
        if req.computeEnvironmentName in self.ctx.s.ces:
            raise Conflict(f"compute environment {req.computeEnvironmentName!r} already exists")
        if len(self.ctx.s.ces) >= MAX_COMPUTE_ENVIRONMENTS:
            raise InvalidInput(
                f"at most {MAX_COMPUTE_ENVIRONMENTS} compute environments; delete one first"
            )
        if is_ec2(self.ctx, req):
            return create_ec2(self.ctx, req)
        m = req.mnp if "mnp" in req.model_fields_set else self._local_settings(req)
        shared = shared_filesystem(m.sharedFilesystem, req.tags, "bind")
        image_policy(req.tags)  # how its nodes run images (mnp.build.images)
        self.addresses.check(m.firstAddress)
        ce = ComputeEnvironment(
            name=req.computeEnvironmentName,
            type=ComputeEnvironmentType(req.type),
            state=State(req.state),
            provider=m.provider,
            node_count=m.nodes,
            node_resources=Resources(m.vcpus, m.memoryMiB, m.gpus),
            created_at=self.ctx.s.clock(),
            doc=req.model_dump(exclude_none=True, exclude={"mnp"}),
            first_address=m.firstAddress,
            shared_filesystem=shared,
        )
        if ce.type == ComputeEnvironmentType.MANAGED:
            elastic = "mnp" not in req.model_fields_set and req.computeResources is not None
            if elastic:  # an AWS-shaped request: scaled from demand within its vCPUs
                self._set_bounds(ce, req.computeResources or {}, req.computeResources or {})
            else:  # mnp's own block (or none): a fixed size, there from the start
                ce.min_nodes = ce.desired_nodes = ce.node_count
        with self.ctx.s.store.transaction():
            self.ctx.s.store.save_ce(ce)
        self.ctx.s.ces[ce.name] = ce
        self.ctx.s.on_wake()
        return {"computeEnvironmentName": ce.name, "computeEnvironmentArn": ce.arn}

    def update_compute_environment(self, req: UpdateComputeEnvironment) -> JSON:
        """Apply an update (UPDATING until the next tick): ``minvCpus``/``maxvCpus``/
        ``desiredvCpus`` of an elastic environment as AWS does (checked first against the
        stored ones; a lower maximum stops idle nodes beyond it now and drains busy ones),
        ``mnp.nodes`` sets a fixed size."""
        ce = self.ctx.ce(req.computeEnvironment)
        given = req.computeResources or {}
        if ce.ec2 and given:
            update_ec2(ce, given)  # checked before anything changes
        merged = {**(ce.doc.get("computeResources") or {}), **given}
        vcpu_keys = ("minvCpus", "maxvCpus", "desiredvCpus")
        scaled = (
            ce.type == ComputeEnvironmentType.MANAGED
            and not ce.ec2
            and any(k in given for k in vcpu_keys)
        )
        fixed = req.mnp is not None and req.mnp.nodes is not None
        # checked before anything changes: nothing accepted may fail later
        bounds = _bounds(merged, given, ce.node_resources.vcpus) if scaled and not fixed else None
        if req.state is not None:
            ce.state = State(req.state)
        for key in ("serviceRole", "unmanagedvCpus", "updatePolicy", "context"):
            value = getattr(req, key)
            if value is not None:
                ce.doc[key] = value
        if req.computeResources:
            ce.doc["computeResources"] = {
                **(ce.doc.get("computeResources") or {}),
                **req.computeResources,
            }
        if req.mnp is not None and req.mnp.nodes is not None:
            self.resize(ce, req.mnp.nodes)
        elif bounds is not None:
            ce.min_nodes, ce.node_count, desired = bounds
            low = max(ce.min_nodes, min(ce.node_count, ce.desired_nodes))
            ce.desired_nodes = desired if desired is not None else low
            self._stop_idle_beyond(ce)
        if ce.status in (CEStatus.VALID, CEStatus.INVALID):  # CREATING: taken in as created
            ce.move(CEStatus.UPDATING, ce.status_reason)
        with self.ctx.s.store.transaction():
            self.ctx.s.store.save_ce(ce)
        self.ctx.s.on_wake()
        return {"computeEnvironmentName": ce.name, "computeEnvironmentArn": ce.arn}

    def _local_settings(self, req: CreateComputeEnvironment) -> LocalProviderSettings:
        """Local nodes for an AWS-shaped request (no ``mnp`` block): nodes of the embedded
        default's shape, at most as many as ``computeResources.maxvCpus`` needs (at most 64;
        how many run is scaled from demand, :func:`_bounds`), at addresses no other
        environment uses (:mod:`mnp.service.addresses`)."""
        local = self.ctx.s.config.local
        shape = LocalProviderSettings()
        vcpus = local.vcpus if local else shape.vcpus
        max_vcpus = (req.computeResources or {}).get("maxvCpus")
        nodes = 0
        if req.type == "MANAGED":
            nodes = shape.nodes
            if isinstance(max_vcpus, int) and max_vcpus >= 0:
                nodes = min(64, math.ceil(max_vcpus / vcpus))
        reserved = (local.first_address or self.addresses.default_first()) if local else None
        first = self.addresses.next_first(self.ctx.s.ces.values(), reserved)
        return LocalProviderSettings(
            nodes=nodes,
            vcpus=vcpus,
            memoryMiB=local.memory_mib if local else shape.memoryMiB,
            gpus=local.gpus if local else shape.gpus,
            firstAddress=first,
        )

    def resize(self, ce: ComputeEnvironment, count: int) -> None:
        """A fixed size: ``count`` nodes, no more, no fewer (min = max = desired)."""
        ce.node_count = ce.min_nodes = ce.desired_nodes = count
        self._stop_idle_beyond(ce)

    def _set_bounds(self, ce: ComputeEnvironment, merged: JSON, given: JSON) -> None:
        ce.min_nodes, ce.node_count, desired = _bounds(merged, given, ce.node_resources.vcpus)
        ce.desired_nodes = desired if desired is not None else ce.min_nodes

    def _stop_idle_beyond(self, ce: ComputeEnvironment) -> None:
        """Stop at once the idle live nodes beyond the environment's most (the highest slots
        first); busy ones beyond it are drained by the scheduler and stop when their work
        ends (:mod:`mnp.scheduler.scaling`)."""
        live = [
            n
            for n in self.ctx.s.nodes.values()
            if n.compute_environment == ce.name
            and n.status in (NodeStatus.ACTIVE, NodeStatus.LAUNCHING)
        ]
        extra = len(live) - ce.node_count
        idle = [n for n in live if not self.ctx.s.node_rt[n.node_id].running]
        idle.sort(key=lambda n: -n.slot)
        if extra > 0 and idle:
            self.ctx.rt.stop_nodes(idle[:extra], "removed when the compute environment shrank")

    def delete_compute_environment(self, req: ByName) -> JSON:
        """Stops the environment's nodes and deletes it; it must be DISABLED and unused."""
        ce = self.ctx.ce(req.ref)
        errors = []
        if ce.state != State.DISABLED:
            errors.append(FieldError("computeEnvironment", f"{ce.name!r} must be DISABLED first"))
        users = [q.name for q in self.ctx.s.queues.values() if ce.name in q.ce_names]
        if users:
            errors.append(
                FieldError(
                    "computeEnvironment", f"{ce.name!r} is used by job queues: {', '.join(users)}"
                )
            )
        if errors:
            raise InvalidInput(errors)
        ce.move(CEStatus.DELETING, None)
        self.ctx.rt.stop_nodes(
            [n for n in self.ctx.s.nodes.values() if n.compute_environment == ce.name],
            "removed with its compute environment",
        )
        with self.ctx.s.store.transaction():
            self.ctx.s.store.delete_ce(ce.name)
        del self.ctx.s.ces[ce.name]
        return {}

    def describe_compute_environments(self, req: Described) -> JSON:
        names = [name_from_arn(n, "compute-environment") for n in req.names]
        ces = [c for c in self.ctx.s.ces.values() if not names or c.name in names]
        nodes = list(self.ctx.s.nodes.values())
        details = [
            ce_detail(c, [n for n in nodes if n.compute_environment == c.name])
            for c in sorted(ces, key=lambda c: c.name)
        ]
        return _paginate("computeEnvironments", details, req.page, 100)

    # --- queue snapshot -----------------------------------------------------------------------
    def get_job_queue_snapshot(self, req: ByName) -> JSON:
        """The first 100 RUNNABLE jobs in the order they would start (FIFO, or on a
        fair-share queue by share usage and priority as the scheduling pass offers them:
        :func:`mnp.scheduler.timelimits.scheduling_order`), and the vCPUs the queue's
        STARTING/RUNNING jobs hold (per share on fair-share queues)."""
        q = self.ctx.queue(req.ref)
        now = self.ctx.s.clock()
        view = self.ctx.rt.fair_share_views(now).get(q.name)
        waiting = self.ctx.s.runnable.get(q.name, {}).values()
        front = [
            {"jobArn": job_arn(j.job_id), "earliestTimeAtPosition": _runnable_since(j)}
            for j in islice(scheduling_order(waiting, view), SNAPSHOT_JOBS)
        ]
        used: dict[str | None, float] = {}
        shares: set[str] = set()
        for j in self.ctx.s.active.values():
            if j.queue != q.name:
                continue
            if j.spec.share_identifier is not None and not j.status.terminal:
                shares.add(j.spec.share_identifier)
            placed = j.status in (JobStatus.STARTING, JobStatus.RUNNING)
            if placed and not (j.is_mnp_parent or j.is_array_parent):
                share = j.spec.share_identifier
                used[share] = used.get(share, 0.0) + j.resources.vcpus
        utilization: JSON = {
            "totalCapacityUsage": [{"capacityUnit": "VCPU", "quantity": sum(used.values())}],
            "lastUpdatedAt": now,
        }
        if q.scheduling_policy_arn is not None:
            top = sorted(((n, s) for s, n in used.items() if s is not None), reverse=True)[:20]
            utilization["fairshareUtilization"] = {
                "activeShareCount": len(shares),
                "topCapacityUtilization": [
                    {
                        "shareIdentifier": s,
                        "capacityUsage": [{"capacityUnit": "VCPU", "quantity": n}],
                    }
                    for n, s in top
                ],
            }
        return {
            "frontOfQueue": {"jobs": front, "lastUpdatedAt": now},
            "queueUtilization": utilization,
        }


MAX_LOCAL_NODES = 64
"""The most nodes one environment may have (its block of addresses)."""


def _bounds(merged: JSON, given: JSON, per_node: float) -> tuple[int, int, int | None]:
    """(min, max, desired) nodes of an elastic environment from ``computeResources``
    (``merged``: stored and updated; ``given``: this request's); desired is None when the
    request gives none. Raises InvalidInput naming each field and its rule."""
    errors = []
    values: dict[str, int] = {}
    for key in ("minvCpus", "maxvCpus", "desiredvCpus"):
        v = merged.get(key)
        if v is None:
            continue
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            errors.append(FieldError(f"computeResources.{key}", "must be an integer >= 0"))
        else:
            values[key] = v
    low, high = values.get("minvCpus", 0), values.get("maxvCpus")
    if high is not None and low > high:
        errors.append(
            FieldError("computeResources.minvCpus", f"must be <= maxvCpus ({high}), got {low}")
        )
    want = values.get("desiredvCpus") if "desiredvCpus" in given else None
    if want is not None and not low <= want <= (high if high is not None else want):
        errors.append(
            FieldError(
                "computeResources.desiredvCpus",
                f"must be between minvCpus ({low}) and maxvCpus ({high}), got {want}",
            )
        )
    if errors:
        raise InvalidInput(errors)
    unit = max(1.0, per_node)
    most = MAX_LOCAL_NODES if high is None else min(MAX_LOCAL_NODES, math.ceil(high / unit))
    least = min(most, math.ceil(low / unit))
    desired = None if want is None else max(least, min(most, math.ceil(want / unit)))
    return least, most, desired


def _runnable_since(job: Job) -> int:
    """When the job last became RUNNABLE (its place in a FIFO queue dates from then)."""
    for h in reversed(job.history):
        if h.status == JobStatus.RUNNABLE:
            return h.at
    return job.created_at
