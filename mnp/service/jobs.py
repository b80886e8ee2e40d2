"""Jobs: submit, describe, list, cancel and terminate.

Part of :class:`mnp.service.core.Service` (see there for the contract every operation keeps).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mnp.config import MAX_ARRAY_SIZE_ENV
from mnp.errors import AccessDenied, Conflict, FieldError, InvalidInput, NotFound
from mnp.scheduler.state import HELD_ADMIN, HELD_USER
from mnp.service.base import CANCELLABLE, MAX_ACTIVE_SHARES, Context, _arn_base
from mnp.service.listing import list_jobs
from mnp.service.models import JobReason, SubmitJob, UpdateJob
from mnp.service.render import job_detail
from mnp.service.requests import DescribeJobs, ListJobs
from mnp.service.submit import (
    TOKEN_FIELD,
    TOKEN_RETENTION_MS,
    Accepted,
    build_spec,
    check_token,
    fingerprint,
)
from mnp.service.users import Caller, mask_environment, require_owner, run_as
from mnp.service.validation import check_extras, check_timeout
from mnp.spec.arns import name_from_arn
from mnp.spec.definitions import Dependency, JobDefinition
from mnp.spec.environments import JobQueue, State
from mnp.spec.jobs import Job, array_child_id
from mnp.spec.states import HistoryEntry, JobStatus
from mnp.store.tokens import SubmitToken

JSON = dict[str, Any]


TOKEN_PRUNE_MS = 10 * 60 * 1000
"""How often (at most) expired idempotency tokens are dropped from the store."""


class JobOps:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._next_prune = 0
        """When (epoch ms) the next submission with a token prunes the expired ones."""

    def submit(self, req: SubmitJob, caller: Caller) -> JSON:
        """A new SUBMITTED job (the scheduler is woken); every problem with the request, its
        queue, definition and dependencies is reported at once, and nothing is written.

        The job records ``caller`` as its submitter and runs as the account
        :func:`~mnp.service.users.run_as` derives (a non-admin's definition naming another
        account, or a privileged container, is refused here with 400).

        Submit-once: with ``mnp.idempotencyToken``, a token this head recorded in the last
        24 h answers with that first submission's answer and makes no job when the request is
        the same (:func:`~mnp.service.submit.fingerprint`), and raises Conflict naming the
        token when it is not. Tokens are per submitter (one user's never matches another's).
        The token is recorded in the transaction that saves the job, so a reply lost after
        the commit (even to a crash) still dedupes the retry."""
        s = self.ctx.s
        token = req.mnp.idempotencyToken if req.mnp else None
        errors = check_token(token)
        digest = ""
        if token is not None and not caller.is_owner:
            token = f"{caller.name}/{token}"  # each user's tokens are their own
        if token is not None and not errors:
            digest = fingerprint(req)
            first = self._first_answer(token, digest)
            if first is not None:
                return first
        ok = self._accept(req, errors)
        spec = build_spec(req, ok, s.clock())
        containers = spec.nodes.containers if spec.nodes is not None else [spec.container]
        where = "jobDefinition." + (
            "nodeProperties" if spec.nodes is not None else "containerProperties"
        )
        spec.run_as = run_as(caller, containers, where)
        spec.submitted_by = None if caller.is_owner else caller.name
        now = s.clock()
        job = Job(
            job_id=spec.spec_id,
            spec=spec,
            status=JobStatus.SUBMITTED,
            created_at=now,
            history=[HistoryEntry(JobStatus.SUBMITTED, now, None)],
            held=HELD_USER if req.mnp is not None and req.mnp.hold else None,
        )
        if job.held is not None:
            job.status_reason = s.held_reason(job)
        with s.store.transaction():
            s.store.intake(job)  # its rows in the indexed tables come with the next pass's
            answer: JSON = {
                "jobArn": f"{_arn_base(ok.queue.arn)}:job/{job.job_id}",
                "jobName": spec.name,
                "jobId": job.job_id,
                "jobNumber": spec.number,
            }
            if token is not None:
                self._record_token(SubmitToken(token, digest, job.job_id, answer, now))
        s.add_job(job)
        s.dirty.pop(job.job_id, None)
        s.on_wake()
        return answer

    def _record_token(self, entry: SubmitToken) -> None:
        """Record ``entry`` (inside the job's transaction), pruning expired tokens first when
        the last prune is :data:`TOKEN_PRUNE_MS` old (or this head has not pruned yet)."""
        tokens = self.ctx.s.store.submit_tokens
        if entry.created_at >= self._next_prune:
            tokens.prune(before=entry.created_at - TOKEN_RETENTION_MS)
            self._next_prune = entry.created_at + TOKEN_PRUNE_MS
        tokens.record(entry)

    def _first_answer(self, token: str, digest: str) -> JSON | None:
        """The answer to the first submission with ``token`` within the retention window, or
        None when it has none; raises Conflict when that one asked for something else."""
        since = self.ctx.s.clock() - TOKEN_RETENTION_MS
        first = self.ctx.s.store.submit_tokens.find(token, since)
        if first is None:
            return None
        if first.fingerprint != digest:
            raise Conflict(
                f"{TOKEN_FIELD}: token {token!r} was already used for a different request "
                f"(job {first.job_id}) in the last 24 h; a new submission needs a new token"
            )
        return dict(first.answer)

    def _accept(self, req: SubmitJob, errors: list[FieldError]) -> Accepted:
        """The checks against the head's state, every problem at once (``errors``: those
        found already)."""
        s = self.ctx.s
        errors = errors + check_timeout(req.timeout, s.config.min_timeout_seconds)
        most = s.config.max_array_size
        if req.arrayProperties is not None and req.arrayProperties.size > most:
            errors.append(FieldError("arrayProperties.size", f"must be at most {most} (this "
                                     f"head's max_array_size, ${MAX_ARRAY_SIZE_ENV})"))  # fmt: skip
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
            definition = self.ctx.definition(req.jobDefinition, active_only=True)
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
        return Accepted(queue, definition, deps, self._singleton_after(req))

    def _check_dependencies(self, req: SubmitJob, errors: list[FieldError]) -> list[Dependency]:
        deps: list[Dependency] = []
        for i, d in enumerate(req.dependsOn or []):
            job_id = self.ctx.job_id(d.jobId) if d.jobId is not None else None
            if job_id is not None:
                target = self.ctx.s.job(job_id)
                if target is None:
                    errors.append(
                        FieldError(f"dependsOn[{i}].jobId", f"no job with id {d.jobId!r}")
                    )
                    continue
                if d.type == "N_TO_N" and req.arrayProperties is not None:  # else: plain
                    size = req.arrayProperties.size
                    if target.spec.array_size != size or target.parent_id is not None:
                        errors.append(
                            FieldError(
                                f"dependsOn[{i}].jobId",
                                f"N_TO_N needs an array job of the same size ({size}); "
                                f"{d.jobId} has size {target.spec.array_size}",
                            )
                        )
            deps.append(Dependency(job_id, d.type))
        return deps

    def _singleton_after(self, req: SubmitJob) -> tuple[str, ...]:
        """``singleton``: the active jobs (not array children or nodes) already submitted with
        this name by this user; the new job waits until each has ended."""
        if req.mnp is None or not req.mnp.singleton:
            return ()
        return tuple(
            j.job_id
            for j in self.ctx.s.active.values()
            if j.parent_id is None
            and j.spec.name == req.jobName
            and j.spec.extras.user == req.mnp.user
            and not j.status.terminal
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
            for j in self.ctx.s.active.values()
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

    def describe(self, req: DescribeJobs, caller: Caller) -> JSON:
        """The jobs that exist among those asked for (unknown ids are left out). Open to
        every identity; a non-admin sees another user's environment values masked."""
        s = self.ctx.s
        out = []
        for ref in req.ids:
            job = s.job(self.ctx.job_id(ref))
            if job is not None:
                if not job.history:
                    job.history = s.store.history(job.job_id)
                    job.runnable_at = None  # read from the history it now has
                detail = job_detail(job)
                if not (caller.is_admin or caller.owns(job.submitted_by)):
                    detail = mask_environment(detail)
                out.append(detail)
        return {"jobs": out}

    def list(self, req: ListJobs) -> JSON:
        return list_jobs(self.ctx.s, req)

    def cancel_job(self, req: JobReason, caller: Caller) -> JSON:
        """Cancel a job of ``caller``'s (an admin: any job); AccessDenied otherwise."""
        return self._stop(req, caller, terminate=False)

    def terminate_job(self, req: JobReason, caller: Caller) -> JSON:
        """Terminate a job of ``caller``'s (an admin: any job); AccessDenied otherwise."""
        return self._stop(req, caller, terminate=True)

    def _stop(self, req: JobReason, caller: Caller, terminate: bool) -> JSON:
        """Cancel or terminate: another user's job is refused whether it runs or has ended
        (the answer does not depend on timing, and tells no one else whether it ended); a job
        that has ended, or no job, is a no-op answered 200, as AWS Batch answers it."""
        s = self.ctx.s
        job_id = self.ctx.job_id(req.jobId)
        job = s.active.get(job_id)
        found = job if job is not None else s.job(job_id)
        if found is not None:
            what = "terminate job" if terminate else "cancel job"
            require_owner(caller, found.submitted_by, what, found.job_id)
        if job is not None:
            self.cancel(job, req.reason, terminate=terminate)
            s.flush()
        return {}

    def requeue_job(self, req: JobReason, caller: Caller) -> JSON:
        """Stop a running job of ``caller``'s (an admin: any job) and put it back in its queue,
        as Slurm's ``scontrol requeue``: the attempt ends whatever its exit code and the job
        becomes RUNNABLE again, with the same ids; the requeued attempt does not count against
        the retry strategy. An array requeues its running children; a job not started yet is
        left as it is; a finished job is refused (submit it again)."""
        s = self.ctx.s
        job_id = self.ctx.job_id(req.jobId)
        job = s.active.get(job_id)
        if job is None:
            found = s.job(job_id)
            if found is None:
                raise NotFound(f"job {req.jobId} does not exist")
            raise Conflict(
                f"job {req.jobId} has finished ({found.status.value}): only a job that has not "
                "finished can be requeued; submit it again"
            )
        require_owner(caller, job.submitted_by, "requeue job", job.job_id)
        self.requeue(job, req.reason)
        s.flush()
        return {}

    def hold_job(self, req: JobReason, caller: Caller) -> JSON:
        """Hold a job of ``caller``'s (an admin: any) that has not started, as Slurm's
        ``scontrol hold``: it waits PENDING (``JobHeldUser``; ``JobHeldAdmin`` when an admin
        holds another's job, which only an admin releases) until released. An array: every
        child not started. A job that started is refused in Slurm's words."""
        job = self._unfinished(req.jobId, caller, "hold job")
        if job.status not in (JobStatus.SUBMITTED, JobStatus.PENDING, JobStatus.RUNNABLE):
            raise Conflict(f"job {req.jobId}: Job is no longer pending execution "
                           f"({job.status.value})")  # fmt: skip
        s = self.ctx.s
        job.held = HELD_ADMIN if caller.is_admin and not caller.owns(job.submitted_by) else (
            job.held if job.held == HELD_ADMIN else HELD_USER
        )
        s.mark(job)
        for target in self._self_or_children(job):
            if target.status == JobStatus.RUNNABLE:
                s.set_status(target, JobStatus.PENDING, s.held_reason(target))
            elif target.status in (JobStatus.PENDING, JobStatus.SUBMITTED):
                target.status_reason = s.held_reason(target)
                s.mark(target)
        s.flush()
        return {}

    def release_job(self, req: JobReason, caller: Caller) -> JSON:
        """Release a held job (an array: its children): it goes on as if never held. A job
        an admin held is released by an admin only; a job not held is left as it is."""
        job = self._unfinished(req.jobId, caller, "release job")
        if job.held == HELD_ADMIN and not caller.is_admin:
            raise AccessDenied(f"{caller.name} may not release job {req.jobId}: an admin "
                               "held it (JobHeldAdmin)")  # fmt: skip
        s = self.ctx.s
        job.held = None
        s.mark(job)
        for target in self._self_or_children(job):
            if target.status == JobStatus.PENDING and not s.is_held(target):
                s.pending_dirty.add(target.job_id)  # its dependencies decide again
        s.on_wake()
        s.flush()
        return {}

    def update_job(self, req: UpdateJob, caller: Caller) -> JSON:
        """Change a job that has not finished (an array: all its children), as Slurm's
        ``scontrol update JobId=…``: its time limit (attempts started already keep theirs),
        its scheduling priority, an array's running limit. An array task alone is refused
        (its array's request is one), as is a finished job."""
        s = self.ctx.s
        job = self._unfinished(req.jobId, caller, "update job")
        if job.parent_id is not None and job.array_index is not None:
            raise InvalidInput([FieldError("jobId", "an array task is updated with its whole "
                                           "array (update the array's id)")])  # fmt: skip
        errors = check_timeout(req.timeout, s.config.min_timeout_seconds)
        if req.arrayMaxRunning is not None and not job.is_array_parent:
            errors.append(FieldError("arrayMaxRunning", "only for array jobs"))
        if errors:
            raise InvalidInput(errors)
        spec = job.spec
        if req.timeout is not None:
            spec.timeout_seconds = req.timeout.attemptDurationSeconds
        if req.schedulingPriority is not None:
            spec.scheduling_priority = req.schedulingPriority
        if req.arrayMaxRunning is not None:
            spec.extras = replace(spec.extras, array_max_running=req.arrayMaxRunning)
            for child in self._self_or_children(job):  # a higher limit lets held ones go
                if child.status == JobStatus.PENDING:
                    s.pending_dirty.add(child.job_id)
        with s.store.transaction():
            s.store.save_spec(spec)
        s.on_wake()
        return {}

    def _self_or_children(self, job: Job) -> tuple[Job, ...]:
        """The job itself, or an array's children still active."""
        if not job.is_array_parent:
            return (job,)
        active = self.ctx.s.active
        return tuple(c for i in range(job.spec.array_size or 0)
                     if (c := active.get(array_child_id(job.job_id, i))))  # fmt: skip

    def _unfinished(self, ref: str, caller: Caller, what: str) -> Job:
        """The unfinished job ``ref`` names, which ``caller`` may change (``what``)."""
        s = self.ctx.s
        job_id = self.ctx.job_id(ref)
        job = s.active.get(job_id)
        if job is None:
            found = s.job(job_id)
            if found is None:
                raise NotFound(f"job {ref} does not exist")
            raise Conflict(f"job {ref}: Job is no longer pending execution "
                           f"({found.status.value})")  # fmt: skip
        if job.is_node:
            raise InvalidInput([FieldError("jobId", "a node of a multi-node job is changed "
                                           "with its whole job")])  # fmt: skip
        require_owner(caller, job.submitted_by, what, job.job_id)
        return job

    def requeue(self, job: Job, reason: str) -> None:
        s = self.ctx.s
        if job.is_node:
            parent = s.active.get(job.parent_id or "")
            if parent is not None:  # a node is requeued with its whole multi-node job
                self.requeue(parent, reason)
            return
        if job.is_array_parent:
            for i in range(job.spec.array_size or 0):
                child = s.active.get(array_child_id(job.job_id, i))
                if child is not None:
                    self.requeue(child, reason)
            return
        if job.status not in (JobStatus.STARTING, JobStatus.RUNNING) or job.is_terminated:
            return  # not started: it is in its queue already (a terminated job stays so)
        why = f"Requeued: {reason}"
        if job.is_mnp_parent:  # its attempt is recorded when the main node ends
            state = job.gang_state
            if state.outcome is not None or state.requeued is not None:
                return
            state.requeued = why
            s.mark(job)
            self.ctx.rt.gangs.terminate(job, why)
            return
        attempt = job.current_attempt
        if attempt is None or attempt.requeued is not None:
            return
        attempt.requeued = why
        s.mark(job)
        self.ctx.rt.kill(job, why)

    def cancel(self, job: Job, reason: str, terminate: bool) -> None:
        """Cancel (or with ``terminate``, also stop a running) ``job``: an array's children
        with it, a node's whole multi-node job. Marks the job; the caller flushes."""
        s = self.ctx.s
        if job.is_array_parent:
            if job.status == JobStatus.SUBMITTED:
                _flag(job, reason, terminate)
                s.set_status(job, JobStatus.FAILED, reason)
                return
            _flag(job, reason, terminate)
            s.mark(job)
            size = job.spec.array_size or 0
            for i in range(size):
                child = s.active.get(array_child_id(job.job_id, i))
                if child is not None:
                    self.cancel(child, reason, terminate)
            return
        if job.is_node:
            parent = s.active.get(job.parent_id or "")
            if parent is not None:  # a node is cancelled or terminated with its whole job
                self.cancel(parent, reason, terminate)
            return
        if job.status in CANCELLABLE:
            _flag(job, reason, terminate)
            s.set_status(job, JobStatus.FAILED, reason)
            if job.is_mnp_parent:
                self.ctx.rt.gangs.cancelled(job)
        elif terminate and job.status in (JobStatus.STARTING, JobStatus.RUNNING):
            _flag(job, reason, terminate)
            s.mark(job)
            if job.is_mnp_parent:
                self.ctx.rt.gangs.terminate(job, reason)
            else:
                self.ctx.rt.kill(job, reason)
        # CancelJob on STARTING/RUNNING does nothing (AWS Batch), and answers 200.


def _flag(job: Job, reason: str, terminate: bool) -> None:
    if terminate:
        job.is_terminated = True
    else:
        job.is_cancelled = True
    job.status_reason = reason
