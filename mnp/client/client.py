"""The Python client of the native HTTP API (``docs/native-api.md``).

Every operation goes through :meth:`Transport.call <mnp.client.transport.Transport.call>`,
which POSTs ``/api/v1/<operation>`` and turns error answers into :mod:`mnp.errors` exceptions;
the methods here are thin, typed wrappers. A :class:`Client` holds one HTTP connection pool
and is not meant to be shared between threads; create one per thread (they are cheap).
"""

from __future__ import annotations

import functools
import getpass
import os
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any
from urllib.parse import quote

from mnp.client.transport import HeadUnavailable, RequestInvalid, Transport
from mnp.errors import NotFound, TransientError
from mnp.spec.protocol import TOKEN_HEADER
from mnp.spec.states import TERMINAL_STATUSES

__all__ = ["DESCRIBE_CHUNK", "TERMINAL_STATUSES", "Client", "HeadUnavailable", "RequestInvalid"]

JSON = dict[str, Any]

DESCRIBE_CHUNK = 100
"""describeJobs takes at most 100 ids per call (as AWS)."""
SUBMIT_ATTEMPTS = 3
"""Tries of one submission that timed out or met a busy head (the token makes them safe)."""
SUBMIT_RETRY_PAUSE = 0.2
"""Seconds before the second try, twice that before the third."""


class Client(Transport):
    """A synchronous client of one head node.

    The head is found, in order, from ``url``, the ``MNP_URL`` environment variable, then
    ``<home>/head.json`` (the owner's; ``home`` defaults to :func:`mnp.config.default_home`),
    then ``<home>/client.json`` (a user's, written by ``mnp users add``). The token comes from
    ``token``, else ``MNP_TOKEN``, else the file the URL came from when its URL is the one used.

    Raises :class:`HeadUnavailable` when no URL is given and no head.json exists. Every method
    may raise :class:`HeadUnavailable` (cannot connect), :class:`TransientError` (the head did
    not answer in ``timeout`` seconds, or answered 503), :class:`RequestInvalid` (400),
    :class:`NotFound` (404), :class:`AccessDenied` (403: the caller may not), :class:`Conflict`
    (409) or :class:`MnpError` (anything else).
    :class:`HeadUnavailable` and :class:`RequestInvalid` (of :mod:`mnp.client.transport`) are
    importable from here too.
    """

    def clone(self) -> Client:
        """A new client of the same head with the same token and timeout (one per thread)."""
        token = self._headers.get(TOKEN_HEADER) if self._token_given else None
        return Client(url=self.url, token=token, home=self.home, timeout=self.timeout)

    # -- job definitions and jobs ----------------------------------------------------------

    def register_job_definition(self, defn: JSON) -> JSON:
        """Register a job definition (RegisterJobDefinition shape); returns
        ``{jobDefinitionName, jobDefinitionArn, revision}``."""
        return self.call("registerJobDefinition", defn)

    def submit(self, spec: JSON, idempotency_token: str | None = None) -> str:
        """Submit one job (SubmitJob shape); returns its jobId once the head has stored it.

        ``mnp.user`` (who submitted, for ``mnp squeue``/``sacct``) defaults to this process's
        user. Submit-once: the request carries ``mnp.idempotencyToken`` (``idempotency_token``,
        else the one in ``spec``, else a fresh one for this call), and when the head does not
        answer in time or answers 503 the same request is sent again (up to
        :data:`SUBMIT_ATTEMPTS` in all): the head answers a retry with the job the first try
        made, so no retry makes a second job. Reusing a token for a different request raises
        :class:`Conflict`; a token is remembered for 24 h (docs/native-api.md)."""
        extras = dict(spec.get("mnp") or {})
        extras.setdefault("user", current_user())
        extras["idempotencyToken"] = (
            idempotency_token or extras.get("idempotencyToken") or new_idempotency_token()
        )
        body = {**spec, "mnp": extras}
        for attempt in range(1, SUBMIT_ATTEMPTS + 1):
            try:
                return str(self.call("submitJob", body)["jobId"])
            except HeadUnavailable:
                raise  # nothing reached a head: failing fast beats waiting for one
            except TransientError:
                if attempt == SUBMIT_ATTEMPTS:
                    raise
                time.sleep(SUBMIT_RETRY_PAUSE * attempt)  # a busy head (503) gets a breath
        raise AssertionError("unreachable")

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
        path = f"/api/v1/logs/{quote(job_id, safe=':')}"
        yield from self.stream_lines("logs", path, params, follow)

    def cancel(self, job_id: str, reason: str) -> None:
        """Cancel a job that has not started (SUBMITTED/PENDING/RUNNABLE); a no-op for jobs
        already STARTING or RUNNING (as AWS). Array parents cascade to their children."""
        self.call("cancelJob", {"jobId": job_id, "reason": reason})

    def terminate(self, job_id: str, reason: str) -> None:
        """Terminate a job in any non-terminal state; running attempts are killed."""
        self.call("terminateJob", {"jobId": job_id, "reason": reason})

    def hold(self, job_id: str, reason: str = "scontrol hold") -> None:
        """Hold a job that has not started (an array: its children not started): it waits
        PENDING until :meth:`release`."""
        self.call("holdJob", {"jobId": job_id, "reason": reason})

    def release(self, job_id: str, reason: str = "scontrol release") -> None:
        """Release a held job."""
        self.call("releaseJob", {"jobId": job_id, "reason": reason})

    def requeue(self, job_id: str, reason: str) -> None:
        """Stop a running job and put it back in its queue (Slurm's ``scontrol requeue``): it
        runs again with the same ids, the requeued attempt not counted against its retries."""
        self.call("requeueJob", {"jobId": job_id, "reason": reason})

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

    # -- users -----------------------------------------------------------------------------

    def create_user(self, name: str, admin: bool = False) -> JSON:
        """A new user (admins only); the answer holds its token and AWS keys, shown once."""
        return self.call("createUser", {"name": name, "role": "admin" if admin else "user"})

    def users(self) -> list[JSON]:
        """Every identity of the head (the owner first), without secrets."""
        return list(self.call("listUsers").get("users", []))

    def delete_user(self, name: str) -> None:
        """Remove a user (admins only): its token and keys stop working at once."""
        self.call("deleteUser", {"name": name})

    def whoami(self) -> JSON:
        """``{name, role, owner}`` of the identity this client's token is."""
        return self.call("whoAmI")

    def status(self) -> JSON:
        """The head node's ``getStatus`` answer (version, url, pid, job counts, …)."""
        return self.call("getStatus", {})


def new_idempotency_token() -> str:
    """A fresh token for one submission (32 hex digits; the head takes 1-64 printable ASCII)."""
    return uuid.uuid4().hex


def current_user() -> str:
    """The login name of this process's user (``USER``/``LOGNAME``, else the uid's name)."""
    return _login(os.environ.get("LOGNAME"), os.environ.get("USER"), os.getuid())


@functools.lru_cache(maxsize=8)
def _login(logname: str | None, user: str | None, uid: int) -> str:
    """getpass's answer, found once per environment and uid (it may read the passwd file)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid
        return str(uid)
