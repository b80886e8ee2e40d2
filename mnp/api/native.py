"""The native JSON API: ``POST /api/v1/<operation>`` with a JSON object body, behind the token.

The operations come from the head node as a name → handler table (``Head.ops``); this module
only authenticates, decodes, calls and maps errors. Answers: the handler's JSON; an
:class:`~mnp.errors.MnpError` as ``{"__type", "message"}`` (plus ``errors`` for invalid input)
with its ``http_status`` and an ``x-amzn-ErrorType`` header (a transient one, such as the
head unable to save, as 503 with ``Retry-After``: nothing changed); anything else as a 500
``ServerException``. Not thread-safe: the routes run on the head node's event loop.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mnp.api.aws.batch import json_body
from mnp.errors import InvalidInput, MnpError, NotFound
from mnp.spec import protocol

log = logging.getLogger("mnp.api.native")

Handler = Callable[[dict[str, Any]], dict[str, Any]]
"""One native operation: the request body in, the JSON answer out."""


class TokenGate:
    """The shared-token check of the native API, the log tail and the agent endpoints."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    def allows(self, request: Request) -> bool:
        """No token configured lets everyone in; else the header must match (constant time)."""
        return self.token is None or secrets.compare_digest(
            request.headers.get(protocol.TOKEN_HEADER, ""), self.token
        )

    @staticmethod
    def denied() -> JSONResponse:
        return JSONResponse(
            {"__type": "ClientException", "message": f"missing or wrong {protocol.TOKEN_HEADER}"},
            status_code=401,
        )


def error_response(e: MnpError) -> JSONResponse:
    body: dict[str, Any] = {"__type": e.code, "message": str(e)}
    if isinstance(e, InvalidInput):
        body["errors"] = [{"path": fe.path, "message": fe.message} for fe in e.errors]
    headers = {"x-amzn-ErrorType": e.code}
    if e.transient:  # e.g. the head could not save (503): nothing changed, try again
        headers["Retry-After"] = "1"
    return JSONResponse(body, status_code=e.http_status, headers=headers)


def routes(gate: TokenGate, operations: Mapping[str, Handler]) -> list[Route]:
    """``POST /api/v1/{op}``, answering from ``operations``."""

    async def api(request: Request) -> Response:
        if not gate.allows(request):
            return gate.denied()
        op = request.path_params["op"]
        handler = operations.get(op)
        if handler is None:
            return error_response(NotFound(f"unknown operation {op!r}"))
        try:
            return JSONResponse(handler(await json_body(request)))
        except MnpError as e:
            return error_response(e)
        except Exception as e:
            log.exception("operation %s failed", op)
            return JSONResponse(
                {"__type": "ServerException", "message": f"{type(e).__name__}: {e}"},
                status_code=500,
            )

    return [Route("/api/v1/{op}", api, methods=["POST"])]
