"""The ``statusReason`` texts the scheduling pass gives a job that waits, in one place.

:func:`mnp.scheduler.reconcile.reconcile` writes them onto RUNNABLE jobs (``SetReason``
actions, only when the text changes); ``mnp why``, queue snapshots and time-limit actions read
them back. Each text starts with a ``KIND:CODE`` prefix (AWS Batch's reasons look the same
way, e.g. ``MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT``), so a reader can match the cause
with :func:`kind_of` without parsing the prose after `` - ``.

The texts only change when the cause changes (no clock readings, no "in N seconds"): a pass
over thousands of waiting jobs writes nothing when nothing changed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from mnp.spec.jobs import ARRAY_LIMIT_REASON, NEVER_FITS
from mnp.spec.resources import Resources

SHORT = "CAPACITY:SHORT"
"""Nothing free fits it now: which resource, by how much, in which environment."""
SCALING = "CAPACITY:SCALING_UP"
"""Nothing free fits it now and a MANAGED environment of its queue is adding nodes."""
GANG = "CAPACITY:GANG"
"""A multi-node job: not enough wholly idle nodes in one placement group."""
BEHIND = "QUEUE:BEHIND"
"""Further back in its queue than the jobs given a detailed reason (:data:`DETAILED`)."""
RESERVING = "RESERVATION:HOLDING"
"""It waited long enough to reserve the nodes it needs; it starts when they are free."""
HELD = "RESERVATION:HELD"
"""It fits only on nodes reserved for an older job and does not end before they are needed."""
ENV_DISABLED = "ENVIRONMENT:DISABLED"
"""Every compute environment of its queue is DISABLED (they take nothing new)."""
SHARE_RESERVED = "FAIRSHARE:COMPUTE_RESERVATION"
"""The rest of the queue's capacity is held back for shares not active yet."""
GANG_SETTLING = "GANG:SETTLING"
"""A multi-node job whose last attempt's nodes have not all stopped yet."""
ARRAY_LIMIT = ARRAY_LIMIT_REASON
"""A PENDING array child held by its array's running limit (set by the head's state)."""
NEVER = NEVER_FITS
"""No node of the queue's environments could ever hold it."""
DEFAULT_MEMORY = "RESOURCES:DEFAULT_MEMORY"
"""It was placed with a default MEMORY: it states none (shown once it has started)."""

EC2_WAITING = "CAPACITY:WAITING"
"""An EC2 environment's chooser launches nothing for it (``mnp.scheduler.ec2scaling``'s
``WAIT_PREFIX``: its words, e.g. ``maxvCpus`` reached, take the place of the ones here)."""

WAITING = (SHORT, SCALING, GANG, BEHIND, RESERVING, HELD, ENV_DISABLED, SHARE_RESERVED,
           GANG_SETTLING, EC2_WAITING)  # fmt: skip
"""The kinds that only describe a wait: cleared when the job is placed."""

DETAILED = 50
"""Per queue, the first this many waiting jobs get a specific reason; the ones behind them get
:func:`behind` with a bucketed count, which changes rarely, so a long backlog is not rewritten
each pass."""
BUCKETS = (50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000)

DEFAULT_MEMORY_TAG = "mnp:defaultMemoryMiB"
"""A compute environment's tag: the MEMORY (MiB) a job stating none reserves there."""


def kind_of(reason: str | None) -> str | None:
    """The ``KIND:CODE`` prefix of a reason (None for None)."""
    if reason is None:
        return None
    return reason.split(" - ", 1)[0]


def is_waiting(reason: str | None) -> bool:
    """Whether ``reason`` is one of the wait texts here (cleared once the job is placed)."""
    return kind_of(reason) in WAITING


def bucket(n: int) -> int:
    """The largest of :data:`BUCKETS` not above ``n`` (``n`` itself below the first)."""
    best = n
    for b in BUCKETS:
        if b > n:
            break
        best = b
    return best


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _when(ms: int | None) -> str:
    if ms is None:
        return "when the jobs running there end (they have no timeout, so not known when)"
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))
    return f"by {at} (by the timeouts of the jobs running there)"


def _nodes(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:8])
    return shown + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")


def short(env: str, need: Resources, best: Resources | None) -> str:
    """Nothing free in ``env`` fits ``need``; ``best`` is the most free room on one node there
    (None: it has no node up)."""
    if best is None:
        return f"{SHORT} - compute environment {env} has no node up to take it"
    parts = []
    if need.vcpus > best.vcpus + 1e-9:
        parts.append(f"{_num(need.vcpus - best.vcpus)} vCPUs")
    if need.memory_mib > best.memory_mib:
        parts.append(f"{need.memory_mib - best.memory_mib} MiB memory")
    if need.gpus > best.gpus:
        parts.append(f"{need.gpus - best.gpus} GPUs")
    what = " and ".join(parts) or "room on one node"
    return (
        f"{SHORT} - short of {what} in compute environment {env}: needs "
        f"{_num(need.vcpus)} vCPUs, {need.memory_mib} MiB, {need.gpus} GPUs; the most free on "
        f"one node is {_num(best.vcpus)} vCPUs, {best.memory_mib} MiB, {best.gpus} GPUs"
    )


def scaling(env: str) -> str:
    return f"{SCALING} - waiting for compute environment {env} to add nodes for it"


def gang(num_nodes: int, env: str, idle: int) -> str:
    return (
        f"{GANG} - needs {num_nodes} wholly idle nodes in one placement group of compute "
        f"environment {env}; {idle} idle now"
    )


def behind(queue: str, ahead: int, fair: bool) -> str:
    """Behind at least ``ahead`` waiting jobs (a :func:`bucket`) of ``queue``."""
    which = "of higher priority or lower share usage" if fair else "submitted earlier"
    return f"{BEHIND} - behind {ahead}+ waiting jobs {which} in queue {queue}"


def reserving(nodes: Sequence[str], start_ms: int | None) -> str:
    return (
        f"{RESERVING} - nodes {_nodes(nodes)} are reserved for this job; it starts "
        f"{_when(start_ms)}"
    )


def held(job_id: str, nodes: Sequence[str], start_ms: int | None) -> str:
    ends = (
        "only work whose attemptDurationSeconds ends before then may use them"
        if start_ms is not None
        else "no other work may use them"
    )
    return (
        f"{HELD} - it fits only on nodes {_nodes(nodes)}, reserved for job {job_id}, which "
        f"needs them {_when(start_ms)}; {ends}"
    )


def env_disabled(queue: str, envs: Sequence[str]) -> str:
    names = ", ".join(envs) or "(none)"
    return (
        f"{ENV_DISABLED} - the compute environments of queue {queue} ({names}) are DISABLED "
        "and take no new jobs"
    )


def share_reserved(queue: str) -> str:
    return (
        f"{SHARE_RESERVED} - the rest of queue {queue}'s capacity is held back for share "
        "identifiers not active yet (computeReservation)"
    )


def gang_settling() -> str:
    return f"{GANG_SETTLING} - waiting for the nodes of its last attempt to stop"


def default_memory(memory_mib: int, source: str) -> str:
    """Placed with ``memory_mib`` MiB because the job states no MEMORY; ``source`` says where
    the default came from."""
    return (
        f"{DEFAULT_MEMORY} - placed with MEMORY {memory_mib} MiB by default: the job states "
        f"no MEMORY requirement ({source})"
    )


def with_default_memory(
    need: Resources, capacity: Resources, env_mib: int | None, head_mib: int | None
) -> tuple[Resources, str | None]:
    """What a job asking ``need`` holds on a node of ``capacity``, and where its MEMORY came
    from when it states none (None: its own).

    A job without MEMORY reserves its environment's ``mnp:defaultMemoryMiB`` tag when set,
    else the head's ``$MNP_DEFAULT_MEMORY_MIB`` but no more than its vCPUs' share of the
    node's memory; never more than the node has, so a default alone never makes a job
    unplaceable. The vCPU share keeps a node of jobs without MEMORY packed by vCPUs as
    before, while the memory jobs that state it hold is no longer handed out twice."""
    if need.memory_mib > 0 or capacity.memory_mib <= 0:
        return need, None
    if env_mib is not None:
        mib, source = env_mib, f"compute environment tag {DEFAULT_MEMORY_TAG}={env_mib}"
    elif head_mib is None:
        return need, None
    else:
        share = capacity.memory_mib * need.vcpus / capacity.vcpus if capacity.vcpus > 0 else 0
        mib = min(head_mib, int(share))
        source = (
            f"MNP_DEFAULT_MEMORY_MIB={head_mib}, at most its {_num(need.vcpus)} vCPUs' share of "
            f"the node's {capacity.memory_mib} MiB"
        )
    mib = max(0, min(mib, capacity.memory_mib))
    if mib == 0:
        return need, None
    return Resources(need.vcpus, mib, need.gpus), source


def env_default_memory(tags: object) -> int | None:
    """The ``mnp:defaultMemoryMiB`` tag of an environment's ``tags`` (None: unset or not a
    whole number above 0)."""
    if not isinstance(tags, dict):
        return None
    raw = tags.get(DEFAULT_MEMORY_TAG)
    try:
        value = int(str(raw).strip()) if raw is not None else 0
    except ValueError:
        return None
    return value if value > 0 else None


class Explainer:
    """The reasons of one queue's waiting jobs: the first :data:`DETAILED` get their
    own cause, the rest how many wait ahead of them (bucketed); written only when changed."""

    def __init__(self, queue: str, fair: bool, on: bool) -> None:
        self.queue = queue
        self.fair = fair
        self.on = on
        self.waiting = 0
        self._edge = 0
        """The next count of waiting jobs at which the "behind" text changes."""
        self._behind = ""

    @property
    def detailed(self) -> bool:
        return self.waiting < DETAILED

    def wait(self, current: str | None, text: str | None) -> str | None:
        """A job whose reason is ``current`` waits, for ``text`` (None, or past the detailed
        ones: behind the rest). Returns the reason to write (None: it has it already)."""
        if not self.on:
            return None
        if text is None or not self.detailed:
            if self.waiting >= self._edge:  # the text is built once per bucket, not per job
                ahead = bucket(max(1, self.waiting))
                self._behind = behind(self.queue, ahead, self.fair)
                self._edge = next((b for b in BUCKETS if b > ahead), 1 << 62)
                if ahead < BUCKETS[0]:
                    self._edge = self.waiting + 1
            text = self._behind
        self.waiting += 1
        return text if current != text else None
