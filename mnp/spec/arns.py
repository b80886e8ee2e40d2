"""AWS Batch ARNs for mnp's resources (one region, one account: the head node)."""

from __future__ import annotations

REGION = "local"
ACCOUNT = "000000000000"
ARN_PREFIX = f"arn:aws:batch:{REGION}:{ACCOUNT}"


def queue_arn(name: str) -> str:
    return f"{ARN_PREFIX}:job-queue/{name}"


def ce_arn(name: str) -> str:
    return f"{ARN_PREFIX}:compute-environment/{name}"


def job_definition_arn(name: str, revision: int) -> str:
    return f"{ARN_PREFIX}:job-definition/{name}:{revision}"


def job_arn(job_id: str) -> str:
    return f"{ARN_PREFIX}:job/{job_id}"


def scheduling_policy_arn(name: str) -> str:
    return f"{ARN_PREFIX}:scheduling-policy/{name}"


def name_from_arn(value: str, kind: str) -> str:
    """``arn:…:<kind>/<name>`` → ``<name>``; a plain name is returned as it is."""
    marker = f":{kind}/"
    if value.startswith("arn:") and marker in value:
        return value.split(marker, 1)[1]
    return value
