"""The node's credentials endpoint: each running attempt fetches its own AWS key here, as an
ECS task fetches its role's from the ECS agent.

botocore and the aws CLI find it with no set-up through the container credentials provider:
the job's environment names the URL (``AWS_CONTAINER_CREDENTIALS_FULL_URI``, on
``127.0.0.1``, which botocore accepts over plain HTTP) and a random per-attempt token that
must come back as the ``Authorization`` header (``AWS_CONTAINER_AUTHORIZATION_TOKEN``). The
answer is ECS's shape: ``AccessKeyId``, ``SecretAccessKey``, ``Token``, ``Expiration``.

The server listens on the loopback the node's jobs have: the machine's (loopback nodes, hosts
reached by SSH, EC2 instances, containers with host networking), or on a node of its own
network namespace that namespace's (a socket made inside it). An attempt's entry goes when
the attempt ends; its key is refused by the head from then on anyway.

One tiny HTTP/1.1 GET handler on asyncio streams: an answer per connection, bounded reads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from launcher.netns import socket_in

log = logging.getLogger(__name__)

PATH = "/v1/credentials"
EXPIRES_AFTER = timedelta(hours=1)
"""The ``Expiration`` each answer gives: botocore asks again some minutes before it (the key
itself stays valid while the attempt runs)."""
MAX_REQUEST_BYTES = 16 * 1024
READ_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class _Entry:
    attempt_id: str
    access_key_id: str
    secret_access_key: str
    session_token: str


class CredentialServer:
    """The endpoint of one agent; :meth:`add` when an attempt starts, :meth:`remove` when
    it ends."""

    def __init__(self) -> None:
        self._by_token: dict[str, _Entry] = {}
        self._by_attempt: dict[str, str] = {}
        self._server: asyncio.Server | None = None
        self.port: int | None = None

    async def start(self, netns: str | None = None) -> None:
        """Listen on loopback: the machine's, or with ``netns`` that namespace's own (where a
        namespace node's jobs run)."""
        if netns is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        else:
            self._server = await asyncio.start_server(
                self._serve, sock=socket_in(netns, "127.0.0.1", 0)
            )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def add(self, attempt_id: str, credentials: dict[str, str]) -> dict[str, str]:
        """Serve the attempt's key; the variables that point the job at it (empty when the
        server is not running)."""
        if self.port is None:
            return {}
        self.remove(attempt_id)
        token = secrets.token_urlsafe(32)
        self._by_token[token] = _Entry(
            attempt_id,
            credentials["accessKeyId"],
            credentials["secretAccessKey"],
            credentials["sessionToken"],
        )
        self._by_attempt[attempt_id] = token
        return {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://127.0.0.1:{self.port}{PATH}",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": token,
        }

    def remove(self, attempt_id: str) -> None:
        token = self._by_attempt.pop(attempt_id, None)
        if token is not None:
            self._by_token.pop(token, None)

    def answer(self, method: str, path: str, authorization: str) -> tuple[int, dict[str, str]]:
        """The status and JSON body for one request (pure: the tests call it directly)."""
        if method != "GET" or path.split("?", 1)[0] != PATH:
            return 404, {"code": "NotFound", "message": f"no {method} {path[:100]} here"}
        entry = self._by_token.get(authorization)
        if entry is None or not secrets.compare_digest(
            authorization.encode(), self._by_attempt.get(entry.attempt_id, "").encode()
        ):
            return 401, {"code": "AccessDenied", "message": "unknown authorization token"}
        expires = datetime.now(UTC) + EXPIRES_AFTER
        return 200, {
            "AccessKeyId": entry.access_key_id,
            "SecretAccessKey": entry.secret_access_key,
            "Token": entry.session_token,
            "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_SECONDS)
            if len(head) > MAX_REQUEST_BYTES:
                raise ValueError("request too large")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = ([*lines[0].split(" "), "", ""])[:3]
            headers = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            status, body = self.answer(method, path, headers.get("authorization", ""))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            status, body = 400, {"code": "BadRequest", "message": "unreadable request"}
        except ConnectionError:
            return
        data = json.dumps(body).encode()
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}[status]
        try:
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
