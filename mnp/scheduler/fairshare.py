"""Fair-share scheduling as AWS Batch defines it: decayed usage, weights, the order a fair-share
queue offers its RUNNABLE jobs in, and the compute reservation for shares not yet active.

Pure apart from :class:`ShareLedger`, the head's record of the usage of ended attempts (kept by
:class:`mnp.scheduler.state.HeadState`, persisted with it). The scheduling pass sees one
:class:`FairShareView` per fair-share queue in its snapshot and orders jobs with
:class:`FairOrder`; nothing here reads a clock.

The policy, in AWS Batch's terms (``fairsharePolicy``):

- Usage of a share is its vCPU-time (vCPU-seconds of its running and ended attempts, counted
  from placement: a STARTING attempt holds its capacity already), decayed with a half-life of
  ``shareDecaySeconds`` (0: AWS's default window of 600 s), so recent work weighs more.
- ``weightFactor`` scales usage: a lower factor gets more (0.125 gets 8× the capacity of 1.0).
  A trailing-``*`` entry matches every share identifier with that prefix; as AWS has it, each
  matching identifier's factor is multiplied by how many active identifiers match, so the
  prefix group together gets what one identifier of that factor would. An identifier no entry
  matches has factor 1.0.
- The share with the lowest weighted usage goes first; inside one share, the higher
  ``schedulingPriority`` (the job's override, else its definition's) first, then FIFO. A share
  also counts each vCPU it holds now as :data:`HELD_SECONDS` of use (:meth:`FairShareView.key`):
  work just placed has no vCPU-time yet, and without it one pass would hand every free vCPU to
  whichever share was lowest. The horizon is short so that recorded usage decides: a share
  behind by more than that gets the capacity until it has caught up.
- ``computeReservation``: ``(computeReservation/100) ** ActiveFairShares`` of the queue's
  maximum vCPUs is held back for share identifiers that are not active yet; a share is active
  while it has a job not yet ended or used capacity within the last decay window.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from mnp.spec.jobs import Job

DEFAULT_DECAY_SECONDS = 600
"""AWS's API reference: ``shareDecaySeconds`` 0 means the default minimum window, 600 s."""
HELD_SECONDS = 60.0
"""Each vCPU a share holds counts as this many vCPU-seconds of use (the decay window if
shorter), so placements in one pass split by weight."""
FORGET_BELOW = 1e-6
"""Decayed usage (vCPU-seconds) this small, past its decay window, is dropped from the ledger."""


@dataclass(frozen=True, slots=True)
class SharePolicy:
    """A queue's ``fairsharePolicy`` as the scheduler uses it."""

    decay_seconds: float
    """The half-life of usage (``shareDecaySeconds``, 0 read as the default window)."""
    reservation: int = 0
    """``computeReservation``, 0–99."""
    distribution: tuple[tuple[str, float], ...] = ()
    """``shareDistribution`` as (shareIdentifier, weightFactor)."""

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> SharePolicy:
        """From the stored ``fairsharePolicy`` (:func:`mnp.service.policies._fairshare`)."""
        decay = float(doc.get("shareDecaySeconds") or 0) or DEFAULT_DECAY_SECONDS
        dist = tuple(
            (str(s["shareIdentifier"]), float(s.get("weightFactor") or 1.0))
            for s in doc.get("shareDistribution") or ()
        )
        return cls(decay, int(doc.get("computeReservation") or 0), dist)

    def entry(self, share: str) -> tuple[str, float] | None:
        """The ``shareDistribution`` entry for ``share``: an exact one, else the longest
        trailing-``*`` prefix matching it; None: none (factor 1.0)."""
        best: tuple[str, float] | None = None
        for ident, weight in self.distribution:
            if ident == share:
                return ident, weight
            longer = best is None or len(ident) > len(best[0])
            if longer and ident.endswith("*") and share.startswith(ident[:-1]):
                best = (ident, weight)
        return best


def matches(ident: str, share: str) -> bool:
    """Whether the ``shareDistribution`` identifier ``ident`` covers ``share``."""
    return share.startswith(ident[:-1]) if ident.endswith("*") else ident == share


def decay(age_ms: float, half_life_s: float) -> float:
    """What one unit of usage ``age_ms`` old counts for now."""
    return float(2.0 ** (-max(0.0, age_ms) / 1000 / half_life_s))


def interval_usage(
    vcpus: float, start_ms: int, end_ms: int, now_ms: int, half_life_s: float
) -> float:
    """Decayed vCPU-seconds at ``now_ms`` of holding ``vcpus`` from ``start_ms`` to ``end_ms``
    (the integral of ``vcpus * decay(now - t)`` over the interval)."""
    end_ms = min(end_ms, now_ms)
    if end_ms <= start_ms or vcpus <= 0:
        return 0.0
    rate = math.log(2) / half_life_s
    return (
        vcpus * (decay(now_ms - end_ms, half_life_s) - decay(now_ms - start_ms, half_life_s)) / rate
    )


@dataclass(slots=True)
class _Entry:
    value: float
    """Decayed vCPU-seconds as of ``at_ms``."""
    at_ms: int
    last_end_ms: int
    """When the share's latest ended attempt stopped (it stays active a decay window longer)."""


@dataclass(slots=True)
class ShareLedger:
    """Decayed usage of ended attempts per queue and share: each ended attempt adds its
    vCPU-time once, decayed from when it ended; reading decays the sum to the time asked."""

    entries: dict[str, dict[str, _Entry]] = field(default_factory=dict)

    def credit(
        self,
        queue: str,
        share: str,
        vcpus: float,
        start_ms: int,
        end_ms: int,
        half_life_s: float,
    ) -> None:
        """An attempt of ``share`` held ``vcpus`` from ``start_ms`` to ``end_ms``."""
        shares = self.entries.setdefault(queue, {})
        added = interval_usage(vcpus, start_ms, end_ms, end_ms, half_life_s)
        old = shares.get(share)
        if old is None:
            shares[share] = _Entry(added, end_ms, end_ms)
            return
        at = max(old.at_ms, end_ms)
        old.value = old.value * decay(at - old.at_ms, half_life_s) + added * decay(
            at - end_ms, half_life_s
        )
        old.at_ms = at
        old.last_end_ms = max(old.last_end_ms, end_ms)

    def usage(self, queue: str, now_ms: int, half_life_s: float) -> dict[str, float]:
        """Decayed vCPU-seconds per share of ``queue`` at ``now_ms``."""
        return {
            share: e.value * decay(now_ms - e.at_ms, half_life_s)
            for share, e in self.entries.get(queue, {}).items()
        }

    def recent(self, queue: str, now_ms: int, half_life_s: float) -> set[str]:
        """The shares of ``queue`` whose work ended within the last decay window."""
        window = half_life_s * 1000
        return {
            s for s, e in self.entries.get(queue, {}).items() if now_ms - e.last_end_ms <= window
        }

    def prune(self, queue: str, now_ms: int, half_life_s: float) -> bool:
        """Forget the shares of ``queue`` whose usage has decayed to nothing; True if any."""
        shares = self.entries.get(queue)
        if not shares:
            return False
        window = half_life_s * 1000
        gone = [
            s
            for s, e in shares.items()
            if now_ms - e.last_end_ms > window
            and e.value * decay(now_ms - e.at_ms, half_life_s) < FORGET_BELOW
        ]
        for s in gone:
            del shares[s]
        if not shares:
            del self.entries[queue]
        return bool(gone)

    def forget_queue(self, queue: str) -> None:
        self.entries.pop(queue, None)

    def to_doc(self) -> dict[str, Any]:
        return {
            q: {s: [e.value, e.at_ms, e.last_end_ms] for s, e in shares.items()}
            for q, shares in self.entries.items()
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ShareLedger:
        return cls(
            {
                str(q): {
                    str(s): _Entry(float(v[0]), int(v[1]), int(v[2])) for s, v in shares.items()
                }
                for q, shares in doc.items()
            }
        )


@dataclass(frozen=True, slots=True)
class FairShareView:
    """What the scheduling pass knows of one fair-share queue."""

    policy: SharePolicy
    usage: Mapping[str, float] = field(default_factory=dict)
    """Decayed vCPU-seconds per share, ended and running attempts, at the snapshot's clock."""
    running: Mapping[str, float] = field(default_factory=dict)
    """vCPUs each share's STARTING and RUNNING jobs of this queue hold now."""
    active: frozenset[str] = frozenset()
    """Shares with a job not ended yet or work ended within the decay window (the shares of
    the queue's RUNNABLE jobs count in any case)."""
    max_vcpus: float = 0.0
    """The maximum vCPUs of the queue's compute environments (0: unknown, nothing reserved)."""

    def weight(self, share: str, active: Iterable[str] | None = None) -> float:
        """``share``'s weight factor; a prefix entry's times its matching active shares."""
        entry = self.policy.entry(share)
        if entry is None:
            return 1.0
        ident, weight = entry
        if not ident.endswith("*"):
            return weight
        pool = self.active if active is None else active
        return weight * max(1, sum(1 for s in {*pool, share} if matches(ident, s)))

    def key(self, share: str, running: float, weight: float) -> float:
        """The weighted usage the order compares: decayed vCPU-seconds plus the vCPUs held now
        (:data:`HELD_SECONDS` each)."""
        held = min(HELD_SECONDS, self.policy.decay_seconds)
        return weight * (self.usage.get(share, 0.0) + running * held)

    def reserved_fraction(self, active_count: int) -> float:
        """AWS's ``(computeReservation/100) ** ActiveFairShares``."""
        if self.policy.reservation <= 0:
            return 0.0
        return float((self.policy.reservation / 100) ** active_count)

    def room(self, active_count: int) -> float:
        """vCPUs the queue's active shares may still take before reaching the reservation
        (infinite when nothing is reserved)."""
        reserved = self.reserved_fraction(active_count)
        if reserved <= 0 or self.max_vcpus <= 0:
            return math.inf
        return self.max_vcpus * (1 - reserved) - sum(self.running.values())


def job_vcpus(job: Job) -> float:
    """The vCPUs a job holds once placed (every node's, for a multi-node job)."""
    if job.spec.nodes is not None:
        return sum(c.resources.vcpus for c in job.spec.nodes.containers)
    return job.resources.vcpus


def priority(job: Job) -> int:
    """``schedulingPriorityOverride``, else the definition's ``schedulingPriority`` (0)."""
    return job.spec.scheduling_priority or 0


class FairOrder:
    """A fair-share queue's RUNNABLE jobs in the order they are offered: each step the share
    with the lowest weighted usage gives its next job (highest priority first, then FIFO).
    Tell it about each placement (:meth:`placed`) before asking for the next job, so the share
    that got it counts it; :attr:`room` is what the active shares may still take."""

    def __init__(self, view: FairShareView, jobs: Iterable[Job]) -> None:
        self.view = view
        per: dict[str, list[Job]] = {}
        for job in jobs:
            per.setdefault(job.spec.share_identifier or "", []).append(job)
        for queued in per.values():
            queued.sort(key=lambda j: -priority(j))  # stable: FIFO within one priority
        self._per = per
        self.active = view.active | per.keys()
        self.running = dict(view.running)
        self.room = view.room(len(self.active))
        self._weights = {s: view.weight(s, self.active) for s in per}
        self._moved = False
        """A job was placed since the last key was taken (the key of the share that gave it
        moves; nothing else does)."""

    def _key(self, share: str) -> tuple[float, str]:
        return self.view.key(share, self.running.get(share, 0.0), self._weights[share]), share

    def __iter__(self) -> Iterator[Job]:
        heap = [self._key(s) for s in self._per]
        heapq.heapify(heap)
        nxt = dict.fromkeys(self._per, 0)
        while heap:
            key = heapq.heappop(heap)
            share = key[1]
            queued = self._per[share]
            self._moved = False
            while True:  # the same share goes on while it stays the lowest (no heap churn)
                i = nxt[share]
                nxt[share] = i + 1
                yield queued[i]
                if i + 1 >= len(queued):
                    break
                if self._moved:  # only a placement moves its key
                    key = self._key(share)
                    self._moved = False
                if heap and heap[0] < key:
                    heapq.heappush(heap, key)
                    break

    def placed(self, job: Job) -> None:
        self._moved = True
        share = job.spec.share_identifier or ""
        vcpus = job_vcpus(job)
        self.running[share] = self.running.get(share, 0.0) + vcpus
        self.room -= vcpus

    def fits(self, job: Job) -> bool:
        """Whether the job stays outside the capacity reserved for shares not yet active."""
        return job_vcpus(job) <= self.room + 1e-9
