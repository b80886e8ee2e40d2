"""The client's own HTTP/1.1 connection (mnp.client.transport.KeptAlive) against a real
socket server answering canned bytes: lengths, chunks, closes, a stale connection, refusals."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from mnp.client.transport import HeadUnavailable, HttpError, KeptAlive, Transport


class Canned:
    """Accepts connections; answers each request (read up to its body) with the next reply."""

    def __init__(self, replies: list[bytes], close_after: set[int] | None = None) -> None:
        self.replies = list(replies)
        self.close_after = close_after or set()
        self.requests: list[bytes] = []
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.replies:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn, conn.makefile("rb") as f:
                while self.replies:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = f.readline()
                        if not line:
                            break
                        head += line
                    if not head:
                        break
                    length = next(
                        (
                            int(h.split(b":")[1])
                            for h in head.split(b"\r\n")
                            if h.lower().startswith(b"content-length:")
                        ),
                        0,
                    )
                    self.requests.append(head + f.read(length))
                    conn.sendall(self.replies.pop(0))
                    if len(self.requests) in self.close_after:
                        break

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def canned() -> Iterator[list[Canned]]:
    made: list[Canned] = []
    yield made
    for c in made:
        c.close()


def answer(body: bytes, *extra: bytes) -> bytes:
    head = [
        b"HTTP/1.1 200 OK",
        b"content-type: application/json",
        b"content-length: %d" % len(body),
        *extra,
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def test_answers_by_length_and_by_chunks_on_one_connection(canned: list[Canned]) -> None:
    chunked = (
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n"
        b'4\r\n{"a"\r\n3;ext=1\r\n:1}\r\n0\r\nTrailer: x\r\n\r\n'
    )
    server = Canned([answer(b'{"n":1}'), chunked, answer(b"{}")])
    canned.append(server)
    conn = KeptAlive("127.0.0.1", server.port, timeout=5)
    first = conn.post("/api/v1/x", {"Content-Type": "application/json"}, b'{"q":1}')
    assert (first.status_code, first.json(), first.closes) == (200, {"n": 1}, False)
    second = conn.post("/api/v1/y", {}, b"{}")
    assert (second.status_code, second.json(), second.headers["x-a"]) == (201, {"a": 1}, "b")
    assert conn.post("/api/v1/z", {}, b"").json() == {}
    assert server.connections == 1
    assert server.requests[0].startswith(b"POST /api/v1/x HTTP/1.1\r\nHost: 127.0.0.1:")
    assert server.requests[0].endswith(b'Content-Length: 7\r\n\r\n{"q":1}')
    conn.close()


@pytest.mark.parametrize("value", ["a\r\nX-Evil: 1", "a\nb", "a\0b"])
def test_a_header_that_would_split_the_request_is_refused(canned: list[Canned], value: str) -> None:
    server = Canned([answer(b"{}")])
    canned.append(server)
    conn = KeptAlive("127.0.0.1", server.port, timeout=5)
    with pytest.raises(ValueError, match="line break or NUL"):
        conn.post("/api/v1/x", {"X-Mnp-Token": value}, b"{}")
    assert server.requests == []
    conn.close()


@pytest.mark.parametrize(
    "reply",
    [
        b"SSH-2.0-OpenSSH\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_a_broken_answer_is_an_http_error(canned: list[Canned], reply: bytes) -> None:
    server = Canned([reply], close_after={1})
    canned.append(server)
    conn = KeptAlive("127.0.0.1", server.port, timeout=5)
    with pytest.raises(HttpError):
        conn.post("/api/v1/x", {}, b"{}")
    conn.close()


def test_the_transport_retries_once_on_a_connection_the_head_closed(canned: list[Canned]) -> None:
    # the first connection is closed by the server after one answer: the second call finds
    # it stale, and goes again on a new one
    server = Canned([answer(b'{"i":1}'), answer(b'{"i":2}')], close_after={1})
    canned.append(server)
    t = Transport(url=f"http://127.0.0.1:{server.port}", token="t")
    assert t.call("a") == {"i": 1}
    assert t.call("b") == {"i": 2}
    assert server.connections == 2
    assert (
        b"X-Mnp-Token: t" in server.requests[1] or b"x-mnp-token: t" in server.requests[1].lower()
    )
    t.close()


def test_connection_close_in_an_answer_opens_a_new_connection(canned: list[Canned]) -> None:
    server = Canned([answer(b'{"i":1}', b"Connection: close"), answer(b'{"i":2}')], close_after={1})
    canned.append(server)
    t = Transport(url=f"http://127.0.0.1:{server.port}", token="t")
    assert t.call("a") == {"i": 1}
    assert t.call("b") == {"i": 2}
    assert server.connections == 2
    t.close()


def test_nobody_listening_is_head_unavailable() -> None:
    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    t = Transport(url=f"http://127.0.0.1:{port}", token="t")
    with pytest.raises(HeadUnavailable):
        t.call("a")
    t.close()


def test_an_interim_answer_is_read_past_and_the_next_call_gets_its_own(
    canned: list[Canned],
) -> None:
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n"
    server = Canned([early + b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b'{"req":1}'),
                     answer(b'{"req":2}')])  # fmt: skip
    canned.append(server)
    conn = KeptAlive("127.0.0.1", server.port, timeout=5)
    assert conn.post("/api/v1/a", {}, b"{}").json() == {"req": 1}
    assert conn.post("/api/v1/b", {}, b"{}").json() == {"req": 2}
    conn.close()
