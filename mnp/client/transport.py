"""The HTTP side of :class:`mnp.client.client.Client`: finding the head, its token, one POST
per operation and the log stream, and error answers as :mod:`mnp.errors` exceptions.

:class:`Transport` knows no operation by name; :class:`mnp.client.client.Client` adds them. A
transport holds one HTTP connection pool and is not meant to be shared between threads.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
from collections.abc import Generator, Mapping
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import httpx

from mnp.config import HeadInfo, default_home
from mnp.errors import (
    AccessDenied,
    Conflict,
    FieldError,
    InvalidInput,
    MnpError,
    NotFound,
    TransientError,
)
from mnp.spec.protocol import TOKEN_HEADER

JSON = dict[str, Any]
CLIENT_FILE = "client.json"
"""A user's (not the owner's) way to the head, in their home folder: ``{"url", "token"}``,
written by ``mnp users add`` run as root (and its url kept current by the head)."""


class HeadUnavailable(TransientError):
    """No head node answers: none is running for this home, or its URL cannot be reached."""


class RequestInvalid(InvalidInput):
    """The head answered 400: ``message`` is its summary, ``errors`` every bad field."""

    def __init__(self, message: str, errors: list[FieldError]) -> None:
        super().__init__(errors or message)
        self.message = message


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HttpError(Exception):
    """The head's answer could not be read as HTTP/1.1."""


class Answer:
    """One HTTP answer as :class:`KeptAlive` read it (the part of ``httpx.Response`` the
    transport uses): status, headers with lower-case names, the body."""

    __slots__ = ("closes", "content", "headers", "status_code")

    def __init__(self, status: int, headers: dict[str, str], content: bytes) -> None:
        self.status_code = status
        self.headers = headers
        self.content = content
        self.closes = headers.get("connection", "").lower() == "close"

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    @property
    def reason_phrase(self) -> str:
        try:
            return HTTPStatus(self.status_code).phrase
        except ValueError:
            return ""

    def json(self) -> Any:
        return json.loads(self.content)


MAX_HEADER_LINES = 100
_UNSAFE = re.compile(r"[\r\n\0]")
MAX_LINE_BYTES = 65536


class KeptAlive:
    """One kept-alive HTTP/1.1 connection for POSTs with a JSON body: the request written in
    one ``sendall``, the answer read through a buffered file (``Content-Length`` or chunked).

    ``http.client`` parses every answer's headers with the ``email`` package, which was two
    thirds of a submit's client-side CPU; the head's answers need none of that. Header
    values are the transport's own (a CR, LF or NUL in one, or in the path, is refused)."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._sock: socket.socket | None = None
        self._file: Any = None

    def post(self, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        if self._sock is None:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock, self._file = sock, sock.makefile("rb")
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address
        lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        if any(_UNSAFE.search(line) for line in lines):
            raise ValueError("a request header or the path holds a line break or NUL")
        head = "\r\n".join(lines).encode("latin-1")
        self._sock.sendall(head + b"\r\n\r\n" + body)
        return self._read()

    def _line(self) -> bytes:
        line = self._file.readline(MAX_LINE_BYTES + 1)
        if not line:
            raise HttpError("the connection closed before the answer")
        if len(line) > MAX_LINE_BYTES:
            raise HttpError("an answer line is too long")
        return bytes(line)

    def _read(self) -> Answer:
        """The final answer: interim ones (1xx: ``100 Continue``, ``103 Early Hints``) are
        read past, so the next request never reads this one's answer."""
        for _ in range(MAX_HEADER_LINES):
            answer = self._read_one()
            if not 100 <= answer.status_code < 200 or answer.status_code == 101:
                return answer
        raise HttpError("too many interim answers")

    def _read_one(self) -> Answer:
        status_line = self._line().split(None, 2)
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
            raise HttpError(f"not an HTTP answer: {status_line!r}")
        try:
            status = int(status_line[1])
        except ValueError:
            raise HttpError(f"not an HTTP status: {status_line[1]!r}") from None
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES):
            line = self._line()
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        else:
            raise HttpError("too many header lines")
        if status in (204, 304) or 100 <= status < 200:
            return Answer(status, headers, b"")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            return Answer(status, headers, self._chunked())
        length = headers.get("content-length")
        if length is None:  # the body runs to the connection's end
            headers["connection"] = "close"
            return Answer(status, headers, self._file.read())
        try:
            n = int(length)
        except ValueError:
            raise HttpError(f"bad Content-Length {length!r}") from None
        content = self._file.read(n)
        if len(content) != n:
            raise HttpError("the connection closed inside the answer")
        return Answer(status, headers, content)

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HttpError(f"bad chunk size {size_text!r}") from None
            if size == 0:
                while self._line() not in (b"\r\n", b"\n"):  # trailers
                    pass
                return b"".join(parts)
            chunk = self._file.read(size + 2)
            if len(chunk) != size + 2:
                raise HttpError("the connection closed inside a chunk")
            parts.append(chunk[:size])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._file = None


class Transport:
    """A connection to one head node (see :class:`mnp.client.client.Client` for how the head
    and the token are found, and which error means what)."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        home: Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.home = home if home is not None else default_home()
        info = HeadInfo.read(self.home / "head.json")
        url = url or os.environ.get("MNP_URL") or None
        user_file = _read_client_file(self.home / CLIENT_FILE) if info is None else None
        if url is None:
            if info is None and user_file is None:
                raise HeadUnavailable(
                    f"no head node is running for {self.home} (no {self.home / 'head.json'} "
                    f"nor {self.home / CLIENT_FILE}); start one with `mnp up -d`, or pass "
                    "--url / set MNP_URL"
                )
            url = info.url if info is not None else user_file[0] if user_file else ""
        if token is None:
            token = os.environ.get("MNP_TOKEN") or None
        if token is None and user_file is not None and user_file[0].rstrip("/") == url.rstrip("/"):
            token = user_file[1]
        if token is None and info is not None and info.url.rstrip("/") == url.rstrip("/"):
            token = info.token
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._head_pid = info.pid if info is not None and info.url.rstrip("/") == self.url else None
        self._token_given = token is not None
        headers = {TOKEN_HEADER: token} if token else {}
        # Proxies from the environment would only get in the way of a loopback head.
        parts = urlsplit(self.url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._prefix = parts.path.rstrip("/")
        self._headers = {"Content-Type": "application/json", **headers}
        self._conn: KeptAlive | None = None
        if parts.scheme != "http":
            raise MnpError(f"only http:// head node URLs are supported, got {self.url!r}")
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=timeout,
            trust_env=not _is_loopback(self.url),
        )

    def call(self, operation: str, body: JSON | None = None) -> JSON:
        """POST ``body`` to ``/api/v1/<operation>`` and return the answer object.

        Error answers raise the matching :mod:`mnp.errors` exception (see the class doc).
        """
        resp = self._post(f"/api/v1/{operation}", body or {})
        if resp.status_code == 401 and self._fresh_token():
            resp = self._post(f"/api/v1/{operation}", body or {})
        if resp.status_code >= 400:
            raise _error_from(operation, resp)
        try:
            answer = resp.json()
        except ValueError as exc:
            raise MnpError(f"{operation}: the head answered something that is not JSON") from exc
        if not isinstance(answer, dict):
            raise MnpError(f"{operation}: the head answered {type(answer).__name__}, not an object")
        return answer

    def _fresh_token(self) -> bool:
        """Re-read the token from head.json (the head may have started after this client was
        made, or restarted); True when it changed."""
        if self._token_given:
            return False
        info = HeadInfo.read(self.home / "head.json")
        if info is None or not info.token or info.url.rstrip("/") != self.url:
            return False
        if self._headers.get(TOKEN_HEADER) == info.token:
            return False
        self._headers[TOKEN_HEADER] = info.token
        self._http.headers[TOKEN_HEADER] = info.token
        self._head_pid = info.pid
        return True

    def _post(self, path: str, body: JSON) -> Answer:
        """POST JSON over a kept-alive connection of our own (:class:`KeptAlive`: a fraction
        of httpx's or http.client's CPU per call, which matters when a script submits
        thousands of jobs); one retry on a stale one."""
        data = json.dumps(body, separators=(",", ":")).encode()
        for tried in (False, True):
            conn = self._conn
            if conn is None:
                conn = self._conn = KeptAlive(self._host, self._port, self.timeout)
            try:
                answer = conn.post(self._prefix + path, self._headers, data)
            except (OSError, HttpError) as exc:
                conn.close()
                self._conn = None
                if tried or isinstance(exc, TimeoutError):
                    raise self._transport_error(exc) from exc
                continue
            if answer.closes:
                conn.close()
                self._conn = None
            return answer
        raise AssertionError("unreachable")

    def _transport_error(self, exc: Exception) -> MnpError:
        if isinstance(exc, httpx.TimeoutException | TimeoutError):
            return TransientError(f"the head node at {self.url} did not answer in time ({exc})")
        hint = ""
        if self._head_pid is not None and not pid_alive(self._head_pid):
            hint = f" (head.json is stale: pid {self._head_pid} is not running; `mnp up -d`)"
        return HeadUnavailable(f"cannot reach the head node at {self.url}: {exc}{hint}")

    def stream_lines(
        self, operation: str, path: str, params: Mapping[str, str], follow: bool
    ) -> Generator[str, None, None]:
        """GET ``path`` and yield its text line by line (each with its ``\\n``; the last may
        lack it). With ``follow`` the read waits without a timeout, for a stream that lasts as
        long as a job. Error answers raise as :meth:`call`'s do (``operation`` names them)."""
        if TOKEN_HEADER not in self._headers:
            self._fresh_token()  # a stream cannot be retried after a 401 as calls are
        timeout = httpx.Timeout(self.timeout, read=None) if follow else self._http.timeout
        try:
            with self._http.stream("GET", path, params=dict(params), timeout=timeout) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise _error_from(operation, resp)
                pending = ""
                for chunk in resp.iter_text():
                    pending += chunk
                    *lines, pending = pending.split("\n")
                    for line in lines:
                        yield line + "\n"
                if pending:
                    yield pending
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc

    def close(self) -> None:
        """Close the connections; the client cannot be used afterwards."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _error_from(operation: str, resp: Answer | httpx.Response) -> MnpError:
    """The exception for an error answer (``{__type, message, errors}`` per the API doc)."""
    try:
        payload = resp.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        payload = {}
    status = resp.status_code
    message = str(payload.get("message") or resp.text.strip()[:300] or resp.reason_phrase)
    if status == 400:
        errors = [
            FieldError(str(e.get("path") or ""), str(e.get("message") or ""))
            for e in payload.get("errors") or []
            if isinstance(e, dict)
        ]
        if len(errors) > 1 and message == "; ".join(str(e) for e in errors):
            message = f"invalid {operation} request"  # the errors follow, one per line
        return RequestInvalid(message, errors)
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    if status == 403 and payload.get("__type") == AccessDenied.code:
        return AccessDenied(message)
    if status in (401, 403):
        return MnpError(f"{message} (HTTP {status}: check the token in MNP_TOKEN or head.json)")
    if status in (502, 503, 504):
        return TransientError(f"{operation}: {message} (HTTP {status})")
    return MnpError(f"{operation}: {message} (HTTP {status})")


def _read_client_file(path: Path) -> tuple[str, str] | None:
    """``(url, token)`` from a user's client.json; None when absent or not that shape."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    url, token = doc.get("url"), doc.get("token")
    if isinstance(url, str) and url and isinstance(token, str):
        return url, token
    return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state letter follows the parenthesised command name, which may contain spaces.
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]
