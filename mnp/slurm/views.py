"""mnp jobs seen with Slurm's eyes: job states, pending reasons, job ids, exit codes, rows.

Pure functions over JobSummary dicts (``docs/native-api.md``, listJobs), no I/O. The CLI
(:mod:`mnp.cli.squeue`) fetches summaries and renders :class:`JobRow` s with
:mod:`mnp.slurm.columns`.

State mapping (mnp status → Slurm state):

==========================================  ===================
SUBMITTED, PENDING, RUNNABLE                PD  PENDING
STARTING                                    CF  CONFIGURING
RUNNING                                     R   RUNNING
RUNNING, terminate requested                CG  COMPLETING
SUCCEEDED                                   CD  COMPLETED
FAILED, attempt timed out                   TO  TIMEOUT
FAILED, cancelled or terminated             CA  CANCELLED
FAILED, a dependency can never be met       CA  CANCELLED (Slurm's kill_invalid_depend)
FAILED, its node was lost or stopped        NF  NODE_FAIL
FAILED, anything else                       F   FAILED
==========================================  ===================

"Cancelled" is ``isCancelled``/``isTerminated`` when the summary carries them, else a
``statusReason`` mentioning cancel/terminate (what ``mnp cancel``, ``mnp terminate``,
``mnp run`` and ``mnp scancel`` write); AWS clients' own reasons may be missed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from mnp.slurm.hostlist import compress
from mnp.spec.jobs import (
    ARRAY_LIMIT_REASON,
    DEPENDENCY_PREFIX,
    HOST_LOST_PREFIX,
    HOST_STOPPED_PREFIX,
    MISCONFIGURATION_PREFIX,
    TIMEOUT_REASON,
)

JSON = dict[str, Any]

_CANCELLED = re.compile(r"cancel|terminat", re.IGNORECASE)
_NODE_FAIL = (HOST_LOST_PREFIX, HOST_STOPPED_PREFIX)


class SlurmState(Enum):
    """A Slurm job state: ``value`` the long name (sacct), ``short`` the code (squeue %t)."""

    PENDING = "PD"
    CONFIGURING = "CF"
    RUNNING = "R"
    COMPLETING = "CG"
    COMPLETED = "CD"
    FAILED = "F"
    TIMEOUT = "TO"
    CANCELLED = "CA"
    NODE_FAIL = "NF"

    @property
    def short(self) -> str:
        return self.value

    @property
    def ended(self) -> bool:
        return self in ENDED


ENDED = frozenset(
    {SlurmState.COMPLETED, SlurmState.FAILED, SlurmState.TIMEOUT, SlurmState.CANCELLED,
     SlurmState.NODE_FAIL}
)  # fmt: skip
ACTIVE = frozenset(SlurmState) - ENDED
"""What squeue shows unless ``-t`` says otherwise."""
MNP_STATUSES: dict[SlurmState, tuple[str, ...]] = {
    SlurmState.PENDING: ("SUBMITTED", "PENDING", "RUNNABLE"),
    SlurmState.CONFIGURING: ("STARTING",),
    SlurmState.RUNNING: ("RUNNING",),
    SlurmState.COMPLETING: ("RUNNING",),
    SlurmState.COMPLETED: ("SUCCEEDED",),
    **{s: ("FAILED",) for s in (SlurmState.FAILED, SlurmState.TIMEOUT, SlurmState.CANCELLED,
                                SlurmState.NODE_FAIL)},
}  # fmt: skip
"""The mnp statuses a Slurm state can come from (what to ask the head for)."""


def parse_states(text: str) -> frozenset[SlurmState]:
    """``-t/--states``: comma-separated long names or codes, any case, or ``all``.
    Raises ValueError naming the bad one."""
    out: set[SlurmState] = set()
    for item in filter(None, (p.strip().upper() for p in text.split(","))):
        if item == "ALL":
            return frozenset(SlurmState)
        match = [s for s in SlurmState if item in (s.name, s.short)]
        if not match:
            raise ValueError(f"invalid job state specified: {item}")
        out.update(match)
    if not out:
        raise ValueError("no job state given")
    return frozenset(out)


def _cancelled(summary: JSON, reason: str) -> bool:
    if "isCancelled" in summary or "isTerminated" in summary:
        return bool(summary.get("isCancelled") or summary.get("isTerminated"))
    return bool(_CANCELLED.search(reason))


def slurm_state(summary: JSON) -> SlurmState:
    """The Slurm state of one job (see the module's table)."""
    status = summary.get("status")
    reason = str(summary.get("statusReason") or "")
    if status in ("SUBMITTED", "PENDING", "RUNNABLE"):
        return SlurmState.PENDING
    if status == "STARTING":
        return SlurmState.CONFIGURING
    if status == "RUNNING":
        terminating = summary.get("isTerminated") or (
            "isTerminated" not in summary and _CANCELLED.search(reason)
        )
        return SlurmState.COMPLETING if terminating else SlurmState.RUNNING
    if status == "SUCCEEDED":
        return SlurmState.COMPLETED
    if reason.startswith(TIMEOUT_REASON):
        return SlurmState.TIMEOUT
    if reason.startswith(DEPENDENCY_PREFIX) or _cancelled(summary, reason):
        return SlurmState.CANCELLED
    if reason.startswith(_NODE_FAIL):
        return SlurmState.NODE_FAIL
    return SlurmState.FAILED


def pending_reason(summary: JSON) -> str:
    """Slurm's reason code for a job that is not running (squeue's ``(Reason)``).

    ``None`` (just SUBMITTED), ``JobHeldUser``/``JobHeldAdmin`` (held until released),
    ``Dependency`` (PENDING: waiting for its dependencies),
    ``JobArrayTaskLimit`` (PENDING behind ``--array=…%N``), ``Resources`` (RUNNABLE: waiting
    for room), ``BadConstraints`` (RUNNABLE but can never fit: MISCONFIGURATION),
    ``DependencyNeverSatisfied`` (failed on a dependency), ``TimeLimit``, ``NodeDown``,
    ``NonZeroExitCode`` and ``None`` for the ended ones.
    """
    status = summary.get("status")
    reason = str(summary.get("statusReason") or "")
    if status in ("PENDING", "SUBMITTED") and reason.startswith(("JobHeldUser", "JobHeldAdmin")):
        return reason.split(":", 1)[0]  # held (scontrol hold, sbatch -H)
    if status == "PENDING":
        return "JobArrayTaskLimit" if ARRAY_LIMIT_REASON in reason else "Dependency"
    if status == "RUNNABLE":
        return "BadConstraints" if reason.startswith(MISCONFIGURATION_PREFIX) else "Resources"
    if status == "FAILED":
        if reason.startswith(DEPENDENCY_PREFIX):
            return "DependencyNeverSatisfied"
        state = slurm_state(summary)
        if state is SlurmState.TIMEOUT:
            return "TimeLimit"
        if state is SlurmState.NODE_FAIL:
            return "NodeDown"
        if state is SlurmState.FAILED:
            return "NonZeroExitCode"
    return "None"


def is_node_job(summary: JSON) -> bool:
    """A multi-node job's node (``id#i``): Slurm shows one job per allocation, not these."""
    return "#" in str(summary.get("jobId", "")) or (
        "nodeIndex" in (summary.get("nodeProperties") or {})
    )


def array_index(summary: JSON) -> int | None:
    """An array child's index, else None."""
    index = (summary.get("arrayProperties") or {}).get("index")
    return index if isinstance(index, int) else None


def array_parent_id(summary: JSON) -> str | None:
    """An array child's parent's mnp id (``arrayJobId``, or the part of ``id:N`` before the
    colon)."""
    if array_index(summary) is None:
        return None
    job_id = str(summary.get("jobId", ""))
    return str(summary.get("arrayJobId") or job_id.rpartition(":")[0] or job_id)


def array_job_id(summary: JSON) -> str | None:
    """An array child's array id as Slurm shows it: the array's job number
    (``arrayJobNumber``), else (a job from before heads numbered jobs) its mnp id."""
    number = summary.get("arrayJobNumber")
    if isinstance(number, int) and array_index(summary) is not None:
        return str(number)
    return array_parent_id(summary)


def own_id(summary: JSON) -> str:
    """The job's own id as Slurm shows it: its number (``jobNumber``; an array task's own),
    else its mnp id."""
    number = summary.get("jobNumber")
    return str(number) if isinstance(number, int) else str(summary.get("jobId", ""))


def is_array_parent(summary: JSON) -> bool:
    props = summary.get("arrayProperties") or {}
    return "size" in props and array_index(summary) is None


def task_id(summary: JSON) -> int | None:
    """An array child's Slurm task id: ``arrayProperties.taskId`` when ``mnp sbatch
    --array`` listed ids other than ``0..n-1``, else its index; None for other jobs."""
    task = (summary.get("arrayProperties") or {}).get("taskId")
    return task if isinstance(task, int) else array_index(summary)


def display_id(summary: JSON) -> str:
    """``<array>_<task id>`` for an array child (:func:`array_job_id`, :func:`task_id`),
    else :func:`own_id`: Slurm's JOBID."""
    task = task_id(summary)
    return f"{array_job_id(summary)}_{task}" if task is not None else own_id(summary)


def to_mnp_id(slurm_id: str) -> str:
    """A job id as Slurm users write it → mnp's: ``123_4`` → ``123:4`` (others unchanged)."""
    base, sep, index = slurm_id.rpartition("_")
    return f"{base}:{index}" if sep and base and index.isdigit() else slurm_id


def node_ids(summary: JSON) -> list[str]:
    """Every node the job's current attempt holds (``nodeIds``, else ``nodeId``)."""
    ids = summary.get("nodeIds")
    if isinstance(ids, list) and ids:
        return [str(n) for n in ids]
    return [str(summary["nodeId"])] if summary.get("nodeId") else []


def exit_code_text(summary: JSON, state: SlurmState) -> str:
    """sacct's ExitCode ``code:signal``.

    mnp reports a process killed by signal N as exit code 128+N (as a shell does). For jobs the
    system ended (CA, TO, NF) such a code is shown as Slurm shows a killed job, ``0:N``;
    otherwise the code is the program's own (``143:0``: it exited with 143). No code (never
    ran, or killed before reporting) is ``0:0``.
    """
    code = (summary.get("container") or {}).get("exitCode")
    if not isinstance(code, int):
        return "0:0"
    killed = state in (SlurmState.CANCELLED, SlurmState.TIMEOUT, SlurmState.NODE_FAIL)
    if killed and 128 < code <= 128 + 64:
        return f"0:{code - 128}"
    return f"{code}:0"


@dataclass(frozen=True, slots=True)
class JobRow:
    """One line of squeue or sacct: everything the columns show, already in Slurm's terms."""

    job_id: str
    """As shown: ``id``, ``id_i`` or, for collapsed pending array children, ``id_[0-3,7]``."""
    raw_id: str
    """Slurm's raw job id (squeue %A, sacct JobIDRaw): the job's own number (an array task's
    own), or mnp's id for a job from before heads numbered jobs."""
    array_job_id: str
    """The array's id for an array child, else the job id (squeue %F)."""
    array_task: str
    """The task id (``4``; ``0-3,7`` for collapsed pending ones) for array children, else
    ``N/A`` (squeue %K)."""
    partition: str
    name: str
    user: str
    state: SlurmState
    reason: str
    nodes: int
    node_list: str
    submit_ms: int | None
    start_ms: int | None
    end_ms: int | None
    elapsed_seconds: int
    exit_code: str
    time_limit_seconds: int | None = None
    mnp_id: str = ""
    """mnp's id (``id``, ``id:i``): what the head is asked about the job by."""

    @property
    def node_list_or_reason(self) -> str:
        """squeue's %R: the nodes of a job that holds some, else ``(Reason)``."""
        if self.node_list and self.state in (SlurmState.RUNNING, SlurmState.CONFIGURING,
                                             SlurmState.COMPLETING):  # fmt: skip
            return self.node_list
        if self.state.ended and self.node_list:
            return self.node_list
        return f"({self.reason})"


def job_row(summary: JSON, now_ms: int) -> JobRow:
    """The row for one JobSummary; ``now_ms`` times jobs still running."""
    state = slurm_state(summary)
    index = task_id(summary)
    started, stopped = summary.get("startedAt"), summary.get("stoppedAt")
    if isinstance(started, int):
        elapsed = ((stopped if isinstance(stopped, int) else now_ms) - started) // 1000
    else:
        elapsed = 0
    num_nodes = (summary.get("nodeProperties") or {}).get("numNodes")
    job_id = str(summary.get("jobId", ""))
    return JobRow(
        job_id=display_id(summary),
        raw_id=own_id(summary),
        mnp_id=job_id,
        array_job_id=array_job_id(summary) or own_id(summary),
        array_task=str(index) if index is not None else "N/A",
        partition=str(summary.get("jobQueueName") or summary.get("jobQueue") or ""),
        name=str(summary.get("jobName") or ""),
        # who the head recorded as submitting (a client's own claim, "user", only for older heads)
        user=str(summary.get("submittedBy") or summary.get("user") or "-"),
        state=state,
        reason=pending_reason(summary),
        nodes=num_nodes if isinstance(num_nodes, int) and num_nodes > 0 else 1,
        node_list=compress(node_ids(summary)),
        submit_ms=summary.get("createdAt"),
        start_ms=started if isinstance(started, int) else None,
        end_ms=stopped if isinstance(stopped, int) else None,
        elapsed_seconds=max(0, elapsed),
        exit_code=exit_code_text(summary, state),
    )


def visible(summaries: Iterable[JSON]) -> list[JSON]:
    """What Slurm would list: no multi-node node jobs, and no array parent whose children are
    in the list (Slurm has no parent record; its children stand for it)."""
    items = [s for s in summaries if not is_node_job(s)]
    with_children = {array_parent_id(s) for s in items if array_index(s) is not None}
    return [s for s in items if not (is_array_parent(s) and s.get("jobId") in with_children)]


def collapse_pending(rows: Sequence[JobRow]) -> list[JobRow]:
    """squeue's default for arrays: the pending children of one array with the same reason
    become one row ``id_[0-3,7]`` (where the first of them stood); ``-r`` skips this."""
    groups: dict[tuple[str, str, str], list[JobRow]] = {}
    for row in rows:
        if row.state is SlurmState.PENDING and row.array_task != "N/A":
            groups.setdefault((row.array_job_id, row.reason, row.partition), []).append(row)
    out: list[JobRow] = []
    for row in rows:
        key = (row.array_job_id, row.reason, row.partition)
        group = groups.get(key) if row.state is SlurmState.PENDING else None
        if group is None or row.array_task == "N/A":
            out.append(row)
        elif group[0] is row:
            if len(group) == 1:
                out.append(row)
                continue
            tasks = _index_ranges(sorted(int(r.array_task) for r in group))
            # squeue's %A is the array's id and %K the bare ranges (``0-3``) on such a line
            out.append(replace(row, job_id=f"{row.array_job_id}_[{tasks}]",
                               raw_id=row.array_job_id, array_task=tasks))  # fmt: skip
    return out


def _index_ranges(indexes: list[int]) -> str:
    """``[0, 1, 2, 5]`` → ``0-2,5``."""
    runs: list[list[int]] = []
    for i in indexes:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


STATE_ORDER = {s: i for i, s in enumerate(SlurmState)}


def squeue_order(row: JobRow) -> tuple[Any, ...]:
    """squeue's default order: partition, state (pending first), then oldest first."""
    index = int(row.array_task) if row.array_task.isdigit() else -1
    return (row.partition, STATE_ORDER[row.state], row.submit_ms or 0, row.array_job_id, index)


def matches_id(row: JobRow, wanted: Iterable[str]) -> bool:
    """``-j``: the row's shown id, own number, mnp id, or its array's id (all of that array's
    children)."""
    ids = set(wanted)
    return bool({row.job_id, row.raw_id, row.mnp_id, row.array_job_id} & ids) or any(
        to_mnp_id(w) == row.mnp_id for w in ids
    )
