"""The node agents' endpoints: register, (long) poll, report — each call admitted per node by
its own credential (its secret, or the join token it was launched with; the head's token only
for a new node joining an UNMANAGED environment by itself) (:mod:`mnp.nodes.sessions`; headers of
:mod:`mnp.spec.protocol`).

Errors an agent acts on: 404 ``UnknownNode`` (the head does not know it: register again),
409 ``StaleSession`` (the call's session ended: an older epoch, or a LOST or STOPPED node;
nothing applied: the agent kills its attempts and registers again), 410 ``NodeLost`` (a
register of a node the operator stopped: the agent must stop), 400
``ClientException`` naming the field for a malformed message (every field is checked as a
client request's is: :mod:`mnp.api.jsonbody`, then the ``from_wire`` of
:mod:`mnp.spec.protocol`), 403 ``AccessDeniedException`` for a call its node's credential does
not allow, 409 ``ClientException`` naming the field a re-registration would change, 500
``ServerException`` for the head's own failure. Not thread-safe: the head node's event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mnp.api.jsonbody import Answered, read_json
from mnp.api.native import TokenGate, error_response
from mnp.errors import Conflict, InvalidInput, NotFound
from mnp.nodes.sessions import Credentials, Forbidden, NodeGone, NodeSessions, StaleSession
from mnp.spec import protocol

LONG_POLL_MAX_SECONDS = 30.0
MAX_BODY_BYTES = 64 * 1024 * 1024
"""A report carries up to 4 MiB of output (``launcher.agent.REPORT_MAX_BYTES``) that JSON may
escape to six bytes a character."""
FREE_TEXT = frozenset({"data", "reason"})
"""Event fields that are captured text, never executed: a NUL in a job's output is kept."""

Message = dict[str, Any]
log = logging.getLogger("mnp.api.agents")


class PollWaiters:
    """One event per node, set when work is queued for it, so a waiting poll answers at once."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def wake(self, node_id: str) -> None:
        """Work for ``node_id`` was queued (the head state's ``on_node_work`` hook)."""
        ev = self._events.get(node_id)
        if ev is not None:
            ev.set()

    def arm(self, node_id: str) -> asyncio.Event:
        """The node's event, cleared: set by the next :meth:`wake` from now on."""
        ev = self._events.setdefault(node_id, asyncio.Event())
        ev.clear()
        return ev


Call = Callable[[Message, Credentials], Awaitable[Message]]


def _credentials(request: Request, head_token: bool) -> Credentials:
    h = request.headers
    return Credentials(
        secret=h.get(protocol.NODE_SECRET_HEADER) or None,
        join_token=h.get(protocol.JOIN_TOKEN_HEADER) or None,
        head_token=head_token,
    )


async def _answer(request: Request, fn: Call, head_token: bool) -> Response:
    """``fn``'s answer to the request's JSON body, or the agent protocol's error for it."""
    try:
        body = read_json(await request.body(), max_bytes=MAX_BODY_BYTES, free_text=FREE_TEXT)
        return Answered(await fn(body, _credentials(request, head_token)))
    except (InvalidInput, Conflict) as e:
        return error_response(e)
    except Forbidden as e:
        return JSONResponse({"__type": "AccessDeniedException", "message": str(e)}, 403)
    except NotFound as e:
        return JSONResponse({"__type": "UnknownNode", "message": str(e)}, status_code=404)
    except StaleSession as e:
        return JSONResponse({"__type": "StaleSession", "message": str(e)}, status_code=409)
    except NodeGone as e:
        return JSONResponse(
            {"__type": "NodeLost", "message": f"node {e} was stopped"}, status_code=410
        )
    except Exception as e:
        log.exception("agent call %s failed", request.url.path)
        return JSONResponse(
            {"__type": "ServerException", "message": f"{type(e).__name__}: {e}"},
            status_code=500,
        )


def bundle_route(bundle: Callable[[], bytes]) -> Route:
    """``GET`` :data:`~mnp.spec.protocol.BUNDLE_PATH`: the agent bundle (an uncompressed tar
    of the head's own code), which an EC2 instance's user data installs after checking its
    SHA-256 (written into the user data). No credential: the code is no secret, and what
    could be swapped in transit is caught by the hash."""

    async def endpoint(request: Request) -> Response:
        data = await asyncio.to_thread(bundle)
        return Response(data, media_type="application/x-tar")

    return Route(protocol.BUNDLE_PATH, endpoint, methods=["GET"])


def routes(
    gate: TokenGate,
    sessions: NodeSessions,
    waiters: PollWaiters,
    heartbeat_seconds: float,
) -> list[Route]:
    """The three agent routes at :mod:`mnp.spec.protocol`'s paths."""

    def agent(fn: Call) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            # The head's token, or a node's own credential (checked per node by the
            # sessions): a node joined with a join token never needs the head's token.
            head_token = gate.allows(request)
            h = request.headers
            node_credential = h.get(protocol.NODE_SECRET_HEADER) or h.get(
                protocol.JOIN_TOKEN_HEADER
            )
            if not head_token and not node_credential:
                return gate.denied()
            return await _answer(request, fn, head_token)

        return endpoint

    async def register(body: Message, creds: Credentials) -> Message:
        r = protocol.Register.from_wire(body)
        joins = sessions.admit_register(r, creds)
        sessions.register(r)
        node = sessions.s.nodes[r.node_id]
        reply: Message = {
            "heartbeatSeconds": heartbeat_seconds,
            "leaseSeconds": sessions.s.config.lease,
            "sessionEpoch": node.session_epoch,
        }
        ce = sessions.s.ces.get(node.compute_environment)
        if node.instance_id is not None or (ce is not None and ce.ec2):
            reply[protocol.SPOT_NOTICES_KEY] = True
        if joins:
            reply[protocol.NODE_SECRET_KEY] = sessions.issue_secret(r.node_id)
        return reply

    async def poll(body: Message, creds: Credentials) -> Message:
        p = protocol.Poll.from_wire(body)
        sessions.admit(p.node_id, creds)
        ev = waiters.arm(p.node_id)
        reply = sessions.poll(p)
        if not reply.assignments and not reply.kills and not reply.ready and p.wait_seconds > 0:
            try:
                wait = min(p.wait_seconds, LONG_POLL_MAX_SECONDS)
                await asyncio.wait_for(ev.wait(), timeout=wait)
            except TimeoutError:
                pass
            reply = sessions.poll(protocol.Poll(p.node_id, p.running, 0, p.ready, p.epoch))
        return reply.to_wire()

    async def report(body: Message, creds: Credentials) -> Message:
        r = protocol.Report.from_wire(body)
        sessions.admit(r.node_id, creds)
        accepted = sessions.report(r)
        return {"accepted": accepted}

    return [
        Route(protocol.REGISTER_PATH, agent(register), methods=["POST"]),
        Route(protocol.POLL_PATH, agent(poll), methods=["POST"]),
        Route(protocol.REPORT_PATH, agent(report), methods=["POST"]),
    ]
