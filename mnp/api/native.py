"""The native JSON API: ``POST /api/v1/<operation>`` with a JSON object body, behind a token.

The operations come from the head node as a name → handler table (``Head.ops``); this module
only authenticates (the bearer token → the caller's identity, :class:`TokenGate`), decodes,
calls the handler with the caller and maps errors (AccessDenied: 403). Answers: the
handler's JSON; an :class:`~mnp.errors.MnpError` as ``{"__type", "message"}`` (plus
``errors`` for invalid input) with its ``http_status`` and an ``x-amzn-ErrorType`` header (a
transient one, such as the head unable to save, as 503 with ``Retry-After``: nothing
changed); anything else as a 500 ``ServerException``. Not thread-safe: the routes run on the
head node's event loop.
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
from mnp.api.jsonbody import Answered
from mnp.errors import InvalidInput, MnpError, NotFound
from mnp.service.operations import Handler
from mnp.service.users import Caller, owner
from mnp.spec import protocol

__all__ = ["Handler", "TokenGate", "error_response", "routes"]

log = logging.getLogger("mnp.api.native")

UserLookup = Callable[[str], Caller | None]
"""A bearer token → the user it belongs to (``UserOps.by_token``), None when it is no one's."""


class TokenGate:
    """The token check of the native API, the log tail and the agent endpoints.

    The head's own token is the owner (compared in constant time); any other token is looked
    up by its sha256 among the users (:mod:`mnp.service.users`), so a deleted user's token
    stops working with the next request. The agent endpoints take the owner's token only.
    """

    def __init__(self, token: str | None, users: UserLookup | None = None) -> None:
        self.token = token
        self.users = users

    def allows(self, request: Request) -> bool:
        """The owner's token (agents): no token configured lets everyone in; else the header
        must match (constant time)."""
        return self.token is None or secrets.compare_digest(
            request.headers.get(protocol.TOKEN_HEADER, ""), self.token
        )

    def identify(self, request: Request) -> Caller | None:
        """Who the request's token says it is: the owner, a user, or None (refuse it)."""
        if self.allows(request):
            return owner()
        given = request.headers.get(protocol.TOKEN_HEADER, "")
        if not given or self.users is None:
            return None
        return self.users(given)

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


API_PATH = "/api/v1/{op}"
"""The native API's one route: ``POST`` an operation's name."""


def routes(gate: TokenGate, operations: Mapping[str, Handler]) -> list[Route]:
    """``POST /api/v1/{op}``, answering from ``operations``."""

    async def api(request: Request) -> Response:
        caller = gate.identify(request)
        if caller is None:
            return gate.denied()
        op = request.path_params["op"]
        handler = operations.get(op)
        if handler is None:
            return error_response(NotFound(f"unknown operation {op!r}"))
        try:
            return Answered(handler(caller, await json_body(request)))
        except MnpError as e:
            return error_response(e)
        except Exception as e:
            log.exception("operation %s failed", op)
            return JSONResponse(
                {"__type": "ServerException", "message": f"{type(e).__name__}: {e}"},
                status_code=500,
            )

    return [Route(API_PATH, api, methods=["POST"])]
