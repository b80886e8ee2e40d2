"""AWS Batch answer shapes on the wire: the native answers with mnp's own fields taken out.

The service answers in AWS Batch's shapes already (both front doors share them); the native
API adds a few fields of mnp's own (a job's ``history``, ``nodeId``, ``jobQueueName``; a
compute environment's ``mnp`` block). The wire answers exactly the members botocore's
Batch model has, so raw responses look like AWS's, and fills in what AWS always answers
(empty maps and lists, constant fields), so code that indexes where it could ``.get()``
runs as it does against AWS.
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
        "jobNumber", "arrayJobNumber", "mnp",
    }
)  # fmt: skip
"""Fields the native JobDetail/JobSummary add to AWS's shapes."""

ORCHESTRATION = "ECS"
"""``containerOrchestrationType``: mnp runs containers (or processes) as ECS would."""


EMPTY_CONTAINER_LISTS = (
    "volumes", "environment", "mountPoints", "ulimits", "resourceRequirements", "secrets",
)  # fmt: skip
"""The lists AWS always answers in a container's properties, empty when none were given."""
FARGATE_PLATFORM = {"platformVersion": "LATEST"}
"""What AWS answers as a Fargate container's ``fargatePlatformConfiguration`` by default."""


def container_properties(c: JSON, fargate: bool = False) -> JSON:
    """A container as AWS answers it: every list it always answers, and on Fargate the
    platform version (code that indexes ``['volumes']`` finds them as it does on AWS)."""
    out = dict(c)
    for key in EMPTY_CONTAINER_LISTS:
        if out.get(key) is None:
            out[key] = []
    if fargate and out.get("fargatePlatformConfiguration") is None:
        out["fargatePlatformConfiguration"] = dict(FARGATE_PLATFORM)
    return out


def _fargate(d: JSON) -> bool:
    return "FARGATE" in (d.get("platformCapabilities") or [])


def _node_properties(nodes: Any, fargate: bool) -> Any:
    """``nodeProperties`` with each range's container as :func:`container_properties`."""
    if not isinstance(nodes, dict) or not isinstance(nodes.get("nodeRangeProperties"), list):
        return nodes
    ranges = [
        {**r, "container": container_properties(r["container"], fargate)}
        if isinstance(r, dict) and isinstance(r.get("container"), dict)
        else r
        for r in nodes["nodeRangeProperties"]
    ]
    return {**nodes, "nodeRangeProperties": ranges}


def _attempt(a: JSON) -> JSON:
    """An attempt with its container also as ``taskProperties[0].containers[0]``, where
    AWS's own scripts look for the log stream of a job's attempt."""
    container = a.get("container")
    if not isinstance(container, dict) or "taskProperties" in a:
        return a
    shown = {k: container[k] for k in ("exitCode", "reason", "logStreamName") if k in container}
    return {**a, "taskProperties": [{"containers": [shown]}]}


def job_detail(d: JSON) -> JSON:
    """Without mnp's fields; with what AWS always answers (``parameters``, ``tags``,
    ``eksAttempts``, the container's empty lists); a multi-node job's parent without a
    ``container`` (AWS gives one to its nodes only)."""
    out = {k: v for k, v in d.items() if k not in MNP_JOB_FIELDS}
    fargate = _fargate(out)
    out.setdefault("parameters", {})
    out.setdefault("tags", {})
    out.setdefault("eksAttempts", [])
    if "nodeProperties" in out and "nodeDetails" not in out:
        out.pop("container", None)
        nodes = _node_properties(out["nodeProperties"], fargate)
        if isinstance(nodes, dict):  # mnp's MPI settings are the native API's (the dashboard's)
            nodes = {k: v for k, v in nodes.items() if k != "mnp"}
        out["nodeProperties"] = nodes
    elif isinstance(out.get("container"), dict):
        out["container"] = container_properties(out["container"], fargate)
    if isinstance(out.get("attempts"), list):
        out["attempts"] = [_attempt(a) if isinstance(a, dict) else a for a in out["attempts"]]
    return out


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
    """With what AWS always answers: ``parameters``, ``tags``, ``platformCapabilities``, the
    containers' empty lists (and Fargate's platform version)."""
    out = dict(d)
    fargate = _fargate(out)
    out.setdefault("parameters", {})
    out.setdefault("tags", {})
    out.setdefault("platformCapabilities", ["EC2"])
    if isinstance(out.get("containerProperties"), dict):
        out["containerProperties"] = container_properties(out["containerProperties"], fargate)
    if "nodeProperties" in out:
        out["nodeProperties"] = _node_properties(out["nodeProperties"], fargate)
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
