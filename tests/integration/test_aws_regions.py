"""ARNs in the region a client signs for, and the account a head is configured with: boto3's
``batch`` and ``logs`` clients for eu-central-1 and us-west-2 against one real head node
started with ``MNP_ACCOUNT_ID``, and the aws CLI's own getting-started way of finding a job's
log stream (``attempts[0].taskProperties[0].containers[0].logStreamName``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from botocore.config import Config  # type: ignore[import-untyped]

from mnp.api.aws.credentials import pick, read_file
from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration

ACCOUNT = "123456789012"
GROUP = "/aws/batch/job"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("regions") / "home", nodes=1)
    c.extra_env["MNP_ACCOUNT_ID"] = ACCOUNT
    with c:
        yield c


def client(c: Cluster, service: str, region: str) -> Any:
    """boto3's ``service`` client at the head, signing for ``region`` with the head's key."""
    creds = wait_for("the head's credentials", lambda: pick(read_file(c.home / "credentials")))
    return boto3.client(
        service,
        endpoint_url=c.url,
        region_name=region,
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_access_key,
        config=Config(retries={"total_max_attempts": 1}, read_timeout=30),
    )


def test_a_client_signing_for_eu_central_1_gets_eu_central_1_arns(cluster: Cluster) -> None:
    eu = client(cluster, "batch", "eu-central-1")
    prefix = f"arn:aws:batch:eu-central-1:{ACCOUNT}"
    answer = eu.register_job_definition(
        jobDefinitionName="regions",
        type="container",
        containerProperties={
            "command": ["echo", "hi"],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}],
        },
    )
    assert answer["jobDefinitionArn"] == f"{prefix}:job-definition/regions:1"
    (queue,) = eu.describe_job_queues(jobQueues=["default"])["jobQueues"]
    assert queue["jobQueueArn"] == f"{prefix}:job-queue/default"
    assert queue["computeEnvironmentOrder"][0]["computeEnvironment"].startswith(
        f"{prefix}:compute-environment/"
    )
    job = eu.submit_job(
        jobName="r", jobQueue=queue["jobQueueArn"], jobDefinition=answer["jobDefinitionArn"]
    )
    assert job["jobArn"] == f"{prefix}:job/{job['jobId']}"

    def done() -> dict[str, Any] | None:
        (d,) = eu.describe_jobs(jobs=[job["jobId"]])["jobs"]
        return d if d["status"] in ("SUCCEEDED", "FAILED") else None

    detail = wait_for("the job to end", done, timeout=60)
    assert detail["status"] == "SUCCEEDED", detail
    assert (detail["jobArn"], detail["jobQueue"], detail["jobDefinition"]) == (
        job["jobArn"],
        queue["jobQueueArn"],
        answer["jobDefinitionArn"],
    )
    stream = detail["attempts"][0]["taskProperties"][0]["containers"][0]["logStreamName"]
    assert stream == detail["container"]["logStreamName"]

    # the same job through a client of another region: that region's ARNs, and ARNs of any
    # region still name it
    west = client(cluster, "batch", "us-west-2")
    (other,) = west.describe_jobs(jobs=[job["jobId"]])["jobs"]
    assert other["jobArn"] == f"arn:aws:batch:us-west-2:{ACCOUNT}:job/{job['jobId']}"
    assert other["jobDefinition"] == f"arn:aws:batch:us-west-2:{ACCOUNT}:job-definition/regions:1"
    found = west.list_jobs(
        jobQueue=queue["jobQueueArn"],
        filters=[{"name": "JOB_DEFINITION", "values": [answer["jobDefinitionArn"]]}],
    )
    assert [s["jobId"] for s in found["jobSummaryList"]] == [job["jobId"]]

    logs = client(cluster, "logs", "eu-central-1")
    (group,) = logs.describe_log_groups(logGroupNamePrefix=GROUP)["logGroups"]
    assert group["logGroupArn"] == f"arn:aws:logs:eu-central-1:{ACCOUNT}:log-group:{GROUP}"
    streams = logs.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix=stream)
    assert [s["arn"] for s in streams["logStreams"]] == [
        f"arn:aws:logs:eu-central-1:{ACCOUNT}:log-group:{GROUP}:log-stream:{stream}"
    ]
    events = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, startFromHead=True)
    assert [e["message"] for e in events["events"]] == ["hi"]


def test_the_native_api_keeps_the_heads_own_region(cluster: Cluster) -> None:
    """Nothing is signed there: the head's region (``$MNP_REGION``, ``local`` unset)."""
    (queue,) = [q for q in cluster.client.queues() if q["jobQueueName"] == "default"]
    assert queue["jobQueueArn"] == f"arn:aws:batch:local:{ACCOUNT}:job-queue/default"
