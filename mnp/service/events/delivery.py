"""Sending one event to one destination, and when to try again.

A webhook gets an HTTP POST of the event (``application/json``) with
``X-Mnp-Signature: sha256=<hex>``, the HMAC-SHA256 of the exact body under the destination's
secret (:func:`signature`; the receiver recomputes it and compares in constant time), plus
``X-Mnp-Event-Id`` (the event's id, the same on every retry: receivers drop duplicates by
it). Any 2xx answer is delivered; anything else (a refused connection, a timeout, a 5xx,
a 4xx) is tried again after :func:`backoff` until :data:`MAX_ATTEMPTS`. The POST is
asyncio's own stream over TCP (TLS for ``https``), so a slow receiver never holds the
head's loop, only its own delivery.

A command runs on the head, as the head's account, through ``/bin/sh -c``, with the event
on stdin and ``MNP_EVENT_ID`` in its environment; exit status 0 is delivered.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import ssl
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Mnp-Signature"
EVENT_ID_HEADER = "X-Mnp-Event-Id"
MAX_ATTEMPTS = 8
BASE_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 300.0
TIMEOUT_SECONDS = 10.0
"""How long one try may take (connect, send, answer; a command's run)."""


class DeliveryFailed(Exception):
    """One try did not deliver (the message says why)."""


def signature(secret: str, body: bytes) -> str:
    """The ``X-Mnp-Signature`` value of ``body`` under ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """Whether ``header`` is the signature of ``body`` (constant time)."""
    return hmac.compare_digest(signature(secret, body), header)


def backoff(
    attempts: int, base: float = BASE_DELAY_SECONDS, cap: float = MAX_DELAY_SECONDS
) -> float:
    """Seconds to wait after try number ``attempts`` (1, 2, …) failed: ``base`` doubling
    each time, at most ``cap``."""
    return float(min(cap, base * 2 ** max(0, attempts - 1)))


def gives_up(attempts: int, max_attempts: int = MAX_ATTEMPTS) -> bool:
    """After ``attempts`` failed tries, whether the delivery becomes a dead letter."""
    return attempts >= max_attempts


def check_url(url: str) -> str | None:
    """Why ``url`` cannot be a webhook (None: it can)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    if not parts.hostname:
        return "must name a host"
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "has a bad port"
    return None


async def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST ``body`` to ``url``; returns the answer's status code. Raises DeliveryFailed
    when there is no answer (in ``timeout`` seconds)."""
    try:
        return await asyncio.wait_for(_post(url, body, headers), timeout)
    except TimeoutError as e:
        raise DeliveryFailed(f"no answer from {url} in {timeout:g} s") from e
    except (OSError, ValueError, asyncio.IncompleteReadError) as e:
        raise DeliveryFailed(f"{type(e).__name__}: {e}") from e


async def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    context = ssl.create_default_context() if secure else None
    reader, writer = await asyncio.open_connection(host, port, ssl=context)
    try:
        netloc = host if parts.port is None else f"{host}:{port}"
        lines = [f"POST {target} HTTP/1.1", f"Host: {netloc}", "Connection: close",
                 "Content-Type: application/json", f"Content-Length: {len(body)}",
                 "User-Agent: mnp-events"]  # fmt: skip
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        status_line = await reader.readline()
        fields = status_line.decode("latin-1").split()
        if len(fields) < 2 or not fields[1].isdigit():
            raise DeliveryFailed(f"not an HTTP answer: {status_line[:80]!r}")
        return int(fields[1])
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


async def send_webhook(url: str, secret: str, event_id: str, body: bytes, timeout: float) -> None:
    """Deliver to a webhook; raises DeliveryFailed unless it answered 2xx."""
    headers = {EVENT_ID_HEADER: event_id}
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, body)
    status = await post(url, body, headers, timeout)
    if not 200 <= status < 300:
        raise DeliveryFailed(f"{url} answered HTTP {status}")


async def run_command(command: str, event_id: str, body: bytes, timeout: float) -> None:
    """Run ``command`` with the event on stdin; raises DeliveryFailed unless it exits 0."""
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", command,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "MNP_EVENT_ID": event_id},
        start_new_session=True,
    )  # fmt: skip
    try:
        _, err = await asyncio.wait_for(proc.communicate(body), timeout)
    except TimeoutError as e:
        proc.kill()
        await proc.wait()
        raise DeliveryFailed(f"the command ran longer than {timeout:g} s") from e
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip()[-200:]
        raise DeliveryFailed(f"the command exited {proc.returncode}: {tail}")
