"""What the agent on an EC2 instance learns from the instance metadata service (IMDSv2).

The token flow: ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds``
answers a session token; every ``GET /latest/meta-data/…`` carries it in
``X-aws-ec2-metadata-token``. A 401 means the token expired or was never valid: a new one
is taken and the call repeated once. The base URL is boto's
``$AWS_EC2_METADATA_SERVICE_ENDPOINT`` (default ``http://169.254.169.254``).

Standard library only (:mod:`urllib`), synchronous: the agent's own client
(:mod:`launcher.http`) POSTs JSON on asyncio streams and nothing else; these calls are few
(identity once, a spot notice poll every few seconds), so the agent makes them in a thread.
Proxies from the environment are never used: the service is link-local.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from mnp.errors import MnpError

ENDPOINT_ENV = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
DEFAULT_ENDPOINT = "http://169.254.169.254"
TOKEN_TTL_SECONDS = 21600
"""The longest session a token may have (six hours)."""
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
SPOT_ACTIONS = ("terminate", "stop", "hibernate")


class ImdsError(MnpError):
    """The metadata service did not answer (``transient``), or answered something that is not
    what EC2 documents (not transient)."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True, slots=True)
class Identity:
    instance_id: str
    instance_type: str
    private_ipv4: str
    availability_zone: str
    placement_group: str | None
    """None when the instance is in no placement group (the path answers 404)."""


class SpotNotice(NamedTuple):
    """An interruption notice: ``action`` (terminate, stop, hibernate) at ``time`` (UTC,
    ISO 8601 as EC2 writes it, e.g. ``2017-09-18T08:22:00Z``), about two minutes ahead."""

    action: str
    time: str


class Imds:
    """An IMDSv2 client. Safe to call from several threads (the token has a lock).

    Every call gives up after ``timeout`` seconds per request (a token request and at most
    one retry after a 401 make one call at most three requests)."""

    def __init__(
        self,
        endpoint: str | None = None,
        timeout: float = 1.0,
        token_ttl: int = TOKEN_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        base = endpoint or environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT
        self.endpoint = base.rstrip("/")
        self.timeout = timeout
        self.token_ttl = token_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_until = 0.0
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _request(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        """(status, body) of one request; :class:`ImdsError` (transient) when none came."""
        url = f"{self.endpoint}{path}"
        req = urllib.request.Request(url, method=method, headers=headers)
        try:
            with self._opener.open(req, timeout=self.timeout) as reply:
                return int(reply.status), bytes(reply.read())
        except urllib.error.HTTPError as e:
            with e:
                return int(e.code), bytes(e.read())
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise ImdsError(
                f"the instance metadata service at {self.endpoint} did not answer "
                f"{method} {path} within {self.timeout:g}s: {reason}",
                transient=True,
            ) from e

    def token(self, renew: bool = False) -> str:
        """The session token (a new one when ``renew`` or the current one is near its end)."""
        with self._lock:
            if renew or self._token is None or self._clock() >= self._token_until:
                status, body = self._request(
                    "PUT", "/latest/api/token", {TTL_HEADER: str(self.token_ttl)}
                )
                if status != 200 or not body.strip():
                    raise ImdsError(
                        f"PUT /latest/api/token answered {status}: {body[:200]!r}",
                        transient=status >= 500,
                    )
                self._token = body.decode("ascii", "replace").strip()
                # renew a minute early (or halfway for a short TTL): never send a dying token
                self._token_until = self._clock() + max(self.token_ttl - 60, self.token_ttl / 2)
            return self._token

    def get(self, path: str) -> str | None:
        """The text at ``/latest/meta-data/<path>``; None when it answers 404."""
        full = f"/latest/meta-data/{path}"
        status, body = self._request("GET", full, {TOKEN_HEADER: self.token()})
        if status == 401:  # expired or revoked: one new token, one more try
            status, body = self._request("GET", full, {TOKEN_HEADER: self.token(renew=True)})
        if status == 404:
            return None
        if status != 200:
            raise ImdsError(f"GET {full} answered {status}: {body[:200]!r}", status >= 500)
        return body.decode("utf-8", "replace").strip()

    def _required(self, path: str) -> str:
        value = self.get(path)
        if not value:
            raise ImdsError(f"GET /latest/meta-data/{path}: no value", transient=False)
        return value

    def identity(self) -> Identity:
        """This instance's id, type, private IPv4, AZ and placement group."""
        return Identity(
            instance_id=self._required("instance-id"),
            instance_type=self._required("instance-type"),
            private_ipv4=self._required("local-ipv4"),
            availability_zone=self._required("placement/availability-zone"),
            placement_group=self.get("placement/group-name") or None,
        )

    def spot_notice(self) -> SpotNotice | None:
        """The Spot interruption notice, None while there is none (404). :class:`ImdsError`
        (not transient) when the answer is not ``{"action": …, "time": …}``."""
        text = self.get("spot/instance-action")
        if text is None:
            return None
        return parse_notice(text)


def parse_notice(text: str) -> SpotNotice:
    """``spot/instance-action``'s JSON → :class:`SpotNotice` (:class:`ImdsError` if it is
    not one)."""
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        action, at = doc.get("action"), doc.get("time")
        if action in SPOT_ACTIONS and isinstance(action, str) and isinstance(at, str):
            try:
                datetime.fromisoformat(at)
            except ValueError:
                pass
            else:
                return SpotNotice(action, at)
    raise ImdsError(
        'spot/instance-action: expected {"action": terminate|stop|hibernate, '
        f'"time": ISO 8601}}, got {text[:200]!r}',
        transient=False,
    )
