"""Job queues, compute environments, scheduling policies, queue snapshots and tags.

Part of :class:`mnp.service.core.Service` (see there for the contract every operation keeps).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import islice
from typing import Any

from mnp.errors import Conflict, FieldError, InvalidInput, NotFound
from mnp.service import validation as v
from mnp.service.base import (
    MAX_COMPUTE_ENVIRONMENTS,
    MAX_QUEUES,
    MAX_TAGS,
    SNAPSHOT_JOBS,
    ServiceBase,
    _paginate,
    _required,
)
from mnp.service.render import (
    ce_detail,
    policy_detail,
    queue_detail,
)
from mnp.spec.model import (
    ComputeEnvironment,
    Job,
    JobQueue,
    NodeStatus,
    Resources,
    SchedulingPolicy,
    State,
    job_arn,
    name_from_arn,
)
from mnp.spec.states import JobStatus


class ResourceOps(ServiceBase):
    # --- queues ---------------------------------------------------------------------------------
    def create_job_queue(self, body: dict[str, Any]) -> dict[str, Any]:
        req = v.parse(v.CreateJobQueue, body)
        if req.jobQueueName in self.s.queues:
            raise Conflict(f"job queue {req.jobQueueName!r} already exists")
        if len(self.s.queues) >= MAX_QUEUES:
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
            self.s.clock(),
            dict(req.tags or {}),
            policy.arn if policy else None,
            [a.model_dump() for a in req.jobStateTimeLimitActions or []],
        )
        with self.s.store.transaction():
            self.s.store.save_queue(q)
        self.s.queues[q.name] = q
        self.s.on_wake()
        return {"jobQueueName": q.name, "jobQueueArn": q.arn}

    def _ce_order(self, entries: list[v.ComputeEnvironmentOrder]) -> list[tuple[int, str]]:
        errors = []
        order = []
        for i, e in enumerate(entries):
            name = name_from_arn(e.computeEnvironment, "compute-environment")
            if name not in self.s.ces:
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

    def update_job_queue(self, body: dict[str, Any]) -> dict[str, Any]:
        req = v.parse(v.UpdateJobQueue, body)
        q = self._queue(req.jobQueue)
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
            q.scheduling_policy_arn = self._policy_for_queue(req.schedulingPolicyArn).arn
        if req.jobStateTimeLimitActions is not None:
            q.time_limit_actions = [a.model_dump() for a in req.jobStateTimeLimitActions]
        if req.state is not None:
            q.state = State(req.state)
        if req.priority is not None:
            q.priority = req.priority
        if order is not None:
            q.compute_environment_order = order
        with self.s.store.transaction():
            self.s.store.save_queue(q)
        self.s.on_wake()
        return {"jobQueueName": q.name, "jobQueueArn": q.arn}

    def delete_job_queue(self, body: dict[str, Any]) -> dict[str, Any]:
        q = self._queue(str(body.get("jobQueue") or ""))
        if q.state != State.DISABLED:
            raise InvalidInput(
                [FieldError("jobQueue", f"job queue {q.name!r} must be DISABLED first")]
            )
        for job in [j for j in self.s.active.values() if j.queue == q.name and j.parent_id is None]:
            self._cancel(job, "Job queue deleted", terminate=True)
        with self.s.store.transaction():
            self.s.store.delete_queue(q.name)
        del self.s.queues[q.name]
        self.s.flush()
        return {}

    def describe_job_queues(self, body: dict[str, Any]) -> dict[str, Any]:
        names = [name_from_arn(str(n), "job-queue") for n in body.get("jobQueues") or []]
        qs = [q for q in self.s.queues.values() if not names or q.name in names]
        return _paginate(
            "jobQueues", [queue_detail(q) for q in sorted(qs, key=lambda q: q.name)], body, 100
        )

    def _policy_for_queue(self, ref: str) -> SchedulingPolicy:
        try:
            return self._policy(ref)
        except NotFound as e:
            raise InvalidInput([FieldError("schedulingPolicyArn", str(e))]) from None

    def _queue(self, ref: str) -> JobQueue:
        q = self.s.queues.get(name_from_arn(ref, "job-queue"))
        if q is None:
            raise NotFound(f"job queue {ref!r} does not exist")
        return q

    # --- compute environments -------------------------------------------------------------------
    def create_compute_environment(self, body: dict[str, Any]) -> dict[str, Any]:
        req = v.parse(v.CreateComputeEnvironment, body)
        if req.computeEnvironmentName in self.s.ces:
            raise Conflict(f"compute environment {req.computeEnvironmentName!r} already exists")
        if len(self.s.ces) >= MAX_COMPUTE_ENVIRONMENTS:
            raise InvalidInput(
                f"at most {MAX_COMPUTE_ENVIRONMENTS} compute environments; delete one first"
            )
        m = req.mnp if "mnp" in body else self._local_settings(req)
        ce = ComputeEnvironment(
            name=req.computeEnvironmentName,
            type=req.type,
            state=State(req.state),
            provider=m.provider,
            node_count=m.nodes,
            node_resources=Resources(m.vcpus, m.memoryMiB, m.gpus),
            created_at=self.s.clock(),
            doc=req.model_dump(exclude_none=True, exclude={"mnp"}),
            first_address=m.firstAddress,
            shared_filesystem=m.sharedFilesystem.model_dump(exclude_none=True)
            if m.sharedFilesystem
            else None,
        )
        with self.s.store.transaction():
            self.s.store.save_ce(ce)
        self.s.ces[ce.name] = ce
        self.s.on_wake()
        return {"computeEnvironmentName": ce.name, "computeEnvironmentArn": ce.arn}

    def update_compute_environment(self, body: dict[str, Any]) -> dict[str, Any]:
        req = v.parse(v.UpdateComputeEnvironment, body)
        ce = self._ce(req.computeEnvironment)
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
            self._resize(ce, req.mnp.nodes)
        elif ce.type == "MANAGED" and (req.computeResources or {}).get("maxvCpus") is not None:
            max_vcpus = int((req.computeResources or {})["maxvCpus"])
            per_node = max(1, int(ce.node_resources.vcpus))
            self._resize(ce, min(64, math.ceil(max_vcpus / per_node)))
        with self.s.store.transaction():
            self.s.store.save_ce(ce)
        self.s.on_wake()
        return {"computeEnvironmentName": ce.name, "computeEnvironmentArn": ce.arn}

    def _local_settings(self, req: v.CreateComputeEnvironment) -> v.LocalProviderSettings:
        """Local nodes for an AWS-shaped request (no ``mnp`` block): nodes of the embedded
        default's shape, as many as ``computeResources.maxvCpus`` needs (at most 64), at
        loopback addresses no other environment uses."""
        local = self.s.config.local
        shape = v.LocalProviderSettings()
        vcpus = local.vcpus if local else shape.vcpus
        max_vcpus = (req.computeResources or {}).get("maxvCpus")
        nodes = 0
        if req.type == "MANAGED":
            nodes = shape.nodes
            if isinstance(max_vcpus, int) and max_vcpus >= 0:
                nodes = min(64, math.ceil(max_vcpus / vcpus))
        end = max((_ip(c.first_address) + 64 for c in self.s.ces.values()), default=0)
        first = max(end, _ip(local.first_address) + 64 if local else 0, _ip(shape.firstAddress))
        return v.LocalProviderSettings(
            nodes=nodes,
            vcpus=vcpus,
            memoryMiB=local.memory_mib if local else shape.memoryMiB,
            gpus=local.gpus if local else shape.gpus,
            firstAddress=f"127.{(first >> 16) & 255}.{(first >> 8) & 255}.{first & 255}",
        )

    def _resize(self, ce: ComputeEnvironment, count: int) -> None:
        ce.node_count = count
        live = [
            n
            for n in self.s.nodes.values()
            if n.compute_environment == ce.name
            and n.status in (NodeStatus.ACTIVE, NodeStatus.LAUNCHING)
        ]
        extra = len(live) - count
        if extra > 0:
            idle = sorted(live, key=lambda n: (len(self.s.node_rt[n.node_id].running), -n.slot))
            self.rt.stop_nodes(idle[:extra], "removed when the compute environment shrank")

    def delete_compute_environment(self, body: dict[str, Any]) -> dict[str, Any]:
        ce = self._ce(str(body.get("computeEnvironment") or ""))
        errors = []
        if ce.state != State.DISABLED:
            errors.append(FieldError("computeEnvironment", f"{ce.name!r} must be DISABLED first"))
        users = [q.name for q in self.s.queues.values() if ce.name in q.ce_names]
        if users:
            errors.append(
                FieldError(
                    "computeEnvironment", f"{ce.name!r} is used by job queues: {', '.join(users)}"
                )
            )
        if errors:
            raise InvalidInput(errors)
        self.rt.stop_nodes(
            [n for n in self.s.nodes.values() if n.compute_environment == ce.name],
            "removed with its compute environment",
        )
        with self.s.store.transaction():
            self.s.store.delete_ce(ce.name)
        del self.s.ces[ce.name]
        return {}

    def describe_compute_environments(self, body: dict[str, Any]) -> dict[str, Any]:
        names = [
            name_from_arn(str(n), "compute-environment")
            for n in body.get("computeEnvironments") or []
        ]
        ces = [c for c in self.s.ces.values() if not names or c.name in names]
        nodes = list(self.s.nodes.values())
        details = [
            ce_detail(c, [n for n in nodes if n.compute_environment == c.name])
            for c in sorted(ces, key=lambda c: c.name)
        ]
        return _paginate("computeEnvironments", details, body, 100)

    def _ce(self, ref: str) -> ComputeEnvironment:
        ce = self.s.ces.get(name_from_arn(ref, "compute-environment"))
        if ce is None:
            raise NotFound(f"compute environment {ref!r} does not exist")
        return ce

    # --- scheduling policies ---------------------------------------------------------------------
    def create_scheduling_policy(self, body: dict[str, Any]) -> dict[str, Any]:
        req = v.parse(v.CreateSchedulingPolicy, body)
        if req.name in self.policies:
            raise Conflict(f"scheduling policy {req.name!r} already exists")
        policy = SchedulingPolicy(
            req.name, _fairshare(req.fairsharePolicy), self.s.clock(), dict(req.tags or {})
        )
        with self.s.store.transaction():
            self.s.store.save_policy(policy)
        self.policies[policy.name] = policy
        return {"name": policy.name, "arn": policy.arn}

    def update_scheduling_policy(self, body: dict[str, Any]) -> dict[str, Any]:
        req = v.parse(v.UpdateSchedulingPolicy, body)
        policy = self._policy(req.arn)
        if req.fairsharePolicy is not None:
            policy.fairshare = _fairshare(req.fairsharePolicy)
            with self.s.store.transaction():
                self.s.store.save_policy(policy)
        return {}

    def delete_scheduling_policy(self, body: dict[str, Any]) -> dict[str, Any]:
        policy = self._policy(_required(body, "arn"))
        users = sorted(
            q.name for q in self.s.queues.values() if q.scheduling_policy_arn == policy.arn
        )
        if users:
            raise InvalidInput(
                [
                    FieldError(
                        "arn",
                        f"scheduling policy {policy.name!r} is used by job queues: "
                        f"{', '.join(users)}",
                    )
                ]
            )
        with self.s.store.transaction():
            self.s.store.delete_policy(policy.name)
        del self.policies[policy.name]
        return {}

    def describe_scheduling_policies(self, body: dict[str, Any]) -> dict[str, Any]:
        arns = body.get("arns")
        if not isinstance(arns, list) or not 1 <= len(arns) <= 100:
            raise InvalidInput([FieldError("arns", "required: a list of 1-100 ARNs")])
        found = [self.policies.get(name_from_arn(str(a), "scheduling-policy")) for a in arns]
        return {"schedulingPolicies": [policy_detail(p) for p in found if p is not None]}

    def list_scheduling_policies(self, body: dict[str, Any]) -> dict[str, Any]:
        items = [{"arn": p.arn} for _, p in sorted(self.policies.items())]
        return _paginate("schedulingPolicies", items, body, 100)

    def _policy(self, ref: str) -> SchedulingPolicy:
        policy = self.policies.get(name_from_arn(ref, "scheduling-policy"))
        if policy is None:
            raise NotFound(f"scheduling policy {ref!r} does not exist")
        return policy

    # --- queue snapshot -----------------------------------------------------------------------
    def get_job_queue_snapshot(self, body: dict[str, Any]) -> dict[str, Any]:
        """The first 100 RUNNABLE jobs in the order the scheduler considers them, and the
        vCPUs the queue's STARTING/RUNNING jobs hold (per share on fair-share queues)."""
        q = self._queue(_required(body, "jobQueue"))
        now = self.s.clock()
        front = [
            {"jobArn": job_arn(j.job_id), "earliestTimeAtPosition": _runnable_since(j)}
            for j in islice(self.s.runnable.get(q.name, {}).values(), SNAPSHOT_JOBS)
        ]
        used: dict[str | None, float] = {}
        shares: set[str] = set()
        for j in self.s.active.values():
            if j.queue != q.name:
                continue
            if j.spec.share_identifier is not None and not j.status.terminal:
                shares.add(j.spec.share_identifier)
            placed = j.status in (JobStatus.STARTING, JobStatus.RUNNING)
            if placed and not (j.is_mnp_parent or j.is_array_parent):
                share = j.spec.share_identifier
                used[share] = used.get(share, 0.0) + j.resources.vcpus
        utilization: dict[str, Any] = {
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

    # --- tags ---------------------------------------------------------------------------------
    def tag_resource(self, body: dict[str, Any]) -> dict[str, Any]:
        req = v.parse(v.TagResource, body)
        tags, save = self._tagged(req.resourceArn)
        total = len({**tags, **req.tags})
        if total > MAX_TAGS:
            raise InvalidInput(
                [FieldError("tags", f"a resource has at most {MAX_TAGS} tags; this makes {total}")]
            )
        tags.update(req.tags)
        with self.s.store.transaction():
            save()
        return {}

    def untag_resource(self, body: dict[str, Any]) -> dict[str, Any]:
        req = v.parse(v.UntagResource, body)
        tags, save = self._tagged(req.resourceArn)
        for key in req.tagKeys:
            tags.pop(key, None)
        with self.s.store.transaction():
            save()
        return {}

    def list_tags_for_resource(self, body: dict[str, Any]) -> dict[str, Any]:
        tags, _ = self._tagged(_required(body, "resourceArn"))
        return {"tags": dict(tags)}

    def _tagged(self, arn: str) -> tuple[dict[str, str], Callable[[], None]]:
        """The live tag map of the resource ``arn`` names, and how to store it."""
        parts = arn.split(":", 5)
        kind, _, rest = parts[5].partition("/") if len(parts) == 6 else ("", "", "")
        if parts[0] != "arn" or not rest:
            raise InvalidInput([FieldError("resourceArn", f"{arn!r} is not a Batch resource ARN")])
        store = self.s.store
        if kind == "compute-environment":
            ce = self._ce(rest)
            return ce.doc.setdefault("tags", {}), lambda: store.save_ce(ce)
        if kind == "job-queue":
            q = self._queue(rest)
            return q.tags, lambda: store.save_queue(q)
        if kind == "job-definition":
            d = self._definition(rest, active_only=False)
            return d.doc.setdefault("tags", {}), lambda: store.save_definition(d)
        if kind == "scheduling-policy":
            p = self._policy(rest)
            return p.tags, lambda: store.save_policy(p)
        if kind == "job":
            if ":" in rest or "#" in rest:
                raise InvalidInput(
                    [
                        FieldError(
                            "resourceArn",
                            "child jobs of array and multi-node parallel jobs have no tags of "
                            "their own; use the parent job's ARN",
                        )
                    ]
                )
            job = self.s.job(rest)
            if job is None:
                raise NotFound(f"no job with id {rest!r}")
            spec = job.spec
            return spec.tags, lambda: store.save_spec(spec)
        raise InvalidInput(
            [FieldError("resourceArn", f"{kind!r} resources cannot be tagged (ARN {arn!r})")]
        )


def _ip(address: str) -> int:
    """The low 24 bits of a 127.x.y.z address, as a number."""
    _, b, c, d = (int(x) for x in address.split("."))
    return (b << 16) + (c << 8) + d


def _fairshare(fp: v.FairsharePolicy | None) -> dict[str, Any]:
    """A fair-share policy with AWS's defaults filled in (0, 0, weight 1.0)."""
    fp = fp or v.FairsharePolicy()
    return {
        "shareDecaySeconds": fp.shareDecaySeconds or 0,
        "computeReservation": fp.computeReservation or 0,
        "shareDistribution": [
            {
                "shareIdentifier": s.shareIdentifier,
                "weightFactor": s.weightFactor if s.weightFactor is not None else 1.0,
            }
            for s in fp.shareDistribution or []
        ],
    }


def _runnable_since(job: Job) -> int:
    """When the job last became RUNNABLE (its place in a FIFO queue dates from then)."""
    for h in reversed(job.history):
        if h.status == JobStatus.RUNNABLE:
            return h.at
    return job.created_at
