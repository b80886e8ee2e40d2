"""AWS Batch answer shapes on the wire: the native answers with mnp's own fields taken out.

The service answers in AWS Batch's shapes already (both front doors share them); the native
API adds a few fields of mnp's own (a job's ``history``, ``nodeId``, ``jobQueueName``; a
compute environment's ``mnp`` block). The wire answers exactly the members botocore's
Batch model has, so raw responses look like AWS's, and fills in AWS's constant fields.
Pure functions over JSON-shaped dicts; each returns a new dict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

JSON = dict[str, Any]
Translate = Callable[[JSON], JSON]

MNP_JOB_FIELDS = frozenset(
    {
        "jobQueueName", "computeEnvironment", "nodeId", "nodeAddress", "history", "attempt",
        "jobNumber", "arrayJobNumber",
    }
)  # fmt: skip
"""Fields the native JobDetail/JobSummary add to AWS's shapes."""

ORCHESTRATION = "ECS"
"""``containerOrchestrationType``: mnp runs containers (or processes) as ECS would."""


def job_detail(d: JSON) -> JSON:
    return {k: v for k, v in d.items() if k not in MNP_JOB_FIELDS}


def job_summary(d: JSON) -> JSON:
    return {k: v for k, v in d.items() if k not in MNP_JOB_FIELDS}


def submitted(d: JSON) -> JSON:
    """SubmitJob's answer without the job number (the AWS wire names jobs by UUID only)."""
    return {k: v for k, v in d.items() if k not in MNP_JOB_FIELDS}


def compute_environment(d: JSON) -> JSON:
    """Without ``mnp``; a MANAGED environment created without ``computeResources`` (the
    embedded default, or one made through the native API) shows its local nodes' vCPUs."""
    local = d.get("mnp") or {}
    out = {k: v for k, v in d.items() if k != "mnp"}
    out.setdefault("containerOrchestrationType", ORCHESTRATION)
    if out.get("type") == "MANAGED" and "computeResources" not in out and local:
        vcpus = int(local.get("nodes", 0)) * int(local.get("vcpus", 0))
        out["computeResources"] = {
            "type": "EC2",
            "minvCpus": vcpus,
            "maxvCpus": vcpus,
            "desiredvCpus": vcpus,
            "instanceTypes": ["optimal"],
            "subnets": [],
        }
    return out


def job_definition(d: JSON) -> JSON:
    out = dict(d)
    out.setdefault("containerOrchestrationType", ORCHESTRATION)
    return out


def _each(key: str, fn: Translate) -> Translate:
    def translate(answer: JSON) -> JSON:
        return {**answer, key: [fn(x) for x in answer.get(key, [])]}

    return translate


describe_jobs = _each("jobs", job_detail)
list_jobs = _each("jobSummaryList", job_summary)
describe_compute_environments = _each("computeEnvironments", compute_environment)
describe_job_definitions = _each("jobDefinitions", job_definition)


def unchanged(answer: JSON) -> JSON:
    return answer
