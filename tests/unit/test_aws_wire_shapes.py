"""AWS Batch's answers as AWS gives them (issue 15), through the wire routes in-process with
botocore's own serializer and parser (:mod:`tests.unit.test_aws_batch_wire`).

The expected shapes are AWS's documented examples: the AWS CLI's ``describe-jobs`` example
(``sleep 60`` in ``busybox``, its ``container`` with ``mountPoints: []``, ``environment: []``,
``vcpus: 1``, ``memory: 128``, ``volumes: []``, ``ulimits: []`` and ``parameters: {}``), the
``describe-job-definitions`` example (the same container properties for ``sleep60``), the
Fargate examples' ``fargatePlatformConfiguration: {platformVersion: LATEST}``, and the
DescribeJobs reference (``attempts[].taskProperties[].containers[].logStreamName``,
``eksAttempts``; a multi-node parent with ``nodeProperties`` and no ``container``). ARNs are
in the region a request was signed for and the head's account.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from mnp.api.aws.logs_request import group_arn
from mnp.api.aws.sigv4 import Identity
from mnp.spec import arns
from tests.unit.helpers_core import Head
from tests.unit.test_aws_batch_wire import Wire, error_of, make_wire
from tests.unit.test_gang_service import add_nodes

SLEEP60 = {"image": "busybox", "vcpus": 1, "memory": 128, "command": ["sleep", "60"]}
"""The container of AWS's ``register-job-definition`` / ``describe-jobs`` CLI examples."""


@pytest.fixture
def head(tmp_path: Path) -> Iterator[Head]:
    h = Head.open(tmp_path / "home")
    h.basic(("n1", "n2"))
    yield h
    h.close()


@pytest.fixture
def wire(head: Head) -> Iterator[Wire]:
    w = make_wire(head)
    yield w
    w.http.close()


def signed_for(head: Head, region: str) -> Wire:
    """The routes as the front door leaves a request signed for ``region``."""

    async def authenticate(request: Request) -> Response | None:
        request.state.aws_identity = Identity("AKIDEXAMPLE", "default", region, "batch")
        return None

    return make_wire(head, authenticate=authenticate)


def finish(head: Head, node: str = "n1", code: int = 0) -> None:
    """Run the next assignment of ``node`` to its end with exit ``code``."""
    a = head.run_next(node)
    head.exited(node, a.attempt_id, code)
    head.ticks()


# --- DescribeJobDefinitions ----------------------------------------------------------------------
def test_describe_job_definitions_as_aws_example(wire: Wire) -> None:
    wire(
        "RegisterJobDefinition",
        jobDefinitionName="sleep60",
        type="container",
        containerProperties=SLEEP60,
    )
    d = wire("DescribeJobDefinitions", jobDefinitionName="sleep60")["jobDefinitions"][0]
    c = d["containerProperties"]
    # AWS's example indexes these without .get()
    assert (c["mountPoints"], c["volumes"], c["environment"], c["ulimits"]) == ([], [], [], [])
    assert (c["vcpus"], c["memory"], c["image"], c["command"]) == (
        1,
        128,
        "busybox",
        SLEEP60["command"],
    )
    assert c["resourceRequirements"] == [] and c["secrets"] == []
    assert d["parameters"] == {} and d["tags"] == {}
    assert d["type"] == "container" and d["status"] == "ACTIVE" and d["revision"] == 1
    assert d["platformCapabilities"] == ["EC2"]
    assert "fargatePlatformConfiguration" not in c
    raw = wire.http.post("/v1/describejobdefinitions", json={"jobDefinitions": ["sleep60"]})
    assert raw.json()["jobDefinitions"][0]["containerProperties"]["ulimits"] == []


def test_fargate_definition_says_platform_version_latest(wire: Wire) -> None:
    wire(
        "RegisterJobDefinition",
        jobDefinitionName="fg",
        type="container",
        platformCapabilities=["FARGATE"],
        containerProperties={
            "image": "busybox",
            "command": ["true"],
            "resourceRequirements": [
                {"type": "VCPU", "value": "0.25"},
                {"type": "MEMORY", "value": "512"},
            ],
        },
    )
    d = wire("DescribeJobDefinitions", jobDefinitions=["fg:1"])["jobDefinitions"][0]
    assert d["containerProperties"]["fargatePlatformConfiguration"] == {"platformVersion": "LATEST"}
    job = wire("SubmitJob", jobName="j", jobQueue="q", jobDefinition="fg")["jobId"]
    got = wire("DescribeJobs", jobs=[job])["jobs"][0]["container"]
    assert got["fargatePlatformConfiguration"] == {"platformVersion": "LATEST"}
    wire(
        "RegisterJobDefinition",
        jobDefinitionName="fg",
        type="container",
        platformCapabilities=["FARGATE"],
        containerProperties={
            "image": "busybox",
            "command": ["true"],
            "fargatePlatformConfiguration": {"platformVersion": "1.4.0"},
        },
    )
    d = wire("DescribeJobDefinitions", jobDefinitions=["fg:2"])["jobDefinitions"][0]
    assert d["containerProperties"]["fargatePlatformConfiguration"] == {"platformVersion": "1.4.0"}


def test_multinode_definition_ranges_get_the_empty_lists(wire: Wire) -> None:
    wire(
        "RegisterJobDefinition",
        jobDefinitionName="mn",
        type="multinode",
        nodeProperties={
            "numNodes": 2,
            "mainNode": 0,
            "nodeRangeProperties": [{"targetNodes": "0:", "container": {"command": ["hostname"]}}],
        },
    )
    d = wire("DescribeJobDefinitions", jobDefinitions=["mn"])["jobDefinitions"][0]
    c = d["nodeProperties"]["nodeRangeProperties"][0]["container"]
    assert c["volumes"] == [] and c["mountPoints"] == [] and c["ulimits"] == []
    assert d["parameters"] == {} and "containerProperties" not in d


# --- evaluateOnExit ------------------------------------------------------------------------------
def test_evaluate_on_exit_actions_come_back_lower_cased_and_still_match(
    wire: Wire, head: Head
) -> None:
    rules = [{"onExitCode": "3", "action": "Exit"}, {"onExitCode": "1", "action": "RETRY"}]
    wire(
        "RegisterJobDefinition",
        jobDefinitionName="r",
        type="container",
        containerProperties={"command": ["x"]},
        retryStrategy={"attempts": 3, "evaluateOnExit": rules},
    )
    d = wire("DescribeJobDefinitions", jobDefinitions=["r"])["jobDefinitions"][0]
    assert [r["action"] for r in d["retryStrategy"]["evaluateOnExit"]] == ["exit", "retry"]
    retried = wire("SubmitJob", jobName="a", jobQueue="q", jobDefinition="r")["jobId"]
    job = wire("DescribeJobs", jobs=[retried])["jobs"][0]
    assert [r["action"] for r in job["retryStrategy"]["evaluateOnExit"]] == ["exit", "retry"]
    finish(head, code=1)  # "RETRY" matches: another attempt
    job = wire("DescribeJobs", jobs=[retried])["jobs"][0]
    assert job["status"] in ("RUNNABLE", "STARTING") and len(job["attempts"]) == 1
    finish(head, code=3)  # "Exit" matches: no more attempts
    job = wire("DescribeJobs", jobs=[retried])["jobs"][0]
    assert job["status"] == "FAILED" and len(job["attempts"]) == 2
    overridden = wire(
        "SubmitJob",
        jobName="b",
        jobQueue="q",
        jobDefinition="r",
        retryStrategy={"attempts": 2, "evaluateOnExit": [{"onExitCode": "*", "action": "eXiT"}]},
    )["jobId"]
    job = wire("DescribeJobs", jobs=[overridden])["jobs"][0]
    assert job["retryStrategy"]["evaluateOnExit"] == [{"onExitCode": "*", "action": "exit"}]


# --- DescribeJobs --------------------------------------------------------------------------------
def test_describe_jobs_as_aws_example_keeps_vcpus_and_memory(wire: Wire) -> None:
    wire(
        "RegisterJobDefinition",
        jobDefinitionName="sleep60",
        type="container",
        containerProperties=SLEEP60,
    )
    job = wire("SubmitJob", jobName="example", jobQueue="q", jobDefinition="sleep60")["jobId"]
    got = wire("DescribeJobs", jobs=[job])["jobs"][0]
    c = got["container"]
    assert (c["mountPoints"], c["volumes"], c["environment"], c["ulimits"]) == ([], [], [], [])
    assert (c["vcpus"], c["memory"], c["image"]) == (1, 128, "busybox")
    assert got["parameters"] == {} and got["tags"] == {} and got["eksAttempts"] == []
    assert got["dependsOn"] == [] and got["attempts"] == []
    overridden = wire(
        "SubmitJob",
        jobName="more",
        jobQueue="q",
        jobDefinition="sleep60",
        containerOverrides={"vcpus": 2, "memory": 256},
    )["jobId"]
    c = wire("DescribeJobs", jobs=[overridden])["jobs"][0]["container"]
    assert (c["vcpus"], c["memory"]) == (2, 256)
    new_way = wire("SubmitJob", jobName="new", jobQueue="q", jobDefinition="def")["jobId"]
    c = wire("DescribeJobs", jobs=[new_way])["jobs"][0]["container"]
    assert "vcpus" not in c and "memory" not in c  # given as resourceRequirements: shown so
    assert {r["type"]: r["value"] for r in c["resourceRequirements"]} == {
        "VCPU": "1",
        "MEMORY": "256",
    }
    c = wire("DescribeJobs", jobs=[overridden])["jobs"][0]["container"]
    assert {r["type"]: r["value"] for r in c["resourceRequirements"]} == {
        "VCPU": "2",
        "MEMORY": "256",
    }


def test_attempts_name_their_log_stream_where_aws_scripts_look(wire: Wire, head: Head) -> None:
    job = wire("SubmitJob", jobName="j", jobQueue="q", jobDefinition="def")["jobId"]
    finish(head)
    got = wire("DescribeJobs", jobs=[job])["jobs"][0]
    stream = got["container"]["logStreamName"]
    assert stream.startswith("def/default/")
    (attempt,) = got["attempts"]
    assert attempt["container"]["logStreamName"] == stream
    task_container = attempt["taskProperties"][0]["containers"][0]
    assert task_container["logStreamName"] == stream and task_container["exitCode"] == 0


def test_multinode_parent_has_no_container_its_nodes_do(wire: Wire, head: Head) -> None:
    wire(
        "RegisterJobDefinition",
        jobDefinitionName="mn",
        type="multinode",
        nodeProperties={
            "numNodes": 2,
            "mainNode": 0,
            "nodeRangeProperties": [{"targetNodes": "0:", "container": {"command": ["hostname"]}}],
        },
    )
    add_nodes(head, 2, first=5)  # a gang's nodes reach each other over SSH
    job = wire("SubmitJob", jobName="mpi", jobQueue="q", jobDefinition="mn")["jobId"]
    head.ticks()
    parent = wire("DescribeJobs", jobs=[job])["jobs"][0]
    assert "container" not in parent and "nodeDetails" not in parent
    assert parent["nodeProperties"]["numNodes"] == 2
    assert parent["nodeProperties"]["nodeRangeProperties"][0]["container"]["volumes"] == []
    node = wire("DescribeJobs", jobs=[f"{job}#0"])["jobs"][0]
    assert node["nodeDetails"] == {"nodeIndex": 0, "isMainNode": True}
    assert node["container"]["command"] == ["hostname"] and node["container"]["ulimits"] == []
    native = head.describe(job)  # mnp's own API keeps the main node's container for its views
    assert "container" in native


# --- SubmitJob: AWS's dependency types on a job that is no array ---------------------------------
def test_sequential_and_n_to_n_on_a_plain_job_are_plain_dependencies(
    wire: Wire, head: Head
) -> None:
    first = wire("SubmitJob", jobName="a", jobQueue="q", jobDefinition="def")["jobId"]
    array = wire(
        "SubmitJob", jobName="arr", jobQueue="q", jobDefinition="def", arrayProperties={"size": 2}
    )["jobId"]
    seq = wire(
        "SubmitJob",
        jobName="b",
        jobQueue="q",
        jobDefinition="def",
        dependsOn=[{"jobId": first, "type": "SEQUENTIAL"}],
    )["jobId"]
    n_to_n = wire(
        "SubmitJob",
        jobName="c",
        jobQueue="q",
        jobDefinition="def",
        dependsOn=[{"jobId": array, "type": "N_TO_N"}],
    )["jobId"]
    got = wire("DescribeJobs", jobs=[seq])["jobs"][0]
    assert got["dependsOn"] == [{"jobId": first, "type": "SEQUENTIAL"}]
    head.ticks()
    assert wire("DescribeJobs", jobs=[seq])["jobs"][0]["status"] == "PENDING"
    assert wire("DescribeJobs", jobs=[n_to_n])["jobs"][0]["status"] == "PENDING"
    state = head.state
    assert state.active[seq].dependencies()[0][0] == first
    assert state.active[n_to_n].dependencies()[0][0] == array  # the whole array, as AWS
    code, message, _ = error_of(
        wire,
        "SubmitJob",
        jobName="d",
        jobQueue="q",
        jobDefinition="def",
        dependsOn=[{"type": "SEQUENTIAL"}],
    )
    assert code == "ClientException" and "needs an array job" in message


# --- RegisterJobDefinition: something to run, and no empty image ---------------------------------
def test_registration_needs_an_image_or_a_command(wire: Wire) -> None:
    code, message, status = error_of(
        wire,
        "RegisterJobDefinition",
        jobDefinitionName="none",
        type="container",
        containerProperties={"environment": [{"name": "A", "value": "1"}]},
    )
    assert (code, status) == ("ClientException", 400)
    assert "containerProperties.image" in message and "command" in message
    code, message, _ = error_of(
        wire,
        "RegisterJobDefinition",
        jobDefinitionName="empty",
        type="container",
        containerProperties={"image": "", "command": ["true"]},
    )
    assert "containerProperties.image: must not be empty" in message
    code, message, _ = error_of(
        wire,
        "RegisterJobDefinition",
        jobDefinitionName="mn",
        type="multinode",
        nodeProperties={
            "numNodes": 1,
            "mainNode": 0,
            "nodeRangeProperties": [
                {"targetNodes": "0", "container": {"image": " ", "command": ["x"]}}
            ],
        },
    )
    assert "nodeProperties.nodeRangeProperties[0].container.image: must not be empty" in message
    accepted: list[dict[str, Any]] = [{"image": "busybox"}, {"command": ["true"]}, {"command": []}]
    for ok in accepted:
        wire(
            "RegisterJobDefinition",
            jobDefinitionName="ok",
            type="container",
            containerProperties=ok,
        )


# --- ARNs ----------------------------------------------------------------------------------------
def test_arns_in_the_signed_region_stored_ones_too(head: Head) -> None:
    eu, us = signed_for(head, "eu-central-1"), signed_for(head, "us-west-2")
    try:
        prefix = f"arn:aws:batch:eu-central-1:{arns.ACCOUNT}"
        answer = eu(
            "RegisterJobDefinition",
            jobDefinitionName="d",
            type="container",
            containerProperties={"command": ["x"]},
        )
        assert answer["jobDefinitionArn"] == f"{prefix}:job-definition/d:1"
        policy = eu("CreateSchedulingPolicy", name="fs")["arn"]
        assert policy == f"{prefix}:scheduling-policy/fs"
        queue = eu(
            "CreateJobQueue",
            jobQueueName="fair",
            priority=1,
            schedulingPolicyArn=policy,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "ce"}],
        )
        assert queue["jobQueueArn"] == f"{prefix}:job-queue/fair"
        job = eu(
            "SubmitJob",
            jobName="j",
            jobQueue=queue["jobQueueArn"],
            jobDefinition=answer["jobDefinitionArn"],
            shareIdentifier="a",
        )
        assert job["jobArn"] == f"{prefix}:job/{job['jobId']}"
        # what the store keeps is one form whatever region asked; each caller sees its own
        assert head.state.job(job["jobId"]).spec.definition_arn == (  # type: ignore[union-attr]
            f"{arns.ARN_PREFIX}:job-definition/d:1"
        )
        got = us("DescribeJobs", jobs=[job["jobId"]])["jobs"][0]
        west = f"arn:aws:batch:us-west-2:{arns.ACCOUNT}"
        assert (got["jobArn"], got["jobQueue"], got["jobDefinition"]) == (
            f"{west}:job/{job['jobId']}",
            f"{west}:job-queue/fair",
            f"{west}:job-definition/d:1",
        )
        (q,) = us("DescribeJobQueues", jobQueues=["fair"])["jobQueues"]
        assert q["schedulingPolicyArn"] == f"{west}:scheduling-policy/fs"
        assert q["computeEnvironmentOrder"][0]["computeEnvironment"] == (
            f"{west}:compute-environment/ce"
        )
        # ARNs of any region or account still name their resource
        other = "arn:aws:batch:ap-south-1:111122223333"
        found = us(
            "ListJobs",
            jobQueue=f"{other}:job-queue/fair",
            filters=[{"name": "JOB_DEFINITION", "values": [f"{other}:job-definition/d:1"]}],
        )
        assert [s["jobId"] for s in found["jobSummaryList"]] == [job["jobId"]]
        assert us(
            "ListJobs", jobQueue="fair", filters=[{"name": "JOB_DEFINITION", "values": ["d"]}]
        )["jobSummaryList"]
        policies = us("DescribeSchedulingPolicies", arns=[f"{other}:scheduling-policy/fs"])
        assert [p["arn"] for p in policies["schedulingPolicies"]] == [
            f"{west}:scheduling-policy/fs"
        ]
        _, message, _ = error_of(us, "DeleteSchedulingPolicy", arn=f"{other}:scheduling-policy/fs")
        assert "used by job queues: fair" in message
        tagged = f"{other}:job-definition/d:1"
        us("TagResource", resourceArn=tagged, tags={"k": "v"})
        assert eu("ListTagsForResource", resourceArn=tagged)["tags"] == {"k": "v"}
    finally:
        eu.http.close()
        us.http.close()


def test_account_from_the_environment_and_a_default_region(
    head: Head, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(arns.ACCOUNT_ENV, "123456789012")
    eu = signed_for(head, "eu-central-1")
    try:
        queue = eu("DescribeJobQueues", jobQueues=["q"])["jobQueues"][0]["jobQueueArn"]
        assert queue == "arn:aws:batch:eu-central-1:123456789012:job-queue/q"
    finally:
        eu.http.close()
    # the native API and the CLI sign nothing: the head's region, local unless configured
    assert head.api["describeJobQueues"]({})["jobQueues"][0]["jobQueueArn"] == (
        "arn:aws:batch:local:123456789012:job-queue/q"
    )
    monkeypatch.setenv(arns.REGION_ENV, "eu-west-1")
    assert arns.queue_arn("q") == "arn:aws:batch:eu-west-1:123456789012:job-queue/q"
    with arns.signed_for("not a region"):  # whatever a signer put in its scope
        assert arns.queue_arn("q").startswith("arn:aws:batch:eu-west-1:")
    with arns.signed_for("sa-east-1"):
        assert group_arn() == "arn:aws:logs:sa-east-1:123456789012:log-group:/aws/batch/job"
    monkeypatch.setenv(arns.ACCOUNT_ENV, "12345")
    with pytest.raises(ValueError, match="MNP_ACCOUNT_ID='12345'"):
        arns.account_setting()
    monkeypatch.setenv(arns.REGION_ENV, "Not:A:Region")
    with pytest.raises(ValueError, match="MNP_REGION"):
        arns.region_setting()


def test_stored_and_shown_forms() -> None:
    given = "arn:aws:batch:eu-central-1:123456789012:job-definition/d:3"
    assert arns.stored(given) == f"{arns.ARN_PREFIX}:job-definition/d:3"
    with arns.signed_for("us-east-2"):
        assert arns.shown(arns.stored(given)) == (
            f"arn:aws:batch:us-east-2:{arns.ACCOUNT}:job-definition/d:3"
        )
    assert arns.stored("arn:aws:iam::1:role/r") == "arn:aws:iam::1:role/r"
    assert arns.name_from_arn(given, "job-definition") == "d:3"
