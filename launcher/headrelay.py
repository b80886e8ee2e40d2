"""The head node as a job on a node of its own network namespace reaches it: a TCP relay.

Such a node's jobs live in its namespace, where the machine's loopback (and the head on it)
does not exist. The agent, which stays in the machine's namespace, listens on the node's own
loopback (a socket made inside the namespace: :func:`launcher.netns.socket_in`) and relays
each connection, bytes unchanged, to the head's address as the agent reaches it now; the
job's ``MNP_URL`` and AWS endpoints name the relay. A signed request stays valid: what the
client signed (its ``Host`` header too) arrives as it was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

from launcher.netns import socket_in

log = logging.getLogger(__name__)
CHUNK = 64 * 1024
CONNECT_SECONDS = 10.0


class HeadRelay:
    """Listens on ``127.0.0.1:<port>`` inside namespace ``netns``; ``head_url`` gives the
    head's URL at each connection (it may move)."""

    def __init__(self, netns: str, head_url: Callable[[], str]) -> None:
        self._netns = netns
        self._head_url = head_url
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}" if self.port is not None else ""

    async def start(self) -> None:
        sock = socket_in(self._netns, "127.0.0.1", 0)
        self._server = await asyncio.start_server(self._serve, sock=sock)
        self.port = int(sock.getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            parts = urlsplit(self._head_url())
            host = parts.hostname or "127.0.0.1"
            port = parts.port or (443 if parts.scheme == "https" else 80)
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), CONNECT_SECONDS
                )
            except (OSError, TimeoutError) as exc:
                log.info("relay to the head %s:%s: %s", host, port, exc)
                return
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then half-close the other side."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        with contextlib.suppress(Exception):
            writer.close()
