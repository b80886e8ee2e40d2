"""CloudWatch Logs, as AWS Batch tooling reads a job's output.

Each attempt's stdout and stderr form one log stream named as the attempt's
``logStreamName`` (``<jobDefinitionName>/default/<id>``) in the one log group
``/aws/batch/job``. The head node answers the Logs JSON 1.1 protocol (``POST /`` with
``X-Amz-Target: Logs_20140328.<Operation>``) for:

- ``GetLogEvents``: forward or backward pages with ``nextForwardToken`` /
  ``nextBackwardToken``; with nothing new the same token comes back, so the usual
  "until the token repeats" loops end;
- ``FilterLogEvents``: by stream names or prefix, time range and a term pattern
  (:func:`mnp.api.aws.logs_events.compile_pattern`), across streams in time order, paginated
  with ``nextToken``;
- ``DescribeLogStreams`` (prefix, ``orderBy``, ``descending``, pagination) and
  ``DescribeLogGroups``.

The two reading operations are in :mod:`mnp.api.aws.logs_events`, field checks and tokens in
:mod:`mnp.api.aws.logs_request`. How a stream name leads to an attempt's files is
:class:`mnp.service.logs.LogReader`; how lines become events with timestamps,
:mod:`mnp.nodes.logstreams`. Errors use AWS's shapes: ``ResourceNotFoundException``
(unknown group or stream) and ``InvalidParameterException``, 400; a non-admin naming another
user's stream ``AccessDeniedException``, 403. Not thread-safe: the
routes run on the head node's event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mnp.api.aws.frontdoor import caller_of, region_of
from mnp.api.aws.logs_events import filter_log_events, get_log_events
from mnp.api.aws.logs_request import (
    BAD_TOKEN,
    DESCRIBE_LIMIT,
    GROUP,
    JSON,
    LogsError,
    bool_field,
    check_group,
    constraint,
    decode_token,
    encode_token,
    group_arn,
    int_field,
    invalid,
    str_field,
)
from mnp.api.jsonbody import NotJson, read_json
from mnp.errors import AccessDenied, InvalidInput
from mnp.service.logs import LogReader, StreamRef, time_key
from mnp.spec import arns
from mnp.spec.ids import new_id

log = logging.getLogger("mnp.api.aws.logs")

Authenticate = Callable[[Request], Awaitable[Response | None]]
TARGET_PREFIX = "Logs_20140328."
JSON_1_1 = "application/x-amz-json-1.1"
MAX_BODY_BYTES = 1024 * 1024
"""Logs requests are a few fields; CloudWatch's own limit for a PutLogEvents batch."""


# --- DescribeLogStreams, DescribeLogGroups -----------------------------------------------
def stream_description(reader: LogReader, ref: StreamRef) -> JSON:
    stream = reader.open_stream(ref)
    first, last = stream.first_and_last()
    doc: JSON = {
        "logStreamName": ref.name,
        "creationTime": ref.created_at,
        "arn": f"{group_arn()}:log-stream:{ref.name}",
        "storedBytes": stream.stored_bytes,
    }
    if first is not None and last is not None:
        doc["firstEventTimestamp"] = first.timestamp
        doc["lastEventTimestamp"] = last.timestamp
        doc["lastIngestionTime"] = last.timestamp
    return doc


def _by_name(
    reader: LogReader, prefix: str, cursor: JSON | None, descending: bool, limit: int
) -> tuple[list[StreamRef], JSON | None]:
    """A page in name order and the cursor of the next one (None: this is the last)."""
    after = cursor.get("after") if cursor else None
    page = reader.find_streams(
        prefix=prefix,
        after=after if isinstance(after, str) else None,
        descending=descending,
        limit=limit + 1,
    )
    if len(page) > limit:
        return page[:limit], {"after": page[limit - 1].name}
    return page, None


def _by_last_event(
    reader: LogReader, cursor: JSON | None, descending: bool, limit: int
) -> tuple[list[StreamRef], JSON | None]:
    """A page in order of last write and the cursor of the next one (None: this is the
    last): the page's last ``(time, name)``, so the next starts past it."""
    past = None
    if cursor is not None:
        past = time_key(cursor.get("past"))
        if past is None:
            raise invalid(BAD_TOKEN)
    page = reader.by_last_event(past=past, descending=descending, limit=limit + 1)
    if len(page) > limit:
        return [r for _, r in page[:limit]], {"past": list(page[limit - 1][0])}
    return [r for _, r in page], None


def describe_log_streams(reader: LogReader, body: JSON) -> JSON:
    check_group(body)
    prefix = str_field(body, "logStreamNamePrefix") or ""
    order = str_field(body, "orderBy") or "LogStreamName"
    if order not in ("LogStreamName", "LastEventTime"):
        raise constraint("orderBy", order, "Member must satisfy enum value set: "
                         "[LogStreamName, LastEventTime]")  # fmt: skip
    if order == "LastEventTime" and prefix:
        raise invalid("Cannot order by LastEventTime with a logStreamNamePrefix.")
    descending = bool_field(body, "descending")
    limit = int_field(body, "limit", 1, DESCRIBE_LIMIT) or DESCRIBE_LIMIT
    cursor = decode_token(str_field(body, "nextToken"))
    if cursor is not None and not isinstance(cursor, dict):
        raise invalid(BAD_TOKEN)
    if order == "LogStreamName":
        page, following = _by_name(reader, prefix, cursor, descending, limit)
    else:
        page, following = _by_last_event(reader, cursor, descending, limit)
    answer: JSON = {"logStreams": [stream_description(reader, r) for r in page]}
    if following is not None:
        answer["nextToken"] = encode_token(following)
    return answer


def describe_log_groups(reader: LogReader, body: JSON) -> JSON:
    prefix = str_field(body, "logGroupNamePrefix")
    pattern = str_field(body, "logGroupNamePattern")
    if prefix is not None and pattern is not None:
        raise invalid("logGroupNamePrefix and logGroupNamePattern are mutually exclusive.")
    shown = (prefix is None or GROUP.startswith(prefix)) and (
        pattern is None or pattern.lower() in GROUP.lower()
    )
    group = {
        "logGroupName": GROUP,
        "metricFilterCount": 0,
        "arn": f"{group_arn()}:*",
        "logGroupArn": group_arn(),
        "storedBytes": 0,
        "logGroupClass": "STANDARD",
    }
    return {"logGroups": [group] if shown else []}


OPERATIONS: dict[str, Callable[[LogReader, JSON], JSON]] = {
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
        headers={"x-amzn-ErrorType": code, "x-amzn-RequestId": new_id()},
        media_type=JSON_1_1,
    )


def routes(reader: LogReader, authenticate: Authenticate | None = None) -> list[Route]:
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
        try:
            body = read_json(await request.body(), max_bytes=MAX_BODY_BYTES)
        except NotJson as e:
            return error_response("SerializationException", str(e))
        except InvalidInput as e:
            return error_response("InvalidParameterException", str(e))
        try:
            caller = caller_of(request)
            if caller.job_role is not None:  # a running job's key: its role decides too
                caller.job_role.check(f"logs:{target.removeprefix(TARGET_PREFIX)}")
            with arns.signed_for(region_of(request)):
                answer = operation(reader.for_caller(caller), body)
        except LogsError as e:
            return error_response(e.code, e.message, e.status)
        except AccessDenied as e:  # another user's stream
            return error_response(e.code, str(e), 403)
        except Exception as e:
            log.exception("%s failed", target)
            return error_response("ServiceUnavailableException", f"{type(e).__name__}: {e}", 500)
        return JSONResponse(
            answer, headers={"x-amzn-RequestId": new_id()}, media_type=JSON_1_1
        )

    return [Route("/", endpoint, methods=["POST"])]
