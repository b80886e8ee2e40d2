"""The AWS Batch wire routes in-process: requests built by botocore's own rest-json
serializer from the Batch service model, sent through Starlette's test client, and answers
read back by botocore's parser, so paths, query strings, bodies and error shapes are exactly
what boto3 sends and expects. The real boto3 client against a real head node is in
``tests/integration/test_aws_batch.py``."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import parsers, serialize
from botocore.exceptions import ClientError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

with warnings.catch_warnings():  # Starlette would rather have httpx2; httpx works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from mnp.api.aws import batch, batch_shapes
from mnp.errors import TransientError
from mnp.spec.arns import ARN_PREFIX
from tests.unit.helpers_core import HOSTILE, Head

MODEL = botocore.session.get_session().get_service_model("batch")


class Wire:
    """Calls operations as boto3 would, through the routes under test."""

    def __init__(self, head: Head, client: TestClient) -> None:
        self.head = head
        self.http = client
        self.last: Any = None

    def request(self, op: str, params: dict[str, Any], validate: bool = True) -> Any:
        serializer = serialize.create_serializer("rest-json", include_validation=validate)
        req = serializer.serialize_to_request(params, MODEL.operation_model(op))
        self.last = self.http.request(
            req["method"],
            req["url_path"],
            params=req["query_string"],
            content=req["body"],
            headers=req["headers"],
        )
        return self.last

    def __call__(self, op: str, validate: bool = True, **params: Any) -> dict[str, Any]:
        resp = self.request(op, params, validate)
        parsed: dict[str, Any] = parsers.create_parser("rest-json").parse(
            {
                "status_code": resp.status_code,
                "headers": {k.lower(): v for k, v in resp.headers.items()},
                "body": resp.content,
            },
            MODEL.operation_model(op).output_shape,
        )
        if "Error" in parsed and parsed["Error"].get("Code"):
            raise ClientError(parsed, op)
        parsed.pop("ResponseMetadata", None)
        return parsed


def make_wire(head: Head, **kw: Any) -> Wire:
    app = Starlette(routes=batch.routes(head, **kw))
    return Wire(head, TestClient(app, raise_server_exceptions=False))


@pytest.fixture
def wire(tmp_path: Path) -> Iterator[Wire]:
    head = Head.open(tmp_path / "home")
    head.basic(("n1",))
    w = make_wire(head)
    yield w
    w.http.close()
    head.close()


def error_of(call: Any, *args: Any, **kw: Any) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as err:
        call(*args, **kw)
    e = err.value.response
    return e["Error"]["Code"], e["Error"]["Message"], e["ResponseMetadata"]["HTTPStatusCode"]


# --- routing -------------------------------------------------------------------------------------
def test_all_25_operations_answer_through_botocore(wire: Wire) -> None:
    seen: set[str] = set()

    def call(op: str, **params: Any) -> dict[str, Any]:
        seen.add(op)
        return wire(op, **params)

    ce = call(
        "CreateComputeEnvironment",
        computeEnvironmentName="ce2",
        type="UNMANAGED",
        state="DISABLED",
        tags={"k": "v"},
    )["computeEnvironmentArn"]
    call("UpdateComputeEnvironment", computeEnvironment=ce, state="DISABLED", serviceRole="r")
    envs = call("DescribeComputeEnvironments", computeEnvironments=["ce2"])["computeEnvironments"]
    assert envs[0]["serviceRole"] == "r" and "mnp" not in envs[0]
    call("DeleteComputeEnvironment", computeEnvironment=ce)
    sp = call("CreateSchedulingPolicy", name="sp", fairsharePolicy={"computeReservation": 5})
    call("UpdateSchedulingPolicy", arn=sp["arn"], fairsharePolicy={"shareDecaySeconds": 600})
    policies = call("DescribeSchedulingPolicies", arns=[sp["arn"]])["schedulingPolicies"]
    assert policies[0]["fairsharePolicy"]["shareDecaySeconds"] == 600
    assert call("ListSchedulingPolicies")["schedulingPolicies"] == [{"arn": sp["arn"]}]
    q = call(
        "CreateJobQueue",
        jobQueueName="fq",
        priority=3,
        schedulingPolicyArn=sp["arn"],
        computeEnvironmentOrder=[
            {"order": 1, "computeEnvironment": f"{ARN_PREFIX}:compute-environment/ce"}
        ],
        jobStateTimeLimitActions=[
            {"reason": "CAPACITY:X", "state": "RUNNABLE", "maxTimeSeconds": 600, "action": "CANCEL"}
        ],
    )["jobQueueArn"]
    call("UpdateJobQueue", jobQueue=q, priority=4)
    queue = call("DescribeJobQueues", jobQueues=[q])["jobQueues"][0]
    assert (queue["priority"], queue["schedulingPolicyArn"]) == (4, sp["arn"])
    assert queue["jobStateTimeLimitActions"][0]["maxTimeSeconds"] == 600
    d = call(
        "RegisterJobDefinition",
        jobDefinitionName="d",
        type="container",
        containerProperties={"image": "x", "command": ["echo", "Ref::m"]},
        parameters={"m": "hi"},
    )
    assert d["revision"] == 1
    defs = call("DescribeJobDefinitions", jobDefinitionName="d")["jobDefinitions"]
    assert defs[0]["containerOrchestrationType"] == "ECS"
    job = call("SubmitJob", jobName="j", jobQueue="fq", jobDefinition="d", shareIdentifier="a")
    wire.head.ticks(1)
    described = call("DescribeJobs", jobs=[job["jobId"]])["jobs"][0]
    assert described["container"]["command"] == ["echo", "hi"]
    listed = call("ListJobs", jobQueue="fq", jobStatus="RUNNABLE")["jobSummaryList"]
    assert [s["jobId"] for s in listed] == [job["jobId"]]
    front = call("GetJobQueueSnapshot", jobQueue="fq")["frontOfQueue"]["jobs"]
    assert [j["jobArn"] for j in front] == [job["jobArn"]]
    call("TagResource", resourceArn=job["jobArn"], tags={"a": "1", "b": "2"})
    call("UntagResource", resourceArn=job["jobArn"], tagKeys=["a"])
    assert call("ListTagsForResource", resourceArn=job["jobArn"])["tags"] == {"b": "2"}
    call("CancelJob", jobId=job["jobId"], reason="no")
    call("TerminateJob", jobId=job["jobId"], reason="no")
    call("DeregisterJobDefinition", jobDefinition=d["jobDefinitionArn"])
    call("UpdateJobQueue", jobQueue="fq", state="DISABLED")
    call("DeleteJobQueue", jobQueue="fq")
    call("DeleteSchedulingPolicy", arn=sp["arn"])
    assert len(seen) == 25
    wanted = {name for name in MODEL.operation_names if name.lower() in batch.OPERATIONS}
    assert seen == wanted | {"TagResource", "UntagResource", "ListTagsForResource"}


@pytest.mark.parametrize(
    ("raw", "arn"),
    [
        (b"/v1/tags/arn%3Aaws%3Abatch%3Ar%3A1%3Ajob-queue%2Fq1", "arn:aws:batch:r:1:job-queue/q1"),
        (b"/v1/tags/arn:aws:batch:r:1:job-queue/q1", "arn:aws:batch:r:1:job-queue/q1"),
        (b"/v1/tags/a%2Fb%252F%3F?tagKeys=x", "a/b%2F?"),
        (b"/prefix/v1/tags/x%20y", "x y"),
    ],
)
def test_tag_arn_comes_from_the_raw_path(raw: bytes, arn: str) -> None:
    assert batch.arn_from_raw_path(raw) == arn


def test_tag_routes_decode_encoded_slashes_and_repeated_tag_keys(wire: Wire) -> None:
    arn = f"{ARN_PREFIX}:job-definition/def:1"
    wire("TagResource", resourceArn=arn, tags={"a": "1", "b": "2", "c": HOSTILE})
    assert b"job-definition%2Fdef%3A1" in wire.last.request.url.raw_path
    wire("UntagResource", resourceArn=arn, tagKeys=["a", "b"])
    assert wire.last.request.url.query == b"tagKeys=a&tagKeys=b"
    assert wire("ListTagsForResource", resourceArn=arn) == {"tags": {"c": HOSTILE}}
    # a name with characters that need encoding, and a % that must not be decoded twice
    wire.head.api["createSchedulingPolicy"]({"name": "p"})
    wire.head.state.queues["q"].tags["%2F"] = "x"
    assert wire("ListTagsForResource", resourceArn=f"{ARN_PREFIX}:job-queue/q")["tags"] == {
        "%2F": "x"
    }
    assert wire.http.head(f"/v1/tags/{ARN_PREFIX}:job-queue/q").status_code == 200


# --- errors --------------------------------------------------------------------------------------
def test_invalid_input_not_found_and_conflict_are_client_exceptions(wire: Wire) -> None:
    code, message, status = error_of(
        wire,
        "SubmitJob",
        jobName="j",
        jobQueue="q",
        jobDefinition="def",
        arrayProperties={"size": 1},
    )
    assert (code, status) == ("ClientException", 400)
    assert message.startswith("arrayProperties.size: ")
    assert error_of(wire, "DeregisterJobDefinition", jobDefinition="nope:1") == (
        "ClientException",
        "job definition nope:1 does not exist",
        400,
    )
    order = [{"order": 1, "computeEnvironment": "ce"}]
    body = {"jobQueueName": "q", "priority": 1, "computeEnvironmentOrder": order}
    assert error_of(wire, "CreateJobQueue", **body) == (
        "ClientException",
        "job queue 'q' already exists",
        400,
    )
    raw = wire.http.post("/v1/describejobs", json={"jobs": []})
    assert raw.status_code == 400
    assert raw.headers["x-amzn-ErrorType"] == "ClientException"
    assert raw.json() == {
        "__type": "ClientException",
        "message": "jobs: required: a list of 1-100 job ids",
    }
    assert raw.headers["x-amzn-RequestId"]


def test_server_failures_are_server_exceptions(wire: Wire, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: Any, body: dict[str, Any], *_: Any) -> dict[str, Any]:
        raise RuntimeError("disk on fire")

    def busy(self: Any, body: dict[str, Any], *_: Any) -> dict[str, Any]:
        raise TransientError("store busy")

    ops = batch.OPERATIONS
    monkeypatch.setitem(ops, "describejobs", replace(ops["describejobs"], run=boom))
    monkeypatch.setitem(ops, "listjobs", replace(ops["listjobs"], run=busy))
    assert error_of(wire, "DescribeJobs", jobs=["x"]) == (
        "ServerException",
        "RuntimeError: disk on fire",
        500,
    )
    assert error_of(wire, "ListJobs", jobQueue="q") == ("ServerException", "store busy", 500)


def test_bodies_that_are_not_json_objects_and_unknown_operations(wire: Wire) -> None:
    for content in (b"{nope", b"[1, 2]"):
        resp = wire.http.post("/v1/submitjob", content=content)
        assert (resp.status_code, resp.json()["__type"]) == (400, "ClientException")
    resp = wire.http.post("/v1/createconsumableresource", json={})
    assert resp.status_code == 400
    assert "consumable resources" in resp.json()["message"]
    assert "not supported by mnp" in resp.json()["message"]
    resp = wire.http.post("/v1/nosuchthing", json={})
    assert resp.json()["message"] == "unknown AWS Batch operation 'nosuchthing'"
    assert wire.http.get("/v1/describejobs").status_code == 405
    # operation names are matched case-insensitively, as the lowercased paths are
    assert wire.http.post("/v1/DescribeJobQueues", json={}).status_code == 200


def test_unsupported_fields_name_what_is_missing(wire: Wire) -> None:
    code, message, _ = error_of(
        wire,
        "SubmitJob",
        jobName="j",
        jobQueue="q",
        jobDefinition="def",
        eksPropertiesOverride={"podProperties": {}},
    )
    assert (code, message) == (
        "ClientException",
        "eksPropertiesOverride: EKS is not supported by mnp",
    )


def test_authenticate_runs_before_every_operation(tmp_path: Path) -> None:
    head = Head.open(tmp_path / "home")
    seen: list[str] = []

    async def authenticate(request: Request) -> Response | None:
        seen.append(request.url.path)
        if request.headers.get("authorization") != "ok":
            return JSONResponse(
                {"__type": "UnrecognizedClientException", "message": "who are you"},
                status_code=403,
                headers={"x-amzn-ErrorType": "UnrecognizedClientException"},
            )
        return None

    w = make_wire(head, authenticate=authenticate)
    try:
        assert error_of(w, "DescribeJobQueues")[::2] == ("UnrecognizedClientException", 403)
        assert w.last.headers["x-amzn-RequestId"]
        assert w.http.get("/v1/tags/x", headers={"authorization": "ok"}).status_code == 400
        ok = w.http.post("/v1/describejobqueues", json={}, headers={"authorization": "ok"})
        assert ok.json() == {"jobQueues": []}
        assert seen == ["/v1/describejobqueues", "/v1/tags/x", "/v1/describejobqueues"]
    finally:
        w.http.close()
        head.close()


# --- shapes --------------------------------------------------------------------------------------
def test_answers_carry_only_aws_fields(wire: Wire) -> None:
    job = wire("SubmitJob", jobName="j", jobQueue="q", jobDefinition="def", parameters={"msg": "x"})
    wire.head.run_next("n1")
    raw = wire.http.post("/v1/describejobs", json={"jobs": [job["jobId"]]}).json()["jobs"][0]
    assert not {"history", "nodeId", "nodeAddress", "jobQueueName", "computeEnvironment"} & set(raw)
    assert raw["status"] == "STARTING" or raw["status"] == "RUNNING"
    assert isinstance(raw["createdAt"], int)
    summary = wire.http.post("/v1/listjobs", json={"jobQueue": "q"}).json()["jobSummaryList"]
    assert [s["jobId"] for s in summary] == [job["jobId"]]  # RUNNING only, by default
    assert not {"attempt", "nodeId", "jobQueueName"} & set(summary[0])
    native = wire.head.api["describeJobs"]({"jobs": [job["jobId"]]})["jobs"][0]
    # the same job: mnp's fields out, what AWS always answers filled in
    assert batch_shapes.job_detail(native) == raw
    assert {k: v for k, v in native.items() if k in raw and k != "container"} == {
        k: v for k, v in raw.items() if k in native and k != "container"
    }
