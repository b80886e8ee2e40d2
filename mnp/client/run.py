"""Submitting specs (:mod:`mnp.client.dsl`) and following what they became.

:func:`submit` registers one job definition per spec (named after the job; revisions
accumulate harmlessly) and submits the specs in dependency order, so every ``depends_on``
becomes the id of a job already submitted. It returns a :class:`Run`, whose :meth:`Run.wait`
streams the output of every job as it runs (each line prefixed ``name: ``, array children
``name[i]: ``, nodes of a multi-node job other than the main one ``name#i: ``) and raises
:class:`JobFailed` when any job failed.

A :class:`Run` needs only names and job ids, so it follows jobs submitted any way (``mnp
submit`` builds one for JSON and dict job-spec files too); it discovers array children and
nodes from the head.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mnp.client.dsl import Job, build_definition, build_submission
from mnp.client.jobspec import resolve_definition_paths
from mnp.client.plan import plan
from mnp.errors import MnpError, NotFound
from mnp.spec.states import TERMINAL_STATUSES

if TYPE_CHECKING:
    from mnp.client.client import Client

JSON = dict[str, Any]

TERMINAL = TERMINAL_STATUSES
STARTED = frozenset({"STARTING", "RUNNING"}) | TERMINAL
POLL_SECONDS = 0.25
DRAIN_SECONDS = 10.0
"""How long output may lag behind the end of the last job before we stop following it."""
MAX_FOLLOWERS = 32
"""Log streams open at once; more children wait for a free one (their output is kept)."""
SHOWN_CHILDREN = 5


@dataclass(frozen=True, slots=True)
class Failure:
    """Why one job of a run failed."""

    name: str
    job_id: str
    reason: str
    exit_code: int | None = None
    """The job's (a multi-node job's: its main node's) exit code, when it has one."""
    children: str = ""
    """For an array job: which children failed and why (the first few)."""

    def __str__(self) -> str:
        code = "" if self.exit_code is None else f" (exit code {self.exit_code})"
        children = f"; {self.children}" if self.children else ""
        return f"{self.name} ({self.job_id}): {self.reason}{code}{children}"


class JobFailed(MnpError):
    """At least one job of a :class:`Run` ended FAILED.

    ``failures`` says which and why (the statusReason and exit code), in submission order;
    ``statuses`` is every job's final status by name.
    """

    def __init__(self, failures: list[Failure], statuses: Mapping[str, str]) -> None:
        self.failures = failures
        self.statuses = dict(statuses)
        n = len(failures)
        what = "1 job failed" if n == 1 else f"{n} jobs failed"
        super().__init__(f"{what}: " + "; ".join(str(f) for f in failures))


def submit(
    jobs: Job | Iterable[Job],
    client: Client | None = None,
    *,
    queue: str | None = None,
    base_dir: str | Path | None = None,
) -> Run:
    """Register and submit ``jobs`` (and every spec they depend on) in dependency order.

    ``client`` defaults to ``Client()`` (the head of ``MNP_URL`` or ``~/.mnp``); ``queue``
    overrides every spec's queue; with ``base_dir``, relative paths in commands that name
    files there are made absolute (as ``mnp submit`` does with the current directory).

    Raises :class:`mnp.errors.InvalidInput` from :func:`mnp.client.plan.plan` before anything is
    submitted; an error from the head while submitting propagates with a note naming the
    jobs already submitted (they are left as they are).
    """
    ordered = plan(jobs)
    if client is None:
        from mnp.client.client import Client

        client = Client()
    ids: dict[str, str] = {}
    for job in ordered:
        defn = build_definition(job)
        if base_dir is not None:
            defn = resolve_definition_paths(defn, Path(base_dir))
        try:
            answer = client.register_job_definition(defn)
            pinned = f"{answer['jobDefinitionName']}:{answer['revision']}"
            ids[job.name] = client.submit(build_submission(job, pinned, ids, queue))
        except MnpError as exc:
            done = ", ".join(f"{n} ({i})" for n, i in ids.items()) or "none"
            exc.add_note(f"submitting {job.name} failed; already submitted: {done}")
            raise
    return Run(client, ids)


class Run:
    """Jobs submitted together, by name. Not thread-safe (one client); :meth:`wait` makes a
    client per log stream itself."""

    def __init__(self, client: Client, ids: Mapping[str, str]) -> None:
        self.client = client
        self.ids = dict(ids)
        """Job name → job id, in submission order."""

    def statuses(self) -> dict[str, str]:
        """Every job's current status by name."""
        details = self._describe()
        return {name: str(details[job_id]["status"]) for name, job_id in self.ids.items()}

    def wait(
        self,
        stream: bool = True,
        timeout: float | None = None,
        out: TextIO | None = None,
        poll_interval: float = POLL_SECONDS,
    ) -> dict[str, str]:
        """Block until every job has ended; return each one's final status by name.

        With ``stream`` every job's output (each array child's, each node's) is written to
        ``out`` (default ``sys.stdout``) line by line as it comes, prefixed with its label,
        from the head's followed log (which goes on into retried attempts).

        Raises :class:`JobFailed` when any job FAILED (after its output), :class:`TimeoutError`
        naming the unfinished jobs after ``timeout`` seconds (they keep running: see
        :meth:`cancel`), and :class:`NotFound` when the head does not know a job. Interrupting
        it leaves the jobs running too.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        streams = _Streams(self.client, self.ids, out or sys.stdout) if stream else None
        try:
            while True:
                details = self._describe()
                if streams is not None:
                    streams.discover(details)  # also once more when everything has ended
                unfinished = [
                    n for n, j in self.ids.items() if details[j]["status"] not in TERMINAL
                ]
                if not unfinished:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    states = ", ".join(
                        f"{n} ({details[self.ids[n]]['status']})" for n in unfinished
                    )
                    raise TimeoutError(f"timed out after {timeout:g} s waiting for {states}")
                time.sleep(poll_interval)
            if streams is not None:
                streams.drain(DRAIN_SECONDS)
        finally:
            if streams is not None:
                streams.stop.set()
        statuses = {n: str(details[j]["status"]) for n, j in self.ids.items()}
        failed = [n for n, s in statuses.items() if s != "SUCCEEDED"]
        if failed:
            raise JobFailed([self._failure(n, details[self.ids[n]]) for n in failed], statuses)
        return statuses

    def cancel(self, reason: str = "Cancelled through the mnp Python API") -> None:
        """End every job of the run that has not ended: those not started never start, those
        running are killed (the head's terminateJob)."""
        for job_id in self.ids.values():
            self.client.terminate(job_id, reason)

    def _describe(self) -> dict[str, JSON]:
        details = {str(d["jobId"]): d for d in self.client.describe_jobs(list(self.ids.values()))}
        missing = [f"{n} ({j})" for n, j in self.ids.items() if j not in details]
        if missing:
            raise NotFound(f"job(s) not found: {', '.join(missing)}")
        return details

    def _failure(self, name: str, detail: JSON) -> Failure:
        job_id = str(detail["jobId"])
        reason = str(detail.get("statusReason") or "no reason given")
        code = (detail.get("container") or {}).get("exitCode")
        children = ""
        if _is_array_parent(detail):
            kids = self.client.list_jobs(array_job_id=job_id, status="FAILED")
            kids.sort(key=lambda s: int((s.get("arrayProperties") or {}).get("index", 0)))
            size = detail["arrayProperties"].get("size", "?")
            shown = [_child_text(k) for k in kids[:SHOWN_CHILDREN]]
            more = ", …" if len(kids) > SHOWN_CHILDREN else ""
            children = f"{len(kids)} of {size} children failed: {', '.join(shown)}{more}"
        elif "nodeProperties" in detail:
            main = detail["nodeProperties"].get("mainNode", 0)
            try:
                code = (self.client.describe(f"{job_id}#{main}").get("container") or {}).get(
                    "exitCode"
                )
            except NotFound:  # it ended before its nodes were placed
                pass
        return Failure(name, job_id, reason, code if isinstance(code, int) else None, children)


def _child_text(summary: JSON) -> str:
    index = (summary.get("arrayProperties") or {}).get("index", "?")
    code = (summary.get("container") or {}).get("exitCode")
    why = summary.get("statusReason") or "failed"
    return f"[{index}] {why}" + ("" if code is None else f" (exit code {code})")


def _is_array_parent(detail: JSON) -> bool:
    array = detail.get("arrayProperties")
    return isinstance(array, dict) and "index" not in array


def _ran(detail: JSON) -> bool:
    """Whether a job (child, node) has had an attempt, so it has output to follow."""
    return bool(detail.get("nodeId") or detail.get("attempts") or detail.get("attempt")) or (
        detail.get("status") in ("STARTING", "RUNNING")
    )


class _Streams:
    """Follows the output of every started job, array child and node: :meth:`discover` queues
    each once; up to ``MAX_FOLLOWERS`` worker threads, each with its own client, stream them
    (a stream ends when its job has) and write whole lines to ``out`` under a lock."""

    def __init__(self, client: Client, ids: Mapping[str, str], out: TextIO) -> None:
        self.client = client
        self.names = {job_id: name for name, job_id in ids.items()}
        self.out = out
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[str, str] | None] = queue.SimpleQueue()
        self._idle = 0  # workers waiting for work (guarded by _lock)
        self._followed: set[str] = set()
        self._workers: list[threading.Thread] = []

    def discover(self, details: Mapping[str, JSON]) -> None:
        """Queue whatever of these jobs has started and is not followed yet; start a worker
        when none is idle (up to ``MAX_FOLLOWERS``)."""
        for job_id, name in self.names.items():
            for target, label in self._targets(job_id, name, details[job_id]):
                if target in self._followed:
                    continue
                self._followed.add(target)
                with self._lock:
                    spare = self._idle > 0
                    if spare:
                        self._idle -= 1  # claimed by this item
                if not spare and len(self._workers) < MAX_FOLLOWERS:
                    worker = threading.Thread(target=self._work, name="mnp follower", daemon=True)
                    worker.start()
                    self._workers.append(worker)
                self._queue.put((target, label))

    def _targets(self, job_id: str, name: str, detail: JSON) -> list[tuple[str, str]]:
        status = detail.get("status")
        if _is_array_parent(detail):
            if status == "SUBMITTED":
                return []
            kids = self.client.list_jobs(array_job_id=job_id)
            out = []
            for kid in kids:
                if _ran(kid):
                    index = (kid.get("arrayProperties") or {}).get("index")
                    out.append((f"{job_id}:{index}", f"{name}[{index}]"))
            return sorted(out)
        if "nodeProperties" in detail:
            if status not in STARTED:
                return []
            props = detail["nodeProperties"]
            main = props.get("mainNode", 0)
            wanted = [f"{job_id}#{i}" for i in range(int(props.get("numNodes", 1)))]
            wanted = [w for w in wanted if w not in self._followed]
            out = []
            for node in self.client.describe_jobs(wanted) if wanted else []:
                index = (node.get("nodeDetails") or {}).get("nodeIndex")
                if _ran(node) and index is not None:
                    out.append((f"{job_id}#{index}", name if index == main else f"{name}#{index}"))
            return out
        return [(job_id, name)] if _ran(detail) else []

    def _work(self) -> None:
        with self.client.clone() as client:
            while (item := self._queue.get()) is not None and not self.stop.is_set():
                self._follow(client, *item)
                with self._lock:
                    self._idle += 1

    def _follow(self, client: Client, target: str, label: str) -> None:
        try:
            lines = client.logs(target, follow=True)
            try:
                for line in lines:
                    if self.stop.is_set():
                        return
                    self._write(label, line)
            finally:
                lines.close()
        except MnpError as exc:  # a follower must not die silently
            print(f"mnp: cannot follow the output of {label} ({target}): {exc}", file=sys.stderr)

    def _write(self, label: str, line: str) -> None:
        text = f"{label}: {line}" if line.endswith("\n") else f"{label}: {line}\n"
        with self._lock:
            self.out.write(text)
            self.out.flush()

    def drain(self, seconds: float) -> None:
        """Let the workers finish what is queued (each stream ends when its job has); say so
        when output still lags after ``seconds``."""
        for _ in self._workers:
            self._queue.put(None)
        deadline = time.monotonic() + seconds
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        if any(w.is_alive() for w in self._workers):
            print("mnp: stopped following output that lags behind the jobs' end", file=sys.stderr)
