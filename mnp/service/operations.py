"""The one table of the head node's operations, for both front doors.

Each :class:`Operation` row names an operation as AWS Batch does (``SubmitJob``, the AWS door's
``POST /v1/submitjob``) and as the native API does (``submitJob``, ``POST /api/v1/submitJob``),
says how a JSON body becomes its typed request (parsed once, here), which part of
:class:`~mnp.service.core.Service` runs it, and what the AWS door needs besides: the
:class:`Answer` kind it translates, and for the tag operations the method on
``/v1/tags/{resourceArn}``. Native-only operations have no AWS name.

The AWS door (:mod:`mnp.api.aws.batch`) builds its routes from :data:`OPERATIONS`; the native
door takes :func:`native_operations`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel

from mnp.service import dashboard
from mnp.service import requests as r
from mnp.service.base import JOB_DEFINITION_MAX, MNP_SUBMIT_MAX, SUBMIT_MAX
from mnp.service.core import Service
from mnp.service.explain import ExplainOps
from mnp.service.hosts import HostOps
from mnp.service.models import (
    CreateComputeEnvironment,
    CreateJobQueue,
    CreateSchedulingPolicy,
    JobReason,
    RegisterJobDefinition,
    SubmitJob,
    TagResource,
    UntagResource,
    UpdateComputeEnvironment,
    UpdateJob,
    UpdateJobQueue,
    UpdateSchedulingPolicy,
)
from mnp.service.roles import parse_role, request_resources
from mnp.service.users import Caller, require_admin
from mnp.service.validation import parse

JSON = dict[str, Any]
Handler = Callable[[Caller, JSON], JSON]
"""A front door's view of an operation: the caller's identity and the JSON body in, the JSON
answer out (the one signature of the native table, the AWS routes call :class:`Operation`)."""
R = TypeVar("R")
M = TypeVar("M", bound=BaseModel)


class Answer(enum.Enum):
    """What an answer holds, so the AWS door knows which of mnp's fields to take out."""

    AS_IS = enum.auto()
    JOBS = enum.auto()
    JOB_SUMMARIES = enum.auto()
    COMPUTE_ENVIRONMENTS = enum.auto()
    JOB_DEFINITIONS = enum.auto()
    SUBMITTED = enum.auto()


TagMethod = Literal["GET", "POST", "DELETE"]


@dataclass(frozen=True, slots=True)
class Operation(Generic[R]):
    aws: str | None
    """AWS Batch's name (``SubmitJob``); None for mnp's own operations."""
    native: str
    """The native API's name (``submitJob``)."""
    parse: Callable[[JSON], R]
    """The JSON body → the typed request; raises InvalidInput."""
    run: Callable[[Service, R, Caller], JSON]
    """The typed request and the caller's identity → the answer; the part it calls checks
    what only an owner of the object may do (:mod:`mnp.service.users`)."""
    answer: Answer = Answer.AS_IS
    tag_method: TagMethod | None = None
    """For the tag operations: the HTTP method on ``/v1/tags/{resourceArn}`` (AWS door)."""
    admin: bool = False
    """Only an admin may run it (AccessDenied for others, before the body is parsed)."""

    def __call__(self, service: Service, caller: Caller, body: JSON) -> JSON:
        """Check the caller may, parse ``body`` and run the operation (see
        :class:`~mnp.service.core.Service`); raises AccessDenied, InvalidInput, …"""
        if caller.job_role is not None:  # a running job's credentials: its role decides too
            action = f"batch:{self.aws}" if self.aws else f"mnp:{self.native}"
            caller.job_role.check(action, *request_resources(body))
        if self.admin:
            require_admin(caller, self.aws or self.native, _target(body))
        return self.run(service, self.parse(body), caller)


_TARGET_FIELDS = (
    "computeEnvironmentName", "computeEnvironment", "jobQueueName", "jobQueue", "name", "arn",
)  # fmt: skip


def _target(body: JSON) -> str:
    """The name a request is about, for the refusal's message ("" when it names none)."""
    if isinstance(body, dict):
        for key in _TARGET_FIELDS:
            if isinstance(body.get(key), str):
                return str(body[key])[:200]
    return ""


def _delete_role(service: Service, name: str) -> JSON:
    service.users.roles().delete(name)
    return {}


def _model(
    model: type[M], max_bytes: int | None = None, what: str = "request"
) -> Callable[[JSON], M]:
    return partial(parse, model, max_bytes=max_bytes, what=what)


def _submit(body: JSON) -> SubmitJob:
    """A submission with an ``mnp`` block may be larger (a batch script, an environment)."""
    limit = MNP_SUBMIT_MAX if isinstance(body, dict) and "mnp" in body else SUBMIT_MAX
    return parse(SubmitJob, body, limit, "SubmitJob payload")


Op = Operation
# fmt: off
OPERATIONS: tuple[Operation[Any], ...] = (
    # compute environments
    Op("CreateComputeEnvironment", "createComputeEnvironment", _model(CreateComputeEnvironment),
      lambda sv, q, c: sv.resources.create_compute_environment(q), admin=True),
    Op("UpdateComputeEnvironment", "updateComputeEnvironment", _model(UpdateComputeEnvironment),
      lambda sv, q, c: sv.resources.update_compute_environment(q), admin=True),
    Op("DeleteComputeEnvironment", "deleteComputeEnvironment", r.loose("computeEnvironment"),
      lambda sv, q, c: sv.resources.delete_compute_environment(q), admin=True),
    Op("DescribeComputeEnvironments", "describeComputeEnvironments",
      r.described("computeEnvironments"),
      lambda sv, q, c: sv.resources.describe_compute_environments(q), Answer.COMPUTE_ENVIRONMENTS),
    # job queues
    Op("CreateJobQueue", "createJobQueue", _model(CreateJobQueue),
      lambda sv, q, c: sv.resources.create_job_queue(q), admin=True),
    Op("UpdateJobQueue", "updateJobQueue", _model(UpdateJobQueue),
      lambda sv, q, c: sv.resources.update_job_queue(q), admin=True),
    Op("DeleteJobQueue", "deleteJobQueue", r.loose("jobQueue"),
      lambda sv, q, c: sv.resources.delete_job_queue(q), admin=True),
    Op("DescribeJobQueues", "describeJobQueues", r.described("jobQueues"),
      lambda sv, q, c: sv.resources.describe_job_queues(q)),
    Op("GetJobQueueSnapshot", "getJobQueueSnapshot", r.strict("jobQueue"),
      lambda sv, q, c: sv.resources.get_job_queue_snapshot(q)),
    # job definitions
    Op("RegisterJobDefinition", "registerJobDefinition",
      _model(RegisterJobDefinition, JOB_DEFINITION_MAX, "job definition"),
      lambda sv, q, c: sv.definitions.register(q, c)),
    Op("DeregisterJobDefinition", "deregisterJobDefinition", r.deregister_job_definition,
      lambda sv, q, c: sv.definitions.deregister(q, c)),
    Op("DescribeJobDefinitions", "describeJobDefinitions", r.DescribeJobDefinitions.from_body,
      lambda sv, q, c: sv.definitions.describe(q), Answer.JOB_DEFINITIONS),
    # jobs
    Op("SubmitJob", "submitJob", _submit, lambda sv, q, c: sv.jobs.submit(q, c), Answer.SUBMITTED),
    Op("DescribeJobs", "describeJobs", r.DescribeJobs.from_body,
      lambda sv, q, c: sv.jobs.describe(q, c), Answer.JOBS),
    Op("ListJobs", "listJobs", r.ListJobs.from_body,
      lambda sv, q, c: sv.jobs.list(q), Answer.JOB_SUMMARIES),
    Op("CancelJob", "cancelJob", _model(JobReason), lambda sv, q, c: sv.jobs.cancel_job(q, c)),
    Op("TerminateJob", "terminateJob", _model(JobReason),
      lambda sv, q, c: sv.jobs.terminate_job(q, c)),
    Op(None, "requeueJob", _model(JobReason), lambda sv, q, c: sv.jobs.requeue_job(q, c)),
    Op(None, "holdJob", _model(JobReason), lambda sv, q, c: sv.jobs.hold_job(q, c)),
    Op(None, "releaseJob", _model(JobReason), lambda sv, q, c: sv.jobs.release_job(q, c)),
    Op(None, "updateJob", _model(UpdateJob), lambda sv, q, c: sv.jobs.update_job(q, c)),
    # scheduling policies
    Op("CreateSchedulingPolicy", "createSchedulingPolicy", _model(CreateSchedulingPolicy),
      lambda sv, q, c: sv.policies.create_scheduling_policy(q), admin=True),
    Op("UpdateSchedulingPolicy", "updateSchedulingPolicy", _model(UpdateSchedulingPolicy),
      lambda sv, q, c: sv.policies.update_scheduling_policy(q), admin=True),
    Op("DeleteSchedulingPolicy", "deleteSchedulingPolicy", r.strict("arn"),
      lambda sv, q, c: sv.policies.delete_scheduling_policy(q), admin=True),
    Op("DescribeSchedulingPolicies", "describeSchedulingPolicies", r.describe_scheduling_policies,
      lambda sv, q, c: sv.policies.describe_scheduling_policies(q)),
    Op("ListSchedulingPolicies", "listSchedulingPolicies", r.Page.from_body,
      lambda sv, q, c: sv.policies.list_scheduling_policies(q)),
    # tags
    Op(None, "describeShares", r.loose("jobQueue"),
      lambda sv, q, c: sv.policies.describe_shares(q)),
    Op(None, "explainJob", r.loose("jobId"),
      lambda sv, q, c: ExplainOps(sv.ctx, sv.policies).explain_job(q, c)),
    Op("TagResource", "tagResource", _model(TagResource),
      lambda sv, q, c: sv.tags.tag_resource(q, c), tag_method="POST"),
    Op("UntagResource", "untagResource", _model(UntagResource),
      lambda sv, q, c: sv.tags.untag_resource(q, c), tag_method="DELETE"),
    Op("ListTagsForResource", "listTagsForResource", r.strict("resourceArn"),
      lambda sv, q, c: sv.tags.list_tags_for_resource(q), tag_method="GET"),
    # mnp's own
    Op(None, "listNodes", r.ListNodes.from_body, lambda sv, q, c: sv.list_nodes(q)),
    # users (admins create and delete them: UserOps checks, naming the user)
    Op(None, "createUser", r.CreateUser.from_body,
      lambda sv, q, c: sv.users.create_user(c, q.name, q.role)),
    Op(None, "listUsers", r.Page.from_body, lambda sv, q, c: sv.users.list_users(c)),
    Op(None, "deleteUser", r.strict("name"), lambda sv, q, c: sv.users.delete_user(c, q.ref)),
    Op(None, "whoAmI", r.Page.from_body, lambda sv, q, c: sv.users.who_am_i(c)),
    # roles: what running jobs may do with their own credentials (mnp.service.roles)
    Op(None, "createRole", parse_role, lambda sv, q, c: sv.users.roles().create(q), admin=True),
    Op(None, "listRoles", r.Page.from_body,
      lambda sv, q, c: {"roles": sv.users.roles().list()}),
    Op(None, "deleteRole", r.strict("roleName"),
      lambda sv, q, c: _delete_role(sv, q.ref), admin=True),
    # the hosts of UNMANAGED environments (mnp.service.hosts)
    Op(None, "addHost", r.AddHost.from_body, lambda sv, q, c: HostOps(sv.ctx).add_host(q),
      admin=True),
    Op(None, "removeHost", r.RemoveHost.from_body,
      lambda sv, q, c: HostOps(sv.ctx).remove_host(q), admin=True),
    Op(None, "listHosts", r.loose("computeEnvironment"),
      lambda sv, q, c: HostOps(sv.ctx).list_hosts(q), admin=True),
    # the web dashboard's own views (mnp.service.dashboard); its series is the app's
    Op(None, "dashboardOverview", r.Page.from_body,
      lambda sv, q, c: dashboard.overview(sv.ctx.s)),
    Op(None, "dashboardJobs", dashboard.JobFilter.from_body,
      lambda sv, q, c: dashboard.list_jobs(sv.ctx.s, q)),
    Op(None, "getDashboardLayout", r.Page.from_body,
      lambda sv, q, c: dashboard.get_layout(sv.ctx.s, c)),
    Op(None, "putDashboardLayout", dashboard.parse_layout,
      lambda sv, q, c: dashboard.put_layout(sv.ctx.s, c, q)),
)
# fmt: on


def native_operations(service: Service) -> dict[str, Handler]:
    """The native API's operations by name, bound to ``service``: each takes the caller."""
    return {op.native: partial(op, service) for op in OPERATIONS}
