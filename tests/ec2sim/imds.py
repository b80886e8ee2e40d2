"""One instance's metadata service (IMDSv2 only) as a real HTTP server on 127.0.0.1.

``PUT /latest/api/token`` (with ``X-aws-ec2-metadata-token-ttl-seconds`` 1–21600) answers a
token; ``GET /latest/meta-data/<path>`` and ``/latest/user-data`` answer 401 without a
valid token, 404 for what the instance does not have. The spot notice is settable (a dict
served as JSON, or raw text to serve something malformed), and tokens can be revoked to
make the next call meet a 401, as an expired token does.

    with ImdsServer(MetadataDoc(...)) as imds:
        os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = imds.url
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"


@dataclass
class MetadataDoc:
    """The instance the server describes."""

    instance_id: str = "i-0123456789abcdef0"
    instance_type: str = "c5n.18xlarge"
    local_ipv4: str = "10.0.1.17"
    availability_zone: str = "us-east-1a"
    placement_group: str | None = "mnp-cluster-pg"
    user_data: bytes = b""

    def paths(self) -> dict[str, str]:
        out = {
            "instance-id": self.instance_id,
            "instance-type": self.instance_type,
            "local-ipv4": self.local_ipv4,
            "placement/availability-zone": self.availability_zone,
        }
        if self.placement_group is not None:
            out["placement/group-name"] = self.placement_group
        return out


@dataclass
class ImdsState:
    doc: MetadataDoc
    tokens: dict[str, float] = field(default_factory=dict)
    """token → when it expires (time.monotonic)."""
    spot_notice: str | None = None
    token_requests: int = 0
    unauthorized: int = 0
    """How many GETs met a 401."""
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet in tests
        pass

    def _send(self, status: int, body: str = "") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:
        state = self.server.state
        if self.path != "/latest/api/token":
            return self._send(404)
        if "X-Forwarded-For" in self.headers:  # IMDS refuses forwarded token requests
            return self._send(403)
        try:
            ttl = int(self.headers.get(TTL_HEADER, ""))
        except ValueError:
            ttl = 0
        if not 1 <= ttl <= 21600:
            return self._send(400)
        token = secrets.token_urlsafe(24)
        with state.lock:
            state.tokens[token] = time.monotonic() + ttl
            state.token_requests += 1
        self._send(200, token)

    def do_GET(self) -> None:
        state = self.server.state
        token = self.headers.get(TOKEN_HEADER)
        with state.lock:
            valid = token is not None and state.tokens.get(token, 0.0) > time.monotonic()
            if not valid:
                state.unauthorized += 1
            notice = state.spot_notice
        if not valid:
            return self._send(401)
        if self.path == "/latest/user-data":
            if not state.doc.user_data:
                return self._send(404)
            return self._send(200, state.doc.user_data.decode())
        prefix = "/latest/meta-data/"
        if not self.path.startswith(prefix):
            return self._send(404)
        key = self.path[len(prefix) :]
        if key == "spot/instance-action":
            return self._send(200, notice) if notice is not None else self._send(404)
        value = state.doc.paths().get(key)
        if value is None:
            return self._send(404)
        self._send(200, value)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: ImdsState, sock: socket.socket | None = None) -> None:
        if sock is None:
            super().__init__(("127.0.0.1", 0), _Handler)
        else:  # already bound and listening (e.g. made inside a network namespace)
            super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
            self.socket.close()
            self.socket = sock
            host, port = sock.getsockname()[:2]
            self.server_address = (host, port)
            self.server_name, self.server_port = host, port
        self.state = state


class ImdsServer:
    """The server, serving in a thread from :meth:`start` until :meth:`stop`: on a free port of
    127.0.0.1, or on ``sock``, a listening socket handed over (it is closed by :meth:`stop`,
    so such a server starts once)."""

    def __init__(self, doc: MetadataDoc | None = None, sock: socket.socket | None = None) -> None:
        self.state = ImdsState(doc or MetadataDoc())
        self._sock = sock
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the IMDS server is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ImdsServer:
        self._server = _Server(self.state, self._sock)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ImdsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_spot_notice(self, notice: dict[str, str] | str | None) -> None:
        """The notice served at ``spot/instance-action``: a dict (as JSON), raw text, or
        None (404, no notice)."""
        text = json.dumps(notice) if isinstance(notice, dict) else notice
        with self.state.lock:
            self.state.spot_notice = text

    def revoke_tokens(self) -> None:
        """Every token issued so far stops working (the next GET with one meets a 401)."""
        with self.state.lock:
            self.state.tokens.clear()
