"""The Python client of the native HTTP API (``docs/native-api.md``).

Every call goes through :meth:`Client.call`, which POSTs ``/api/v1/<operation>`` and turns
error answers into :mod:`mnp.errors` exceptions; the other methods are thin, typed wrappers.
A :class:`Client` holds one HTTP connection pool and is not meant to be shared between
threads; create one per thread (they are cheap).
"""

from __future__ import annotations

import getpass
import http.client
import ipaddress
import json
import os
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from mnp.config import HeadInfo, default_home
from mnp.errors import Conflict, FieldError, InvalidInput, MnpError, NotFound, TransientError
from mnp.spec.protocol import TOKEN_HEADER

JSON = dict[str, Any]

TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED"})
DESCRIBE_CHUNK = 100
"""describeJobs takes at most 100 ids per call (as AWS)."""


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


class Client:
    """A synchronous client of one head node.

    The head is found, in order, from ``url``, the ``MNP_URL`` environment variable, then
    ``<home>/head.json`` (``home`` defaults to :func:`mnp.config.default_home`). The token
    comes from ``token``, else ``MNP_TOKEN``, else ``head.json`` when its URL is the one used.

    Raises :class:`HeadUnavailable` when no URL is given and no head.json exists. Every method
    may raise :class:`HeadUnavailable` (cannot connect), :class:`TransientError` (the head did
    not answer in ``timeout`` seconds, or answered 503), :class:`RequestInvalid` (400),
    :class:`NotFound` (404), :class:`Conflict` (409) or :class:`MnpError` (anything else).
    """

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
        if url is None:
            if info is None:
                raise HeadUnavailable(
                    f"no head node is running for {self.home} (no {self.home / 'head.json'}); "
                    "start one with `mnp up -d`, or pass --url / set MNP_URL"
                )
            url = info.url
        if token is None:
            token = os.environ.get("MNP_TOKEN") or None
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
        self._conn: http.client.HTTPConnection | None = None
        if parts.scheme != "http":
            raise MnpError(f"only http:// head node URLs are supported, got {self.url!r}")
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=timeout,
            trust_env=not _is_loopback(self.url),
        )

    # -- plumbing ------------------------------------------------------------------------

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

    def _post(self, path: str, body: JSON) -> httpx.Response:
        """POST JSON over a kept-alive stdlib connection (a fraction of httpx's CPU per call,
        which matters when a script submits thousands of jobs); one retry on a stale one."""
        data = json.dumps(body, separators=(",", ":")).encode()
        for tried in (False, True):
            conn = self._conn
            if conn is None:
                conn = self._conn = http.client.HTTPConnection(
                    self._host, self._port, timeout=self.timeout
                )
            try:
                conn.request("POST", self._prefix + path, body=data, headers=self._headers)
                raw = conn.getresponse()
                content = raw.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._conn = None
                if tried or isinstance(exc, TimeoutError):
                    raise self._transport_error(exc) from exc
                continue
            return httpx.Response(raw.status, content=content, headers=raw.getheaders())
        raise AssertionError("unreachable")

    def _transport_error(self, exc: Exception) -> MnpError:
        if isinstance(exc, httpx.TimeoutException | TimeoutError):
            return TransientError(f"the head node at {self.url} did not answer in time ({exc})")
        hint = ""
        if self._head_pid is not None and not pid_alive(self._head_pid):
            hint = f" (head.json is stale: pid {self._head_pid} is not running; `mnp up -d`)"
        return HeadUnavailable(f"cannot reach the head node at {self.url}: {exc}{hint}")

    def clone(self) -> Client:
        """A new client of the same head with the same token and timeout (one per thread)."""
        token = self._headers.get(TOKEN_HEADER) if self._token_given else None
        return Client(url=self.url, token=token, home=self.home, timeout=self.timeout)

    def close(self) -> None:
        """Close the connections; the client cannot be used afterwards."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- job definitions and jobs ----------------------------------------------------------

    def register_job_definition(self, defn: JSON) -> JSON:
        """Register a job definition (RegisterJobDefinition shape); returns
        ``{jobDefinitionName, jobDefinitionArn, revision}``."""
        return self.call("registerJobDefinition", defn)

    def submit(self, spec: JSON) -> str:
        """Submit one job (SubmitJob shape); returns its jobId once the head has stored it.

        ``mnp.user`` (who submitted, for ``mnp squeue``/``sacct``) defaults to this process's
        user."""
        extras = spec.get("mnp") or {}
        if "user" not in extras:
            spec = {**spec, "mnp": {**extras, "user": current_user()}}
        return str(self.call("submitJob", spec)["jobId"])

    def describe_jobs(self, ids: Sequence[str]) -> list[JSON]:
        """JobDetail for each known id (``id`` or ``id:N``), in chunks of 100; unknown ids are
        left out, as AWS does."""
        out: list[JSON] = []
        for i in range(0, len(ids), DESCRIBE_CHUNK):
            answer = self.call("describeJobs", {"jobs": list(ids[i : i + DESCRIBE_CHUNK])})
            out.extend(answer.get("jobs", []))
        return out

    def describe(self, job_id: str) -> JSON:
        """JobDetail of one job; raises :class:`NotFound` when the head does not know it."""
        jobs = self.describe_jobs([job_id])
        if not jobs:
            raise NotFound(f"job {job_id} not found")
        return jobs[0]

    def list_jobs(
        self,
        queue: str | None = None,
        status: str | Iterable[str] | None = None,
        name: str | None = None,
        array_job_id: str | None = None,
        limit: int | None = None,
    ) -> list[JSON]:
        """JobSummary of matching jobs, newest first, following ``nextToken``.

        ``status`` is one state or several; None means every state (``allStatuses``).
        ``name`` is a JOB_NAME filter (case-insensitive, trailing ``*`` = prefix).
        ``array_job_id`` lists that array's children. ``limit`` stops after that many.
        Without a queue or array selector every queue is listed. Where AWS semantics would
        drop the state filter (with a name filter, or several states) the client applies it.
        """
        statuses = {status} if isinstance(status, str) else set(status or ())
        body: JSON = {}
        if queue:
            body["jobQueue"] = queue
        if array_job_id:
            body["arrayJobId"] = array_job_id
        if name:
            body["filters"] = [{"name": "JOB_NAME", "values": [name]}]
        server_filters_status = len(statuses) == 1 and not name and bool(queue or array_job_id)
        if server_filters_status:
            body["jobStatus"] = next(iter(statuses))
        else:
            body["allStatuses"] = True
        page_size = 100 if name else 1000
        out: list[JSON] = []
        token: str | None = None
        while True:
            page = dict(body, maxResults=page_size)
            if token:
                page["nextToken"] = token
            answer = self.call("listJobs", page)
            for summary in answer.get("jobSummaryList", []):
                if statuses and summary.get("status") not in statuses:
                    continue
                out.append(summary)
                if limit is not None and len(out) >= limit:
                    return out
            token = answer.get("nextToken") or None
            if token is None:
                return out

    def wait(
        self,
        job_ids: Sequence[str],
        timeout: float | None = None,
        poll_interval: float = 0.1,
        on_progress: Callable[[JSON], None] | None = None,
    ) -> dict[str, str]:
        """Block until every job is SUCCEEDED or FAILED; return ``{jobId: final status}``.

        ``on_progress`` is called with each job's JobDetail on every poll until that job is
        terminal (once more with the terminal detail), so a progress display can show array
        parents' ``arrayProperties.statusSummary``. Raises :class:`NotFound` when an id is
        unknown, and :class:`TimeoutError` naming the unfinished jobs after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = list(dict.fromkeys(job_ids))
        final: dict[str, str] = {}
        last: dict[str, str] = {}
        while pending:
            details = {d["jobId"]: d for d in self.describe_jobs(pending)}
            missing = [j for j in pending if j not in details]
            if missing:
                raise NotFound(f"job(s) not found: {', '.join(missing)}")
            for job_id in pending:
                detail = details[job_id]
                last[job_id] = str(detail.get("status"))
                if on_progress is not None:
                    on_progress(detail)
                if last[job_id] in TERMINAL_STATUSES:
                    final[job_id] = last[job_id]
            pending = [j for j in pending if j not in final]
            if not pending:
                break
            if deadline is not None and time.monotonic() >= deadline:
                states = ", ".join(f"{j} ({last[j]})" for j in pending)
                raise TimeoutError(f"timed out after {timeout:g} s waiting for {states}")
            pause = poll_interval
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
        return {j: final[j] for j in dict.fromkeys(job_ids)}

    def logs(
        self, job_id: str, attempt: int | None = None, follow: bool = False
    ) -> Generator[str, None, None]:
        """The output of one attempt (default the latest): stdout, then stderr, line by line.

        Each item is one line with its ``\\n`` (the last may lack it); joined they are the log.
        With ``follow`` the lines come as the job writes them and the iterator ends when the job
        reaches SUCCEEDED or FAILED. Raises :class:`NotFound` for an unknown job (on the first
        ``next``). Close the iterator (or exhaust it) to release the connection.
        """
        params: dict[str, str] = {}
        if attempt is not None:
            params["attempt"] = str(attempt)
        if follow:
            params["follow"] = "1"
        if TOKEN_HEADER not in self._headers:
            self._fresh_token()  # a stream cannot be retried after a 401 as calls are
        timeout = httpx.Timeout(self.timeout, read=None) if follow else self._http.timeout
        url = f"/api/v1/logs/{quote(job_id, safe=':')}"
        try:
            with self._http.stream("GET", url, params=params, timeout=timeout) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise _error_from("logs", resp)
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

    def cancel(self, job_id: str, reason: str) -> None:
        """Cancel a job that has not started (SUBMITTED/PENDING/RUNNABLE); a no-op for jobs
        already STARTING or RUNNING (as AWS). Array parents cascade to their children."""
        self.call("cancelJob", {"jobId": job_id, "reason": reason})

    def terminate(self, job_id: str, reason: str) -> None:
        """Terminate a job in any non-terminal state; running attempts are killed."""
        self.call("terminateJob", {"jobId": job_id, "reason": reason})

    # -- the cluster -----------------------------------------------------------------------

    def queues(self) -> list[JSON]:
        """Every job queue (JobQueueDetail)."""
        return list(self.call("describeJobQueues", {}).get("jobQueues", []))

    def compute_environments(self) -> list[JSON]:
        """Every compute environment (ComputeEnvironmentDetail)."""
        return list(self.call("describeComputeEnvironments", {}).get("computeEnvironments", []))

    def nodes(self, compute_environment: str | None = None) -> list[JSON]:
        """Every node the head knows (optionally of one compute environment)."""
        body = {"computeEnvironment": compute_environment} if compute_environment else {}
        return list(self.call("listNodes", body).get("nodes", []))

    def status(self) -> JSON:
        """The head node's ``getStatus`` answer (version, url, pid, job counts, …)."""
        return self.call("getStatus", {})


def _error_from(operation: str, resp: httpx.Response) -> MnpError:
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
    if status in (401, 403):
        return MnpError(f"{message} (HTTP {status}: check the token in MNP_TOKEN or head.json)")
    if status in (502, 503, 504):
        return TransientError(f"{operation}: {message} (HTTP {status})")
    return MnpError(f"{operation}: {message} (HTTP {status})")


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


def current_user() -> str:
    """The login name of this process's user (``USER``/``LOGNAME``, else the uid's name)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid
        return str(os.getuid())
