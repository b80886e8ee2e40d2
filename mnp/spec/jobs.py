"""A job at run time and its attempts: what the head keeps per job (``to_doc`` is the JSON
stored in SQLite)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mnp.spec.definitions import Condition, JobSpec
from mnp.spec.resources import ContainerSpec, Resources
from mnp.spec.states import HistoryEntry, JobStatus

TIMEOUT_REASON = "Job attempt duration exceeded timeout"
"""statusReason of an attempt stopped by its job's timeout (AWS Batch's words)."""
EXIT_REASON = "Essential container in task exited"
"""statusReason of an attempt whose process exited by itself (AWS Batch's words)."""
HOST_LOST_PREFIX = "Host lost:"
"""statusReason of the attempts of a node the head stopped hearing from (then ``node … why``)."""
HOST_STOPPED_PREFIX = "Host stopped:"
"""statusReason of the attempts of a node its provider stopped."""
HOST_PREFIX = "Host"
"""What every node-caused reason starts with (``onStatusReason: "Host*"`` retry rules)."""
NEVER_FITS = "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT"
"""statusReason (then `` - why``) of a RUNNABLE job no compute environment can ever hold."""
MISCONFIGURATION_PREFIX = "MISCONFIGURATION"
DEPENDENCY_PREFIX = "DEPENDENCY:"
"""statusReason of a job failed (or cancelled) because of a dependency."""
ARRAY_LIMIT_REASON = "JobArrayTaskLimit"
"""statusReason of an array child held back by the array's limit of running children."""


def array_child_id(parent_id: str, index: int) -> str:
    """The id of child ``index`` of array job ``parent_id``: ``<parent>:<index>`` (AWS Batch's)."""
    return f"{parent_id}:{index}"


def node_job_id(parent_id: str, index: int) -> str:
    """The id of node ``index`` of multi-node parallel job ``parent_id``: ``<parent>#<index>``
    (AWS Batch's)."""
    return f"{parent_id}#{index}"


@dataclass(slots=True)
class Attempt:
    number: int
    node_id: str
    address: str
    compute_environment: str
    log_stream_name: str
    placed_at: int
    started_at: int | None = None
    stopped_at: int | None = None
    exit_code: int | None = None
    reason: str | None = None
    """Container-level reason (e.g. "Timeout", the terminate reason, a start error)."""
    status_reason: str | None = None
    requeued: str | None = None
    """Set when the attempt was asked to end so that the job runs again (Slurm's ``scontrol
    requeue``): the reason. Such an attempt does not count against the retry strategy."""
    output: bool | None = None
    """Whether any of its output reached the head (None: not known, as for an attempt an
    older head stored, or one that ran on across a restart): a FilterLogEvents over the log
    group opens no stream that ended with none."""

    def to_doc(self) -> dict[str, Any]:
        doc = self._doc()
        if self.requeued is not None:
            doc["requeued"] = self.requeued
        if self.output is not None:
            doc["output"] = self.output
        return doc

    def _doc(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "node_id": self.node_id,
            "address": self.address,
            "compute_environment": self.compute_environment,
            "log_stream_name": self.log_stream_name,
            "placed_at": self.placed_at,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "status_reason": self.status_reason,
        }

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> Attempt:
        return cls(**d)


@dataclass(slots=True)
class GangAttemptState:
    """What the head keeps about the current attempt of an MNP job, beyond its node jobs.

    Stored in the parent job's document as ``gang_state``; :meth:`to_doc` writes only the keys
    that are set, with the names heads have always written, and :meth:`from_doc` reads any
    document a head ever wrote (an absent key is the field's default).
    """

    port: int | None = None
    """MASTER_PORT of the attempt (unique among live MNP jobs)."""
    key: tuple[str, str] | None = None
    """The attempt's SSH key pair: (private key, public key line). Private: it opens a shell
    as the nodes' user on every node of the gang. Kept only while the attempt runs (a
    restarted head re-sends the nodes' assignments with it, in a store only the head's user
    reads); set to None once the attempt has ended on every node (:meth:`end`)."""
    failure: str | None = None
    """Why a node (or a hang) failed the attempt before the main node ended."""
    outcome: JobStatus | None = None
    """Set once the main node's end decided the attempt; node jobs settle to it."""
    ready_sent: bool = False
    """The main node was told every node started."""
    sessions: int = 0
    """MPI daemons/proxies open now on the job's nodes (session events)."""
    hang_after: int | None = None
    """Clock ms after which open sessions mean a hang (one MPI process already ended)."""
    hang_reason: str | None = None
    """The failure recorded if the hang deadline passes."""
    requeued: str | None = None
    """Why the attempt was asked to end so that the job runs again (``scontrol requeue``);
    the main node's end then makes the job RUNNABLE (:attr:`Attempt.requeued`)."""

    def end(self) -> None:
        """The attempt has ended on every node: forget its private key (nothing needs it
        now, and a key at rest is a key that can leak)."""
        self.key = None

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.port is not None:
            doc["port"] = self.port
        if self.key is not None:
            doc["key"] = list(self.key)
        if self.failure is not None:
            doc["failure"] = self.failure
        if self.outcome is not None:
            doc["outcome"] = self.outcome.value
        if self.ready_sent:
            doc["ready_sent"] = True
        if self.sessions:
            doc["sessions"] = self.sessions
        if self.hang_after is not None:
            doc["hang_after"] = self.hang_after
            doc["hang_reason"] = self.hang_reason
        if self.requeued is not None:
            doc["requeued"] = self.requeued
        return doc

    @classmethod
    def from_doc(cls, d: dict[str, Any] | None) -> GangAttemptState:
        d = d or {}
        key = d.get("key")
        return cls(
            port=int(d["port"]) if d.get("port") else None,
            key=(str(key[0]), str(key[1])) if key else None,
            failure=d.get("failure"),
            outcome=JobStatus(d["outcome"]) if d.get("outcome") else None,
            ready_sent=bool(d.get("ready_sent")),
            sessions=int(d.get("sessions", 0)),
            hang_after=int(d["hang_after"]) if d.get("hang_after") is not None else None,
            hang_reason=d.get("hang_reason"),
            requeued=d.get("requeued"),
        )


@dataclass(slots=True)
class Job:
    """A job's runtime state. Array children share their parent's ``spec``."""

    job_id: str
    spec: JobSpec
    status: JobStatus
    created_at: int
    parent_id: str | None = None
    array_index: int | None = None
    node_index: int | None = None
    """Nodes of a multi-node parallel job (``<parent>#<index>``)."""
    status_reason: str | None = None
    started_at: int | None = None
    stopped_at: int | None = None
    attempts: list[Attempt] = field(default_factory=list)
    is_cancelled: bool = False
    is_terminated: bool = False
    held: str | None = None
    """Held (Slurm's ``scontrol hold``, ``sbatch -H``): the hold's kind, ``JobHeldUser`` or
    ``JobHeldAdmin``. A held job waits PENDING until released; an array's hold holds every
    child not started."""
    history: list[HistoryEntry] = field(default_factory=list)
    status_summary: dict[str, int] | None = None
    """Array parents only: children per status."""
    summary_updated_at: int | None = None
    history_saved: int = 0
    """How many history entries the store has (they go with the job's document)."""
    gang: dict[str, str] = field(default_factory=dict)
    """MNP parents only: node index (as text) → node id held for the current attempt."""
    gang_state: GangAttemptState = field(default_factory=lambda: GangAttemptState())
    """MNP parents only: the current attempt's wiring and progress."""
    runnable_at: int | None = None
    """Since when it has been RUNNABLE, once asked (the scheduler's
    :func:`~mnp.scheduler.reservations.runnable_since`, kept so a walk over a deep queue reads
    one field per job, not its history); every transition sets it. Memory only: the history
    holds the same."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def queue(self) -> str:
        return self.spec.queue

    @property
    def submitted_by(self) -> str | None:
        """Who submitted the job (kept on the spec, so array children and the nodes of a
        multi-node job share it); None: the head's owner."""
        return self.spec.submitted_by

    @property
    def number(self) -> int | None:
        """The job's own integer id (Slurm's job id): the submitted job's number; an array
        child's is its parent's plus ``1 + index`` (each task has its own, as in Slurm); the
        nodes of a multi-node job share their job's. None: stored before jobs had numbers."""
        first = self.spec.number
        if first is None or self.array_index is None:
            return first
        return first + 1 + self.array_index

    @property
    def is_array_parent(self) -> bool:
        return self.spec.array_size is not None and self.parent_id is None

    @property
    def is_mnp_parent(self) -> bool:
        return self.spec.nodes is not None and self.parent_id is None

    @property
    def is_node(self) -> bool:
        return self.node_index is not None

    @property
    def current_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def container(self) -> ContainerSpec:
        """The container this job runs: its node's for an MNP node, else the spec's."""
        if self.node_index is not None and self.spec.nodes is not None:
            return self.spec.nodes.containers[self.node_index]
        return self.spec.container

    @property
    def resources(self) -> Resources:
        return self.container.resources

    def dependency_ids(self) -> list[str]:
        """Every job id whose status this job's start depends on: :meth:`dependencies` and,
        for ``singleton``, the earlier jobs of its name (``extras.singleton_after``)."""
        if self.is_array_parent or self.node_index is not None:
            return []
        return [dep_id for dep_id, _ in self.dependencies()] + list(
            self.spec.extras.singleton_after
        )

    def dependencies(self) -> list[tuple[str, Condition]]:
        """The jobs this job waits for and what each must have done, with array semantics.

        A child ``P:i`` inherits its parent's dependencies: a plain dependency waits for the
        whole job, ``N_TO_N`` on ``X`` waits for ``X:i``, ``SEQUENTIAL`` waits for ``P:i-1``.
        An array parent itself waits for nothing (its children do).
        """
        if self.is_array_parent or self.node_index is not None:
            return []
        out: list[tuple[str, Condition]] = []
        for dep in self.spec.depends_on:
            if self.array_index is not None:
                if dep.type == "SEQUENTIAL" and dep.job_id is None:
                    if self.array_index > 0:
                        previous = array_child_id(str(self.parent_id), self.array_index - 1)
                        out.append((previous, Condition.OK))
                    continue
                if dep.type == "N_TO_N" and dep.job_id is not None:
                    out.append((array_child_id(dep.job_id, self.array_index), Condition.OK))
                    continue
            if dep.job_id is not None:
                out.append((dep.job_id, dep.condition))
        return out

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "status_reason": self.status_reason,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "attempts": [a.to_doc() for a in self.attempts],
            "history": [[h.status.value, h.at, h.reason] for h in self.history],
        }
        if self.is_cancelled:
            doc["is_cancelled"] = True
        if self.is_terminated:
            doc["is_terminated"] = True
        if self.held is not None:
            doc["held"] = self.held
        if self.node_index is not None:
            doc["node_index"] = self.node_index
        if self.gang:
            doc["gang"] = self.gang
        if gang_state := self.gang_state.to_doc():
            doc["gang_state"] = gang_state
        if self.status_summary is not None:
            doc["status_summary"] = self.status_summary
            doc["summary_updated_at"] = self.summary_updated_at
        return doc
