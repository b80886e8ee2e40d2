"""Users on a real head node: native tokens and AWS keys of users, 403s through both doors
(real boto3 for the AWS wire), ``submittedBy`` on the wire, and the CLI's ``users``/``whoami``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from mnp.client.client import Client
from mnp.errors import AccessDenied
from mnp.service.users import owner_name
from tests.integration.cluster import Cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("users") / "home", nodes=1) as c:
        c.register("echo", ["sh", "-c", "echo hello; sleep 30"])
        yield c


@pytest.fixture(scope="module")
def users(cluster: Cluster) -> dict[str, dict[str, Any]]:
    return {n: cluster.client.create_user(n) for n in ("alice", "bob")}


def client_of(c: Cluster, made: dict[str, Any], tmp: Path) -> Client:
    return Client(url=c.url, token=made["token"], home=tmp, timeout=30)


def boto_of(c: Cluster, made: dict[str, Any]) -> Any:
    return boto3.client(
        "batch",
        endpoint_url=c.url,
        region_name="us-east-1",
        aws_access_key_id=made["awsAccessKeyId"],
        aws_secret_access_key=made["awsSecretAccessKey"],
        config=Config(retries={"max_attempts": 1}, read_timeout=30),
    )


def test_native_tokens_identify_users_and_deny_others_jobs(
    cluster: Cluster, users: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    alice = client_of(cluster, users["alice"], tmp_path)
    bob = client_of(cluster, users["bob"], tmp_path)
    assert alice.whoami() == {"name": "alice", "role": "user", "owner": False}
    job = alice.submit({"jobName": "a", "jobQueue": "default", "jobDefinition": "echo"})
    assert bob.describe(job)["submittedBy"] == "alice"
    with pytest.raises(AccessDenied, match="bob may not terminate job"):
        bob.terminate(job, "no")
    with pytest.raises(AccessDenied, match="bob may not read the logs"):
        list(bob.logs(job))
    with pytest.raises(AccessDenied):
        bob.create_user("mallory")
    # (on a root agent the job fails: no local account alice; who may do what is the point)
    list(alice.logs(job))  # her own: allowed
    alice.terminate(job, "mine")
    cluster.wait_status(job, "FAILED")
    listed = {s["jobId"]: s for s in bob.list_jobs(queue="default", status=["FAILED"])}
    assert listed[job]["submittedBy"] == "alice"


def test_boto3_user_keys_get_access_denied_and_ignore_submitted_by(
    cluster: Cluster, users: dict[str, dict[str, Any]]
) -> None:
    alice, bob = boto_of(cluster, users["alice"]), boto_of(cluster, users["bob"])
    job = alice.submit_job(jobName="b", jobQueue="default", jobDefinition="echo")["jobId"]
    raw: list[bytes] = []
    bob.meta.events.register(
        "after-call.batch.DescribeJobs",
        lambda http_response, **_: raw.append(http_response.content),
    )
    detail = bob.describe_jobs(jobs=[job])["jobs"][0]  # botocore parses past submittedBy
    assert detail["jobId"] == job and detail["status"] and "submittedBy" not in detail
    assert json.loads(raw[0])["jobs"][0]["submittedBy"] == "alice"  # on the wire all the same
    with pytest.raises(ClientError) as e:
        bob.terminate_job(jobId=job, reason="no")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as e:
        bob.delete_job_queue(jobQueue="default")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    alice.terminate_job(jobId=job, reason="mine")
    cluster.wait_status(job, "FAILED")


def test_a_deleted_user_is_refused_at_once(cluster: Cluster, tmp_path: Path) -> None:
    made = cluster.client.create_user("carol")
    carol = client_of(cluster, made, tmp_path)
    carol.whoami()
    cluster.client.delete_user("carol")
    with pytest.raises(Exception, match="401"):
        carol.whoami()
    with pytest.raises(ClientError) as e:
        boto_of(cluster, made).describe_job_queues()
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_cli_users_and_whoami_and_client_json(cluster: Cluster, tmp_path: Path) -> None:
    def mnp(*args: str, home: Path = cluster.home) -> str:
        argv = [sys.executable, "-m", "mnp", "--home", str(home), "--url", cluster.url, *args]
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout

    out = json.loads(mnp("users", "add", "dave", "--json"))
    assert out["role"] == "user" and out["token"]
    assert "dave" in mnp("users", "list")
    assert mnp("whoami").startswith(owner_name())
    # a user's home holds client.json (what root's `mnp users add` writes): the client uses it
    user_home = tmp_path / "dave-home"
    user_home.mkdir()
    (user_home / "client.json").write_text(json.dumps({"url": cluster.url, "token": out["token"]}))
    assert Client(home=user_home).whoami()["name"] == "dave"
    mnp("users", "remove", "dave")
    assert "dave" not in mnp("users", "list")
