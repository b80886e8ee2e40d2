"""AWS Batch's wire protocol in front of :class:`mnp.service.core.Service`.

What botocore sends (service ``batch``, protocol rest-json, API version 2016-08-10):

- every operation is ``POST /v1/<lowercased operation name>`` with a JSON object body;
- the tag operations put the resource ARN in the path, percent-encoded with ``/`` as
  ``%2F``: ``GET`` (ListTagsForResource), ``POST`` (TagResource, body ``{"tags": …}``) and
  ``DELETE`` (UntagResource, repeated ``tagKeys`` query parameters) on
  ``/v1/tags/{resourceArn}``. The ARN is read from the *raw* path, so an encoded ``/`` or
  ``%`` inside it survives exactly.

Each operation is a row of :data:`mnp.service.operations.OPERATIONS`, the same the native API
(``/api/v1/<op>``) runs; only shapes are translated here (:mod:`mnp.api.aws.batch_shapes`).
Each runs as the caller the front door found (``request.state.caller``; the owner when the
routes are mounted without ``authenticate``), its ARNs in the region the caller signed for.
Errors answer as botocore parses them:
``x-amzn-ErrorType`` header plus ``{"__type", "message"}`` body, ``ClientException`` with
400 for anything the caller got wrong, including unknown names and conflicts (AWS Batch has
no 404/409), ``AccessDeniedException`` with 403 for what the caller may not do, and
``ServerException`` with 500 for mnp's own failures. Every answer carries an ``x-amzn-RequestId``.

Mount with :func:`routes`. Not thread-safe (nor is the service): the routes run on the head
node's event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mnp.api.aws import batch_shapes as shapes
from mnp.api.aws.frontdoor import caller_of, region_of
from mnp.api.jsonbody import Answered, check_value, read_json
from mnp.errors import AccessDenied, InvalidInput, MnpError
from mnp.service import operations
from mnp.service.base import MNP_SUBMIT_MAX
from mnp.service.core import Service
from mnp.service.operations import Answer, Operation
from mnp.spec import arns
from mnp.spec.ids import new_id

log = logging.getLogger("mnp.api.aws.batch")

JSON = dict[str, Any]
Authenticate = Callable[[Request], Awaitable[Response | None]]
"""Checks a request before it runs: None lets it through, a Response is answered instead."""

TAGS_PREFIX = "/v1/tags/"
CLIENT = "ClientException"
SERVER = "ServerException"


class HasService(Protocol):
    """What the routes need of the head node (``mnp.head.Head``)."""

    @property
    def service(self) -> Service: ...


TRANSLATE: dict[Answer, shapes.Translate] = {
    Answer.AS_IS: shapes.unchanged,
    Answer.JOBS: shapes.describe_jobs,
    Answer.JOB_SUMMARIES: shapes.list_jobs,
    Answer.SUBMITTED: shapes.submitted,
    Answer.COMPUTE_ENVIRONMENTS: shapes.describe_compute_environments,
    Answer.JOB_DEFINITIONS: shapes.describe_job_definitions,
}
"""How each kind of answer goes on this wire (mnp's own fields out, AWS's constants in)."""

OPERATIONS: dict[str, Operation[Any]] = {
    op.aws.lower(): op
    for op in operations.OPERATIONS
    if op.aws is not None and op.tag_method is None
}
"""The 22 operations at ``POST /v1/<name>``; the 3 tag operations have their own route."""

TAG_OPERATIONS: dict[str, Operation[Any]] = {
    op.tag_method: op for op in operations.OPERATIONS if op.tag_method is not None
}

_SAGEMAKER = "service environments, quota shares and service jobs (SageMaker Training)"
NOT_SUPPORTED: dict[str, str] = {
    **{
        name.lower(): "consumable resources (resource-aware scheduling)"
        for name in (
            "CreateConsumableResource",
            "UpdateConsumableResource",
            "DeleteConsumableResource",
            "DescribeConsumableResource",
            "ListConsumableResources",
            "ListJobsByConsumableResource",
        )
    },
    **{
        name.lower(): _SAGEMAKER
        for name in (
            "CreateServiceEnvironment",
            "UpdateServiceEnvironment",
            "DeleteServiceEnvironment",
            "DescribeServiceEnvironments",
            "SubmitServiceJob",
            "DescribeServiceJob",
            "ListServiceJobs",
            "TerminateServiceJob",
            "UpdateServiceJob",
            "CreateQuotaShare",
            "UpdateQuotaShare",
            "DeleteQuotaShare",
            "DescribeQuotaShare",
            "ListQuotaShares",
        )
    },
}
"""AWS Batch operations mnp answers with a ClientException naming what is not supported."""


# --- errors ------------------------------------------------------------------------------------
def error_response(code: str, message: str, status: int, request_id: str) -> JSONResponse:
    return JSONResponse(
        {"__type": code, "message": message},
        status_code=status,
        headers={"x-amzn-ErrorType": code, "x-amzn-RequestId": request_id},
    )


def error_for(e: MnpError, request_id: str) -> JSONResponse:
    """NotFound and Conflict are client errors on this wire: AWS answers 400 for both;
    AccessDenied is AWS's 403 ``AccessDeniedException``."""
    if isinstance(e, AccessDenied):
        return error_response(e.code, str(e), 403, request_id)
    if e.http_status < 500:
        return error_response(CLIENT, str(e), 400, request_id)
    return error_response(SERVER, str(e), 500, request_id)


# --- requests ----------------------------------------------------------------------------------
def arn_from_raw_path(raw_path: bytes) -> str:
    """The percent-decoded ARN after ``/v1/tags/`` in a raw request path.

    >>> arn_from_raw_path(b"/v1/tags/arn%3Aaws%3Abatch%3Alocal%3A0%3Ajob-queue%2Fq1")
    'arn:aws:batch:local:0:job-queue/q1'
    """
    path = raw_path.split(b"?", 1)[0].decode("latin-1")
    at = path.find(TAGS_PREFIX)
    if at < 0:
        raise InvalidInput(f"not a tag path: {path!r}")
    arn = unquote(path[at + len(TAGS_PREFIX) :], errors="replace")
    if not arn:
        raise InvalidInput("resourceArn: required")
    return arn


OPERATION_PATH = "/v1/{op}"
"""AWS Batch's operations (``POST /v1/submitjob``…), all but the tag ones."""

MAX_BODY_BYTES = 2 * MNP_SUBMIT_MAX
"""Past the largest submission the service takes (it measures that one exactly)."""


async def json_body(request: Request) -> JSON:
    """The body through :func:`mnp.api.jsonbody.read_json`; raises InvalidInput."""
    return read_json(await request.body(), max_bytes=MAX_BODY_BYTES)


async def tag_request(request: Request) -> JSON:
    """The service body of a tag operation: ARN from the raw path, keys from the query."""
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    body: JSON = {"resourceArn": arn_from_raw_path(raw)}
    if request.method == "POST":
        given = await json_body(request)
        body["tags"] = given.get("tags")
    elif request.method == "DELETE":
        body["tagKeys"] = request.query_params.getlist("tagKeys")
    check_value(body)  # the path and the query pass the body's rules too (no NUL)
    return body


# --- routes ------------------------------------------------------------------------------------
def routes(head: HasService, authenticate: Authenticate | None = None) -> list[Route]:
    """The AWS Batch routes, to mount beside the native API.

    ``authenticate`` runs before every operation (SigV4 checking, say); without it the
    routes answer anyone who can reach the socket.
    """

    async def run(
        request: Request,
        op_of: Callable[[Request], Operation[Any]],
        body_of: Callable[[Request], Awaitable[JSON]],
    ) -> Response:
        request_id = new_id()
        if authenticate is not None:
            denied = await authenticate(request)
            if denied is not None:
                denied.headers.setdefault("x-amzn-RequestId", request_id)
                return denied
        name = "?"
        try:
            op = op_of(request)
            name = op.aws or op.native
            body = await body_of(request)
            with arns.signed_for(region_of(request)):
                answer = TRANSLATE[op.answer](op(head.service, caller_of(request), body))
        except MnpError as e:
            return error_for(e, request_id)
        except Exception as e:
            log.exception("AWS Batch operation %s failed", name)
            return error_response(SERVER, f"{type(e).__name__}: {e}", 500, request_id)
        return Answered(answer, headers={"x-amzn-RequestId": request_id})

    def operation_of(request: Request) -> Operation[Any]:
        name = str(request.path_params["op"]).lower()
        op = OPERATIONS.get(name)
        if op is not None:
            return op
        if name in NOT_SUPPORTED:
            raise InvalidInput(f"{name}: {NOT_SUPPORTED[name]} are not supported by mnp")
        raise InvalidInput(f"unknown AWS Batch operation {name!r}")

    def tag_operation_of(request: Request) -> Operation[Any]:
        return TAG_OPERATIONS.get(request.method, TAG_OPERATIONS["GET"])  # HEAD as GET

    async def operation(request: Request) -> Response:
        return await run(request, operation_of, json_body)

    async def tags(request: Request) -> Response:
        return await run(request, tag_operation_of, tag_request)

    return [
        Route(TAGS_PREFIX + "{arn:path}", tags, methods=["GET", "POST", "DELETE"]),
        Route(OPERATION_PATH, operation, methods=["POST"]),
    ]
