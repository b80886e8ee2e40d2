"""The head's busiest routes answered straight from uvicorn's HTTP parser, without ASGI.

Every job crosses the head's one thread several times: its submit, the poll that hands it to
a node, the reports of its start and end. For a request that small, the ASGI machinery costs
more than the work: uvicorn makes a task, an event and a send/receive pair per request, and
Starlette runs its middleware stack and router and renders the answer through ``send``. On
this 2-core machine a bare uvicorn and Starlette spent about 130 µs of the server's CPU per
trivial POST, the same request served from httptools' callbacks 45 µs.

So :class:`FastProtocol` (uvicorn's httptools protocol) looks at each request as its headers
end. One that the app's own router would give to one of the ``hot`` routes, with nothing
unusual about it (no ``Expect: 100-continue``, no upgrade, no ``%`` in its path, no answer
still owed before it on the connection), is served here: the route's endpoint gets a real
Starlette :class:`~starlette.requests.Request` over uvicorn's scope, and its answer (a
rendered :class:`~starlette.responses.Response`) is written in one piece. Everything else goes
to the app as before. The endpoints are the same functions either way; only the plumbing
around them differs, so the two paths answer alike (``tests/unit/test_fastpath.py`` compares
them).

An endpoint that waits (an agent's long poll) goes on as a task; until it answers, the
connection reads no more. A request pipelined behind it in the same read cannot be answered in
order, so the connection closes after the waiting answer instead (no client of the head
pipelines; HTTP lets a server close a connection after any answer).
"""

from __future__ import annotations

import logging
import time
import types
from collections.abc import Callable, Collection, Coroutine, Generator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httptools
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Match, Route
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
)

log = logging.getLogger("mnp.api")

Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]
Target = tuple[str, bytes, bytes, tuple[Endpoint, dict[str, Any]]]
"""A request line served here: its path, raw path, query, endpoint and path parameters."""
Observe = Callable[[str, float], None]
"""Told each served request's path and how long its answer took (seconds)."""

CACHE_LIMIT = 512
"""Request lines remembered by :class:`FastRoutes` (the set is emptied when full: paths come
from clients)."""
URL_CACHED = 1024
"""Request lines longer than this are parsed each time, not remembered."""
BODY_LIMIT = 64 * 1024 * 1024
"""The most body a request served here may send (an agent's report, the largest the hot
routes take, may be this big; a submission is 2 MiB at most): past it the connection is
answered 413 and closed, not read on into memory."""


class FastRoutes:
    """Which requests :class:`FastProtocol` serves itself: those the app's router would give
    to one of the routes whose path pattern is in ``hot``.

    Routing is the app's own: its routes are tried in its order and the first full match
    decides, so a request a route before a hot one would take still goes to that one."""

    def __init__(self, app: Starlette, hot: Collection[str], observe: Observe | None = None,
                 body_limit: int = BODY_LIMIT):  # fmt: skip
        self.app = app
        self.observe = observe
        self.body_limit = body_limit
        self._routes = list(app.router.routes)
        hot_routes = [r for r in self._routes if isinstance(r, Route) and r.path in hot]
        self._hot = {id(r) for r in hot_routes}
        self._methods = {m.encode() for r in hot_routes for m in r.methods or ()}
        self._seen: dict[tuple[bytes, str], tuple[Endpoint, dict[str, Any]] | None] = {}
        self._targets: dict[tuple[bytes, bytes, str], Target | None] = {}

    def target(self, method: bytes, url: bytes, root_path: str) -> Target | None:
        """For a request line's ``method`` and ``url``: its path, raw path, query and
        :meth:`find`'s answer, when a hot route takes it (not with a ``%`` in its path: the
        app decodes those), else None. Remembered per request line, as :meth:`find` is."""
        key = (method, url, root_path)
        try:
            return self._targets[key]
        except KeyError:
            pass
        parsed = httptools.parse_url(url)
        raw_path = parsed.path
        found = None
        if b"%" not in raw_path:
            path = root_path + raw_path.decode("ascii")
            endpoint = self.find(method, path)
            if endpoint is not None:
                full = root_path.encode("ascii") + raw_path
                found = (path, full, parsed.query or b"", endpoint)
        if len(url) <= URL_CACHED:
            if len(self._targets) >= CACHE_LIMIT:
                self._targets.clear()
            self._targets[key] = found
        return found

    def find(self, method: bytes, path: str) -> tuple[Endpoint, dict[str, Any]] | None:
        """The endpoint and path parameters for ``method`` on ``path`` when a hot route is the
        app's choice for it, else None."""
        if method not in self._methods:
            return None
        key = (method, path)
        try:
            return self._seen[key]
        except KeyError:
            pass
        found: tuple[Endpoint, dict[str, Any]] | None = None
        scope = {"type": "http", "method": method.decode("ascii"), "path": path, "root_path": ""}
        for route in self._routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                if id(route) in self._hot:
                    found = (child["endpoint"], child["path_params"])
                break
        if len(self._seen) >= CACHE_LIMIT:
            self._seen.clear()
        self._seen[key] = found
        return found


DISCARD = object()
"""The state of a request pipelined behind a waiting one: parsed and dropped."""


@dataclass(slots=True)
class _Pending:
    """A request this protocol serves, while its body arrives."""

    endpoint: Endpoint
    keep_alive: bool
    body: list[bytes] = field(default_factory=list)
    size: int = 0


class FastProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol serving :attr:`routes`' requests itself (see the module
    docstring); :func:`fast_protocol` makes the class uvicorn's ``Config(http=…)`` takes."""

    routes: FastRoutes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fast: _Pending | object | None = None
        self._waiting = False
        """An endpoint of this connection is waiting: read nothing until it answers."""
        self._close_after = False

    # --- the parser's callbacks ------------------------------------------------------------
    def on_headers_complete(self) -> None:
        self._fast = None
        if self._waiting:  # pipelined behind a waiting answer
            self._fast = DISCARD
            self._close_after = True
            return
        pending = self._claim()
        if pending is None:
            super().on_headers_complete()
        else:
            self._fast = pending

    def on_body(self, body: bytes) -> None:
        fast = self._fast
        if fast is None:
            super().on_body(body)
        elif isinstance(fast, _Pending):
            fast.size += len(body)
            if fast.size > self.routes.body_limit:
                self._fast = DISCARD  # the rest of what was read is dropped; nothing more is
                self._too_large(fast)
                return
            fast.body.append(body)

    def on_message_complete(self) -> None:
        fast = self._fast
        if fast is None:
            super().on_message_complete()
            return
        self._fast = None
        if isinstance(fast, _Pending):
            self._serve(fast)

    def shutdown(self) -> None:
        if self._waiting:  # close once the waiting endpoint has answered
            self._close_after = True
        else:
            super().shutdown()

    # --- serving ---------------------------------------------------------------------------
    def _claim(self) -> _Pending | None:
        """The request whose headers just ended, when it is one to serve here (its scope
        filled in as uvicorn would), else None."""
        parser = self.parser
        if self.expect_100_continue or parser.should_upgrade():
            return None
        if self.cycle is not None and not self.cycle.response_complete:
            return None  # an answer is still owed before this one: uvicorn queues it
        method = parser.get_method()
        target = self.routes.target(method, self.url, self.root_path)
        if target is None:
            return None
        path, raw_path, query, (endpoint, params) = target
        version = parser.get_http_version()
        scope = self.scope
        scope["method"] = method.decode("ascii")
        if version != "1.1":
            scope["http_version"] = version
        scope["path"] = path
        scope["raw_path"] = raw_path
        scope["query_string"] = query
        extra: dict[str, Any] = scope  # type: ignore[assignment]
        extra["app"] = self.routes.app
        extra["endpoint"] = endpoint
        extra["path_params"] = dict(params)
        return _Pending(endpoint, keep_alive=version != "1.0" and parser.should_keep_alive())

    def _too_large(self, fast: _Pending) -> None:
        limit = self.routes.body_limit
        answer = JSONResponse(
            {"__type": "ClientException",
             "message": f"request body must be at most {limit} bytes"},
            status_code=413,
        )  # fmt: skip
        fast.keep_alive = False
        self._answer(answer, fast, self.scope["path"], time.perf_counter())

    def _serve(self, fast: _Pending) -> None:
        start = time.perf_counter()
        body = b"".join(fast.body)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        request = Request(self.scope, receive)  # type: ignore[arg-type]
        request._body = body  # Starlette's own cache: body() and stream() answer from it
        coro = fast.endpoint(request)
        path = self.scope["path"]
        try:
            waits_on = coro.send(None)
        except StopIteration as done:
            self._answer(done.value, fast, path, start)
            return
        except Exception:
            log.exception("request %s failed", path)
            self._answer(_server_error(), fast, path, start)
            return
        self._waiting = True
        self.flow.pause_reading()
        task = self.loop.create_task(_finish(coro, waits_on))
        task.add_done_callback(partial(self._waited, fast, path, start))

    def _waited(self, fast: _Pending, path: str, start: float, task: Any) -> None:
        self._waiting = False
        if task.cancelled():
            self.transport.close()
            return
        error = task.exception()
        if error is not None:
            log.error("request %s failed", path, exc_info=error)
            self._answer(_server_error(), fast, path, start)
        else:
            self._answer(task.result(), fast, path, start)

    def _answer(self, response: Response, fast: _Pending, path: str, start: float) -> None:
        """Write ``response`` whole, then go on as uvicorn does after an answer."""
        if self.transport.is_closing():  # the client went away meanwhile
            return
        try:
            head = self._head(response, keep_alive=fast.keep_alive and not self._close_after)
        except Exception:
            log.exception("answer to %s not sent", path)
            response = _server_error()
            head = self._head(response, keep_alive=False)
        self.transport.write(head + response.body)
        if self.routes.observe is not None:
            self.routes.observe(path, time.perf_counter() - start)
        if response.background is not None:
            self.loop.create_task(response.background())
        if self._close_after or not fast.keep_alive:
            self.server_state.total_requests += 1
            self.transport.close()
            return
        self.on_response_complete()  # resume reading, queued requests, the keep-alive timer

    def _head(self, response: Response, keep_alive: bool) -> bytes:
        lines = [STATUS_LINE[response.status_code]]
        for name, value in self.server_state.default_headers:  # uvicorn's own (date, server)
            lines.extend((name, b": ", value, b"\r\n"))
        for name, value in response.raw_headers:
            if HEADER_RE.search(name) or HEADER_VALUE_RE.search(value):
                raise ValueError(f"invalid header {name!r}")
            lines.extend((name, b": ", value, b"\r\n"))
        if not keep_alive:
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)


def _server_error() -> Response:
    """What Starlette's error middleware answers an endpoint that raised."""
    return PlainTextResponse("Internal Server Error", status_code=500)


async def _finish(coro: Coroutine[Any, Any, Response], waits_on: Any) -> Response:
    return await _resume(coro, waits_on)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Response], waits_on: Any) -> Generator[Any, Any, Response]:
    """Go on with ``coro``, begun outside any task and now waiting on ``waits_on``, inside
    the task that awaits this (``yield from`` by hand: what the task sends or throws in goes
    to ``coro``)."""
    while True:
        try:
            sent = yield waits_on
        except BaseException as e:
            try:
                waits_on = coro.throw(e)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
        else:
            try:
                waits_on = coro.send(sent)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]


def fast_protocol(routes: FastRoutes) -> type[FastProtocol]:
    """A :class:`FastProtocol` class serving ``routes`` (uvicorn makes one per connection)."""
    return type("FastProtocol", (FastProtocol,), {"routes": routes})
