"""Requeue (Slurm's ``scontrol requeue``): the running attempt is stopped and the job goes back
to RUNNABLE with the same ids, not counted against its retry strategy; through the real
``Service`` + ``Scheduler`` in-process (temp SQLite, fake clock, nodes registered by hand)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mnp.errors import AccessDenied, Conflict, InvalidInput, NotFound
from mnp.service.users import Caller, Role
from mnp.spec.protocol import Assignment
from tests.unit.helpers_core import HOSTILE, Head
from tests.unit.test_gang_service import add_nodes, define, kills, poll_all, start


@pytest.fixture
def head(tmp_path: Path) -> Iterator[Head]:
    h = Head.open(tmp_path / "home", lost_after_seconds=10.0)
    yield h
    h.close()


@pytest.fixture
def ready(head: Head) -> Head:
    head.basic(("n1",))
    return head


def run_one(h: Head) -> Assignment:
    for _ in range(4):
        h.ticks(1)
        got, _ = h.poll("n1")
        if got:
            h.started("n1", got[0].attempt_id)
            return got[0]
    raise AssertionError("no work for n1")


def requeue(h: Head, job_id: str, reason: str = HOSTILE) -> None:
    assert h.api["requeueJob"]({"jobId": job_id, "reason": reason}) == {}


def test_a_requeued_job_runs_again_whatever_its_exit_and_keeps_its_retries(ready: Head) -> None:
    job = ready.submit(retryStrategy={"attempts": 1})
    first = run_one(ready)
    requeue(ready, job)
    assert ready.status(job) == "RUNNING", "RUNNING until the node reports the end"
    _, sent = ready.poll("n1", [first.attempt_id])
    assert [(k.attempt_id, k.reason) for k in sent] == [(first.attempt_id, f"Requeued: {HOSTILE}")]
    ready.exited("n1", first.attempt_id, 1)  # a failure: with attempts 1 it would end the job
    detail = ready.describe(job)
    assert (detail["status"], detail["statusReason"]) == ("RUNNABLE", f"Requeued: {HOSTILE}")
    second = run_one(ready)
    assert second.job_id == job and second.attempt_id != first.attempt_id
    assert second.environment["SLURM_RESTART_COUNT"] == "1"
    ready.exited("n1", second.attempt_id, 0)
    detail = ready.describe(job)
    assert detail["status"] == "SUCCEEDED"
    assert [a["container"]["exitCode"] for a in detail["attempts"]] == [1, 0]


def test_a_requeued_attempt_does_not_use_up_a_retry(ready: Head) -> None:
    job = ready.submit(retryStrategy={"attempts": 2})
    first = run_one(ready)
    requeue(ready, job)
    ready.exited("n1", first.attempt_id, 143)
    second = run_one(ready)
    ready.exited("n1", second.attempt_id, 1)
    assert ready.status(job) == "RUNNABLE", "attempt 2 of 2 still to come: the requeue is free"
    third = run_one(ready)
    ready.exited("n1", third.attempt_id, 1)
    assert ready.status(job) == "FAILED"


def test_requeue_of_a_job_not_started_leaves_it_queued(ready: Head) -> None:
    job = ready.submit()
    requeue(ready, job)
    ready.ticks(1)
    assert ready.describe(job)["attempts"] == []
    run_one(ready)
    assert ready.status(job) == "RUNNING"


def test_requeue_of_a_finished_or_unknown_job_is_refused(ready: Head) -> None:
    job = ready.submit()
    a = run_one(ready)
    ready.exited("n1", a.attempt_id, 0)
    with pytest.raises(Conflict, match=r"finished \(SUCCEEDED\).*submit it again"):
        requeue(ready, job)
    with pytest.raises(NotFound):
        requeue(ready, "no-such-job")


def test_terminate_after_requeue_ends_the_job(ready: Head) -> None:
    job = ready.submit()
    a = run_one(ready)
    requeue(ready, job)
    ready.api["terminateJob"]({"jobId": job, "reason": "enough"})
    ready.exited("n1", a.attempt_id, 143)
    assert (ready.status(job), ready.describe(job)["statusReason"]) == ("FAILED", "enough")


def test_requeue_survives_a_head_restart_before_the_node_hears(head: Head, tmp_path: Path) -> None:
    head.basic(("n1",))
    job = head.submit()
    a = run_one(head)
    requeue(head, job)
    head.close()
    again = Head.open(tmp_path / "home", clock=head.clock)
    try:
        again.seq = dict(head.seq)
        _, sent = again.poll("n1", [a.attempt_id])
        assert [k.reason for k in sent] == [f"Requeued: {HOSTILE}"]
        again.exited("n1", a.attempt_id, 143)
        assert again.status(job) == "RUNNABLE"
    finally:
        again.close()


def test_requeue_of_an_array_requeues_its_running_children(ready: Head) -> None:
    parent = ready.submit(
        "arr", arrayProperties={"size": 3},
        containerOverrides={"resourceRequirements": [{"type": "VCPU", "value": "4"}]},
    )  # fmt: skip
    running = run_one(ready)
    requeue(ready, parent)
    _, sent = ready.poll("n1", [running.attempt_id])
    assert [k.attempt_id for k in sent] == [running.attempt_id]
    ready.exited("n1", running.attempt_id, 143)
    assert ready.status(running.job_id) == "RUNNABLE"
    others = [f"{parent}:{i}" for i in range(3) if f"{parent}:{i}" != running.job_id]
    assert all(ready.describe(o)["attempts"] == [] for o in others)


def test_only_the_owner_or_an_admin_may_requeue(ready: Head) -> None:
    job = ready.submit()
    run_one(ready)
    ready.api["createUser"]({"name": "mallory", "role": "user"})
    mallory = ready.api_as(Caller("mallory", Role.USER))
    with pytest.raises(AccessDenied, match="requeue job"):
        mallory["requeueJob"]({"jobId": job, "reason": "mine now"})


def test_requeue_of_a_multi_node_job_stops_the_main_node_and_runs_the_gang_again(
    head: Head,
) -> None:
    head.environment()
    head.queue()
    add_nodes(head, 4)
    define(head, timeout={"attemptDurationSeconds": 120})
    job_id = head.submit(jobDefinition="mnp")
    nodes = start(head, job_id)
    requeue(head, f"{job_id}#1")
    assert kills(poll_all(head)) == {"n0": [f"Requeued: {HOSTILE}"]}
    head.exited("n0", nodes[0][1].attempt_id, 143)
    for i in (1, 2, 3):
        head.exited(nodes[i][0], nodes[i][1].attempt_id, 143)
    head.ticks(3)
    detail = head.describe(job_id)
    assert detail["status"] in ("RUNNABLE", "STARTING"), "runs again, not FAILED"
    assert [a["statusReason"] for a in detail["attempts"]] == [f"Requeued: {HOSTILE}"]
    again = start(head, job_id)
    assert len(again) == 4
    assert again[0][1].attempt_id == f"{job_id}#0/2"


# --- hold and release (scontrol hold / uhold / release) ----------------------------------------


def hold(h: Head, job_id: str, api: Any = None) -> None:
    assert (api or h.api)["holdJob"]({"jobId": job_id, "reason": "scontrol hold"}) == {}


def release(h: Head, job_id: str, api: Any = None) -> None:
    assert (api or h.api)["releaseJob"]({"jobId": job_id, "reason": "scontrol release"}) == {}


def test_a_held_job_waits_pending_until_released(ready: Head) -> None:
    job = ready.submit()
    hold(ready, job)  # SUBMITTED: held as it becomes RUNNABLE
    ready.ticks(3)
    detail = ready.describe(job)
    assert (detail["status"], detail["statusReason"]) == (
        "PENDING", "JobHeldUser: held until released (scontrol release)",
    )  # fmt: skip
    assert ready.poll("n1") == ([], [])
    release(ready, job)
    assert run_one(ready).job_id == job


def test_hold_of_a_runnable_job_and_of_a_started_one(ready: Head) -> None:
    blocker = ready.submit(
        "big", containerOverrides={"resourceRequirements": [{"type": "VCPU", "value": "4"}]}
    )
    run_one(ready)
    waiting = ready.submit()
    ready.ticks(2)
    assert ready.status(waiting) == "RUNNABLE"
    hold(ready, waiting)
    assert ready.status(waiting) == "PENDING"
    with pytest.raises(Conflict, match="Job is no longer pending execution"):
        hold(ready, blocker)
    release(ready, waiting)
    ready.ticks(2)
    assert ready.status(waiting) == "RUNNABLE"


def test_a_held_array_holds_its_children_and_a_release_lets_them_go(ready: Head) -> None:
    parent = ready.submit("arr", arrayProperties={"size": 3})
    hold(ready, parent)
    ready.ticks(4)
    assert ready.poll("n1") == ([], [])
    children = [ready.describe(f"{parent}:{i}") for i in range(3)]
    assert {c["status"] for c in children} == {"PENDING"}
    assert all(c["statusReason"].startswith("JobHeldUser") for c in children)
    release(ready, parent)
    ready.ticks(3)
    got, _ = ready.poll("n1")
    assert len(got) == 3


def test_a_hold_survives_a_restart(head: Head, tmp_path: Path) -> None:
    head.basic(("n1",))
    job = head.submit()
    hold(head, job)
    head.ticks(2)
    head.close()
    again = Head.open(tmp_path / "home", clock=head.clock)
    try:
        again.ticks(3)
        assert again.status(job) == "PENDING"
        release(again, job)
        again.ticks(2)
        assert again.status(job) in ("RUNNABLE", "STARTING")
    finally:
        again.close()


def test_an_admins_hold_is_released_by_an_admin_only(ready: Head) -> None:
    ready.api["createUser"]({"name": "alice", "role": "user"})
    alice = ready.api_as(Caller("alice", Role.USER))
    body = {"jobName": "a", "jobQueue": "q", "jobDefinition": "def"}
    job = str(alice["submitJob"](body)["jobId"])
    hold(ready, job)  # the owner's (an admin's) hold of alice's job
    assert ready.describe(job)["statusReason"].startswith("JobHeldAdmin")
    with pytest.raises(AccessDenied, match="an admin held it"):
        release(ready, job, alice)
    ready.api["createUser"]({"name": "bob", "role": "user"})
    with pytest.raises(AccessDenied, match="hold job"):
        hold(ready, job, ready.api_as(Caller("bob", Role.USER)))
    release(ready, job)
    ready.ticks(2)
    assert ready.status(job) in ("RUNNABLE", "STARTING")


# --- update (scontrol update JobId=...) --------------------------------------------------------


def test_update_changes_the_time_limit_priority_and_array_throttle_of_a_waiting_job(
    ready: Head,
) -> None:
    job = ready.submit()
    update = ready.api["updateJob"]
    assert update({"jobId": job, "timeout": {"attemptDurationSeconds": 600},
                   "schedulingPriority": 7}) == {}  # fmt: skip
    a = run_one(ready)
    assert a.timeout_seconds == 600
    assert ready.describe(job)["schedulingPriority"] == 7
    parent = ready.submit("arr", arrayProperties={"size": 4}, mnp={"arrayMaxRunning": 1})
    ready.ticks(3)
    assert update({"jobId": parent, "arrayMaxRunning": 3}) == {}
    ready.ticks(3)
    runnable = [ready.status(f"{parent}:{i}") for i in range(4)]
    assert runnable.count("PENDING") == 1, runnable
    with pytest.raises(InvalidInput, match="with its whole array"):
        update({"jobId": f"{parent}:1", "schedulingPriority": 1})
    with pytest.raises(InvalidInput, match="at least 60 seconds"):
        update({"jobId": parent, "timeout": {"attemptDurationSeconds": 5}})
    with pytest.raises(InvalidInput, match="only for array jobs"):
        update({"jobId": job, "arrayMaxRunning": 2})
