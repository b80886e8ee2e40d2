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


SCAN_BUDGET = 100_000
"""Events a FilterLogEvents call looks at and streams it opens, at most (once it has looked at
one event, so every call gets on): past it the page ends where the search stopped, with a
``nextToken`` to go on from there, full or not (as CloudWatch's may end with fewer events
than asked for, even none)."""


def _keyed(
    stream: StreamLog, name: str, end: int | None, floor: int | None, after: EventKey | None
) -> Iterator[tuple[EventKey, Step]]:
    """The stream's events from ``floor`` (None: its first) to before ``end``, past ``after``,
    each with its place in the merged order; what lies before ``floor`` is skipped unread."""
    for step in stream.forward((0, 0) if floor is None else stream.seek(floor)):
        ts = stream.time(step.which, step.index)
        if end is not None and ts >= end:
            return
        key = (ts, name, step.which, step.index)
        if after is None or key > after:
            yield key, step


def _merged(
    reader: LogReader,
    refs: Iterator[StreamRef],
    end: int | None,
    floor: int | None,
    after: EventKey | None,
    opened: list[int],
) -> Iterator[tuple[EventKey, StreamLog, Step]]:
    """The events of ``refs`` (in placement order) in :data:`EventKey` order. A stream is
    opened only once the merge reaches its placement less :data:`CLOCK_SKEW_MS` (no event of
    it can come earlier), so a page that ends early never opens the streams after it.
    ``opened[0]`` counts the streams opened."""
    heap: list[tuple[EventKey, int, Step, Iterator[tuple[EventKey, Step]], StreamLog]] = []
    pending = next(refs, None)
    while True:
        if pending is not None and (
            not heap or pending.created_at - CLOCK_SKEW_MS <= heap[0][0][0]
        ):
            stream = reader.open_stream(pending)
            events = _keyed(stream, pending.name, end, floor, after)
            first = next(events, None)
            if first is not None:
                heapq.heappush(heap, (first[0], opened[0], first[1], events, stream))
            opened[0] += 1
            pending = next(refs, None)
            continue
        if not heap:
            return
        key, k, step, events, stream = heap[0]
        yield key, stream, step
        following = next(events, None)
        if following is None:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (following[0], k, following[1], events, stream))


def _filtered_streams(
    reader: LogReader, body: JSON, since: int | None, end: int | None
) -> Iterator[StreamRef]:
    """The streams named (``logStreamNames``, unknown ones skipped) or matching the prefix,
    in placement order; for a prefix only those that may hold events from ``since`` on and
    before ``end`` (a node's clock may be :data:`CLOCK_SKEW_MS` off the head's)."""
    names = body.get("logStreamNames")
    prefix = str_field(body, "logStreamNamePrefix")
    if names is None:
        return reader.streams_placed(
            prefix=prefix or "",
            since=None if since is None else since - CLOCK_SKEW_MS,
            before=None if end is None else end + CLOCK_SKEW_MS,
        )
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise constraint("logStreamNames", names, "Member must be a list of strings")
    if not 1 <= len(names) <= 100:
        raise constraint("logStreamNames", names, "Member must have length 1 to 100")
    if prefix is not None:
        raise invalid("logStreamNames and logStreamNamePrefix are mutually exclusive.")
    refs = [r for n in dict.fromkeys(names) if (r := reader.find_stream(n)) is not None]
    return iter(sorted(refs, key=lambda r: (r.created_at, r.name)))


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
    start, end = int_field(body, "startTime"), int_field(body, "endTime")
    match = compile_pattern(str_field(body, "filterPattern") or "")
    limit = int_field(body, "limit", 1, MAX_EVENTS) or MAX_EVENTS
    after = _resume_after(body)
    floors = [t for t in (start, after[0] if after is not None else None) if t is not None]
    floor = max(floors) if floors else None
    refs = _filtered_streams(reader, body, floor, end)
    events: list[JSON] = []
    size = 0
    looked_at: EventKey | None = None
    """The last event looked at: every match up to it is on the page."""
    next_token: str | None = None
    opened = [0]
    merged = _merged(reader, refs, end, floor, after, opened)
    for looked, (key, stream, step) in enumerate(merged):
        if looked_at is not None and looked + opened[0] > SCAN_BUDGET:
            next_token = encode_token(list(looked_at))  # the search goes on from there
            break
        event = stream.event(step)
        if event is not None and match(event.message):
            cost = len(event.message.encode()) + EVENT_OVERHEAD
            if events and (len(events) >= limit or size + cost > MAX_BYTES):
                next_token = encode_token(list(looked_at or key))
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
        looked_at = key
    answer: JSON = {"events": events, "searchedLogStreams": []}
    if next_token is not None:
        answer["nextToken"] = next_token
    return answer
