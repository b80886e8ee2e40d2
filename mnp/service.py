"""The head node's behaviour, one method per operation (AWS Batch's names and shapes).

Both front doors (the native API, and the AWS Batch wire protocol) call these. Each method
takes the JSON body as received and returns the JSON answer; invalid input raises
:class:`~mnp.errors.InvalidInput` before anything is written. Methods that change state flush
it to the store before returning. Not thread-safe: call from the head node's event loop.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from itertools import islice
from typing import Any

from mnp import validation as v
from mnp.errors import Conflict, FieldError, InvalidInput, NotFound
from mnp.extras import check_extras
from mnp.model import (
    NO_EXTRAS,
    ComputeEnvironment,
    ContainerSpec,
    Dependency,
    Job,
    JobDefinition,
    JobExtras,
    JobQueue,
    JobSpec,
    NodeStatus,
    Resources,
    RetryStrategy,
    SchedulingPolicy,
    State,
    job_arn,
    name_from_arn,
    resources_from_wire,
)
from mnp.multinode import resolve_nodes
from mnp.render import (
    ce_detail,
    job_detail,
    job_summary,
    node_detail,
    policy_detail,
    queue_detail,
)
from mnp.runtime import Runtime
from mnp.state import HeadState
from mnp.states import HistoryEntry, JobStatus

REF = re.compile(r"Ref::([A-Za-z0-9_-]+)")
JOB_DEFINITION_MAX = 24 * 1024
SUBMIT_MAX = 30 * 1024
MNP_SUBMIT_MAX = 1024 * 1024
"""With mnp's additions (a batch script, an exported environment) a submission may be larger."""
CANCELLABLE = (JobStatus.SUBMITTED, JobStatus.PENDING, JobStatus.RUNNABLE)
MAX_QUEUES = 50
MAX_COMPUTE_ENVIRONMENTS = 50
MAX_ACTIVE_SHARES = 500
MAX_TAGS = 50
SNAPSHOT_JOBS = 100
LIST_FILTERS = ("JOB_NAME", "JOB_DEFINITION", "BEFORE_CREATED_AT", "AFTER_CREATED_AT")


class Service:
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
        from mnp.state import NodeRuntime

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

    # --- job definitions ----------------------------------------------------------------------
    def register_job_definition(self, body: dict[str, Any]) -> dict[str, Any]:
        req = v.parse(v.RegisterJobDefinition, body, JOB_DEFINITION_MAX, "job definition")
        problems = v.check_timeout(req.timeout, self.s.config.min_timeout_seconds)
        if problems:
            raise InvalidInput(problems)
        revisions = self.s.definitions.setdefault(req.jobDefinitionName, [])
        revision = (revisions[-1].revision if revisions else 0) + 1
        doc = req.model_dump(exclude_none=True)
        definition = JobDefinition(req.jobDefinitionName, revision, "ACTIVE", doc)
        with self.s.store.transaction():
            self.s.store.save_definition(definition)
        revisions.append(definition)
        return {
            "jobDefinitionName": definition.name,
            "jobDefinitionArn": definition.arn,
            "revision": revision,
        }

    def deregister_job_definition(self, body: dict[str, Any]) -> dict[str, Any]:
        ref = str(body.get("jobDefinition") or "")
        if not ref:
            raise InvalidInput([FieldError("jobDefinition", "required")])
        definition = self._definition(ref, active_only=False)
        definition.status = "INACTIVE"
        with self.s.store.transaction():
            self.s.store.save_definition(definition)
        return {}

    def describe_job_definitions(self, body: dict[str, Any]) -> dict[str, Any]:
        refs = body.get("jobDefinitions")
        if refs:
            found = []
            for ref in refs:
                try:
                    found.append(self._definition(str(ref), active_only=False))
                except NotFound:
                    pass
        else:
            name = body.get("jobDefinitionName")
            status = body.get("status")
            found = [
                d
                for n, revs in self.s.definitions.items()
                if name is None or n == name
                for d in revs
                if status is None or d.status == status
            ]
        return _paginate("jobDefinitions", [d.to_wire() for d in found], body, 100)

    def _definition(self, ref: str, active_only: bool) -> JobDefinition:
        """``name``, ``name:rev`` or an ARN with or without revision."""
        text = name_from_arn(ref, "job-definition")
        name, _, rev = text.partition(":")
        revisions = self.s.definitions.get(name, [])
        if rev:
            for d in revisions:
                if str(d.revision) == rev:
                    return d
            raise NotFound(f"job definition {name}:{rev} does not exist")
        active = [d for d in revisions if d.status == "ACTIVE"]
        if active:
            return active[-1]
        if revisions and not active_only:
            return revisions[-1]
        raise NotFound(f"job definition {name!r} has no ACTIVE revision")

    # --- jobs ---------------------------------------------------------------------------------
    def submit_job(self, body: dict[str, Any]) -> dict[str, Any]:
        s = self.s
        limit = MNP_SUBMIT_MAX if isinstance(body, dict) and "mnp" in body else SUBMIT_MAX
        req = v.parse(v.SubmitJob, body, limit, "SubmitJob payload")
        errors = v.check_timeout(req.timeout, s.config.min_timeout_seconds)
        errors += check_extras(req)
        queue = s.queues.get(name_from_arn(req.jobQueue, "job-queue"))
        if queue is None:
            errors.append(FieldError("jobQueue", f"job queue {req.jobQueue!r} does not exist"))
        elif queue.state == State.DISABLED:
            errors.append(FieldError("jobQueue", f"job queue {queue.name!r} is DISABLED"))
        else:
            errors += self._check_share(queue, req.shareIdentifier)
        definition: JobDefinition | None = None
        try:
            definition = self._definition(req.jobDefinition, active_only=True)
            if definition.status != "ACTIVE":
                errors.append(
                    FieldError(
                        "jobDefinition", f"{definition.name}:{definition.revision} is INACTIVE"
                    )
                )
        except NotFound as e:
            errors.append(FieldError("jobDefinition", str(e)))
        deps = self._check_dependencies(req, errors)
        if errors:
            raise InvalidInput(errors)
        assert queue is not None and definition is not None  # narrowed: errors is empty
        spec = self._spec(req, queue, definition, deps)
        now = s.clock()
        job = Job(
            job_id=spec.spec_id,
            spec=spec,
            status=JobStatus.SUBMITTED,
            created_at=now,
            history=[HistoryEntry(JobStatus.SUBMITTED, now, None)],
        )
        with s.store.transaction():
            s.store.save_spec(spec)
            s.store.save_jobs([job])
        s.add_job(job)
        s.dirty.pop(job.job_id, None)
        s.on_wake()
        return {
            "jobArn": f"{_arn_base(queue.arn)}:job/{job.job_id}",
            "jobName": spec.name,
            "jobId": job.job_id,
        }

    def _check_dependencies(self, req: v.SubmitJob, errors: list[FieldError]) -> list[Dependency]:
        deps: list[Dependency] = []
        for i, d in enumerate(req.dependsOn or []):
            if d.jobId is not None:
                target = self.s.job(d.jobId)
                if target is None:
                    errors.append(
                        FieldError(f"dependsOn[{i}].jobId", f"no job with id {d.jobId!r}")
                    )
                    continue
                if d.type == "N_TO_N":
                    size = req.arrayProperties.size if req.arrayProperties else None
                    if target.spec.array_size != size or target.parent_id is not None:
                        errors.append(
                            FieldError(
                                f"dependsOn[{i}].jobId",
                                f"N_TO_N needs an array job of the same size ({size}); "
                                f"{d.jobId} has size {target.spec.array_size}",
                            )
                        )
            deps.append(Dependency(d.jobId, d.type))
        return deps

    def _singleton_after(self, req: v.SubmitJob) -> tuple[str, ...]:
        """``singleton``: the active jobs (not array children or nodes) already submitted with
        this name by this user; the new job waits until each has ended."""
        if req.mnp is None or not req.mnp.singleton:
            return ()
        return tuple(
            j.job_id
            for j in self.s.active.values()
            if j.parent_id is None
            and j.spec.name == req.jobName
            and j.spec.extras.user == req.mnp.user
            and not j.status.terminal
        )

    def _spec(
        self, req: v.SubmitJob, queue: JobQueue, definition: JobDefinition, deps: list[Dependency]
    ) -> JobSpec:
        doc = definition.doc
        parameters = {**(doc.get("parameters") or {}), **(req.parameters or {})}
        nodes = None
        if definition.doc.get("type") == "multinode":
            if req.containerOverrides is not None:
                raise InvalidInput(
                    [
                        FieldError(
                            "containerOverrides", "use nodeOverrides for a multinode job definition"
                        )
                    ]
                )
            nodes, errors = resolve_nodes(
                doc["nodeProperties"],
                req.nodeOverrides.model_dump(exclude_none=True) if req.nodeOverrides else None,
            )
            if errors or nodes is None:
                raise InvalidInput(errors)
            containers = nodes.containers
            container = containers[nodes.main_node]
        else:
            if req.nodeOverrides is not None:
                raise InvalidInput(
                    [
                        FieldError(
                            "nodeOverrides", f"{definition.name} is not a multinode job definition"
                        )
                    ]
                )
            container = ContainerSpec.from_wire(doc.get("containerProperties") or {})
            _override(container, req.containerOverrides)
            containers = [container]
        for c in containers:
            if c.resources.vcpus <= 0:
                c.resources = Resources(1.0, c.resources.memory_mib, c.resources.gpus)
            c.command = [
                REF.sub(lambda m: parameters.get(m.group(1), m.group(0)), arg) for arg in c.command
            ]
        retry = RetryStrategy.from_wire(
            req.retryStrategy.model_dump(exclude_none=True)
            if req.retryStrategy
            else doc.get("retryStrategy")
        )
        timeout = (
            req.timeout.attemptDurationSeconds
            if req.timeout and req.timeout.attemptDurationSeconds
            else (doc.get("timeout") or {}).get("attemptDurationSeconds")
        )
        return JobSpec(
            spec_id=str(uuid.uuid4()),
            name=req.jobName,
            queue=queue.name,
            definition_arn=definition.arn,
            definition_name=definition.name,
            container=container,
            parameters=parameters,
            depends_on=deps,
            retry=retry,
            timeout_seconds=timeout,
            array_size=req.arrayProperties.size if req.arrayProperties else None,
            tags={**(doc.get("tags") or {}), **(req.tags or {})}
            if req.propagateTags or doc.get("propagateTags")
            else dict(req.tags or {}),
            platform_capabilities=list(doc.get("platformCapabilities") or ["EC2"]),
            submitted_at=self.s.clock(),
            nodes=nodes,
            share_identifier=req.shareIdentifier,
            scheduling_priority=req.schedulingPriorityOverride
            if req.schedulingPriorityOverride is not None
            else doc.get("schedulingPriority"),
            propagate_tags=bool(
                req.propagateTags if req.propagateTags is not None else doc.get("propagateTags")
            ),
            extras=self._extras(req),
        )

    def _extras(self, req: v.SubmitJob) -> JobExtras:
        m = req.mnp
        if m is None:
            return NO_EXTRAS
        return JobExtras(
            user=m.user,
            array_max_running=m.arrayMaxRunning,
            dependency_mode=m.dependencyMode,
            singleton_after=self._singleton_after(req),
            stdout=m.stdout,
            stderr=m.stderr,
            workdir=m.workingDirectory,
            submit_dir=m.submitDir,
            script=m.script,
            ntasks=m.ntasks,
            ntasks_per_node=m.ntasksPerNode,
            cpus_per_task=m.cpusPerTask,
        )

    def _check_share(self, queue: JobQueue, share: str | None) -> list[FieldError]:
        """shareIdentifier: required on a fair-share queue, absent on a FIFO one; a queue has
        at most 500 active share identifiers."""
        if queue.scheduling_policy_arn is None:
            if share is not None:
                return [
                    FieldError(
                        "shareIdentifier",
                        f"job queue {queue.name!r} has no fair-share scheduling policy; "
                        "leave shareIdentifier out",
                    )
                ]
            return []
        if share is None:
            return [
                FieldError(
                    "shareIdentifier",
                    f"required: job queue {queue.name!r} has a fair-share scheduling policy",
                )
            ]
        active = {
            j.spec.share_identifier
            for j in self.s.active.values()
            if j.queue == queue.name and j.parent_id is None
        }
        if share not in active and len(active) >= MAX_ACTIVE_SHARES:
            return [
                FieldError(
                    "shareIdentifier",
                    f"job queue {queue.name!r} already has {MAX_ACTIVE_SHARES} active share "
                    "identifiers",
                )
            ]
        return []

    def describe_jobs(self, body: dict[str, Any]) -> dict[str, Any]:
        ids = body.get("jobs")
        if not isinstance(ids, list) or not ids:
            raise InvalidInput([FieldError("jobs", "required: a list of 1-100 job ids")])
        if len(ids) > 100:
            raise InvalidInput([FieldError("jobs", f"at most 100 job ids, got {len(ids)}")])
        out = []
        for job_id in ids:
            job = self.s.job(str(job_id))
            if job is not None:
                if not job.history:
                    job.history = self.s.store.history(job.job_id)
                out.append(job_detail(job))
        return {"jobs": out}

    def list_jobs(self, body: dict[str, Any]) -> dict[str, Any]:
        s = self.s
        queue_ref = body.get("jobQueue")
        parent = body.get("arrayJobId") or body.get("multiNodeJobId")
        all_statuses = bool(body.get("allStatuses"))
        selectors = [k for k in ("jobQueue", "arrayJobId", "multiNodeJobId") if body.get(k)]
        if not all_statuses and len(selectors) != 1:
            raise InvalidInput(
                [
                    FieldError(
                        "jobQueue",
                        "exactly one of jobQueue, arrayJobId, multiNodeJobId is required"
                        + (f" (got {', '.join(selectors)})" if selectors else ""),
                    )
                ]
            )
        queue = name_from_arn(str(queue_ref), "job-queue") if queue_ref else None
        if queue is not None and queue not in s.queues:
            raise InvalidInput([FieldError("jobQueue", f"job queue {queue!r} does not exist")])
        filters = body.get("filters") or []
        status = body.get("jobStatus")
        if status is not None and status not in JobStatus.__members__:
            raise InvalidInput([FieldError("jobStatus", f"must be one of {', '.join(JobStatus)}")])
        if not all_statuses and len(filters) > 1:
            raise InvalidInput([FieldError("filters", "only one filter can be used at a time")])
        statuses = None if all_statuses or filters else [status or "RUNNING"]
        if status and (all_statuses or any(f.get("name") == "SHARE_IDENTIFIER" for f in filters)):
            statuses = [status]
        query: dict[str, Any] = {}
        for i, f in enumerate(filters):
            name, values = f.get("name"), f.get("values") or []
            if not values:
                raise InvalidInput([FieldError(f"filters[{i}].values", "required")])
            value = str(values[0])
            if name == "JOB_NAME":
                if value.endswith("*"):
                    query["name_prefix"] = value[:-1]
                else:
                    query["name_exact"] = value
            elif name == "JOB_DEFINITION":
                if value.startswith("arn:"):
                    query["definition"] = value + (
                        '"' if value.rsplit(":", 1)[-1].isdigit() else ":"
                    )
                else:
                    base = f"{_arn_base(s.queues[next(iter(s.queues))].arn) if s.queues else ''}"
                    query["definition"] = (
                        f"{base}:job-definition/{value[:-1]}"
                        if value.endswith("*")
                        else f"{base}:job-definition/{value}:"
                    )
            elif name in ("BEFORE_CREATED_AT", "AFTER_CREATED_AT"):
                try:
                    stamp = int(value)
                except ValueError:
                    raise InvalidInput(
                        [FieldError(f"filters[{i}].values", "epoch milliseconds")]
                    ) from None
                query["created_before" if name == "BEFORE_CREATED_AT" else "created_after"] = stamp
            elif name == "SHARE_IDENTIFIER":
                query["share_identifier"] = value
            else:
                raise InvalidInput(
                    [
                        FieldError(
                            f"filters[{i}].name",
                            f"unsupported filter {name!r}: one of "
                            f"{', '.join((*LIST_FILTERS, 'SHARE_IDENTIFIER'))}",
                        )
                    ]
                )
        most = 100 if filters and not all_statuses else 1000
        limit, offset = _page(body, 1000 if statuses else 100, most)
        jobs = s.store.query_jobs(
            queue=queue,
            statuses=statuses,
            parent_id=parent,
            children=all_statuses and bool(body.get("includeChildren")),
            offset=offset,
            limit=limit + 1,
            **query,
        )
        page = jobs[:limit]
        out: dict[str, Any] = {
            "jobSummaryList": [job_summary(s.active.get(j.job_id, j)) for j in page]
        }
        if len(jobs) > limit:
            out["nextToken"] = str(offset + limit)
        return out

    def cancel_job(self, body: dict[str, Any]) -> dict[str, Any]:
        req = v.parse(v.JobReason, body)
        job = self.s.active.get(req.jobId)
        if job is not None:
            self._cancel(job, req.reason, terminate=False)
            self.s.flush()
        return {}

    def terminate_job(self, body: dict[str, Any]) -> dict[str, Any]:
        req = v.parse(v.JobReason, body)
        job = self.s.active.get(req.jobId)
        if job is not None:
            self._cancel(job, req.reason, terminate=True)
            self.s.flush()
        return {}

    def _cancel(self, job: Job, reason: str, terminate: bool) -> None:
        s = self.s
        if job.is_array_parent:
            if job.status == JobStatus.SUBMITTED:
                self._flag(job, reason, terminate)
                s.set_status(job, JobStatus.FAILED, reason)
                return
            self._flag(job, reason, terminate)
            s.mark(job)
            size = job.spec.array_size or 0
            for i in range(size):
                child = s.active.get(f"{job.job_id}:{i}")
                if child is not None:
                    self._cancel(child, reason, terminate)
            return
        if job.is_node:
            parent = s.active.get(job.parent_id or "")
            if parent is not None:  # a node is cancelled or terminated with its whole job
                self._cancel(parent, reason, terminate)
            return
        if job.status in CANCELLABLE:
            self._flag(job, reason, terminate)
            s.set_status(job, JobStatus.FAILED, reason)
            if job.is_mnp_parent:
                self.rt.gangs.cancelled(job)
        elif terminate and job.status in (JobStatus.STARTING, JobStatus.RUNNING):
            self._flag(job, reason, terminate)
            s.mark(job)
            if job.is_mnp_parent:
                self.rt.gangs.terminate(job, reason)
            else:
                self.rt.kill(job, reason)
        # CancelJob on STARTING/RUNNING does nothing (AWS Batch), and answers 200.

    @staticmethod
    def _flag(job: Job, reason: str, terminate: bool) -> None:
        if terminate:
            job.is_terminated = True
        else:
            job.is_cancelled = True
        job.status_reason = reason

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


def _override(container: ContainerSpec, over: v.ContainerOverrides | None) -> None:
    """Apply SubmitJob's ``containerOverrides`` (command, environment by name, resources)."""
    if over is None:
        return
    if over.command is not None:
        container.command = list(over.command)
    for kv in over.environment or []:
        container.environment[kv.name] = kv.value
    container.resources = resources_from_wire(
        over.model_dump(exclude_none=True), base=container.resources
    )


def _arn_base(arn: str) -> str:
    """``arn:aws:batch:region:account`` from any mnp ARN."""
    return ":".join(arn.split(":")[:5])


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


def _required(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInput([FieldError(key, "required")])
    return value


def _page(body: dict[str, Any], default: int, most: int) -> tuple[int, int]:
    """``(maxResults, offset from nextToken)``, both checked; a page holds at most ``most``."""
    errors = []
    limit = body.get("maxResults")
    if limit is None:
        limit = default
    elif not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        errors.append(FieldError("maxResults", "must be at least 1"))
        limit = default
    token = body.get("nextToken") or "0"
    if not (isinstance(token, str) and token.isdigit()):
        errors.append(FieldError("nextToken", "not a token this head node gave out"))
        token = "0"
    if errors:
        raise InvalidInput(errors)
    return min(limit, most), int(token)


def _paginate(
    key: str, items: list[dict[str, Any]], body: dict[str, Any], default: int
) -> dict[str, Any]:
    limit, offset = _page(body, default, default)
    out: dict[str, Any] = {key: items[offset : offset + limit]}
    if offset + limit < len(items):
        out["nextToken"] = str(offset + limit)
    return out
