"""The AWS front door's gate on the head node: SigV4 (:mod:`mnp.api.aws.sigv4`), then throttling.

Which requests it guards: ``/v1/*`` (AWS Batch, signing name ``batch``) and ``/`` (the
CloudWatch Logs JSON endpoint, signing name ``logs``); mnp's own API and the agents' paths
are not its business. After a good signature, ``POST /v1/submitjob`` spends a token from one
bucket (``submit_rate`` per second, ``submit_burst`` at once; unlimited by default) and is
refused with 429 ``TooManyRequestsException`` when none is left, as AWS does past its
per-account SubmitJob rate.

Whose keys it takes: the owner's (``<home>/credentials`` and the ``MNP_AWS_*`` key, see
:mod:`mnp.api.aws.credentials`) and each user's (looked up in the store by key id, so a
deleted user's key stops working with the next request). The caller's identity
(:class:`~mnp.service.users.Caller`) is left in ``request.state.caller``, the region it signed
for in ``request.state.aws_identity`` (:func:`region_of`: the answer's ARNs are in it).

Two ways to mount it: ``FrontDoor.check`` in each AWS handler (``await check(request)``
returns the refusal to send, or None), or :class:`AwsAuthMiddleware` around the app.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mnp.api.aws.credentials import Credentials, CredentialStore, ensure_credentials
from mnp.api.aws.sigv4 import (
    BATCH,
    LOGS,
    AuthError,
    CredentialLookup,
    Headers,
    Identity,
    verify,
)
from mnp.service.users import Caller, owner
from mnp.spec import arns
from mnp.spec.ids import new_id

KeyLookup = Callable[[str], tuple[Caller, str] | None]
"""An access key id → the user it belongs to and its secret (``UserOps.by_access_key``)."""

SUBMIT_JOB_PATH = "/v1/submitjob"
JSON_1_1 = "application/x-amz-json-1.1"
THROTTLED = AuthError(429, "TooManyRequestsException", "Too Many Requests")
SESSION_TOKEN_HEADER = "x-amz-security-token"
UNKNOWN_KEY = AuthError(
    403, "UnrecognizedClientException", "The security token included in the request is invalid."
)


# --- throttling ----------------------------------------------------------------------------
class TokenBucket:
    """``rate`` requests per second on average, up to ``burst`` at once (default: rate, ≥1)."""

    def __init__(
        self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        self.clock = clock
        self.tokens = self.capacity
        self.at = clock()

    def take(self) -> bool:
        """Spend one token if there is one."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


# --- HTTP ----------------------------------------------------------------------------------
def service_for(path: str) -> str | None:
    """Which AWS service a request path belongs to; None for mnp's own paths."""
    if path.startswith("/v1/"):
        return BATCH
    if path == "/":
        return LOGS
    return None


def error_response(err: AuthError, service: str | None = BATCH) -> Response:
    """The refusal as AWS sends it: ``x-amzn-ErrorType`` and ``{"__type", "message"}``."""
    return JSONResponse(
        {"__type": err.code, "message": err.message},
        status_code=err.status,
        headers={"x-amzn-ErrorType": err.code, "x-amzn-RequestId": new_id()},
        media_type=JSON_1_1 if service == LOGS else "application/json",
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


class FrontDoor:
    """Authentication and throttling for the AWS paths of the head node.

    ``submit_rate`` (SubmitJob requests per second, None = unlimited) and ``submit_burst``
    configure one token bucket shared by every caller, as AWS's per-account limit.
    """

    def __init__(
        self,
        credentials: CredentialLookup,
        *,
        submit_rate: float | None = None,
        submit_burst: float | None = None,
        now: Callable[[], datetime] = _utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        users: KeyLookup | None = None,
    ) -> None:
        arns.region_setting()  # a bad $MNP_REGION or $MNP_ACCOUNT_ID stops the head at start
        arns.account_setting()
        self.owner_keys = credentials
        self.users = users
        self.now = now
        self.bucket = TokenBucket(submit_rate, submit_burst, monotonic) if submit_rate else None

    @classmethod
    def for_home(
        cls,
        home: Path,
        *,
        submit_rate: float | None = None,
        submit_burst: float | None = None,
        users: KeyLookup | None = None,
    ) -> FrontDoor:
        """Keys from ``<home>/credentials`` (created if there are none) and the environment
        (the owner's), and ``users``' (the store's)."""
        ensure_credentials(home)
        return cls(
            CredentialStore(home), submit_rate=submit_rate, submit_burst=submit_burst, users=users
        )

    def _owner_key(self, key_id: str) -> Credentials | None:
        keys = self.owner_keys
        return keys.get(key_id) if isinstance(keys, Mapping) else keys(key_id)

    def credentials(self, key_id: str) -> Credentials | None:
        """The key ``key_id`` names: the owner's first, then a user's."""
        found = self._owner_key(key_id)
        if found is None and self.users is not None:
            user = self.users(key_id)
            if user is not None:
                found = Credentials(key_id, user[1], f"user:{user[0].name}")
        return found

    def caller(self, identity: Identity) -> Caller | None:
        """Who signed: the owner for the owner's keys, else the user (or running job) the
        key belongs to; None if it is none any more (a user deleted, a job ended since the
        signature was checked)."""
        if self._owner_key(identity.access_key_id) is not None:
            return owner()
        user = self.users(identity.access_key_id) if self.users is not None else None
        return None if user is None else user[0]

    def admit(self, identity: Identity, session_token: str) -> Caller | AuthError:
        """The caller a checked signature stands for, or the refusal: a key no one has any
        more, or a running job's temporary key without its session token."""
        caller = self.caller(identity)
        if caller is None:
            return UNKNOWN_KEY
        if caller.session_token is not None and not secrets.compare_digest(
            session_token.encode(), caller.session_token.encode()
        ):
            return UNKNOWN_KEY
        return caller

    def check_parts(
        self, method: str, path: str, raw_path: str, query: str, headers: Headers, body: bytes
    ) -> Identity | AuthError | None:
        """None for paths that are not AWS's; else the identity, or the refusal to send."""
        service = service_for(path)
        if service is None:
            return None
        result = verify(
            method, raw_path, query, headers, body, self.credentials, self.now(), service=service
        )
        if isinstance(result, AuthError):
            return result
        if self._throttled(method, path):
            return THROTTLED
        return result

    def _throttled(self, method: str, path: str) -> bool:
        """A SubmitJob over the rate (the bucket is taken from only for those)."""
        return (
            self.bucket is not None
            and method.upper() == "POST"
            and path.rstrip("/") == SUBMIT_JOB_PATH
            and not self.bucket.take()
        )

    def gate(
        self,
        method: str,
        path: str,
        raw_path: str,
        query: str,
        headers: Headers,
        body: bytes,
        session_token: Callable[[], str],
    ) -> tuple[Identity, Caller] | AuthError | None:
        """:meth:`check_parts` then :meth:`admit` with one lookup of the key: the signature,
        the throttle and the caller's check in that order, with the caller found when the
        signature's key was (nothing runs between the two, so the answer is the same)."""
        service = service_for(path)
        if service is None:
            return None
        found: list[Caller] = []

        def lookup(key_id: str) -> Credentials | None:
            creds = self._owner_key(key_id)
            if creds is not None:
                found.append(owner())
            elif self.users is not None:
                user = self.users(key_id)
                if user is not None:
                    found.append(user[0])
                    creds = Credentials(key_id, user[1], f"user:{user[0].name}")
            return creds

        result = verify(method, raw_path, query, headers, body, lookup, self.now(), service=service)
        if isinstance(result, AuthError):
            return result
        if self._throttled(method, path):
            return THROTTLED
        caller = found[-1] if found else None
        if caller is None:
            return UNKNOWN_KEY
        if caller.session_token is not None and not secrets.compare_digest(
            session_token().encode(), caller.session_token.encode()
        ):
            return UNKNOWN_KEY
        return result, caller

    async def check(self, request: Request) -> Response | None:
        """For a Starlette handler: None to go on, else the response to send instead."""
        path = str(request.scope.get("path", "")) or request.url.path  # no URL object built
        raw = request.scope.get("raw_path") or path.encode()
        result = self.gate(
            request.method,
            path,
            raw.decode("utf-8", "replace"),
            request.scope.get("query_string", b"").decode("latin-1"),
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            await request.body(),
            lambda: request.headers.get(SESSION_TOKEN_HEADER, ""),
        )
        if isinstance(result, AuthError):
            return error_response(result, service_for(path))
        if result is not None:
            state = request.state
            state.aws_identity, state.caller = result
        return None


def region_of(request: Request) -> str | None:
    """The region the request was signed for (its SigV4 credential scope's); None when the
    routes run without the front door. The answer's ARNs are written in it
    (:func:`mnp.spec.arns.signed_for`)."""
    identity = getattr(request.state, "aws_identity", None)
    return identity.region if isinstance(identity, Identity) else None


def caller_of(request: Request) -> Caller:
    """The identity the front door left on the request; the owner when the routes run
    without one (mounted with no ``authenticate``, as in tests of the wire alone)."""
    caller = getattr(request.state, "caller", None)
    return caller if isinstance(caller, Caller) else owner()


class AwsAuthMiddleware:
    """ASGI middleware: every ``/v1/*`` and ``/`` request passes :class:`FrontDoor` first.

    The body is read once to hash it, then replayed to the app. The signer's
    :class:`Identity` is left in ``request.state.aws_identity``.
    """

    def __init__(self, app: ASGIApp, front_door: FrontDoor) -> None:
        self.app = app
        self.front_door = front_door

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or service_for(scope["path"]) is None:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        result = self.front_door.check_parts(
            scope["method"],
            scope["path"],
            raw.decode("utf-8", "replace"),
            scope.get("query_string", b"").decode("latin-1"),
            headers,
            body,
        )
        if isinstance(result, AuthError):
            await error_response(result, service_for(scope["path"]))(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        state["aws_identity"] = result
        if result is not None:
            token = next((v for k, v in headers if k.lower() == SESSION_TOKEN_HEADER), "")
            caller = self.front_door.admit(result, token)
            if isinstance(caller, AuthError):
                await error_response(caller, service_for(scope["path"]))(scope, receive, send)
                return
            state["caller"] = caller
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
