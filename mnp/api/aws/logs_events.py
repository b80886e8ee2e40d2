"""Reading events: ``GetLogEvents`` (one stream, paged by position tokens) and
``FilterLogEvents`` (many streams merged in time order, filtered by a term pattern).

Token contract of ``GetLogEvents``: forward or backward pages with ``nextForwardToken`` /
``nextBackwardToken``; with nothing new the same token comes back, so the usual "until the
token repeats" loops end.
"""

from __future__ import annotations

import heapq
import shlex
import zlib
from collections.abc import Callable, Iterator

from mnp.api.aws.logs_request import (
    BAD_TOKEN,
    EVENT_OVERHEAD,
    JSON,
    MAX_BYTES,
    MAX_EVENTS,
    STREAM_NOT_FOUND,
    bool_field,
    check_group,
    constraint,
    decode_token,
    encode_token,
    int_field,
    invalid,
    not_found,
    parse_position,
    position_token,
    str_field,
)
from mnp.nodes.logstreams import LogEvent, Step, StreamLog
from mnp.service.logs import LogReader, StreamRef


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


def get_log_events(reader: LogReader, body: JSON) -> JSON:
    check_group(body)
    name = str_field(body, "logStreamName", required=True) or ""
    ref = reader.find_stream(name)
    if ref is None:
        raise not_found(STREAM_NOT_FOUND)
    return read_events(
        reader.open_stream(ref),
        token=str_field(body, "nextToken"),
        start_from_head=bool_field(body, "startFromHead"),
        start_time=int_field(body, "startTime"),
        end_time=int_field(body, "endTime"),
        limit=int_field(body, "limit", 1, MAX_EVENTS) or MAX_EVENTS,
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
        raise invalid(
            'Only term filter patterns are supported here (words, "quoted phrases", '
            "?either, -excluded), not JSON, space-delimited or regex patterns."
        )
    try:
        terms = shlex.split(text)
    except ValueError:
        raise invalid("Invalid character(s) in term") from None
    required = [t for t in terms if not (len(t) > 1 and t[0] in "?-")]
    either = [t[1:] for t in terms if len(t) > 1 and t[0] == "?"]
    excluded = [t[1:] for t in terms if len(t) > 1 and t[0] == "-"]
    return lambda message: (
        all(t in message for t in required)
        and (not either or any(t in message for t in either))
        and not any(t in message for t in excluded)
    )


CLOCK_SKEW_MS = 300_000
"""How far a node's clock (its events' times) may be from the head's (a stream's placement
and end times) when a time window picks the streams to read."""

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


def _filtered_streams(reader: LogReader, body: JSON) -> list[StreamRef]:
    """The streams named (``logStreamNames``, unknown ones skipped) or matching the prefix."""
    names = body.get("logStreamNames")
    prefix = str_field(body, "logStreamNamePrefix")
    if names is None:  # a time window skips the streams that ran outside it, unopened
        start, end = int_field(body, "startTime"), int_field(body, "endTime")
        during = (
            None if start is None else start - CLOCK_SKEW_MS,
            None if end is None else end + CLOCK_SKEW_MS,
        )
        return reader.find_streams(prefix=prefix or "", during=during)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise constraint("logStreamNames", names, "Member must be a list of strings")
    if not 1 <= len(names) <= 100:
        raise constraint("logStreamNames", names, "Member must have length 1 to 100")
    if prefix is not None:
        raise invalid("logStreamNames and logStreamNamePrefix are mutually exclusive.")
    return [r for n in dict.fromkeys(names) if (r := reader.find_stream(n)) is not None]


def _resume_after(body: JSON) -> EventKey | None:
    """The last event of the previous page, from ``nextToken``."""
    after_doc = decode_token(str_field(body, "nextToken"))
    if after_doc is None:
        return None
    try:
        ts, sname, which, index = after_doc
        return (int(ts), str(sname), int(which), int(index))
    except (TypeError, ValueError):
        raise invalid(BAD_TOKEN) from None


def filter_log_events(reader: LogReader, body: JSON) -> JSON:
    check_group(body)
    refs = _filtered_streams(reader, body)
    start, end = int_field(body, "startTime"), int_field(body, "endTime")
    match = compile_pattern(str_field(body, "filterPattern") or "")
    limit = int_field(body, "limit", 1, MAX_EVENTS) or MAX_EVENTS
    after = _resume_after(body)
    streams = [reader.open_stream(r) for r in refs]
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
            next_token = encode_token(list(last))
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
