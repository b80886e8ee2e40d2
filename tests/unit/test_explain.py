"""Every waiting RUNNABLE job's ``statusReason`` from ``reconcile``: one text per cause
(:mod:`mnp.scheduler.reasons`), written only when it changes, detailed for the front of each
queue and a bucketed "behind N" for the rest; the in-process head clears a wait's reason when
the job is placed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mnp.scheduler import reasons
from mnp.scheduler.fairshare import FairShareView, SharePolicy
from mnp.scheduler.reconcile import (
    Action,
    CEView,
    NodeView,
    Place,
    QueueView,
    SetReason,
    Snapshot,
    reconcile,
)
from mnp.spec.environments import NodeStatus
from mnp.spec.jobs import Job
from mnp.spec.noderanges import NodeSpec
from mnp.spec.resources import ContainerSpec, Resources
from mnp.spec.states import JobStatus
from tests.unit.helpers_core import T0, Head, make_job

NOW = T0 + 60_000
CAP = Resources(4, 4096, 0)
ONE_FREE = Resources(1, 4096, 0)


def job(job_id: str, vcpus: float = 1, memory: int = 256, share: str | None = None) -> Job:
    j = make_job(job_id, JobStatus.RUNNABLE, resources=Resources(vcpus, memory, 0))
    if share is not None:
        j.spec = replace(j.spec, share_identifier=share)
    return j


def gang(job_id: str, num: int) -> Job:
    j = make_job(job_id, JobStatus.RUNNABLE)
    j.spec = replace(
        j.spec, nodes=NodeSpec(num, 0, [ContainerSpec([], {}, Resources(1, 256, 0))] * num)
    )
    return j


def snap(
    jobs: list[Job],
    free: Resources = ONE_FREE,
    ce: CEView | None = None,
    nodes: int = 1,
    **kw: object,
) -> Snapshot:
    return Snapshot(
        now_ms=NOW,
        queues=[QueueView("q", 1, ("ce",))],
        compute_environments={"ce": ce or CEView("ce", True, 0, (CAP,), max_nodes=nodes)},
        nodes=[NodeView(f"n{i}", "ce", NodeStatus.ACTIVE, CAP, free, NOW) for i in range(nodes)],
        submitted=[],
        pending=[],
        dependency_status={},
        runnable={"q": jobs},
        lost_after_ms=60_000,
        launch_timeout_ms=60_000,
        explain=True,
        **kw,  # type: ignore[arg-type]
    )


def told(actions: list[Action]) -> dict[str, str]:
    return {a.job_id: a.reason for a in actions if isinstance(a, SetReason)}


def applied(jobs: list[Job], actions: list[Action]) -> None:
    said = told(actions)
    for j in jobs:
        if j.job_id in said:
            j.status_reason = said[j.job_id]


CASES = [
    (
        "short of vCPUs: which, by how much, where",
        lambda: snap([job("j", vcpus=3)]),
        "CAPACITY:SHORT - short of 2 vCPUs in compute environment ce",
    ),
    (
        "short of memory",
        lambda: snap([job("j", memory=3000)], free=Resources(4, 1000, 0)),
        "CAPACITY:SHORT - short of 2000 MiB memory in compute environment ce",
    ),
    (
        "a MANAGED environment below its maximum is scaling up",
        lambda: snap(
            [job("j", vcpus=3)],
            ce=CEView("ce", True, 1, (CAP,), max_nodes=4, managed=True, min_nodes=0),
        ),
        "CAPACITY:SCALING_UP - waiting for compute environment ce to add nodes",
    ),
    (
        "a gang short of idle nodes",
        lambda: snap([gang("j", 2)], free=CAP, ce=CEView("ce", True, 0, (CAP,), max_nodes=4)),
        "CAPACITY:GANG - needs 2 wholly idle nodes",
    ),
    (
        "a gang whose last attempt's nodes are still stopping",
        lambda: snap([gang("j", 1)], free=CAP, waiting_gangs=frozenset({"j"})),
        "GANG:SETTLING",
    ),
    (
        "every environment of the queue DISABLED",
        lambda: snap([job("j")], free=CAP, ce=CEView("ce", False, 0, (CAP,))),
        "ENVIRONMENT:DISABLED - the compute environments of queue q (ce) are DISABLED",
    ),
    (
        "the rest is held for shares not active yet",
        lambda: snap(
            [job("j", share="a")],
            free=CAP,
            fairshare={"q": FairShareView(SharePolicy(600, 50), running={"a": 2.0}, max_vcpus=4)},
        ),
        "FAIRSHARE:COMPUTE_RESERVATION",
    ),
    (
        "never fits (as before)",
        lambda: snap([job("j", vcpus=64)]),
        "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - needs 64 vCPUs",
    ),
]


@pytest.mark.parametrize(("name", "make", "text"), CASES, ids=[c[0] for c in CASES])
def test_each_cause_has_its_reason(name: str, make: object, text: str) -> None:
    s = make()  # type: ignore[operator]
    reason = told(reconcile(s)).get("j", "")
    assert reason.startswith(text), reason


def test_reasons_are_written_only_when_they_change() -> None:
    jobs = [job(f"j{i}", vcpus=2) for i in range(10)]
    first = reconcile(snap(jobs))
    assert len(told(first)) == 10
    applied(jobs, first)
    assert told(reconcile(snap(jobs))) == {}
    # the cause changes (now memory, not vCPUs): the reason follows
    again = told(reconcile(snap(jobs, free=Resources(4, 100, 0))))
    assert len(again) == 10 and all("MiB memory" in r for r in again.values())


def test_only_the_front_of_a_queue_gets_a_detailed_reason() -> None:
    jobs = [job(f"j{i}", vcpus=2) for i in range(300)]
    said = told(reconcile(snap(jobs)))
    assert all(said[f"j{i}"].startswith(reasons.SHORT) for i in range(reasons.DETAILED))
    assert said["j50"] == reasons.behind("q", 50, fair=False)
    assert said["j99"] == reasons.behind("q", 50, fair=False)
    assert said["j100"] == reasons.behind("q", 100, fair=False)
    assert said["j299"] == reasons.behind("q", 200, fair=False)
    assert said["j50"].startswith("QUEUE:BEHIND - behind 50+ waiting jobs submitted earlier")


def test_behind_counts_only_change_at_bucket_edges() -> None:
    jobs = [job(f"j{i}", vcpus=2) for i in range(300)]
    applied(jobs, reconcile(snap(jobs)))
    del jobs[:10]  # ten jobs ahead left the queue
    said = told(reconcile(snap(jobs)))
    # j10..j59 move into the detailed front, j100..j109 cross from 100+ to 50+, j200..j209
    # from 200+ to 100+: nothing else is rewritten
    changed = sorted(int(k[1:]) for k in said)
    expected = [*range(50, 60), *range(100, 110), *range(200, 210)]
    assert changed == expected


def test_a_fair_share_queue_says_higher_priority_or_lower_usage() -> None:
    jobs = [job(f"j{i}", vcpus=2, share="a") for i in range(60)]
    view = FairShareView(SharePolicy(600))
    said = told(reconcile(snap(jobs, fairshare={"q": view})))
    assert "of higher priority or lower share usage" in said["j55"]


def test_a_wait_reason_goes_when_the_job_is_placed(tmp_path: Path) -> None:
    h = Head.open(tmp_path / "home")
    try:
        h.basic()
        ids = [h.submit(f"j{i}") for i in range(5)]
        h.ticks()
        last = h.describe(ids[4])
        assert last["status"] == "RUNNABLE"
        assert last["statusReason"].startswith(reasons.SHORT), last["statusReason"]
        assert "1 vCPUs" in last["statusReason"]
        assignments, _ = h.poll()
        for a in assignments:
            h.started("n1", a.attempt_id)
        h.exited("n1", assignments[0].attempt_id, 0)
        h.ticks()
        placed = h.describe(ids[4])
        assert placed["status"] == "STARTING"
        assert placed.get("statusReason") is None
    finally:
        h.close()


def test_the_head_feeds_reserve_age_and_timeouts(tmp_path: Path) -> None:
    """The loop's snapshot carries the setting, the kill grace and each node's work ends."""
    h = Head.open(tmp_path / "home")
    try:
        h.basic()
        h.submit("timed", timeout={"attemptDurationSeconds": 120})
        h.ticks()
        s = h.scheduler.snapshot()
        assert s.reserve_after_ms == int(h.state.config.reserve_after_seconds * 1000)
        assert s.explain
        (n,) = s.nodes
        grace = int(h.state.config.kill_grace_seconds * 1000)
        assert n.releases == ((h.clock() + 120_000 + grace, Resources(1, 256, 0)),)
    finally:
        h.close()


def test_placing_is_unchanged_by_explaining() -> None:
    jobs = [job("big", vcpus=4), job("small")]
    on = reconcile(snap(jobs))
    off = reconcile(replace(snap(jobs), explain=False))
    assert [a for a in on if isinstance(a, Place)] == [a for a in off if isinstance(a, Place)]
    assert [a for a in off if isinstance(a, SetReason)] == []


def test_the_walk_past_the_placing_can_be_left_out() -> None:
    full = Resources(0, 0, 0)
    jobs = [job("first"), job("second"), job("third")]
    every = [a.job_id for a in reconcile(snap(jobs, free=full)) if isinstance(a, SetReason)]
    cut = reconcile(replace(snap(jobs, free=full), explain_rest=False))
    assert every == ["first", "second", "third"]
    assert [a.job_id for a in cut if isinstance(a, SetReason)] == ["first"]  # the one tried


def test_a_deep_queue_is_explained_at_most_once_a_second(tmp_path: Path) -> None:
    """Past :data:`~mnp.scheduler.loop.EXPLAIN_ALWAYS_UP_TO` waiting jobs, a pass walks the
    whole queue for its reasons only when the last such walk is a second old; few waiting
    jobs are told at every pass."""
    from mnp.scheduler.loop import EXPLAIN_ALWAYS_UP_TO, EXPLAIN_EVERY_MS

    h = Head.open(tmp_path / "home")
    try:
        h.basic()
        ids = [h.submit(f"j{i}", containerOverrides={"vcpus": 4}) for i in range(80)]
        h.ticks()
        watched = ids[EXPLAIN_ALWAYS_UP_TO + 5]  # the first runs: 5 more wait ahead of it
        assert h.describe(watched).get("statusReason") is None  # RUNNABLE after the last walk
        h.clock.advance(EXPLAIN_EVERY_MS / 1000)
        h.ticks(1)
        assert h.describe(watched)["statusReason"].startswith(reasons.BEHIND)
        for job_id in ids[1:11]:  # it moves up among the detailed ones; 69 still wait
            h.api["cancelJob"]({"jobId": job_id, "reason": "test"})
        h.ticks()
        assert h.describe(watched)["statusReason"].startswith(reasons.BEHIND)  # not walked yet
        h.clock.advance(EXPLAIN_EVERY_MS / 1000)
        h.ticks(1)
        detailed = h.describe(watched)["statusReason"]
        assert detailed.startswith(reasons.SHORT), detailed
        fresh = h.submit("fresh", containerOverrides={"vcpus": 4})
        for job_id in ids[11:40]:  # 40 wait: every pass tells each
            h.api["cancelJob"]({"jobId": job_id, "reason": "test"})
        h.ticks()
        assert h.describe(fresh)["statusReason"].startswith(reasons.SHORT)
    finally:
        h.close()
