"""Job definitions and jobs: register, submit, describe, list, cancel and terminate.

Part of :class:`mnp.service.core.Service` (see there for the contract every operation keeps).
"""

from __future__ import annotations

import uuid
from typing import Any

from mnp.build.outputs import check_extras
from mnp.errors import FieldError, InvalidInput, NotFound
from mnp.service import validation as v
from mnp.service.base import (
    CANCELLABLE,
    JOB_DEFINITION_MAX,
    LIST_FILTERS,
    MAX_ACTIVE_SHARES,
    MNP_SUBMIT_MAX,
    REF,
    SUBMIT_MAX,
    ServiceBase,
    _arn_base,
    _page,
    _paginate,
)
from mnp.service.render import (
    job_detail,
    job_summary,
)
from mnp.spec.model import (
    NO_EXTRAS,
    ContainerSpec,
    Dependency,
    Job,
    JobDefinition,
    JobExtras,
    JobQueue,
    JobSpec,
    Resources,
    RetryStrategy,
    State,
    name_from_arn,
    resources_from_wire,
)
from mnp.spec.noderanges import resolve_nodes
from mnp.spec.states import HistoryEntry, JobStatus


class JobOps(ServiceBase):
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
        has_script = req.mnp is not None and req.mnp.script is not None
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
                has_script=has_script,
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
            if not (container.command or container.image or has_script):
                raise InvalidInput(
                    [
                        FieldError(
                            "containerOverrides.command",
                            f"required: job definition {definition.name}:{definition.revision} "
                            "has neither a command nor an image (mnp runs the command itself)",
                        )
                    ]
                )
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
