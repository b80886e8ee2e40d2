"""``GET /api/v1/logs/{job_id}``: a job's output as plain text, optionally followed.

Query: ``attempt=N`` (default: the latest attempt), ``follow=1|true|yes`` (keep streaming,
polling the files every 0.2 s, until the job is SUCCEEDED or FAILED, then read once more,
since the final chunks arrive with the exit event). Each attempt's stdout then stderr, each
byte sent once. An unknown job is a 404 ``ClientException``, a bad ``attempt`` a 400, another
user's job (for a non-admin) a 403.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from mnp.api.native import TokenGate, error_response
from mnp.errors import AccessDenied, FieldError, InvalidInput, NotFound
from mnp.service.logs import STREAMS, LogReader
from mnp.service.users import require_owner

FOLLOW_POLL_SECONDS = 0.2


def routes(gate: TokenGate, reader: LogReader) -> list[Route]:
    async def logs_endpoint(request: Request) -> Response:
        caller = gate.identify(request)
        if caller is None:
            return gate.denied()
        job_id = request.path_params["job_id"]
        job = reader.job(job_id)
        if job is None:
            return error_response(NotFound(f"no job with id {job_id!r}"))
        try:
            require_owner(caller, job.submitted_by, "read the logs of job", job_id)
        except AccessDenied as e:
            return error_response(e)
        attempt_q = request.query_params.get("attempt")
        if attempt_q is not None and not (attempt_q.isascii() and attempt_q.isdigit()):
            return error_response(InvalidInput([FieldError("attempt", "must be a number")]))
        follow = request.query_params.get("follow") in ("1", "true", "yes")
        return StreamingResponse(
            log_stream(reader, job_id, attempt_q, follow), media_type="text/plain"
        )

    return [Route("/api/v1/logs/{job_id:path}", logs_endpoint, methods=["GET"])]


async def log_stream(
    reader: LogReader, job_id: str, attempt_q: str | None, follow: bool
) -> AsyncIterator[bytes]:
    """The bytes of the chosen attempt's files not yet sent, until there is nothing to wait for."""
    offsets: dict[tuple[int, str], int] = {}
    while True:
        job = reader.job(job_id)
        if job is None:
            return
        numbers = [a.number for a in job.attempts]
        if attempt_q:
            numbers = [int(attempt_q)]
        elif numbers:
            numbers = [numbers[-1]]
        for n in numbers:
            for stream in STREAMS:
                key = (n, stream)
                try:
                    with open(reader.log_path(job_id, n, stream), "rb") as f:
                        f.seek(offsets.get(key, 0))
                        data = f.read()
                except FileNotFoundError:
                    continue
                if data:
                    offsets[key] = offsets.get(key, 0) + len(data)
                    yield data
        if not follow or job.status.terminal:
            if follow:
                # one last read: the final chunks arrive with the exit event
                follow = False
                continue
            return
        await asyncio.sleep(FOLLOW_POLL_SECONDS)
