"""The AWS front door of a real head node: boto3's ``logs`` client and the aws CLI read a
finished job's output; SigV4 refusals reach boto3 with AWS's codes.

The head node runs as ``mnp up`` does: ``mnp.api.app.build_app`` mounts the Logs endpoint
(``POST /``) and the Batch routes behind ``FrontDoor.check``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import botocore.auth
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from mnp.api.aws.credentials import Credentials, pick, read_file
from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration

GROUP = "/aws/batch/job"
NO_RETRIES = Config(retries={"total_max_attempts": 1})


class AwsCluster(Cluster):
    """``mnp up``, and the AWS keys it keeps in its home."""

    def credentials(self) -> Credentials:
        path = self.home / "credentials"
        return wait_for("the head node's credentials", lambda: pick(read_file(path)))


@dataclass
class Finished:
    cluster: AwsCluster
    job_id: str
    stream: str
    definition: str


OUT_LINES = ["hello from stdout", "second line, with 'quotes' and $HOME", "ünïcödé ✓"]
ERR_LINES = ["ERR something went wrong", "ERR and again"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Finished]:
    cluster = AwsCluster(tmp_path_factory.mktemp("aws") / "home")
    try:
        cluster.start()
        script = "; ".join(
            [f"printf '%s\\n' {shlex.quote(line)}" for line in OUT_LINES]
            + [f"printf '%s\\n' {shlex.quote(line)} >&2" for line in ERR_LINES]
        )
        cluster.register("aws-logs", ["sh", "-c", script])
        job_id = cluster.submit("reads-logs", "aws-logs")
        detail = cluster.wait_status(job_id, "SUCCEEDED", "FAILED")
        assert detail["status"] == "SUCCEEDED", detail
        stream = detail["container"]["logStreamName"]
        assert stream.startswith("aws-logs/default/")
        yield Finished(cluster, job_id, stream, "aws-logs")
    finally:
        cluster.stop()


def logs_client(cluster: AwsCluster, creds: Credentials | None = None, **kw: Any) -> Any:
    creds = creds or cluster.credentials()
    return boto3.client(
        "logs",
        endpoint_url=cluster.url,
        region_name="us-east-1",
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_access_key,
        config=kw.pop("config", NO_RETRIES),
        **kw,
    )


def test_boto3_get_log_events_reads_the_jobs_output(finished: Finished) -> None:
    client = logs_client(finished.cluster)
    seen: list[str] = []
    kwargs: dict[str, Any] = {"startFromHead": True, "limit": 2}
    calls = 0
    while True:
        page = client.get_log_events(logGroupName=GROUP, logStreamName=finished.stream, **kwargs)
        seen += [e["message"] for e in page["events"]]
        calls += 1
        if page["nextForwardToken"] == kwargs.get("nextToken"):
            break
        kwargs = {"nextToken": page["nextForwardToken"], "limit": 2}
        assert calls < 10
    assert sorted(seen) == sorted(OUT_LINES + ERR_LINES)
    assert [m for m in seen if m in OUT_LINES] == OUT_LINES
    assert [m for m in seen if m in ERR_LINES] == ERR_LINES

    latest = client.get_log_events(logGroupName=GROUP, logStreamName=finished.stream, limit=1)
    assert [e["message"] for e in latest["events"]] == [seen[-1]]
    assert all(isinstance(e["timestamp"], int) for e in page["events"])


def test_boto3_describe_and_filter(finished: Finished) -> None:
    client = logs_client(finished.cluster)
    streams = [
        s
        for page in client.get_paginator("describe_log_streams").paginate(
            logGroupName=GROUP, logStreamNamePrefix=f"{finished.definition}/default/"
        )
        for s in page["logStreams"]
    ]
    assert [s["logStreamName"] for s in streams] == [finished.stream]
    stream = streams[0]
    out_bytes = sum(len(line.encode()) + 1 for line in OUT_LINES + ERR_LINES)
    assert stream["storedBytes"] == out_bytes
    assert stream["firstEventTimestamp"] <= stream["lastEventTimestamp"]
    assert stream["arn"].endswith(f":log-group:{GROUP}:log-stream:{finished.stream}")

    errors = [
        e["message"]
        for page in client.get_paginator("filter_log_events").paginate(
            logGroupName=GROUP,
            logStreamNames=[finished.stream],
            filterPattern="ERR",
            PaginationConfig={"PageSize": 1},
        )
        for e in page["events"]
    ]
    assert errors == ERR_LINES

    groups = client.describe_log_groups(logGroupNamePrefix="/aws/batch")["logGroups"]
    assert [g["logGroupName"] for g in groups] == [GROUP]

    with pytest.raises(ClientError) as missing:
        client.get_log_events(logGroupName=GROUP, logStreamName="aws-logs/default/nope")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_running_jobs_output_is_followed_with_the_forward_token(finished: Finished) -> None:
    cluster = finished.cluster
    cluster.register("slow-logs", ["sh", "-c", "echo first; sleep 1.5; echo second"])
    job_id = cluster.submit("follow", "slow-logs")
    detail = cluster.wait_status(job_id, "RUNNING", "SUCCEEDED")
    client = logs_client(cluster)
    stream = detail["container"]["logStreamName"]
    seen: list[str] = []
    token: str | None = None

    def poll() -> bool:
        nonlocal token
        extra = {"nextToken": token} if token else {"startFromHead": True}
        page = client.get_log_events(logGroupName=GROUP, logStreamName=stream, **extra)
        seen.extend(e["message"] for e in page["events"])
        token = page["nextForwardToken"]
        return "second" in seen

    wait_for("the second line", poll, timeout=30, interval=0.2)
    assert seen == ["first", "second"]


def test_aws_cli_after_mnp_env(finished: Finished, tmp_path: Path) -> None:
    aws = shutil.which("aws")
    assert aws is not None, "the aws CLI (pip install awscli) is part of the test tier"
    home = finished.cluster.home
    env_cmd = f"{shlex.quote(sys.executable)} -m mnp --home {shlex.quote(str(home))} env"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    clean["HOME"] = str(tmp_path)  # no ~/.aws of the machine's

    def aws_after_env(*args: str) -> Any:
        script = f'eval "$({env_cmd})" && {shlex.quote(aws)} {shlex.join(args)} --output json'
        done = subprocess.run(
            ["sh", "-c", script], env=clean, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    events = aws_after_env(
        "logs", "get-log-events", "--log-group-name", GROUP,
        "--log-stream-name", finished.stream, "--start-from-head",
    )  # fmt: skip
    assert sorted(e["message"] for e in events["events"]) == sorted(OUT_LINES + ERR_LINES)
    described = aws_after_env("logs", "describe-log-streams", "--log-group-name", GROUP)
    assert finished.stream in [s["logStreamName"] for s in described["logStreams"]]
    queues = aws_after_env("batch", "describe-job-queues")
    assert "default" in [q["jobQueueName"] for q in queues["jobQueues"]]


def test_sigv4_refusals_reach_boto3_with_aws_codes(finished: Finished) -> None:
    cluster = finished.cluster
    creds = cluster.credentials()
    args = {"logGroupName": GROUP, "logStreamName": finished.stream}

    def code_of(client: Any) -> tuple[int, str]:
        with pytest.raises(ClientError) as err:
            client.get_log_events(**args)
        response = err.value.response
        return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]

    unsigned = logs_client(cluster, config=NO_RETRIES.merge(Config(signature_version=UNSIGNED)))
    assert code_of(unsigned) == (403, "MissingAuthenticationTokenException")
    wrong = logs_client(cluster, Credentials(creds.access_key_id, "not-the-secret"))
    assert code_of(wrong) == (403, "InvalidSignatureException")
    unknown = logs_client(cluster, Credentials("MNPNOSUCHKEY00000000", "x"))
    assert code_of(unknown) == (403, "UnrecognizedClientException")
    stale = datetime.now(UTC) - timedelta(minutes=20)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=stale):
        assert code_of(logs_client(cluster)) == (403, "InvalidSignatureException")
    assert logs_client(cluster).get_log_events(**args, startFromHead=True)["events"]

    batch = boto3.client(
        "batch",
        endpoint_url=cluster.url,
        region_name="us-east-1",
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key="wrong",
        config=NO_RETRIES,
    )
    with pytest.raises(ClientError) as err:
        batch.describe_job_queues()
    assert err.value.response["Error"]["Code"] == "InvalidSignatureException"
    # mnp's own API and the agents are not behind SigV4
    assert cluster.client.status()["jobCounts"]
