"""A pass between the walks for reasons stops once every shape of job queued has failed to fit
(mnp.scheduler.reconcile, Snapshot.runnable_shapes), and the head keeps each queue's shapes
as jobs come and go (mnp.scheduler.state.HeadState.runnable_shapes); a job's waiting time is
read from its history once (mnp.scheduler.reservations.runnable_since)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from mnp.scheduler.reconcile import NodeView, Place, reconcile, shape
from mnp.scheduler.reservations import runnable_since
from mnp.spec.environments import NodeStatus
from mnp.spec.jobs import Job
from mnp.spec.resources import Resources
from mnp.spec.states import HistoryEntry, JobStatus, transition
from tests.unit.helpers_core import Head
from tests.unit.test_reservations import CAP, NOW, gang, small, snapshot


def fragmented(node_id: str) -> NodeView:
    """A node with one vCPU free (and memory to spare): no 2-vCPU job fits it."""
    free = Resources(1, CAP.memory_mib - 256, 0)
    return NodeView(node_id, "ce", NodeStatus.ACTIVE, CAP, free, NOW)


class Counted:
    """The queue's jobs, counting how many a pass reads."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs, self.read = jobs, 0

    def __iter__(self) -> Iterator[Job]:
        for job in self.jobs:
            self.read += 1
            yield job


def between_walks(jobs: list[Job], walk: bool = False) -> tuple[list[Place], Counted]:
    queue = Counted(jobs)
    s = snapshot(NOW, [fragmented("n0"), fragmented("n1")], jobs, reserve_after_ms=None)
    s = replace(s, runnable={"q": queue}, explain_rest=walk,
                runnable_shapes={"q": Counter(shape(j) for j in jobs)})  # fmt: skip
    actions = reconcile(s)
    return [a for a in actions if isinstance(a, Place)], queue


def test_a_queue_of_jobs_that_fit_nowhere_is_read_to_its_first_of_each_shape() -> None:
    jobs = [small(f"big{i}", NOW, vcpus=2) for i in range(500)]
    placed, queue = between_walks(jobs)
    assert placed == [] and queue.read == 1  # one 2-vCPU job failed: so would all the rest
    placed, queue = between_walks(jobs, walk=True)
    assert placed == [] and queue.read == 500  # the walk for reasons reads them all


def test_a_job_of_another_shape_further_back_is_still_placed() -> None:
    jobs = [*(small(f"big{i}", NOW, vcpus=2) for i in range(300)), small("one", NOW),
            *(small(f"late{i}", NOW, timeout=60, vcpus=2) for i in range(300))]  # fmt: skip
    placed, queue = between_walks(jobs)
    assert [p.job_id for p in placed] == ["one"]
    # past "one", the 2-vCPU jobs with a time limit are a shape of their own: one is tried
    assert queue.read == 302


def test_a_multi_node_job_queued_keeps_every_job_looked_at() -> None:
    jobs = [*(small(f"big{i}", NOW, vcpus=2) for i in range(50)), gang("g", 2, NOW)]
    _, queue = between_walks(jobs)
    assert queue.read == 51


def test_the_head_counts_each_queues_shapes_as_jobs_come_and_go(tmp_path: Path) -> None:
    h = Head.open(tmp_path / "home")
    try:
        h.basic()  # one node of 4 vCPUs; jobs of 1 vCPU, 256 MiB
        ids = [h.submit(f"j{i}") for i in range(6)]
        h.submit("t", timeout={"attemptDurationSeconds": 120})
        h.ticks(3)
        shapes = h.state.runnable_shapes["q"]
        # four placed; two plain jobs and the timed one wait
        assert sum(shapes.values()) == len(h.state.runnable["q"]) == 3
        assert shapes[(1.0, 256, 0, None)] == 2 and shapes[(1.0, 256, 0, 120)] == 1
        waiting = [j for j in ids if h.status(j) == "RUNNABLE"]
        h.api["cancelJob"]({"jobId": waiting[0], "reason": "test"})
        h.ticks(1)
        assert shapes[(1.0, 256, 0, None)] == 1
        h.scheduler.reload()  # rebuilt from the store, as after a failed write
        again = h.state.runnable_shapes["q"]
        assert again == Counter({(1.0, 256, 0, None): 1, (1.0, 256, 0, 120): 1})
    finally:
        h.close()


def test_a_jobs_waiting_time_is_read_from_its_history_once_and_follows_its_transitions() -> None:
    job = small("j", NOW - 5000)  # RUNNABLE, built with no history (as a test builds it)
    job.history = [HistoryEntry(JobStatus.SUBMITTED, NOW - 5000, None),
                   HistoryEntry(JobStatus.RUNNABLE, NOW - 4000, None)]  # fmt: skip
    assert runnable_since(job) == NOW - 4000
    job.history.append(HistoryEntry(JobStatus.RUNNABLE, NOW, None))  # behind its back: kept
    assert runnable_since(job) == NOW - 4000
    transition(job, JobStatus.STARTING, NOW + 1000)
    assert job.runnable_at is None
    transition(job, JobStatus.RUNNABLE, NOW + 2000, "retry")  # back in the queue: from now
    assert runnable_since(job) == NOW + 2000 == job.runnable_at
