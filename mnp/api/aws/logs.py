"""CloudWatch Logs, as AWS Batch tooling reads a job's output.

Each attempt's stdout and stderr form one log stream named as the attempt's
``logStreamName`` (``<jobDefinitionName>/default/<id>``) in the one log group
``/aws/batch/job``. The head node answers the Logs JSON 1.1 protocol (``POST /`` with
``X-Amz-Target: Logs_20140328.<Operation>``) for:

- ``GetLogEvents``: forward or backward pages with ``nextForwardToken`` /
  ``nextBackwardToken``; with nothing new the same token comes back, so the usual
  "until the token repeats" loops end;
- ``FilterLogEvents``: by stream names or prefix, time range and a term pattern
  (:func:`compile_pattern`), across streams in time order, paginated with ``nextToken``;
- ``DescribeLogStreams`` (prefix, ``orderBy``, ``descending``, pagination) and
  ``DescribeLogGroups``.

How a stream name leads to an attempt's files, and how lines become events with timestamps,
is in :mod:`mnp.nodes.logstreams`. Errors use AWS's shapes: ``ResourceNotFoundException``
(unknown group or stream) and ``InvalidParameterException``, 400. Not thread-safe: the
routes run on the head node's event loop.
"""

from __future__ import annotations

import base64
import heapq
import json
import logging
import re
import shlex
import uuid
import zlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mnp.nodes.logstreams import (
    LogEvent,
    LogsHead,
    Position,
    Step,
    StreamLog,
    StreamRef,
    find_stream,
    find_streams,
    last_write_ms,
    open_stream,
)
from mnp.spec.model import ACCOUNT, REGION

log = logging.getLogger("mnp.api.aws.logs")

JSON = dict[str, Any]
Authenticate = Callable[[Request], Awaitable[Response | None]]
GROUP = "/aws/batch/job"
GROUP_ARN = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{GROUP}"
TARGET_PREFIX = "Logs_20140328."
JSON_1_1 = "application/x-amz-json-1.1"
MAX_EVENTS = 10_000
MAX_BYTES = 1_048_576
EVENT_OVERHEAD = 26
"""Bytes CloudWatch counts per event on top of its message, toward ``MAX_BYTES``."""
DESCRIBE_LIMIT = 50


class LogsError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _invalid(message: str) -> LogsError:
    return LogsError("InvalidParameterException", message)


STREAM_NOT_FOUND = "The specified log stream does not exist."
GROUP_NOT_FOUND = "The specified log group does not exist."
BAD_TOKEN = "The specified nextToken is invalid."


# --- request fields ------------------------------------------------------------------------
def _constraint(name: str, value: Any, rule: str) -> LogsError:
    return _invalid(
        f"1 validation error detected: Value '{value}' at '{name}' failed to satisfy "
        f"constraint: {rule}"
    )


def _int(body: JSON, name: str, low: int = 0, high: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _constraint(name, value, "Member must be a number")
    if value < low:
        raise _constraint(name, value, f"Member must have value greater than or equal to {low}")
    if high is not None and value > high:
        raise _constraint(name, value, f"Member must have value less than or equal to {high}")
    return value


def _str(body: JSON, name: str, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise _constraint(name, "null", "Member must not be null")
        return None
    if not isinstance(value, str):
        raise _constraint(name, value, "Member must be a string")
    return value


def _bool(body: JSON, name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise _constraint(name, value, "Member must be a boolean")
    return value


def _check_group(body: JSON) -> None:
    name = _str(body, "logGroupName")
    ident = _str(body, "logGroupIdentifier")
    if name is not None and ident is not None:
        raise _invalid("LogGroup name and LogGroup ARN are mutually exclusive parameters.")
    if name is None and ident is None:
        raise _invalid("Either LogGroupName or LogGroupIdentifier must be specified.")
    if ident is not None and ident.startswith("arn:"):
        parts = ident.removesuffix(":*").split(":", 6)
        name = parts[6] if len(parts) == 7 and parts[5] == "log-group" else ""
    if (name if name is not None else ident) != GROUP:
        raise LogsError("ResourceNotFoundException", GROUP_NOT_FOUND)


def _encode_token(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def _decode_token(token: str | None) -> Any:
    if token is None:
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError:
        raise _invalid(BAD_TOKEN) from None


_POSITION = re.compile(r"([fb])/(\d{28})(\d{28})")


def position_token(direction: str, pos: Position) -> str:
    """``f/…`` or ``b/…`` and 56 digits, as CloudWatch's tokens look."""
    return f"{direction}/{pos[0]:028d}{pos[1]:028d}"


def parse_position(token: str) -> tuple[str, Position]:
    m = _POSITION.fullmatch(token)
    if m is None:
        raise _invalid(BAD_TOKEN)
    return m.group(1), (int(m.group(2)), int(m.group(3)))


# --- GetLogEvents -------------------------------------------------------------------------
def read_events(
    stream: StreamLog,
    *,
    token: str | None = None,
    start_from_head: bool = False,
    start_time: int | None = None,
    end_time: int | None = None,
    limit: int = MAX_EVENTS,
) -> JSON:
    """One GetLogEvents page; see the module docstring for the token contract."""
    if token is not None:
        direction, pos = parse_position(token)
        pos = stream.clamp(pos)
    else:
        direction, pos = ("f", (0, 0)) if start_from_head else ("b", stream.end)
    picked: list[LogEvent] = []
    size = 0
    forward_at = backward_at = pos
    steps = stream.forward(pos) if direction == "f" else stream.backward(pos)
    for step in steps:
        ts = stream.time(step.which, step.index)
        if direction == "f" and end_time is not None and ts >= end_time:
            break
        if direction == "b" and start_time is not None and ts < start_time:
            break
        in_range = (start_time is None or ts >= start_time) and (end_time is None or ts < end_time)
        event = stream.event(step) if in_range else None
        if event is not None:
            cost = len(event.message.encode()) + EVENT_OVERHEAD
            if len(picked) >= limit or size + cost > MAX_BYTES:
                break
            if not picked and direction == "f":
                backward_at = step.before
            elif not picked:
                forward_at = step.after
            picked.append(event)
            size += cost
        if direction == "f":
            forward_at = step.after
        else:
            backward_at = step.before
    if direction == "b":
        picked.reverse()
    return {
        "events": [
            {"timestamp": e.timestamp, "message": e.message, "ingestionTime": e.timestamp}
            for e in picked
        ],
        "nextForwardToken": position_token("f", forward_at),
        "nextBackwardToken": position_token("b", backward_at),
    }


def get_log_events(head: LogsHead, body: JSON) -> JSON:
    _check_group(body)
    name = _str(body, "logStreamName", required=True) or ""
    ref = find_stream(head.state.store.db, name)
    if ref is None:
        raise LogsError("ResourceNotFoundException", STREAM_NOT_FOUND)
    return read_events(
        open_stream(head, ref),
        token=_str(body, "nextToken"),
        start_from_head=_bool(body, "startFromHead"),
        start_time=_int(body, "startTime"),
        end_time=_int(body, "endTime"),
        limit=_int(body, "limit", 1, MAX_EVENTS) or MAX_EVENTS,
    )


# --- FilterLogEvents ----------------------------------------------------------------------
def compile_pattern(pattern: str) -> Callable[[str], bool]:
    """CloudWatch's term patterns, case-sensitive substrings: ``ERROR "two words"`` (all),
    ``?ERROR ?WARN`` (any), ``-DEBUG`` (none). JSON (``{…}``) and space-delimited
    (``[…]``) patterns are refused with InvalidParameterException."""
    text = pattern.strip()
    if not text:
        return lambda message: True
    if text[0] in "{[" or (len(text) > 1 and text[0] == "%" and text[-1] == "%"):
        raise _invalid(
            "Only term filter patterns are supported here (words, \"quoted phrases\", "
            "?either, -excluded), not JSON, space-delimited or regex patterns."
        )
    try:
        terms = shlex.split(text)
    except ValueError:
        raise _invalid("Invalid character(s) in term") from None
    required = [t for t in terms if not (len(t) > 1 and t[0] in "?-")]
    either = [t[1:] for t in terms if len(t) > 1 and t[0] == "?"]
    excluded = [t[1:] for t in terms if len(t) > 1 and t[0] == "-"]
    return lambda message: (
        all(t in message for t in required)
        and (not either or any(t in message for t in either))
        and not any(t in message for t in excluded)
    )


EventKey = tuple[int, str, int, int]
"""(timestamp, stream name, which file, line): FilterLogEvents' order across streams."""


def _keyed(
    stream: StreamLog, name: str, k: int, start: int | None, end: int | None, after: EventKey | None
) -> Iterator[tuple[EventKey, int, Step]]:
    for step in stream.forward((0, 0)):
        ts = stream.time(step.which, step.index)
        if end is not None and ts >= end:
            return
        key = (ts, name, step.which, step.index)
        if (start is None or ts >= start) and (after is None or key > after):
            yield key, k, step


def filter_log_events(head: LogsHead, body: JSON) -> JSON:
    _check_group(body)
    names = body.get("logStreamNames")
    prefix = _str(body, "logStreamNamePrefix")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _constraint("logStreamNames", names, "Member must be a list of strings")
        if not 1 <= len(names) <= 100:
            raise _constraint("logStreamNames", names, "Member must have length 1 to 100")
        if prefix is not None:
            raise _invalid("logStreamNames and logStreamNamePrefix are mutually exclusive.")
    db = head.state.store.db
    if names is not None:
        refs = [r for n in dict.fromkeys(names) if (r := find_stream(db, n)) is not None]
    else:
        refs = find_streams(db, prefix=prefix or "")
    start, end = _int(body, "startTime"), _int(body, "endTime")
    match = compile_pattern(_str(body, "filterPattern") or "")
    limit = _int(body, "limit", 1, MAX_EVENTS) or MAX_EVENTS
    after_doc = _decode_token(_str(body, "nextToken"))
    after: EventKey | None = None
    if after_doc is not None:
        try:
            ts, sname, which, index = after_doc
            after = (int(ts), str(sname), int(which), int(index))
        except (TypeError, ValueError):
            raise _invalid(BAD_TOKEN) from None
    streams = [open_stream(head, r) for r in refs]
    merged = heapq.merge(
        *(_keyed(streams[k], r.name, k, start, end, after) for k, r in enumerate(refs)),
        key=lambda item: item[0],
    )
    events: list[JSON] = []
    size = 0
    last: EventKey | None = None
    next_token: str | None = None
    for key, k, step in merged:
        event = streams[k].event(step)
        if event is None or not match(event.message):
            continue
        cost = len(event.message.encode()) + EVENT_OVERHEAD
        if last is not None and (len(events) >= limit or size + cost > MAX_BYTES):
            next_token = _encode_token(list(last))
            break
        ts, name, which, index = key
        events.append(
            {
                "logStreamName": name,
                "timestamp": ts,
                "message": event.message,
                "ingestionTime": ts,
                "eventId": f"{ts:016d}{zlib.crc32(name.encode()):010d}{which}{index:012d}",
            }
        )
        size += cost
        last = key
    answer: JSON = {"events": events, "searchedLogStreams": []}
    if next_token is not None:
        answer["nextToken"] = next_token
    return answer


# --- DescribeLogStreams, DescribeLogGroups -----------------------------------------------
def stream_description(head: LogsHead, ref: StreamRef) -> JSON:
    stream = open_stream(head, ref)
    first, last = stream.first_and_last()
    doc: JSON = {
        "logStreamName": ref.name,
        "creationTime": ref.created_at,
        "arn": f"{GROUP_ARN}:log-stream:{ref.name}",
        "storedBytes": stream.stored_bytes,
    }
    if first is not None and last is not None:
        doc["firstEventTimestamp"] = first.timestamp
        doc["lastEventTimestamp"] = last.timestamp
        doc["lastIngestionTime"] = last.timestamp
    return doc


def describe_log_streams(head: LogsHead, body: JSON) -> JSON:
    _check_group(body)
    prefix = _str(body, "logStreamNamePrefix") or ""
    order = _str(body, "orderBy") or "LogStreamName"
    if order not in ("LogStreamName", "LastEventTime"):
        raise _constraint("orderBy", order, "Member must satisfy enum value set: "
                          "[LogStreamName, LastEventTime]")  # fmt: skip
    if order == "LastEventTime" and prefix:
        raise _invalid("Cannot order by LastEventTime with a logStreamNamePrefix.")
    descending = _bool(body, "descending")
    limit = _int(body, "limit", 1, DESCRIBE_LIMIT) or DESCRIBE_LIMIT
    cursor = _decode_token(_str(body, "nextToken"))
    if cursor is not None and not isinstance(cursor, dict):
        raise _invalid(BAD_TOKEN)
    db = head.state.store.db
    following: JSON | None = None
    if order == "LogStreamName":
        after = cursor.get("after") if cursor else None
        page = find_streams(
            db,
            prefix=prefix,
            after=after if isinstance(after, str) else None,
            descending=descending,
            limit=limit + 1,
        )
        if len(page) > limit:
            page = page[:limit]
            following = {"after": page[-1].name}
    else:
        offset = cursor.get("offset", 0) if cursor else 0
        if not isinstance(offset, int) or offset < 0:
            raise _invalid(BAD_TOKEN)
        everything = sorted(
            find_streams(db), key=lambda r: (last_write_ms(head, r), r.name), reverse=descending
        )
        page = everything[offset : offset + limit]
        if offset + limit < len(everything):
            following = {"offset": offset + limit}
    answer: JSON = {"logStreams": [stream_description(head, r) for r in page]}
    if following is not None:
        answer["nextToken"] = _encode_token(following)
    return answer


def describe_log_groups(head: LogsHead, body: JSON) -> JSON:
    prefix = _str(body, "logGroupNamePrefix")
    pattern = _str(body, "logGroupNamePattern")
    if prefix is not None and pattern is not None:
        raise _invalid("logGroupNamePrefix and logGroupNamePattern are mutually exclusive.")
    shown = (prefix is None or GROUP.startswith(prefix)) and (
        pattern is None or pattern.lower() in GROUP.lower()
    )
    group = {
        "logGroupName": GROUP,
        "metricFilterCount": 0,
        "arn": f"{GROUP_ARN}:*",
        "logGroupArn": GROUP_ARN,
        "storedBytes": 0,
        "logGroupClass": "STANDARD",
    }
    return {"logGroups": [group] if shown else []}


OPERATIONS: dict[str, Callable[[LogsHead, JSON], JSON]] = {
    "GetLogEvents": get_log_events,
    "FilterLogEvents": filter_log_events,
    "DescribeLogStreams": describe_log_streams,
    "DescribeLogGroups": describe_log_groups,
}


# --- HTTP ----------------------------------------------------------------------------------
def error_response(code: str, message: str, status: int = 400) -> JSONResponse:
    return JSONResponse(
        {"__type": code, "message": message},
        status_code=status,
        headers={"x-amzn-ErrorType": code, "x-amzn-RequestId": str(uuid.uuid4())},
        media_type=JSON_1_1,
    )


def routes(head: LogsHead, authenticate: Authenticate | None = None) -> list[Route]:
    """``POST /``: the Logs JSON 1.1 endpoint. ``authenticate`` runs first when given
    (e.g. ``FrontDoor.check``); a response from it is sent instead."""

    async def endpoint(request: Request) -> Response:
        if authenticate is not None:
            refused = await authenticate(request)
            if refused is not None:
                return refused
        target = request.headers.get("x-amz-target", "")
        operation = OPERATIONS.get(target.removeprefix(TARGET_PREFIX))
        if not target.startswith(TARGET_PREFIX) or operation is None:
            return error_response("UnknownOperationException", f"Unknown operation {target!r}")
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return error_response("SerializationException", "The request body is not JSON.")
        if not isinstance(body, dict):
            return error_response("SerializationException", "The request body must be an object.")
        try:
            answer = operation(head, body)
        except LogsError as e:
            return error_response(e.code, e.message, e.status)
        except Exception as e:
            log.exception("%s failed", target)
            return error_response("ServiceUnavailableException", f"{type(e).__name__}: {e}", 500)
        return JSONResponse(
            answer, headers={"x-amzn-RequestId": str(uuid.uuid4())}, media_type=JSON_1_1
        )

    return [Route("/", endpoint, methods=["POST"])]
