"""AWS inside the job: a job with no keys in its definition calls the head as itself through
boto3 (and the aws CLI) with the credentials its node's agent serves, as ECS serves a task's
role; its key is refused once it has ended and for what its role lacks; a compute
environment's ``mnp:env:`` tags reach every job (an S3 endpoint on a real moto server)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from tests.integration.awsclients import batch_client
from tests.integration.cluster import Cluster
from tests.integration.motoserver import MotoServer

pytestmark = pytest.mark.integration

# what a workflow's head job does: look itself up, submit a follow-up, keep its key for later
INSIDE = r"""
import json, os, sys
import boto3
session = boto3.Session()
creds = session.get_credentials()
batch = session.client("batch")
me = batch.describe_jobs(jobs=[os.environ["AWS_BATCH_JOB_ID"]])["jobs"][0]
child = batch.submit_job(jobName="child", jobQueue="default", jobDefinition="echo")["jobId"]
frozen = creds.get_frozen_credentials()
json.dump({
    "method": creds.method, "status": me["status"], "child": child,
    "region": session.region_name, "jobArn": me["jobArn"],
    "key": [frozen.access_key, frozen.secret_key, frozen.token],
}, open(sys.argv[1], "w"))
"""

DENIED = r"""
import sys
import boto3
from botocore.exceptions import ClientError
batch = boto3.client("batch")
try:
    batch.submit_job(jobName="nope", jobQueue="default", jobDefinition="echo")
except ClientError as e:
    print("refused:", e.response["Error"]["Code"], e.response["Error"]["Message"])
    sys.exit(3)
"""

S3 = r"""
import sys
import boto3
s3 = boto3.client("s3")
s3.put_object(Bucket="results", Key="out.txt", Body=b"from the job")
print(s3.get_object(Bucket="results", Key="out.txt")["Body"].read().decode())
"""


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("jobcreds") / "home", nodes=2, min_timeout=60) as c:
        c.register("echo", ["echo", "child ran"])
        yield c


def _python_job(c: Cluster, name: str, script: str, *args: str, **container: Any) -> str:
    c.register(name, [sys.executable, "-c", script, *args], container=container)
    return c.submit(name, name)


def test_a_job_calls_batch_as_itself_and_its_key_dies_with_it(c: Cluster, tmp_path: Path) -> None:
    out = tmp_path / "inside.json"
    job = _python_job(c, "workflow", INSIDE, str(out))
    detail = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=60)
    assert detail["status"] == "SUCCEEDED", c.logs(job)
    seen = json.loads(out.read_text())
    assert seen["method"] == "container-role", "the key came from the node's endpoint"
    assert seen["status"] == "RUNNING" and seen["region"] == "us-east-1"
    assert seen["jobArn"].startswith("arn:aws:batch:us-east-1:")
    child = c.wait_status(seen["child"], "SUCCEEDED", "FAILED", timeout=60)
    assert child["status"] == "SUCCEEDED"
    key, secret, token = seen["key"]
    after = boto3.client(
        "batch", endpoint_url=c.url, region_name="us-east-1", aws_access_key_id=key,
        aws_secret_access_key=secret, aws_session_token=token,
        config=Config(retries={"max_attempts": 1}),
    )  # fmt: skip
    with pytest.raises(ClientError) as err:
        after.describe_jobs(jobs=[job])
    assert err.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_a_role_limits_what_the_job_may_do(c: Cluster) -> None:
    made = subprocess.run(
        [sys.executable, "-m", "mnp", "--home", str(c.home), "--url", c.url,
         "roles", "create", "reader", "--allow", "batch:Describe*,batch:List*"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "mnp", "--home", str(c.home), "--url", c.url, "roles", "list"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "reader\tbatch:Describe*,batch:List*\tqueues=*" in listed, listed
    job = _python_job(
        c, "reader-job", DENIED, jobRoleArn="arn:aws:iam::123456789012:role/reader"
    )
    detail = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=60)
    log = c.logs(job)
    assert detail["attempts"][-1]["container"]["exitCode"] == 3, log
    assert "refused: AccessDeniedException" in log and "'reader' does not allow" in log, log
    # the default role does not change the cluster either, even for the head's owner's job
    create = 'import boto3; boto3.client("batch").create_job_queue(jobQueueName="x", priority=1, computeEnvironmentOrder=[])'  # noqa: E501
    job = _python_job(c, "admin-job", create)
    detail = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=60)
    assert detail["status"] == "FAILED"
    assert "mnp-job-default' does not allow batch:CreateJobQueue" in c.logs(job)


@pytest.mark.skipif(shutil.which("aws") is None, reason="needs the aws CLI (.ci/run installs it)")
def test_the_aws_cli_in_a_job_describes_the_job(c: Cluster) -> None:
    aws = shutil.which("aws")
    assert aws is not None
    describe = f'"{aws}" batch describe-jobs --jobs "$AWS_BATCH_JOB_ID" --output json'
    c.register("cli", ["sh", "-c", describe])
    job = c.submit("cli", "cli")
    detail = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=90)
    log = c.logs(job)
    assert detail["status"] == "SUCCEEDED", log
    assert json.loads(log)["jobs"][0]["jobId"] == job


def test_an_environment_tag_gives_every_job_an_s3_endpoint(tmp_path: Path) -> None:
    # loopback nodes: the moto server listens on the machine's loopback, which a job on a
    # node of its own namespace cannot reach (an S3 endpoint's address must suit the nodes)
    home = tmp_path / "home"
    with MotoServer() as moto, Cluster(home, nodes=1, network="loopback", min_timeout=60) as c:
        boto3.client("s3", **moto.client_args()).create_bucket(Bucket="results")
        b = batch_client(c)
        ce_arn = b.describe_compute_environments()["computeEnvironments"][0][
            "computeEnvironmentArn"
        ]
        b.tag_resource(resourceArn=ce_arn, tags={"mnp:env:AWS_ENDPOINT_URL_S3": moto.url})
        try:
            job = _python_job(c, "s3-job", S3)
            detail = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=60)
            assert detail["status"] == "SUCCEEDED", c.logs(job)
            assert c.logs(job).strip() == "from the job"
            s3 = boto3.client("s3", **moto.client_args())
            assert s3.get_object(Bucket="results", Key="out.txt")["Body"].read() == b"from the job"
        finally:
            b.untag_resource(resourceArn=ce_arn, tagKeys=["mnp:env:AWS_ENDPOINT_URL_S3"])
