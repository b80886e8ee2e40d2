"""A small HTTP/1.1 JSON client on asyncio streams, for the agent's calls to the head node.

The agent makes a handful of requests per job (poll, report); a general-purpose client spent
about half of the agent's CPU on them. This one does only what the agent needs: POST a JSON
body over keep-alive connections and read a ``Content-Length`` answer.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mnp.spec import jsontext


class HttpError(Exception):
    """The request did not get an answer (connection refused or dropped, timeout, garbage)."""


@dataclass(frozen=True, slots=True)
class Reply:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return jsontext.loads(self.content)


_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class JsonHttp:
    """POSTs JSON to one base URL. Safe for concurrent use from one event loop."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http://host:port URLs are supported, got {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._head = f"Host: {self.host}:{self.port}\r\nContent-Type: application/json\r\n{extra}"
        self._idle: list[_Conn] = []

    async def post(self, path: str, body: Any, timeout: float = 5.0) -> Reply:
        data = jsontext.dumps_bytes(body)
        request = (
            f"POST {path} HTTP/1.1\r\n{self._head}Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        conn = self._idle.pop() if self._idle else None
        try:
            if conn is not None:
                try:
                    # asyncio.timeout, not wait_for: no task per request
                    async with asyncio.timeout(timeout):
                        return await self._exchange(conn, request)
                except (HttpError, OSError, asyncio.IncompleteReadError):
                    conn[1].close()  # a stale keep-alive connection: retry once on a new one
            async with asyncio.timeout(min(timeout, 5.0)):
                conn = await self._connect()
            async with asyncio.timeout(timeout):
                return await self._exchange(conn, request)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as e:
            if conn is not None:
                conn[1].close()
            raise HttpError(f"POST {path}: {type(e).__name__}: {e}") from e

    async def _connect(self) -> _Conn:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    async def _exchange(self, conn: _Conn, request: bytes) -> Reply:
        reader, writer = conn
        writer.write(request)
        await writer.drain()
        status_line = await reader.readline()
        if not status_line:
            raise HttpError("connection closed before an answer")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise HttpError(f"not an HTTP answer: {status_line[:80]!r}")
        status = int(parts[1])
        length = 0
        keep_alive = parts[0] == b"HTTP/1.1"  # 1.0 closes unless told otherwise
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            if key == b"content-length":
                length = int(value.strip())
            elif key == b"connection":
                keep_alive = value.strip().lower() != b"close"
            elif key == b"transfer-encoding":
                raise HttpError("chunked answers are not supported")
        content = await reader.readexactly(length) if length else b""
        if keep_alive:
            self._idle.append(conn)
        else:
            writer.close()
        return Reply(status, content)

    async def aclose(self) -> None:
        while self._idle:
            _, writer = self._idle.pop()
            writer.close()
