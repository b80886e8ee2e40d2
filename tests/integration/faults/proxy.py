"""A small HTTP/1.1 proxy on asyncio, in a thread of its own, that misbehaves on purpose.

Between the node agents and the head it drops, duplicates and delays requests, per request
and seeded; in front of the head's client API it can SIGKILL the head the moment the head
has answered a SubmitJob (so the job is committed) and before the answer reaches the client.
Only what mnp's peers send is understood: requests and answers framed by ``Content-Length``
(no chunked bodies), which is what the agent, the client and the head use.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from mnp.spec.protocol import NODE_SECRET_HEADER, REGISTER_PATH

FORWARD = "forward"
DROP_REQUEST = "drop_request"
DROP_REPLY = "drop_reply"
DUPLICATE = "duplicate"
DELAY = "delay"
MESSAGE_FAULTS = (DROP_REQUEST, DROP_REPLY, DUPLICATE, DELAY)


@dataclass(frozen=True, slots=True)
class Rates:
    """Chance per request of each message fault (the rest is forwarded untouched)."""

    drop_request: float = 0.0
    drop_reply: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    delay_seconds: tuple[float, float] = (0.1, 0.4)
    spare_joins: bool = False
    """Never fault a node's join (a register without the node's secret; see the harness)."""

    def choose(self, rng: random.Random, request: Message) -> str:
        if self.spare_joins and is_join(request):
            return FORWARD
        x = rng.random()
        for kind, p in (
            (DROP_REQUEST, self.drop_request),
            (DROP_REPLY, self.drop_reply),
            (DUPLICATE, self.duplicate),
            (DELAY, self.delay),
        ):
            if x < p:
                return kind
            x -= p
        return FORWARD


class Message:
    """One HTTP message as read off a stream: its first line, its head and its body."""

    def __init__(self, first: bytes, head: bytes, body: bytes) -> None:
        self.first, self.head, self.body = first, head, body

    @property
    def raw(self) -> bytes:
        return self.head + self.body

    @property
    def path(self) -> bytes:
        parts = self.first.split()
        return parts[1] if len(parts) > 1 else b""

    @property
    def status(self) -> int:
        parts = self.first.split()
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


async def read_message(reader: asyncio.StreamReader) -> Message | None:
    """The next message, or None at a clean end of stream."""
    first = await reader.readline()
    if not first:
        return None
    head, length = first, 0
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("stream ended inside a message head")
        head += line
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return Message(first, head, body)


def is_join(request: Message) -> bool:
    """A register call made before the node has its secret."""
    return request.path == REGISTER_PATH.encode() and (
        NODE_SECRET_HEADER.lower().encode() + b":" not in request.head.lower()
    )


OnReply = Callable[[Message, Message], bool]
"""Called with (request, reply) before a reply is forwarded; True: drop the connection instead."""


class FaultProxy:
    """Listens on 127.0.0.1 (``url``) and forwards to ``upstream_port`` on its own loop thread.

    Each request goes upstream on a fresh connection; what happens to it is
    ``rates.choose(rng, path)``. ``counts`` tallies what was done (thread-safe to read once
    :meth:`close` returned; approximate while running). ``on_reply`` may swallow a reply.
    """

    def __init__(
        self,
        upstream_port: int,
        seed: int,
        rates: Rates | None = None,
        on_reply: OnReply | None = None,
    ) -> None:
        self.upstream_port = upstream_port
        self.rates = rates or Rates()
        self.on_reply = on_reply
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.enabled = threading.Event()
        """Faults are injected only while set (so a run can start and end cleanly)."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        started: Future[asyncio.Server] = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        )
        self._server = started.result(10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (request := await read_message(reader)) is not None:
                if not await self._one(request, writer):
                    break
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def _one(self, request: Message, writer: asyncio.StreamWriter) -> bool:
        """Handle one request; False when the client's connection is to be dropped."""
        kind = self.rates.choose(self.rng, request) if self.enabled.is_set() else FORWARD
        self.counts[kind] += 1
        if kind == DROP_REQUEST:
            return False
        if kind == DELAY:
            await asyncio.sleep(self.rng.uniform(*self.rates.delay_seconds))
        if kind == DUPLICATE:  # the copy's answer goes nowhere, as a network duplicate's would
            asyncio.get_running_loop().create_task(self._upstream(request))
        reply = await self._upstream(request)
        if reply is None or kind == DROP_REPLY:
            return False
        if self.on_reply is not None and self.on_reply(request, reply):
            self.counts["swallowed"] += 1
            return False
        writer.write(reply.raw)
        await writer.drain()
        return True

    async def _upstream(self, request: Message) -> Message | None:
        """The head's answer to ``request`` (None when the head cannot be reached)."""
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            return None
        try:
            writer.write(request.raw)
            await writer.drain()
            return await read_message(reader)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            return None
        finally:
            writer.close()
