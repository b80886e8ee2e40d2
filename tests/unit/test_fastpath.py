"""The routes served past ASGI (mnp.api.fastpath) answer as the app would, on a real uvicorn
server on loopback: same bytes as the same endpoint through Starlette, keep-alive, pipelining,
``Connection: close``, an endpoint that waits, errors, and the app's own routing order."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mnp.api.fastpath import CACHE_LIMIT, FastRoutes, fast_protocol
from mnp.head import bind

DEADLINE_S = 10.0
LIMIT = 64 * 1024
"""The served routes' body limit in these tests (the head's is 64 MiB)."""


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse(
        {"name": request.path_params.get("name"), "body": body.decode(), "method": request.method,
         "query": request.url.query, "port": request.client.port if request.client else None,
         "token": request.headers.get("x-token")},
        headers={"x-echo": "1"},
    )  # fmt: skip


async def special(request: Request) -> Response:
    return JSONResponse({"name": "special route"})


async def boom(request: Request) -> Response:
    raise RuntimeError("the endpoint broke")


async def bad_header(request: Request) -> Response:
    return Response(b"{}", headers={"x-given": (await request.body()).decode()})


@dataclass
class Server:
    url: str
    port: int
    observed: list[str] = field(default_factory=list)
    release: asyncio.Event | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def open_release(self) -> None:
        """Let the waiting endpoint answer (from the test's thread)."""
        assert self.loop is not None and self.release is not None
        self.loop.call_soon_threadsafe(self.release.set)


@pytest.fixture
def server() -> Iterator[Server]:
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    srv = Server(f"http://127.0.0.1:{port}", port)

    async def wait(request: Request) -> Response:
        assert srv.release is not None
        await asyncio.wait_for(srv.release.wait(), DEADLINE_S)
        srv.release.clear()
        return JSONResponse({"name": "waited"})

    app = Starlette(routes=[
        Route("/hot/special", special, methods=["POST"]),  # before the hot pattern: it wins
        Route("/hot/{name}", echo, methods=["POST"]),
        Route("/slow/{name}", echo, methods=["POST"]),
        Route("/wait", wait, methods=["POST"]),
        Route("/boom", boom, methods=["POST"]),
        Route("/bad-header", bad_header, methods=["POST"]),
    ])  # fmt: skip
    routes = FastRoutes(app, {"/hot/{name}", "/wait", "/boom", "/bad-header"},
                        lambda path, _s: srv.observed.append(path), body_limit=LIMIT)  # fmt: skip
    config = uvicorn.Config(app, log_level="critical", access_log=False,
                            http=fast_protocol(routes), lifespan="off")  # fmt: skip
    userver = uvicorn.Server(config)
    started = threading.Event()

    async def serve() -> None:
        srv.loop = asyncio.get_running_loop()
        srv.release = asyncio.Event()
        started.set()
        await userver.serve(sockets=[sock])

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(DEADLINE_S)
    deadline = time.monotonic() + DEADLINE_S
    while not userver.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield srv
    finally:
        userver.should_exit = True
        thread.join(DEADLINE_S)
        sock.close()
        assert not thread.is_alive(), "the server did not stop"


def observed(server: Server, expected: list[str]) -> list[str]:
    """What the server reported served, once it matches ``expected`` or the deadline passes
    (each answer is written before it is reported)."""
    deadline = time.monotonic() + DEADLINE_S
    while server.observed != expected and time.monotonic() < deadline:
        time.sleep(0.005)
    return server.observed


def raw(port: int, data: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S)
    s.sendall(data)
    return s


def read_answers(s: socket.socket, n: int) -> tuple[list[tuple[int, dict[str, str], bytes]], bytes]:
    """``n`` answers off ``s`` (status, headers, body), then what followed until EOF or the
    deadline (b"" when the server closed)."""
    buf = b""
    answers: list[tuple[int, dict[str, str], bytes]] = []
    while len(answers) < n:
        head_end = buf.find(b"\r\n\r\n")
        if head_end >= 0:
            lines = buf[:head_end].decode("latin-1").split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in lines[1:])
            length = int(headers["content-length"])
            if len(buf) >= head_end + 4 + length:
                body = buf[head_end + 4 : head_end + 4 + length]
                answers.append((int(lines[0].split()[1]), headers, body))
                buf = buf[head_end + 4 + length :]
                continue
        chunk = s.recv(65536)
        assert chunk, f"closed after {len(answers)} answers"
        buf += chunk
    return answers, buf


def post(path: str, body: bytes = b"", extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nhost: t\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
            ).encode() + body  # fmt: skip


def test_a_hot_route_answers_what_the_app_answers(server: Server) -> None:
    with httpx.Client(base_url=server.url) as c:
        hot = c.post("/hot/x?a=1", content=b"hello", headers={"x-token": "t1"})
        slow = c.post("/slow/x?a=1", content=b"hello", headers={"x-token": "t1"})
    # served past ASGI: only that path tells observe
    assert observed(server, ["/hot/x"]) == ["/hot/x"]
    assert hot.status_code == slow.status_code == 200
    assert hot.json() == slow.json() == {
        "name": "x", "body": "hello", "method": "POST", "query": "a=1",
        "port": hot.json()["port"], "token": "t1"}  # fmt: skip
    assert hot.content == slow.content
    same = {k: v for k, v in hot.headers.items() if k != "date"}
    assert same == {k: v for k, v in slow.headers.items() if k != "date"}


def test_one_connection_carries_many_answers_of_both_paths(server: Server) -> None:
    with httpx.Client(base_url=server.url) as c:
        ports = {c.post(f"/{'hot' if i % 2 else 'slow'}/n{i}", content=str(i)).json()["port"]
                 for i in range(20)}  # fmt: skip
    assert len(ports) == 1  # kept alive throughout
    hot = [f"/hot/n{i}" for i in range(1, 20, 2)]
    assert observed(server, hot) == hot


def test_pipelined_requests_are_answered_in_order(server: Server) -> None:
    s = raw(server.port, post("/hot/a", b"1") + post("/slow/b", b"2") + post("/hot/c", b"3"))
    with s:
        answers, _ = read_answers(s, 3)
    assert [json.loads(b)["name"] for _, _, b in answers] == ["a", "b", "c"]


def test_a_chunked_body_arrives_whole(server: Server) -> None:
    data = (b"POST /hot/chunked HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")  # fmt: skip
    with raw(server.port, data) as s:
        (answer,), _ = read_answers(s, 1)
    assert json.loads(answer[2])["body"] == "hello world"


@pytest.mark.parametrize("request_line", [
    post("/hot/x", b"", "connection: close\r\n"),
    b"POST /hot/x HTTP/1.0\r\ncontent-length: 0\r\n\r\n",
])  # fmt: skip
def test_a_connection_asked_to_close_is_closed_after_its_answer(
    server: Server, request_line: bytes
) -> None:
    with raw(server.port, request_line) as s:
        (answer,), rest = read_answers(s, 1)
        assert answer[0] == 200 and answer[1]["connection"] == "close"
        assert rest == b"" and s.recv(1) == b""  # EOF


def test_an_endpoint_that_waits_answers_later_and_the_connection_goes_on(
    server: Server,
) -> None:
    with raw(server.port, post("/wait")) as s:
        s.settimeout(0.2)
        with pytest.raises(TimeoutError):
            s.recv(1)  # no answer before the release
        s.settimeout(DEADLINE_S)
        server.open_release()
        (answer,), _ = read_answers(s, 1)
        assert json.loads(answer[2]) == {"name": "waited"}
        s.sendall(post("/hot/after"))
        (again,), _ = read_answers(s, 1)
    assert json.loads(again[2])["name"] == "after"
    assert observed(server, ["/wait", "/hot/after"]) == ["/wait", "/hot/after"]


def test_a_request_pipelined_behind_a_waiting_one_closes_the_connection(server: Server) -> None:
    with raw(server.port, post("/wait") + post("/hot/behind")) as s:
        server.open_release()
        (answer,), rest = read_answers(s, 1)
        assert json.loads(answer[2]) == {"name": "waited"}
        assert answer[1]["connection"] == "close"
        assert rest == b"" and s.recv(1) == b""
    assert "/hot/behind" not in server.observed


def test_an_endpoint_that_raises_gets_a_500_and_the_connection_survives(server: Server) -> None:
    with httpx.Client(base_url=server.url) as c:
        broke = c.post("/boom")
        after = c.post("/hot/next")
    assert broke.status_code == 500 and broke.text == "Internal Server Error"
    assert after.status_code == 200 and after.json()["name"] == "next"


def test_a_header_that_would_split_the_answer_is_never_sent(server: Server) -> None:
    with raw(server.port, post("/bad-header", b"v\r\nx-evil: 1")) as s:
        (answer,), _ = read_answers(s, 1)
    assert answer[0] == 500 and "x-evil" not in answer[1] and "x-given" not in answer[1]


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_past_the_limit_is_refused_and_not_read_on(server: Server, chunked: bool) -> None:
    big = b"x" * (LIMIT + 1)
    if chunked:
        data = (b"POST /hot/big HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
                + b"%x\r\n" % len(big) + big + b"\r\n0\r\n\r\n")  # fmt: skip
    else:
        data = post("/hot/big", big)
    with raw(server.port, data) as s:
        (answer,), rest = read_answers(s, 1)
        assert answer[0] == 413 and answer[1]["connection"] == "close"
        assert json.loads(answer[2])["__type"] == "ClientException"
        assert rest == b"" and s.recv(1) == b""
    with httpx.Client(base_url=server.url) as c:  # a body at the limit is served
        assert c.post("/hot/ok", content=b"y" * LIMIT).json()["body"] == "y" * LIMIT


def test_the_apps_own_routing_decides(server: Server) -> None:
    with httpx.Client(base_url=server.url) as c:
        earlier = c.post("/hot/special")  # an earlier route takes it: served through ASGI
        quoted = c.post("/hot/a%20b")  # percent-encoded: uvicorn decodes it, ASGI serves
        wrong_method = c.get("/hot/x")
    assert earlier.json() == {"name": "special route"}
    assert quoted.json()["name"] == "a b"
    assert wrong_method.status_code == 405
    assert server.observed == []


def test_routes_remember_a_bounded_number_of_request_lines() -> None:
    app = Starlette(routes=[Route("/hot/{name}", echo, methods=["POST"])])
    routes = FastRoutes(app, {"/hot/{name}"})
    for i in range(3000):
        found = routes.find(b"POST", f"/hot/{i}")
        assert found is not None and found[1] == {"name": str(i)}
    assert routes.find(b"GET", "/hot/1") is None
    assert routes.find(b"POST", "/cold") is None
    assert len(routes._seen) <= CACHE_LIMIT
