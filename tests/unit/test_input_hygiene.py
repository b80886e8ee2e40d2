"""Input hygiene at every door (issue 11): what no UTF-8 can carry, what execve cannot take,
what nests too deep and what has the wrong type is refused with a 400 in the door's error
shape naming the field, and nothing accepted later fails to encode, store or list. Each
test here reproduces a failure seen before the shared reader (:mod:`mnp.api.jsonbody`) and
the strict agent messages (:mod:`mnp.spec.protocol`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mnp.spec import protocol
from mnp.spec.protocol import Event
from tests.unit.doors import Doors

SURROGATE = b'"\\ud800"'  # valid JSON text; no UTF-8 can carry the string it stands for


@pytest.fixture
def doors(tmp_path: Path) -> Iterator[Doors]:
    d = Doors(tmp_path / "home")
    yield d
    d.close()


def define(doors: Doors, name: str = "d", command: list[str] | None = None) -> None:
    body = {
        "jobDefinitionName": name,
        "type": "container",
        "containerProperties": {"command": command or ["true"]},
    }
    assert doors.native("registerJobDefinition", body).status_code == 200


def submission(overrides: str) -> bytes:
    return (
        b'{"jobName": "j", "jobQueue": "default", "jobDefinition": "d", '
        b'"containerOverrides": ' + overrides.encode() + b"}"
    )


def everything_lists(doors: Doors) -> None:
    """Every describe and list answers 200 (what a wedged store broke)."""
    reads: list[tuple[str, dict[str, Any]]] = [
        ("describeJobDefinitions", {}),
        ("describeJobQueues", {}),
        ("describeComputeEnvironments", {}),
        ("listJobs", {"jobQueue": "default", "filters": [{"name": "JOB_NAME", "values": ["*"]}]}),
        ("listNodes", {"includeGone": True}),
    ]
    for op, body in reads:
        assert doors.native(op, body).status_code == 200, op


# --- strings no UTF-8 can carry --------------------------------------------------------------
SURROGATE_ENV = '{"environment": [{"name": "A", "value": ' + SURROGATE.decode() + "}]}"


def test_a_surrogate_environment_value_is_refused_on_the_native_door(doors: Doors) -> None:
    define(doors)
    r = doors.native("submitJob", submission(SURROGATE_ENV))
    assert r.status_code == 400
    assert r.json()["__type"] == "ClientException"
    assert r.json()["errors"][0]["path"] == "containerOverrides.environment[0].value"
    assert "surrogate" in r.json()["message"]


def test_a_surrogate_environment_value_is_refused_on_the_aws_door(doors: Doors) -> None:
    define(doors)
    r = doors.aws("submitjob", submission(SURROGATE_ENV))
    assert r.status_code == 400
    assert r.headers["x-amzn-ErrorType"] == "ClientException"
    assert r.json()["message"].startswith("containerOverrides.environment[0].value: ")


def test_a_surrogate_job_never_wedges_the_node_it_would_run_on(doors: Doors) -> None:
    define(doors)
    assert doors.register().status_code == 200
    assert doors.native("submitJob", submission(SURROGATE_ENV)).status_code == 400
    r = doors.native("submitJob", submission('{"environment": [{"name": "A", "value": "ok"}]}'))
    job_id = r.json()["jobId"]
    doors.tick()
    doors.tick()
    poll = doors.poll()
    assert poll.status_code == 200
    assert [a["jobId"] for a in poll.json()["assignments"]] == [job_id]


def test_a_surrogate_in_a_definition_or_a_tag_is_refused_and_describes_keep_working(
    doors: Doors,
) -> None:
    body = (
        b'{"jobDefinitionName": "bad", "type": "container", '
        b'"containerProperties": {"command": [' + SURROGATE + b"]}}"
    )
    r = doors.native("registerJobDefinition", body)
    assert r.status_code == 400
    assert r.json()["errors"][0]["path"] == "containerProperties.command[0]"
    queue = (
        b'{"jobQueueName": "q2", "priority": 1, "tags": {"k": ' + SURROGATE + b"}, "
        b'"computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "ce"}]}'
    )
    assert doors.native("createJobQueue", queue).status_code == 400
    key = b'{"jobQueueName": "q3", "priority": 1, "tags": {' + SURROGATE + b': "v"}, '
    key += b'"computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "ce"}]}'
    assert doors.native("createJobQueue", key).status_code == 400
    encoded = b'{"jobQueueName": "q4", "tags": {"k": "\xed\xa0\x80"}}'  # surrogate as bytes
    assert doors.aws("createjobqueue", encoded).status_code == 400
    everything_lists(doors)


# --- what execve cannot take ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ('{"environment": [{"name": "A=B", "value": "x"}]}', "environment[0].name"),
        ('{"environment": [{"name": "A\\u0000", "value": "x"}]}', "environment[0].name"),
        ('{"environment": [{"name": "", "value": "x"}]}', "environment[0].name"),
        ('{"environment": [{"name": "A", "value": "x\\u0000"}]}', "environment[0].value"),
        ('{"command": ["echo", "a\\u0000b"]}', "command[1]"),
    ],
)
def test_what_would_fail_only_at_start_is_refused_at_submit(
    doors: Doors, overrides: str, path: str
) -> None:
    define(doors)
    for r in (
        doors.native("submitJob", submission(overrides)),
        doors.aws("submitjob", submission(overrides)),
    ):
        assert r.status_code == 400
        assert f"containerOverrides.{path}" in r.json()["message"]


def test_an_equals_sign_in_a_definition_environment_name_is_refused(doors: Doors) -> None:
    body = {
        "jobDefinitionName": "e",
        "type": "container",
        "containerProperties": {"command": ["true"], "environment": [{"name": "X=1"}]},
    }
    r = doors.native("registerJobDefinition", body)
    assert r.status_code == 400
    assert r.json()["errors"][0]["path"] == "containerProperties.environment[0].name"


# --- shapes ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("op", "body", "field"),
    [
        ("listJobs", {"jobQueue": "default", "jobStatus": []}, "jobStatus"),
        ("describeJobDefinitions", {"jobDefinitions": 5}, "jobDefinitions"),
        ("describeJobs", {"jobs": [{"a": 1}]}, "jobs[0]"),
        ("listJobs", {"jobQueue": "default", "filters": [5]}, "filters[0]"),
        ("describeJobQueues", {"jobQueues": "default"}, "jobQueues"),
    ],
)
def test_wrong_types_are_a_400_naming_the_field(
    doors: Doors, op: str, body: dict[str, Any], field: str
) -> None:
    r = doors.native(op, body)
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["path"] == field


def test_deep_nesting_is_a_400_on_every_door(doors: Doors) -> None:
    deep = b'{"a": ' + b"[" * 1500 + b"]" * 1500 + b"}"
    assert doors.native("submitJob", deep).status_code == 400
    assert doors.aws("submitjob", deep).status_code == 400
    assert doors.logs("DescribeLogGroups", deep).status_code == 400
    assert doors.agent(protocol.REPORT_PATH, deep).status_code == 400
    assert doors.native("submitJob", b'{"a": ' + b"[" * 70 + b"]" * 70 + b"}").status_code == 400


@pytest.mark.parametrize("bad", [b"{not json", b"[1]", b"\xff\xfe", b'{"a": NaN}', b'{"a": 1e999}'])
def test_bad_json_is_a_400_in_json_on_the_logs_and_agent_doors(doors: Doors, bad: bytes) -> None:
    r = doors.logs("DescribeLogStreams", bad)
    assert r.status_code == 400
    assert r.json()["__type"] in ("SerializationException", "InvalidParameterException")
    for path in (protocol.REGISTER_PATH, protocol.POLL_PATH, protocol.REPORT_PATH):
        r = doors.agent(path, bad)
        assert r.status_code == 400, path
        assert r.json()["__type"] == "ClientException"


def test_an_oversized_body_is_refused(doors: Doors) -> None:
    huge = b'{"logGroupName": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    r = doors.logs("DescribeLogStreams", huge)
    assert r.status_code == 400
    assert "at most" in r.json()["message"]


def test_a_bad_attempt_in_the_log_tail_is_a_400(doors: Doors) -> None:
    define(doors)
    job_id = doors.native("submitJob", submission("{}")).json()["jobId"]
    assert doors.tail(job_id, "?attempt=x").status_code == 400


# --- agents are checked like clients ---------------------------------------------------------
def started_job(doors: Doors) -> str:
    define(doors)
    assert doors.register().status_code == 200
    assert doors.native("submitJob", submission("{}")).status_code == 200
    doors.tick()
    doors.tick()
    (a,) = doors.poll().json()["assignments"]
    return str(a["attemptId"])


def test_a_log_stream_that_climbs_out_of_the_log_folder_is_refused(
    doors: Doors, tmp_path: Path
) -> None:
    aid = started_job(doors)
    ev = Event(aid, "log", 1, seq=5, stream="../../../x", data="hi")  # type: ignore[arg-type]
    r = doors.report([ev])
    assert r.status_code == 400
    assert r.json()["errors"][0]["path"] == "events[0].stream"
    assert not list(tmp_path.rglob("x.log"))


def test_a_huge_seq_is_refused_and_later_events_still_apply(doors: Doors) -> None:
    aid = started_job(doors)
    r = doors.report([Event(aid, "started", 1, seq=10**18, pid=7)])
    assert r.status_code == 400
    assert r.json()["errors"][0]["path"] == "events[0].seq"
    assert doors.report([Event(aid, "started", 1, seq=2, pid=7)]).json() == {"accepted": 1}
    job_id = aid.rsplit("/", 1)[0]
    assert doors.native("describeJobs", {"jobs": [job_id]}).json()["jobs"][0]["status"] == "RUNNING"


def test_a_bad_event_rejects_the_whole_report(doors: Doors) -> None:
    aid = started_job(doors)
    good = Event(aid, "started", 1, seq=3, pid=7).to_wire()
    bad = {"attempt_id": "no-attempt-number", "kind": "exited", "time_ms": "1", "seq": 4}
    r = doors.agent(protocol.REPORT_PATH, {"nodeId": "n1", "events": [good, bad]})
    assert r.status_code == 400
    paths = [e["path"] for e in r.json()["errors"]]
    assert paths == ["events[1].attempt_id", "events[1].time_ms"]
    assert doors.report([Event(aid, "started", 1, seq=3, pid=7)]).json() == {"accepted": 1}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            b'{"nodeId": ' + SURROGATE + b', "computeEnvironment": "ce", "address": "a", '
            b'"vcpus": 1, "memoryMiB": 1}',
            "nodeId",
        ),
        (
            {
                "nodeId": "n2",
                "computeEnvironment": "ce",
                "address": "a b",
                "vcpus": 1,
                "memoryMiB": 1,
            },
            "address",
        ),
        (
            {
                "nodeId": "n2",
                "computeEnvironment": "ce",
                "address": "a",
                "vcpus": "4",
                "memoryMiB": 1,
            },
            "vcpus",
        ),
        (
            {
                "nodeId": "n2",
                "computeEnvironment": "ce",
                "address": "a",
                "vcpus": 1,
                "memoryMiB": 1,
                "sshHostKey": "k\nother-host k",
            },
            "sshHostKey",
        ),
    ],
)
def test_a_bad_registration_is_refused_and_saves_keep_working(
    doors: Doors, body: bytes | dict[str, Any], field: str
) -> None:
    r = doors.agent(protocol.REGISTER_PATH, body)
    assert r.status_code == 400
    assert any(e["path"] == field for e in r.json()["errors"]), r.json()
    assert doors.register("n3").status_code == 200
    define(doors)
    assert doors.native("submitJob", submission("{}")).status_code == 200
    everything_lists(doors)


def test_a_poll_with_a_bad_wait_is_refused(doors: Doors) -> None:
    assert doors.register().status_code == 200
    r = doors.agent(protocol.POLL_PATH, {"nodeId": "n1", "waitSeconds": "forever"})
    assert r.status_code == 400
    assert json.loads(r.text)["errors"][0]["path"] == "waitSeconds"
