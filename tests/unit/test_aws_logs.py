"""The CloudWatch Logs view of attempts' output, in-process: a real Service + Scheduler over a
temp store with a fake clock, output delivered as agents' ``log`` events; streams are found
through the store's ``log_streams`` index, as the service's ``LogReader`` reads it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mnp.api.aws import logs
from mnp.api.aws.logs import routes
from mnp.api.aws.logs_events import compile_pattern
from mnp.api.aws.logs_request import (
    GROUP,
    GROUP_ARN,
    LogsError,
    parse_position,
    position_token,
)
from mnp.nodes.logstreams import record_chunk_time, times_path
from mnp.spec.jobs import Attempt
from mnp.spec.states import JobStatus
from tests.unit.helpers_core import T0, Head, make_job

Body = dict[str, Any]


@pytest.fixture
def head(tmp_path: Path) -> Iterator[Head]:
    h = Head.open(tmp_path / "home")
    h.basic(("n1", "n2"))
    yield h
    h.close()


def call(h: Head, operation: str, **body: Any) -> Body:
    """One Logs operation, as the endpoint runs it."""
    if operation != "DescribeLogGroups" and "logGroupIdentifier" not in body:
        body.setdefault("logGroupName", GROUP)
    return logs.OPERATIONS[operation](h.service.logs, body)


class RunningAttempt:
    """A started attempt whose output arrives as the node agent reports it."""

    def __init__(self, h: Head, name: str = "job", node: str = "n1", times: bool = True) -> None:
        self.h, self.node, self.times = h, node, times
        self.job_id = h.submit(name)
        self.aid = h.run_next(node).attempt_id
        self.number = int(self.aid.rpartition("/")[2])
        self.sizes = {"stdout": 0, "stderr": 0}

    @property
    def stream(self) -> str:
        job = self.h.state.job(self.job_id)
        assert job is not None and job.current_attempt is not None
        return job.current_attempt.log_stream_name

    def write(self, stream: str, data: str, after_seconds: float = 0.0) -> None:
        self.h.clock.advance(after_seconds)
        path = self.h.scheduler.log_path(self.job_id, self.number, stream)
        if self.times:  # what NodeSessions._write_log is proposed to do
            path.parent.mkdir(parents=True, exist_ok=True)
            record_chunk_time(path, self.sizes[stream], self.h.clock())
        offset = self.sizes[stream]
        self.h.event(self.node, self.aid, "log", stream=stream, offset=offset, data=data)
        self.sizes[stream] += len(data.encode())

    def exit(self, code: int = 0) -> None:
        self.h.exited(self.node, self.aid, code)


def messages(answer: Body) -> list[str]:
    return [e["message"] for e in answer["events"]]


# --- GetLogEvents ------------------------------------------------------------------------
def test_forward_pages_end_when_the_token_repeats(head: Head) -> None:
    a = RunningAttempt(head)
    a.write("stdout", "".join(f"line {i}\n" for i in range(5)))
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        extra = {"nextToken": token} if token else {"startFromHead": True}
        answer = call(head, "GetLogEvents", logStreamName=a.stream, limit=2, **extra)
        seen += messages(answer)
        pages += 1
        if answer["nextForwardToken"] == token:
            break
        token = answer["nextForwardToken"]
    assert seen == [f"line {i}" for i in range(5)]
    assert pages == 4  # 2 + 2 + 1, then an empty page with the same token
    a.write("stdout", "late line\n")
    more = call(head, "GetLogEvents", logStreamName=a.stream, nextToken=token)
    assert messages(more) == ["late line"]
    assert more["nextForwardToken"] != token


def test_default_read_is_the_latest_and_backward_pages_reach_the_start(head: Head) -> None:
    a = RunningAttempt(head)
    a.write("stdout", "".join(f"{i}\n" for i in range(7)))
    latest = call(head, "GetLogEvents", logStreamName=a.stream, limit=3)
    assert messages(latest) == ["4", "5", "6"]
    assert messages(call(head, "GetLogEvents", logStreamName=a.stream,
                         nextToken=latest["nextForwardToken"])) == []  # fmt: skip
    seen = messages(latest)
    token = latest["nextBackwardToken"]
    while True:
        page = call(head, "GetLogEvents", logStreamName=a.stream, limit=3, nextToken=token)
        seen = messages(page) + seen
        if page["nextBackwardToken"] == token:
            break
        token = page["nextBackwardToken"]
    assert seen == [str(i) for i in range(7)]


def test_stdout_and_stderr_interleave_by_arrival_time(head: Head) -> None:
    a = RunningAttempt(head)
    a.write("stdout", "out 1\n", after_seconds=1)
    a.write("stderr", "err 1\n", after_seconds=1)
    a.write("stdout", "out 2\nout 3\n", after_seconds=1)
    a.write("stderr", "err 2\n")  # same time as out 2/3: stdout first
    answer = call(head, "GetLogEvents", logStreamName=a.stream, startFromHead=True)
    assert messages(answer) == ["out 1", "err 1", "out 2", "out 3", "err 2"]
    times = [e["timestamp"] for e in answer["events"]]
    assert times == [T0 + 1000, T0 + 2000, T0 + 3000, T0 + 3000, T0 + 3000]
    assert all(e["ingestionTime"] == e["timestamp"] for e in answer["events"])
    back = call(head, "GetLogEvents", logStreamName=a.stream, limit=2)
    assert messages(back) == ["out 3", "err 2"]


def test_without_chunk_times_lines_carry_the_attempt_start_time(head: Head) -> None:
    head.clock.advance(5)
    a = RunningAttempt(head, times=False)
    a.write("stderr", "e\n", after_seconds=3)
    a.write("stdout", "o\n", after_seconds=3)
    for stream in ("stdout", "stderr"):  # output kept before arrival times were recorded
        times_path(head.scheduler.log_path(a.job_id, a.number, stream)).unlink(missing_ok=True)
    answer = call(head, "GetLogEvents", logStreamName=a.stream, startFromHead=True)
    assert messages(answer) == ["o", "e"]  # no better knowledge: stdout, then stderr
    assert {e["timestamp"] for e in answer["events"]} == {T0 + 5000}


def test_unfinished_last_line_waits_for_the_end_of_the_attempt(head: Head) -> None:
    a = RunningAttempt(head)
    a.write("stdout", "done\npartial")
    first = call(head, "GetLogEvents", logStreamName=a.stream, startFromHead=True)
    assert messages(first) == ["done"]
    a.write("stdout", " line\n\n\r\nno newline at the end")
    a.exit(0)
    rest = call(head, "GetLogEvents", logStreamName=a.stream, nextToken=first["nextForwardToken"])
    assert messages(rest) == ["partial line", "no newline at the end"]  # empty lines: no events


def test_time_range(head: Head) -> None:
    a = RunningAttempt(head)
    for i in range(5):
        a.write("stdout", f"t{i}\n", after_seconds=1)
    window = {"startTime": T0 + 2000, "endTime": T0 + 4000}
    ahead = call(head, "GetLogEvents", logStreamName=a.stream, startFromHead=True, **window)
    assert messages(ahead) == ["t1", "t2"]
    behind = call(head, "GetLogEvents", logStreamName=a.stream, **window)
    assert messages(behind) == ["t1", "t2"]


def test_position_tokens_round_trip() -> None:
    token = position_token("f", (12, 3))
    assert token.startswith("f/") and len(token) == 58
    assert parse_position(token) == ("f", (12, 3))
    with pytest.raises(LogsError):
        parse_position("f/12")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"logStreamName": "def/default/nope"}, "ResourceNotFoundException"),
        ({"logGroupName": "/aws/other", "logStreamName": "STREAM"}, "ResourceNotFoundException"),
        ({"logStreamName": "STREAM", "nextToken": "x/123"}, "InvalidParameterException"),
        ({"logStreamName": "STREAM", "limit": 0}, "InvalidParameterException"),
        ({"logStreamName": "STREAM", "limit": True}, "InvalidParameterException"),
        (
            {"logStreamName": "STREAM", "logGroupName": GROUP, "logGroupIdentifier": GROUP},
            "InvalidParameterException",
        ),
        ({}, "InvalidParameterException"),
    ],
)
def test_get_log_events_errors(head: Head, body: Body, code: str) -> None:
    a = RunningAttempt(head)
    body = {k: (a.stream if v == "STREAM" else v) for k, v in body.items()}
    with pytest.raises(LogsError) as err:
        call(head, "GetLogEvents", **body)
    assert (err.value.code, err.value.status) == (code, 400)


def test_group_by_arn_identifier(head: Head) -> None:
    a = RunningAttempt(head)
    a.write("stdout", "x\n")
    other_region = f"arn:aws:logs:us-east-1:1:log-group:{GROUP}"
    for ident in (GROUP, GROUP_ARN, f"{GROUP_ARN}:*", other_region):
        answer = call(
            head, "GetLogEvents", logGroupIdentifier=ident, logStreamName=a.stream,
            startFromHead=True,
        )  # fmt: skip
        assert messages(answer) == ["x"]


def test_a_multinode_parent_repeating_its_main_nodes_stream_resolves_to_the_node(
    head: Head,
) -> None:
    name = "def/default/p-0-1"
    node_attempt = Attempt(1, "n1", "127.0.0.1", "ce", name, placed_at=T0)
    parent, node = make_job("p", JobStatus.SUCCEEDED), make_job("p#0", JobStatus.SUCCEEDED)
    parent.attempts, node.attempts = [Attempt(**node_attempt.to_doc())], [node_attempt]
    with head.store.transaction():  # the node's attempt is saved when it starts…
        head.store.save_spec(node.spec)
        head.store.save_jobs([node])
    with head.store.transaction():  # …the parent's copy when the gang ends
        head.store.save_spec(parent.spec)
        head.store.save_jobs([parent])
    found = head.store.find_stream(name)
    assert found is not None and found.job_id == "p#0"


# --- FilterLogEvents ----------------------------------------------------------------------
def test_filter_across_streams_in_time_order_with_pagination(head: Head) -> None:
    a = RunningAttempt(head, "a", node="n1")
    b = RunningAttempt(head, "b", node="n2")
    a.write("stdout", "a ERROR one\n", after_seconds=1)
    b.write("stdout", "b info\n", after_seconds=1)
    b.write("stderr", "b ERROR two\n", after_seconds=1)
    a.write("stdout", "a ERROR three DEBUG\n", after_seconds=1)
    b.write("stdout", "b ERROR four\n", after_seconds=1)
    everything = call(head, "FilterLogEvents")
    assert messages(everything) == [
        "a ERROR one", "b info", "b ERROR two", "a ERROR three DEBUG", "b ERROR four",
    ]  # fmt: skip
    assert {e["logStreamName"] for e in everything["events"]} == {a.stream, b.stream}
    assert "nextToken" not in everything
    assert len({e["eventId"] for e in everything["events"]}) == 5

    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        extra = {"nextToken": token} if token else {}
        page = call(head, "FilterLogEvents", filterPattern="ERROR -DEBUG", limit=1, **extra)
        seen += messages(page)
        pages += 1
        token = page.get("nextToken")
        if token is None:
            break
    assert seen == ["a ERROR one", "b ERROR two", "b ERROR four"]
    assert pages == 3

    only_b = call(head, "FilterLogEvents", logStreamNames=[b.stream], filterPattern="?two ?four")
    assert messages(only_b) == ["b ERROR two", "b ERROR four"]
    window = call(head, "FilterLogEvents", startTime=T0 + 2000, endTime=T0 + 4000)
    assert messages(window) == ["b info", "b ERROR two"]
    by_prefix = call(head, "FilterLogEvents", logStreamNamePrefix="def/default/")
    assert len(by_prefix["events"]) == 5
    assert call(head, "FilterLogEvents", logStreamNamePrefix="other/")["events"] == []
    assert call(head, "FilterLogEvents", logStreamNames=["def/default/none"])["events"] == []


@pytest.mark.parametrize(
    ("pattern", "matches"),
    [
        ("", ["ERROR: disk full", "Warning x", "all good"]),
        ("ERROR", ["ERROR: disk full"]),
        ("error", []),
        ('"disk full"', ["ERROR: disk full"]),
        ("?ERROR ?Warning", ["ERROR: disk full", "Warning x"]),
        ("-ERROR", ["Warning x", "all good"]),
        ("a -good", ["Warning x"]),
    ],
)
def test_term_patterns(pattern: str, matches: list[str]) -> None:
    match = compile_pattern(pattern)
    assert [m for m in ["ERROR: disk full", "Warning x", "all good"] if match(m)] == matches


@pytest.mark.parametrize("pattern", ['{ $.level = "ERROR" }', "[ip, user]", '"unbalanced'])
def test_unsupported_patterns_are_invalid_parameters(pattern: str) -> None:
    with pytest.raises(LogsError) as err:
        compile_pattern(pattern)
    assert err.value.code == "InvalidParameterException"


# --- DescribeLogStreams, DescribeLogGroups -----------------------------------------------
def test_describe_log_streams(head: Head) -> None:
    attempts = [RunningAttempt(head, f"j{i}", node=("n1", "n2")[i % 2]) for i in range(3)]
    for i, a in enumerate(attempts):
        a.write("stdout", f"{i} first\n", after_seconds=1)
        a.write("stderr", f"{i} last\n", after_seconds=1)
        a.exit(0)
    names = sorted(a.stream for a in attempts)
    described = call(head, "DescribeLogStreams")
    assert [s["logStreamName"] for s in described["logStreams"]] == names
    first = described["logStreams"][0]
    assert first["arn"] == f"{GROUP_ARN}:log-stream:{first['logStreamName']}"
    assert first["storedBytes"] == len("0 first\n") + len("0 last\n")
    assert first["lastEventTimestamp"] - first["firstEventTimestamp"] == 1000
    assert first["creationTime"] <= first["firstEventTimestamp"]

    seen: list[str] = []
    token: str | None = None
    while True:
        extra = {"nextToken": token} if token else {}
        page = call(head, "DescribeLogStreams", limit=2, descending=True, **extra)
        seen += [s["logStreamName"] for s in page["logStreams"]]
        token = page.get("nextToken")
        if token is None:
            break
    assert seen == names[::-1]

    by_prefix = call(head, "DescribeLogStreams", logStreamNamePrefix=names[1][:-3])
    assert names[1] in [s["logStreamName"] for s in by_prefix["logStreams"]]
    assert call(head, "DescribeLogStreams", logStreamNamePrefix="nope/")["logStreams"] == []
    by_time = call(head, "DescribeLogStreams", orderBy="LastEventTime", limit=1)
    assert len(by_time["logStreams"]) == 1 and "nextToken" in by_time
    with pytest.raises(LogsError):
        call(head, "DescribeLogStreams", orderBy="LastEventTime", logStreamNamePrefix="d")
    with pytest.raises(LogsError) as err:
        call(head, "DescribeLogStreams", logGroupName="/aws/lambda/x")
    assert err.value.code == "ResourceNotFoundException"


def test_describe_log_groups(head: Head) -> None:
    assert [g["logGroupName"] for g in call(head, "DescribeLogGroups")["logGroups"]] == [GROUP]
    assert call(head, "DescribeLogGroups", logGroupNamePrefix="/aws/batch")["logGroups"]
    assert call(head, "DescribeLogGroups", logGroupNamePrefix="/aws/lambda")["logGroups"] == []
    assert call(head, "DescribeLogGroups", logGroupNamePattern="BATCH")["logGroups"]


# --- the JSON 1.1 endpoint ----------------------------------------------------------------
def post(app: Starlette, target: str, body: bytes) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://head") as client:
            return await client.post(
                "/",
                content=body,
                headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target},
            )

    return asyncio.run(send())


def test_endpoint_speaks_json_1_1(head: Head) -> None:
    a = RunningAttempt(head)
    a.write("stdout", "hello\n")
    app = Starlette(routes=routes(head.service.logs))
    body = {"logGroupName": GROUP, "logStreamName": a.stream, "startFromHead": True}
    ok = post(app, "Logs_20140328.GetLogEvents", json.dumps(body).encode())
    assert ok.status_code == 200
    assert ok.headers["content-type"] == "application/x-amz-json-1.1"
    assert [e["message"] for e in ok.json()["events"]] == ["hello"]

    for target, raw, code in [
        ("Logs_20140328.PutLogEvents", b"{}", "UnknownOperationException"),
        ("Other_1.GetLogEvents", b"{}", "UnknownOperationException"),
        ("Logs_20140328.GetLogEvents", b"{nope", "SerializationException"),
        ("Logs_20140328.GetLogEvents", b"[]", "SerializationException"),
        ("Logs_20140328.GetLogEvents", b'{"logStreamName": "x/y"}', "InvalidParameterException"),
    ]:
        refused = post(app, target, raw)
        assert refused.status_code == 400
        assert refused.headers["x-amzn-ErrorType"] == code
        assert refused.json()["__type"] == code


def test_endpoint_runs_authenticate_first(head: Head) -> None:
    async def deny(request: Request) -> Response | None:
        return JSONResponse({"__type": "Denied"}, status_code=403)

    app = Starlette(routes=routes(head.service.logs, authenticate=deny))
    assert post(app, "Logs_20140328.GetLogEvents", b"{}").status_code == 403
