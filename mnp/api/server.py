"""The head node process: HTTP front door, scheduler loop, and start-up/shut-down.

``run(config)`` blocks until SIGTERM/SIGINT. Start-up order: open the store, bind the socket
(so the URL is known), load state, create the embedded default, publish ``head.json``, then
serve and schedule. Shut-down stops local nodes it launched and removes ``head.json``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

import mnp
from mnp.api.aws import batch, logs
from mnp.api.aws.frontdoor import FrontDoor
from mnp.config import HeadConfig, HeadInfo, ensure_token
from mnp.errors import InvalidInput, MnpError, NotFound
from mnp.scheduler.loop import NodeGone, Runtime
from mnp.scheduler.state import HeadState
from mnp.service.core import Service
from mnp.spec import protocol
from mnp.spec.states import JobStatus
from mnp.store.sqlite import Store

log = logging.getLogger("mnp.api.server")

Handler = Callable[[dict[str, Any]], dict[str, Any]]
TICK_GATHER_SECONDS = 0.002


class Head:
    """Everything one head node process holds, wired together."""

    def __init__(self, config: HeadConfig, url: str) -> None:
        config.home.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.url = url
        self.started_at = int(time.time() * 1000)
        self.store = Store(config.db_path)
        self.state = HeadState(config, self.store)
        self.runtime = Runtime(self.state, url)
        self.service = Service(self.state, self.runtime)
        self.wake = asyncio.Event()
        self.node_events: dict[str, asyncio.Event] = {}
        self.state.on_wake = self.wake.set
        self.state.on_node_work = self._node_work
        self.ops: dict[str, Handler] = {
            "registerJobDefinition": self.service.register_job_definition,
            "deregisterJobDefinition": self.service.deregister_job_definition,
            "describeJobDefinitions": self.service.describe_job_definitions,
            "submitJob": self.service.submit_job,
            "describeJobs": self.service.describe_jobs,
            "listJobs": self.service.list_jobs,
            "cancelJob": self.service.cancel_job,
            "terminateJob": self.service.terminate_job,
            "createJobQueue": self.service.create_job_queue,
            "updateJobQueue": self.service.update_job_queue,
            "deleteJobQueue": self.service.delete_job_queue,
            "describeJobQueues": self.service.describe_job_queues,
            "createComputeEnvironment": self.service.create_compute_environment,
            "updateComputeEnvironment": self.service.update_compute_environment,
            "deleteComputeEnvironment": self.service.delete_compute_environment,
            "describeComputeEnvironments": self.service.describe_compute_environments,
            "createSchedulingPolicy": self.service.create_scheduling_policy,
            "updateSchedulingPolicy": self.service.update_scheduling_policy,
            "deleteSchedulingPolicy": self.service.delete_scheduling_policy,
            "describeSchedulingPolicies": self.service.describe_scheduling_policies,
            "listSchedulingPolicies": self.service.list_scheduling_policies,
            "getJobQueueSnapshot": self.service.get_job_queue_snapshot,
            "tagResource": self.service.tag_resource,
            "untagResource": self.service.untag_resource,
            "listTagsForResource": self.service.list_tags_for_resource,
            "listNodes": self.service.list_nodes,
            "getStatus": self.get_status,
        }

    def _node_work(self, node_id: str) -> None:
        ev = self.node_events.get(node_id)
        if ev is not None:
            ev.set()

    def start(self) -> None:
        self.service.load()
        self.service.ensure_defaults()
        self.runtime.tick()

    def get_status(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "version": mnp.__version__,
            "url": self.url,
            "home": str(self.config.home),
            "pid": os.getpid(),
            "startedAt": self.started_at,
            "jobCounts": self.store.count_jobs_by_status(),
            "queues": len(self.state.queues),
            "computeEnvironments": len(self.state.ces),
            "nodes": sum(1 for n in self.state.nodes.values() if n.status.value == "ACTIVE"),
        }

    async def scheduler_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=0.5)
                # let a burst of submissions and reports land first: one tick, one write
                await asyncio.sleep(TICK_GATHER_SECONDS)
            except TimeoutError:
                pass
            self.wake.clear()
            try:
                self.runtime.tick()
            except Exception:
                log.exception("scheduler tick failed")

    def shutdown(self) -> None:
        nodes = [n for n in self.state.nodes.values()]
        self.runtime.stop_nodes(nodes, "stopped: the head node shut down")
        self.state.flush()
        self.store.close()


# --- HTTP ------------------------------------------------------------------------------------
def error_response(e: MnpError) -> JSONResponse:
    body: dict[str, Any] = {"__type": e.code, "message": str(e)}
    if isinstance(e, InvalidInput):
        body["errors"] = [{"path": fe.path, "message": fe.message} for fe in e.errors]
    return JSONResponse(body, status_code=e.http_status, headers={"x-amzn-ErrorType": e.code})


def build_app(head: Head) -> Starlette:
    token = head.config.token
    front_door = FrontDoor.for_home(
        head.config.home,
        submit_rate=head.config.submit_rate_per_second,
        submit_burst=head.config.submit_burst,
    )

    def authorised(request: Request) -> bool:
        return token is None or secrets.compare_digest(
            request.headers.get(protocol.TOKEN_HEADER, ""), token
        )

    def denied() -> JSONResponse:
        return JSONResponse(
            {"__type": "ClientException", "message": f"missing or wrong {protocol.TOKEN_HEADER}"},
            status_code=401,
        )

    body_of = batch.json_body  # one JSON-object reader for both front doors

    async def api(request: Request) -> Response:
        if not authorised(request):
            return denied()
        op = request.path_params["op"]
        handler = head.ops.get(op)
        if handler is None:
            return error_response(NotFound(f"unknown operation {op!r}"))
        try:
            return JSONResponse(handler(await body_of(request)))
        except MnpError as e:
            return error_response(e)
        except Exception as e:
            log.exception("operation %s failed", op)
            return JSONResponse(
                {"__type": "ServerException", "message": f"{type(e).__name__}: {e}"},
                status_code=500,
            )

    async def logs_endpoint(request: Request) -> Response:
        if not authorised(request):
            return denied()
        job_id = request.path_params["job_id"]
        job = head.state.job(job_id)
        if job is None:
            return error_response(NotFound(f"no job with id {job_id!r}"))
        attempt_q = request.query_params.get("attempt")
        follow = request.query_params.get("follow") in ("1", "true", "yes")
        return StreamingResponse(
            _log_stream(head, job_id, attempt_q, follow), media_type="text/plain"
        )

    def agent(
        fn: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if not authorised(request):
                return denied()
            try:
                return JSONResponse(await fn(await body_of(request)))
            except NotFound as e:
                return JSONResponse({"__type": "UnknownNode", "message": str(e)}, status_code=404)
            except NodeGone as e:
                return JSONResponse(
                    {"__type": "NodeLost", "message": f"node {e} was declared lost"},
                    status_code=410,
                )
            except (KeyError, ValueError, TypeError) as e:
                return JSONResponse(
                    {"__type": "ClientException", "message": f"bad agent message: {e}"},
                    status_code=400,
                )

        return endpoint

    async def register(body: dict[str, Any]) -> dict[str, Any]:
        head.runtime.register(protocol.Register.from_wire(body))
        return {"heartbeatSeconds": head.config.heartbeat_seconds}

    async def poll(body: dict[str, Any]) -> dict[str, Any]:
        p = protocol.Poll.from_wire(body)
        ev = head.node_events.setdefault(p.node_id, asyncio.Event())
        ev.clear()
        reply = head.runtime.poll(p)
        if not reply.assignments and not reply.kills and not reply.ready and p.wait_seconds > 0:
            try:
                await asyncio.wait_for(ev.wait(), timeout=min(p.wait_seconds, 30.0))
            except TimeoutError:
                pass
            reply = head.runtime.poll(protocol.Poll(p.node_id, p.running, 0))
        return reply.to_wire()

    async def report(body: dict[str, Any]) -> dict[str, Any]:
        accepted = head.runtime.report(protocol.Report.from_wire(body))
        return {"accepted": accepted}

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            *logs.routes(head, authenticate=front_door.check),
            *batch.routes(head, authenticate=front_door.check),
            Route("/api/v1/logs/{job_id:path}", logs_endpoint, methods=["GET"]),
            Route("/api/v1/{op}", api, methods=["POST"]),
            Route(protocol.REGISTER_PATH, agent(register), methods=["POST"]),
            Route(protocol.POLL_PATH, agent(poll), methods=["POST"]),
            Route(protocol.REPORT_PATH, agent(report), methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
        ]
    )


async def _log_stream(
    head: Head, job_id: str, attempt_q: str | None, follow: bool
) -> AsyncIterator[bytes]:
    offsets: dict[tuple[int, str], int] = {}
    while True:
        job = head.state.job(job_id)
        if job is None:
            return
        numbers = [a.number for a in job.attempts]
        if attempt_q:
            numbers = [int(attempt_q)]
        elif numbers:
            numbers = [numbers[-1]]
        for n in numbers:
            for stream in ("stdout", "stderr"):
                path = head.runtime.log_path(job_id, n, stream)
                key = (n, stream)
                try:
                    with open(path, "rb") as f:
                        f.seek(offsets.get(key, 0))
                        data = f.read()
                except FileNotFoundError:
                    continue
                if data:
                    offsets[key] = offsets.get(key, 0) + len(data)
                    yield data
        if not follow or job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            if follow:
                # one last read: the final chunks arrive with the exit event
                follow = False
                continue
            return
        await asyncio.sleep(0.2)


# --- process entry point -----------------------------------------------------------------------
def bind(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only when
    # the listening socket says TCP, and without it every answer waits ~40 ms (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def run(config: HeadConfig) -> None:
    """Run a head node in this process until SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        import uvloop  # a faster event loop; plain asyncio works too
    except ImportError:
        asyncio.run(_serve(config))
    else:
        uvloop.run(_serve(config))


async def _serve(config: HeadConfig) -> None:
    config.home.mkdir(parents=True, exist_ok=True)
    if config.token is None:  # the native API always asks for a token; clients read head.json
        config = dataclasses.replace(config, token=ensure_token(config.home))
    sock = bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{host}:{port}"
    head = Head(config, url)
    head.start()
    app = build_app(head)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(head.scheduler_loop())
        HeadInfo(url=url, pid=os.getpid(), token=config.token).write(config.head_file)
        config.pid_file.write_text(str(os.getpid()))
        log.info("mnp head node at %s (home %s)", url, config.home)
        try:
            yield
        finally:
            task.cancel()

    app.router.lifespan_context = lifespan
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2)
    )
    # uvicorn re-raises the signal that stopped it once it is done; by then we only want to
    # finish shutting down, so make those signals no-ops here.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        await server.serve(sockets=[sock])
    finally:
        head.shutdown()
        for path in (config.head_file, config.pid_file):
            try:
                path.unlink()
            except FileNotFoundError:
                pass


def main() -> None:
    """``python -m mnp.api.server``: a head node with the default configuration."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    run(HeadConfig())


if __name__ == "__main__":
    main()
