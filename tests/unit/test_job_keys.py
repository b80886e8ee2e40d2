"""A running job's own credentials: derived per attempt, found by key id or token while the
attempt runs and refused from its end on; roles limit them; the node serves them in ECS's
shape. Through the real Service + Scheduler in-process (temp SQLite, fake clock)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.credentials import PATH, CredentialServer
from mnp.errors import AccessDenied, InvalidInput
from mnp.scheduler.jobkeys import job_keys
from mnp.service.roles import DEFAULT_ROLE, parse_role, request_resources, role_name_of
from mnp.service.users import Caller
from mnp.spec.protocol import Assignment
from tests.unit.helpers_core import Head


@pytest.fixture
def head(tmp_path: Path) -> Iterator[Head]:
    h = Head.open(tmp_path / "home")
    h.basic(("n1",))
    yield h
    h.close()


def running(h: Head, **body: object) -> tuple[str, Assignment]:
    job = h.submit(**body)
    for _ in range(4):
        h.ticks(1)
        got, _ = h.poll("n1")
        if got:
            h.started("n1", got[0].attempt_id)
            return job, got[0]
    raise AssertionError("nothing placed")


def test_the_assignment_carries_the_attempts_own_keys(head: Head) -> None:
    job, a = running(head)
    creds = a.credentials
    assert creds is not None
    assert creds["accessKeyId"].startswith("MNPJ") and len(creds["accessKeyId"]) == 20
    assert len(creds["secretAccessKey"]) == 40
    assert "credentials" in a.to_wire() and "secret" not in repr(a)
    found = head.service.users.by_access_key(creds["accessKeyId"])
    assert found is not None
    caller, secret = found
    assert secret == creds["secretAccessKey"]
    assert (caller.job_id, caller.session_token) == (job, creds["sessionToken"])
    assert caller.job_role == DEFAULT_ROLE and caller.is_admin, "the owner's job, limited"
    by_token = head.service.users.by_token(creds["nativeToken"])
    assert by_token is not None and by_token.job_id == job


def test_keys_are_refused_once_the_attempt_ends_and_differ_per_attempt(head: Head) -> None:
    _job, a = running(head, retryStrategy={"attempts": 2})
    first = a.credentials
    assert first is not None
    head.exited("n1", a.attempt_id, 1)
    users = head.service.users
    assert users.by_access_key(first["accessKeyId"]) is None
    assert users.by_token(first["nativeToken"]) is None
    head.ticks(2)
    again, _ = head.poll("n1")
    second = again[0].credentials
    assert second is not None and second["accessKeyId"] != first["accessKeyId"]
    assert users.by_access_key(first["accessKeyId"]) is None, "the old attempt's stays dead"
    assert users.by_access_key(second["accessKeyId"]) is not None


def test_a_restarted_head_knows_the_running_attempts_keys(head: Head, tmp_path: Path) -> None:
    _, a = running(head)
    assert a.credentials is not None
    head.close()
    again = Head.open(tmp_path / "home", clock=head.clock)
    try:
        found = again.service.users.by_access_key(a.credentials["accessKeyId"])
        assert found is not None and found[1] == a.credentials["secretAccessKey"]
    finally:
        again.close()


def test_forged_tokens_and_keys_find_nothing(head: Head) -> None:
    job, a = running(head)
    assert a.credentials is not None
    users = head.service.users
    token = a.credentials["nativeToken"]
    assert users.by_token(token[:-2] + ("AA" if not token.endswith("AA") else "BB")) is None
    assert users.by_token("mnpj.%%%.x") is None
    assert users.by_access_key("MNPJAAAAAAAAAAAAAAAA") is None
    other = job_keys(head.state).for_attempt(f"{job}/7")  # an attempt that is not running
    assert users.by_access_key(other.access_key_id) is None
    assert users.by_token(other.native_token) is None


def test_a_jobs_role_limits_it_on_top_of_its_submitter(head: Head) -> None:
    head.api["createRole"]({
        "roleName": "submitter",
        "statements": [{"actions": ["batch:SubmitJob"], "queues": ["q"], "definitions": ["job-*"]}],
    })  # fmt: skip
    _, a = running(head, containerOverrides={})
    assert a.credentials is not None
    caller, _ = head.service.users.by_access_key(a.credentials["accessKeyId"]) or (None, "")
    assert caller is not None
    api = head.api_as(caller)
    with pytest.raises(AccessDenied, match="does not allow batch:CreateJobQueue"):
        api["createJobQueue"]({"jobQueueName": "x", "priority": 1, "computeEnvironmentOrder": []})
    assert api["describeJobs"]({"jobs": [a.job_id]})["jobs"]
    role = parse_role({"roleName": "submitter", "statements": [
        {"actions": ["batch:SubmitJob"], "queues": ["q"], "definitions": ["job-*"]}]})  # fmt: skip
    limited = Caller(caller.name, caller.role, job_id="j", job_role=role)
    with pytest.raises(AccessDenied, match="on queue 'other'"):
        head.api_as(limited)["submitJob"]({"jobName": "x", "jobQueue": "other",
                                           "jobDefinition": "def"})  # fmt: skip
    with pytest.raises(AccessDenied, match="on job definition 'def'"):
        head.api_as(limited)["submitJob"]({"jobName": "x", "jobQueue": "q",
                                           "jobDefinition": "def"})  # fmt: skip


def test_role_documents_are_checked_field_by_field() -> None:
    with pytest.raises(InvalidInput) as err:
        parse_role({"roleName": "bad name!", "statements": [
            {"actions": ["s3:GetObject", "batch:Submit*"], "queues": "q", "bogus": 1}, 3]})
    paths = {e.path for e in err.value.errors}
    assert paths == {"roleName", "statements[0].actions[0]", "statements[0].queues",
                     "statements[0].bogus", "statements[1]"}  # fmt: skip
    assert role_name_of("arn:aws:iam::123456789012:role/team/pipeline") == "pipeline"
    assert role_name_of("") is None
    assert request_resources({"jobQueue": "arn:aws:batch:eu-west-1:1:job-queue/q",
                              "jobDefinition": "d:3"}) == ("q", "d")  # fmt: skip


def test_default_role_reads_submits_and_stops_but_changes_no_cluster_object() -> None:
    for allowed in ("batch:DescribeJobs", "batch:SubmitJob", "batch:TerminateJob",
                    "logs:GetLogEvents", "mnp:requeueJob", "mnp:listNodes"):  # fmt: skip
        DEFAULT_ROLE.check(allowed, "q", "d")
    for refused in ("batch:CreateComputeEnvironment", "batch:DeleteJobQueue",
                    "batch:UpdateSchedulingPolicy", "mnp:createUser", "mnp:addHost",
                    "mnp:createRole"):  # fmt: skip
        with pytest.raises(AccessDenied):
            DEFAULT_ROLE.check(refused)


def test_the_node_serves_each_attempt_only_its_own_key_in_ecs_shape() -> None:
    async def go() -> None:
        server = CredentialServer()
        await server.start()
        try:
            creds = {"accessKeyId": "MNPJX", "secretAccessKey": "s", "sessionToken": "t",
                     "nativeToken": "n"}  # fmt: skip
            env = server.add("job/1", creds)
            uri = env["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
            assert uri == f"http://127.0.0.1:{server.port}{PATH}"
            token = env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(f"GET {PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n\r\n"
                         .encode())  # fmt: skip
            answer = await reader.read()
            writer.close()
            assert answer.startswith(b"HTTP/1.1 200 OK")
            assert b'"AccessKeyId": "MNPJX"' in answer and b'"Token": "t"' in answer
            assert server.answer("GET", PATH, "wrong")[0] == 401
            assert server.answer("POST", PATH, token)[0] == 404
            server.remove("job/1")
            assert server.answer("GET", PATH, token)[0] == 401, "gone with its attempt"
        finally:
            await server.close()

    asyncio.run(go())


def test_environment_tags_reach_every_job_and_bad_names_are_refused(head: Head) -> None:
    arn = head.api["describeComputeEnvironments"]({})["computeEnvironments"][0][
        "computeEnvironmentArn"
    ]
    tag = head.api["tagResource"]
    tag({"resourceArn": arn, "tags": {"mnp:env:AWS_ENDPOINT_URL_S3": "http://s3.local:9000"}})
    for bad, rule in (("mnp:env:1X", "not an environment variable name"),
                      ("mnp:env:AWS_BATCH_JOB_ID", "AWS_BATCH_")):  # fmt: skip
        with pytest.raises(InvalidInput, match=rule) as err:
            tag({"resourceArn": arn, "tags": {bad: "v"}})
        assert [e.path for e in err.value.errors] == [f"tags.{bad}"]
    _, a = running(head, containerOverrides={"environment": [{"name": "OWN", "value": "1"}]})
    assert a.environment["AWS_ENDPOINT_URL_S3"] == "http://s3.local:9000"
    assert (a.environment["OWN"], a.environment["AWS_REGION"]) == ("1", "us-east-1")
