"""The head node's HTTP app: every route, the busiest first (no two match the same method and
path, so the order only saves tries).

1. the node agents' endpoints (:mod:`mnp.api.agents`);
2. ``POST /api/v1/{op}`` — the native operations (:mod:`mnp.api.native`);
3. when the head has them: ``GET /api/v1/events`` — the event stream (:mod:`mnp.api.events`)
   and ``GET /metrics`` — Prometheus (:mod:`mnp.api.metrics`, which also times every request);
4. ``POST /`` — CloudWatch Logs (:mod:`mnp.api.aws.logs`), and ``/v1/…`` — AWS Batch
   (:mod:`mnp.api.aws.batch`), both behind the AWS front door (SigV4, SubmitJob throttling);
5. ``GET /api/v1/logs/{job_id}`` — the native log tail (:mod:`mnp.api.tail`);
6. ``GET /dashboard/…`` — the web dashboard's page and files (:mod:`mnp.api.dashboard`);
7. ``GET /healthz``, open to all.

The native routes and the tail take the owner's token (``HeadConfig.token``) or a user's; the
agents' routes the owner's only (then each node's own secret).

The head serves :data:`HOT_ROUTES` from its HTTP parser, past ASGI (:mod:`mnp.api.fastpath`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mnp.api import agents, dashboard, events, metrics, native, tail
from mnp.api.aws import batch, logs
from mnp.api.aws.frontdoor import FrontDoor
from mnp.api.native import Handler, TokenGate
from mnp.config import HeadConfig
from mnp.nodes.sessions import NodeSessions
from mnp.service.core import Service
from mnp.service.dashboard import Series
from mnp.service.events.bus import EventBus
from mnp.spec import protocol

HOT_ROUTES = (
    protocol.REGISTER_PATH, protocol.POLL_PATH, protocol.REPORT_PATH, native.API_PATH,
    batch.OPERATION_PATH,
)  # fmt: skip
"""The routes every job goes through (its submit, its assignment, its reports): the agents',
the native operations and AWS Batch's. :mod:`mnp.api.fastpath` serves them without ASGI."""


class AppHead(Protocol):
    """What the app needs of the head-node process (:class:`mnp.head.Head`)."""

    @property
    def config(self) -> HeadConfig: ...

    @property
    def service(self) -> Service: ...

    @property
    def sessions(self) -> NodeSessions: ...

    @property
    def waiters(self) -> agents.PollWaiters: ...

    def agent_bundle(self) -> bytes:
        """The agent bundle's bytes an EC2 instance installs (may block: read in a thread)."""
        ...


def build_app(
    head: AppHead,
    operations: Mapping[str, Handler],
    bus: EventBus | None = None,
    head_metrics: metrics.HeadMetrics | None = None,
) -> Starlette:
    """The app for ``head``; ``operations`` is the native API's table (name → handler);
    ``bus`` and ``head_metrics``, when given, add the event stream and ``/metrics``."""
    config = head.config
    users = head.service.users
    front_door = FrontDoor.for_home(
        config.home,
        submit_rate=config.submit_rate_per_second,
        submit_burst=config.submit_burst,
        users=users.by_access_key,
    )
    gate = TokenGate(config.token, users.by_token)
    sampler = dashboard.Sampler(Series(head.service.ctx.s))
    operations = {**operations, "dashboardSeries": sampler.handler}

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    extra = events.routes(gate, bus) if bus is not None else []
    middleware: list[Middleware] = []
    if head_metrics is not None:
        extra += metrics.routes(head_metrics, gate.identify)
        middleware.append(Middleware(metrics.RequestTimer, metrics=head_metrics))
    app = Starlette(
        middleware=middleware,
        routes=[
            *agents.routes(gate, head.sessions, head.waiters, config.heartbeat_seconds),
            *native.routes(gate, operations),
            *extra,
            *logs.routes(head.service.logs, authenticate=front_door.check),
            *batch.routes(head, authenticate=front_door.check),
            *tail.routes(gate, head.service.logs),
            agents.bundle_route(head.agent_bundle),
            *dashboard.routes(sampler),
            Route("/healthz", health, methods=["GET"]),
        ]
    )
    app.state.dashboard_sampler = sampler  # the head starts it with its loop (mnp.head)
    return app
