"""``jobStateTimeLimitActions``: the RUNNABLE job at the front of its queue whose reason has
matched an entry for ``maxTimeSeconds`` is cancelled or terminated with AWS's reason; the
clock counts only while that job is at the front with that reason. Pure tables and a clock
first, then a head in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnp.scheduler.fairshare import FairShareView, SharePolicy
from mnp.scheduler.timelimits import (
    Front,
    FrontWatch,
    TimeLimit,
    front_of,
    queue_limits,
    scheduling_order,
    watch,
)
from mnp.spec.jobs import NEVER_FITS
from mnp.spec.states import JobStatus
from tests.unit.helpers_core import T0, FakeClock, Head, make_job

CODE = NEVER_FITS  # MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT
CAPACITY = "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"
TEN_MINUTES = TimeLimit(CODE, 600)


def test_an_entry_matches_its_reason_code_with_or_without_details() -> None:
    assert TEN_MINUTES.matches(CODE)
    assert TEN_MINUTES.matches(f"{CODE} - needs 8 vCPUs, the largest node has 4")
    assert not TEN_MINUTES.matches(f"{CODE}_OTHER")
    assert not TEN_MINUTES.matches(CAPACITY)
    assert not TEN_MINUTES.matches(None)
    assert not TEN_MINUTES.matches("")


def test_stored_entries_become_limits_and_only_runnable_ones_count() -> None:
    docs = [
        {"reason": CODE, "state": "RUNNABLE", "maxTimeSeconds": 600, "action": "CANCEL"},
        {"reason": CAPACITY, "state": "RUNNABLE", "maxTimeSeconds": 900, "action": "TERMINATE"},
        {"reason": CODE, "state": "STARTING", "maxTimeSeconds": 600, "action": "CANCEL"},
    ]
    assert queue_limits(docs) == (TimeLimit(CODE, 600), TimeLimit(CAPACITY, 900, True))
    assert TimeLimit(CODE, 600).status_reason == (
        f"Canceled by JobStateTimeLimit action due to reason: {CODE}"
    )
    assert TimeLimit(CAPACITY, 900, True).status_reason == (
        f"Terminated by JobStateTimeLimit action due to reason: {CAPACITY}"
    )


def look(
    heads: dict[str, tuple[str, str | None]],
    previous: dict[str, Front],
    at_s: float,
    limits: dict[str, Any] | None = None,
) -> tuple[dict[str, Front], list[str]]:
    fronts, expired = watch(limits or {"q": (TEN_MINUTES,)}, heads, previous, T0 + int(at_s * 1000))
    return fronts, [e.job_id for e in expired]


def test_due_after_max_time_at_the_front_with_the_reason_not_before() -> None:
    fronts, due = look({"q": ("a", f"{CODE} - too big")}, {}, 0)
    assert due == []
    fronts, due = look({"q": ("a", f"{CODE} - too big")}, fronts, 599.9)
    assert due == []
    # details of the reason changed, the code did not: the clock goes on
    fronts, due = look({"q": ("a", f"{CODE} - bigger still")}, fronts, 600)
    assert due == ["a"]


def test_the_clock_starts_again_for_a_new_front_job_or_a_reason_that_came_back() -> None:
    fronts, _ = look({"q": ("a", CODE)}, {}, 0)
    fronts, _ = look({"q": ("b", CODE)}, fronts, 500)  # a left the front: b's clock starts
    fronts, due = look({"q": ("b", CODE)}, fronts, 1000)
    assert due == []
    fronts, due = look({"q": ("b", CODE)}, fronts, 1100)
    assert due == ["b"]
    fronts, _ = look({"q": ("c", CODE)}, {}, 0)
    fronts, _ = look({"q": ("c", "scaling up")}, fronts, 300)  # the reason went away
    fronts, _ = look({"q": ("c", CODE)}, fronts, 400)
    fronts, due = look({"q": ("c", CODE)}, fronts, 900)
    assert due == []
    _, due = look({"q": ("c", CODE)}, fronts, 1000)
    assert due == ["c"]


def test_a_queue_without_entries_or_without_a_front_is_not_watched() -> None:
    fronts, due = look({"q": ("a", CODE), "other": ("x", CODE)}, {}, 0)
    assert set(fronts) == {"q"}
    fronts, due = look({}, fronts, 5000)
    assert (fronts, due) == ({}, [])


def test_the_first_due_entry_in_the_queues_order_decides_the_action() -> None:
    limits = {"q": (TimeLimit(CAPACITY, 600), TimeLimit(CODE, 700, True), TimeLimit(CODE, 600))}
    fronts, _ = look({"q": ("a", CODE)}, {}, 0, limits)
    _, expired = watch(limits, {"q": ("a", CODE)}, fronts, T0 + 800_000)
    assert [(e.job_id, e.terminate) for e in expired] == [("a", True)]
    assert expired[0].reason.startswith("Terminated by JobStateTimeLimit action")


def test_the_front_is_the_first_job_in_scheduling_order() -> None:
    jobs = [make_job(f"j{i}", JobStatus.RUNNABLE) for i in range(3)]
    assert front_of(jobs, None) is jobs[0]
    assert front_of([], None) is None
    # a fair-share queue: the share with the lower weighted usage is at the front
    heavy = [make_job(f"h{i}", JobStatus.RUNNABLE) for i in range(2)]
    light = [make_job(f"l{i}", JobStatus.RUNNABLE) for i in range(2)]
    for j in heavy:
        j.spec.share_identifier = "heavy"
    for j in light:
        j.spec.share_identifier = "light"
    view = FairShareView(SharePolicy(600), usage={"heavy": 500.0, "light": 100.0})
    assert front_of([*heavy, *light], view) is light[0]
    order = [j.job_id for j in scheduling_order([*heavy, *light], view)]
    assert order[0] == "l0" and sorted(order) == ["h0", "h1", "l0", "l1"]
    # equal usage: each start counts against its share before the next is chosen, so the
    # shares alternate (as the scheduling pass places them), not one share's backlog first
    even = FairShareView(SharePolicy(600))
    order = [j.job_id for j in scheduling_order([*heavy, *light], even)]
    assert order == ["h0", "l0", "h1", "l1"]


# --- on a head -------------------------------------------------------------------------------
def limited_head(tmp_path: Path, action: str = "CANCEL") -> Head:
    head = Head.open(tmp_path / "home", FakeClock(), lost_after_seconds=100_000)
    head.basic(("n1",))  # one node of 4 vCPUs
    head.api["updateJobQueue"](
        {
            "jobQueue": "q",
            "jobStateTimeLimitActions": [
                {"reason": CODE, "state": "RUNNABLE", "maxTimeSeconds": 600, "action": action}
            ],
        }
    )
    return head


def too_big(head: Head, name: str) -> str:
    return head.submit(
        name, containerOverrides={"resourceRequirements": [{"type": "VCPU", "value": "8"}]}
    )


def tick(head: Head, memory: FrontWatch) -> list[str]:
    """A scheduling tick (the loop enforces the time limits after applying its pass); the
    jobs it ended for them. ``memory`` is the loop's own (:attr:`Scheduler.time_limits`)."""
    assert memory is head.scheduler.time_limits
    waiting = [j for j in head.state.active.values() if j.status.value == "RUNNABLE"]
    head.scheduler.tick()
    return [j.job_id for j in waiting
            if "JobStateTimeLimit action" in (head.describe(j.job_id).get("statusReason") or "")]


def test_a_job_that_never_fits_is_cancelled_after_max_time_then_the_next_one(
    tmp_path: Path,
) -> None:
    head = limited_head(tmp_path)
    memory = head.scheduler.time_limits
    try:
        first, second = too_big(head, "first"), too_big(head, "second")
        small = head.submit("small")
        tick(head, memory)
        tick(head, memory)
        assert head.describe(first)["statusReason"].startswith(CODE)
        assert head.status(small) == "STARTING"  # backfill: the front does not block it
        head.clock.advance(599)
        assert tick(head, memory) == []
        assert head.status(first) == "RUNNABLE"
        head.clock.advance(1)
        assert tick(head, memory) == [first]
        got = head.describe(first)
        assert got["status"] == "FAILED"
        assert got["statusReason"] == f"Canceled by JobStateTimeLimit action due to reason: {CODE}"
        assert got["isCancelled"] is True
        # the second has waited as long, but only now reached the front: its clock starts at
        # the next look (the cancel wakes the loop for one at once)
        assert head.status(second) == "RUNNABLE"
        assert tick(head, memory) == []
        head.clock.advance(599)
        assert tick(head, memory) == []
        head.clock.advance(1)
        assert tick(head, memory) == [second]
        assert head.describe(second)["status"] == "FAILED"
    finally:
        head.close()


def test_terminate_and_a_reason_that_does_not_match(tmp_path: Path) -> None:
    head = limited_head(tmp_path, "TERMINATE")
    memory = head.scheduler.time_limits
    try:
        big = too_big(head, "big")
        tick(head, memory)
        tick(head, memory)  # RUNNABLE, then its reason
        head.clock.advance(600)
        assert tick(head, memory) == [big]
        got = head.describe(big)
        assert got["statusReason"] == TimeLimit(CODE, 600, True).status_reason
        assert got["statusReason"].startswith("Terminated by JobStateTimeLimit action")
        assert got["isTerminated"] is True
        # a job that only waits for capacity (no matching reason) is never ended
        head.api["updateJobQueue"](
            {
                "jobQueue": "q",
                "jobStateTimeLimitActions": [
                    {"reason": CAPACITY, "state": "RUNNABLE", "maxTimeSeconds": 600,
                     "action": "CANCEL"}
                ],
            }
        )  # fmt: skip
        other = too_big(head, "other")
        for _ in range(3):
            tick(head, memory)
            head.clock.advance(600)
        assert head.status(other) == "RUNNABLE"
    finally:
        head.close()


def test_a_queue_without_limits_keeps_its_jobs(tmp_path: Path) -> None:
    head = Head.open(tmp_path / "home", FakeClock())
    memory = head.scheduler.time_limits
    try:
        head.basic(("n1",))
        too_big(head, "big")
        tick(head, memory)
        head.clock.advance(100_000)
        assert tick(head, memory) == [] and memory.fronts == {}
    finally:
        head.close()


def test_awss_capacity_code_matches_mnps_reasons_for_waiting_on_capacity() -> None:
    aws = TimeLimit("CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY", 600)
    for waiting in ("CAPACITY:SHORT - short of 2 vCPUs in compute environment ce",
                    "CAPACITY:SCALING_UP - 1 node launching", "CAPACITY:GANG - needs 4 nodes",
                    "CAPACITY:WAITING - maxvCpus 16 reached"):  # fmt: skip
        assert aws.matches(waiting), waiting
    assert not aws.matches("QUEUE:BEHIND - 3 jobs ahead")
    assert not aws.matches("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - needs 64 vCPUs")
