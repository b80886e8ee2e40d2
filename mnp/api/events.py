"""``GET /api/v1/events``: the job state-change events as they happen, one JSON line each.

Each line is ``{"seq": N, "event": {...}}`` (the event in EventBridge's shape,
:mod:`mnp.service.events.bus`). Query: ``follow=1|true|yes`` (keep streaming until the
client goes), ``after=N`` (start after sequence number N, from the head's buffer of recent
events; default: from now; ``after=0`` is everything buffered), ``job=ID`` and
``queue=NAME`` (only that job's or queue's events). An admin sees every job's events, a user
only those of their own jobs. Events are made only while someone listens (a rule, or a
stream like this one), so the buffer shows what happened since then.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from mnp.api.native import TokenGate, error_response
from mnp.errors import FieldError, InvalidInput
from mnp.service.events.bus import Buffered, EventBus
from mnp.service.users import Caller


def visible_to(
    caller: Caller, job: str | None, queue: str | None
) -> Callable[[Buffered], bool]:
    """Which buffered events the stream shows ``caller``."""

    def visible(item: Buffered) -> bool:
        detail = item.event.get("detail", {})
        if job is not None and detail.get("jobId") != job:
            return False
        if queue is not None and not str(detail.get("jobQueue", "")).endswith(
            f":job-queue/{queue}"
        ):
            return False
        return caller.is_admin or caller.owns(item.owner)

    return visible


def routes(gate: TokenGate, bus: EventBus) -> list[Route]:
    async def events_endpoint(request: Request) -> Response:
        caller = gate.identify(request)
        if caller is None:
            return gate.denied()
        q = request.query_params
        after_q = q.get("after")
        if after_q is not None and not (after_q.isascii() and after_q.isdigit()):
            return error_response(InvalidInput([FieldError("after", "must be a number")]))
        follow = q.get("follow") in ("1", "true", "yes")
        after = int(after_q) if after_q is not None else None
        visible = visible_to(caller, q.get("job"), q.get("queue"))

        async def lines() -> AsyncIterator[bytes]:
            async for item in bus.follow(visible, after, follow):
                yield (json.dumps(item, separators=(",", ":")) + "\n").encode()

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    return [Route("/api/v1/events", events_endpoint, methods=["GET"])]
