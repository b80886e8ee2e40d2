"""Fair-share scheduling: usage decay and weights (pure), the order and compute reservation
``reconcile`` applies to a fair-share queue (table snapshots), and the split a whole in-process
head gives two shares over a window, from the usage it records (virtual clock)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from mnp.cli.shares import shares_summary, shares_table
from mnp.errors import InvalidInput
from mnp.scheduler.fairshare import (
    FairShareView,
    ShareLedger,
    SharePolicy,
    interval_usage,
)
from mnp.scheduler.reconcile import CEView, NodeView, Place, QueueView, Snapshot, reconcile
from mnp.service.requests import ByName
from mnp.spec.environments import NodeStatus
from mnp.spec.jobs import Job
from mnp.spec.resources import Resources
from mnp.spec.states import JobStatus
from tests.unit.helpers_core import T0, FakeClock, Head, make_job

NOW = T0 + 3_600_000
H = 100.0
"""The decay half-life (``shareDecaySeconds``) of the table tests."""


def job(job_id: str, share: str, priority: int | None = None, vcpus: float = 1) -> Job:
    j = make_job(job_id, JobStatus.RUNNABLE, resources=Resources(vcpus, 0, 0))
    j.spec = replace(j.spec, share_identifier=share, scheduling_priority=priority)
    return j


def backlog(share: str, n: int) -> list[Job]:
    return [job(f"{share}-{i}", share) for i in range(n)]


def snap(
    jobs: list[Job],
    view: FairShareView | None,
    nodes: int = 2,
    vcpus: float = 4,
    now: int = NOW,
    free: list[float] | None = None,
) -> Snapshot:
    cap = Resources(vcpus, 4096, 0)
    views = [
        NodeView(
            f"n{i}",
            "ce",
            NodeStatus.ACTIVE,
            cap,
            Resources(free[i] if free else vcpus, 4096, 0),
            now,
        )
        for i in range(nodes)
    ]
    return Snapshot(
        now_ms=now,
        queues=[QueueView("q", 1, ("ce",))],
        compute_environments={"ce": CEView("ce", True, 0, (cap,))},
        nodes=views,
        submitted=[],
        pending=[],
        dependency_status={},
        runnable={"q": jobs},
        lost_after_ms=60_000,
        launch_timeout_ms=60_000,
        fairshare={"q": view} if view is not None else {},
    )


def placed(s: Snapshot) -> list[str]:
    return [a.job_id for a in reconcile(s) if isinstance(a, Place)]


def shares_of(ids: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in ids:
        share = i.rsplit("-", 1)[0]
        out[share] = out.get(share, 0) + 1
    return out


def policy(*dist: tuple[str, float], reservation: int = 0, decay: float = H) -> SharePolicy:
    return SharePolicy(decay, reservation, tuple(dist))


# --- usage, decay and weights (pure) -----------------------------------------------------------
def test_usage_is_vcpu_seconds_decayed_by_half_life() -> None:
    # 2 vCPUs for 10 s, just ended: 20 vCPU-s, a little less as the start is older
    fresh = interval_usage(2, T0, T0 + 10_000, T0 + 10_000, 1e9)
    assert fresh == pytest.approx(20, rel=1e-6)
    one_half_life_later = interval_usage(2, T0, T0 + 10_000, T0 + 10_000 + 100_000, 100)
    assert one_half_life_later == pytest.approx(
        interval_usage(2, T0, T0 + 10_000, T0 + 10_000, 100) / 2
    )
    ledger = ShareLedger()
    ledger.credit("q", "a", 2, T0, T0 + 10_000, 100)
    ledger.credit("q", "a", 1, T0 + 100_000, T0 + 110_000, 100)
    got = ledger.usage("q", T0 + 110_000, 100)["a"]
    expected = interval_usage(2, T0, T0 + 10_000, T0 + 110_000, 100) + interval_usage(
        1, T0 + 100_000, T0 + 110_000, T0 + 110_000, 100
    )
    assert got == pytest.approx(expected)
    again = ShareLedger.from_doc(ledger.to_doc())
    assert again.usage("q", T0 + 500_000, 100) == pytest.approx(
        ledger.usage("q", T0 + 500_000, 100)
    )
    assert ledger.recent("q", T0 + 150_000, 100) == {"a"}
    assert ledger.recent("q", T0 + 250_000, 100) == set()


def test_zero_decay_seconds_means_the_default_window() -> None:
    p = SharePolicy.from_doc(
        {"shareDecaySeconds": 0, "computeReservation": 20, "shareDistribution": []}
    )
    assert (p.decay_seconds, p.reservation) == (600, 20)


def test_trailing_star_matches_a_prefix_and_the_group_shares_its_weight() -> None:
    p = policy(("team*", 0.5), ("teamx", 3.0), ("vip", 0.25))
    view = FairShareView(p, active=frozenset({"team-a", "team-b", "team-c", "vip", "other"}))
    assert p.entry("teamx") == ("teamx", 3.0)  # an exact entry wins over the prefix
    assert p.entry("team-a") == ("team*", 0.5)
    assert p.entry("tea") is None
    assert view.weight("team-a") == pytest.approx(0.5 * 3)  # three active ids match team*
    assert view.weight("vip") == 0.25
    assert view.weight("other") == 1.0


def test_prefix_group_together_gets_what_one_share_of_its_weight_gets() -> None:
    view = FairShareView(policy(("team*", 1.0)))
    jobs = [*backlog("team-a", 8), *backlog("team-b", 8), *backlog("other", 8)]
    got = shares_of(placed(snap(jobs, view)))
    assert got == {"other": 4, "team-a": 2, "team-b": 2}


# --- order -----------------------------------------------------------------------------------
def test_lowest_weighted_usage_goes_first_and_one_pass_splits_by_weight() -> None:
    view = FairShareView(policy(("a", 1.0), ("b", 3.0)))
    jobs = [*backlog("b", 10), *backlog("a", 10)]  # b submitted first
    got = placed(snap(jobs, view))
    assert shares_of(got) == {"a": 6, "b": 2}  # 8 free vCPUs, 3:1
    history = FairShareView(policy(("a", 1.0), ("b", 3.0)), usage={"a": 1e6})
    assert placed(snap(jobs, history, nodes=1, vcpus=2)) == ["b-0", "b-1"]


def test_fifo_queue_is_untouched_by_shares() -> None:
    jobs = [*backlog("b", 5), *backlog("a", 5)]
    assert placed(snap(jobs, None)) == [j.job_id for j in jobs[:8]]


def test_priority_orders_jobs_inside_one_share_only() -> None:
    view = FairShareView(policy(), usage={"b": 50.0})
    jobs = [
        job("a-low", "a", 0),
        job("a-mid1", "a", 5),
        job("a-top", "a", 9),
        job("a-mid2", "a", 5),
        job("a-none", "a", None),
        job("b-urgent", "b", 9999),
    ]
    # a has the lower usage: its highest priority goes first, though b's job outranks it
    assert placed(snap(jobs, view, nodes=1, vcpus=1)) == ["a-top"]
    # b far behind: a's jobs by priority, FIFO among equals (none counts as 0), then b's
    got = placed(snap(jobs, FairShareView(policy(), usage={"b": 1e9}), nodes=1, vcpus=6))
    assert got == ["a-top", "a-mid1", "a-mid2", "a-low", "a-none", "b-urgent"]


def test_decay_changes_the_split_over_time() -> None:
    """Share a ran alone for a while; then both queue up. Right after, b gets the capacity;
    as a's usage decays (virtual clock), the split goes back towards even."""
    ledger = ShareLedger()
    ledger.credit("q", "a", 8, T0, T0 + 600_000, H)  # 8 vCPUs for 10 minutes
    jobs = [*backlog("a", 8), *backlog("b", 8)]

    def split(at_ms: int) -> dict[str, int]:
        view = FairShareView(policy(), usage=ledger.usage("q", at_ms, H))
        return shares_of(placed(snap(jobs, view, now=at_ms)))

    just_after = split(T0 + 601_000)
    later = split(T0 + 600_000 + int(20 * H * 1000))
    assert just_after == {"b": 8}
    assert later == {"a": 4, "b": 4}
    long_memory = ShareLedger()
    long_memory.credit("q", "a", 8, T0, T0 + 600_000, 100 * H)
    at = T0 + 600_000 + int(20 * H * 1000)
    view = FairShareView(policy(decay=100 * H), usage=long_memory.usage("q", at, 100 * H))
    assert shares_of(placed(snap(jobs, view, now=at))) == {"b": 8}


# --- compute reservation ---------------------------------------------------------------------
def test_reservation_holds_capacity_back_for_shares_not_yet_active() -> None:
    alone = FairShareView(policy(reservation=50), max_vcpus=8)
    assert shares_of(placed(snap(backlog("a", 10), alone))) == {"a": 4}  # (50/100)^1 held
    # a holds its 4; b arrives: (50/100)^2 = 25% held, b (no usage) takes the 2 vCPUs between
    busy = FairShareView(
        policy(reservation=50), usage={"a": 400.0}, running={"a": 4.0}, max_vcpus=8,
        active=frozenset({"a"}),
    )  # fmt: skip
    jobs = [*backlog("a", 10), *backlog("b", 10)]
    got = placed(snap(jobs, busy, free=[0, 4]))
    assert shares_of(got) == {"b": 2}


def test_without_reservation_one_share_takes_everything_and_a_new_one_waits() -> None:
    alone = FairShareView(policy(), max_vcpus=8)
    assert shares_of(placed(snap(backlog("a", 10), alone))) == {"a": 8}
    full = FairShareView(policy(), usage={"a": 400.0}, running={"a": 8.0}, max_vcpus=8)
    assert placed(snap([*backlog("a", 5), *backlog("b", 5)], full, free=[0, 0])) == []


# --- a whole head, over a window, from the usage it records -----------------------------------
def fair_head(tmp_path: Path, clock: FakeClock, **fairshare: Any) -> Head:
    head = Head.open(tmp_path / "home", clock)
    head.environment()
    arn = head.api["createSchedulingPolicy"]({"name": "fs", "fairsharePolicy": fairshare})["arn"]
    head.api["createJobQueue"](
        {
            "jobQueueName": "q",
            "priority": 1,
            "schedulingPolicyArn": arn,
            "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "ce"}],
        }
    )
    head.definition()
    head.node("n1")
    head.node("n2")
    return head


def run_saturated(
    head: Head, seconds: int, job_seconds: int, share_of: dict[str, str]
) -> dict[str, float]:
    """Drive the head's nodes for ``seconds`` (1 s steps): start what they are given, end each
    attempt after ``job_seconds``. Returns the vCPU-seconds each share ran in the second half."""
    started: dict[tuple[str, str], tuple[int, str]] = {}
    ran: dict[str, float] = {}
    half = head.clock.now + seconds * 500
    for _ in range(seconds):
        head.scheduler.tick()
        for node_id in ("n1", "n2"):
            assignments, _ = head.poll(node_id)
            for a in assignments:
                head.started(node_id, a.attempt_id)
                started[(node_id, a.attempt_id)] = (head.clock.now, a.job_id)
        head.clock.advance(1)
        for (node_id, aid), (at, job_id) in list(started.items()):
            if head.clock.now - at >= job_seconds * 1000:
                head.exited(node_id, aid, 0)
                del started[(node_id, aid)]
                share = share_of[job_id]
                window = max(0, head.clock.now - max(at, half)) / 1000
                ran[share] = ran.get(share, 0.0) + window
    return ran


def test_two_shares_weighted_1_and_3_split_a_saturated_environment_3_to_1(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    head = fair_head(
        tmp_path,
        clock,
        shareDecaySeconds=120,
        shareDistribution=[
            {"shareIdentifier": "light", "weightFactor": 1.0},
            {"shareIdentifier": "heavy", "weightFactor": 3.0},
        ],
    )
    try:
        share_of: dict[str, str] = {}
        # 8 vCPUs, 300 s of 10-s jobs: 240 run; more than that of each share wait throughout
        for i in range(250):
            for share in ("heavy", "light"):
                share_of[head.submit(f"{share}{i}", shareIdentifier=share)] = share
        ran = run_saturated(head, seconds=300, job_seconds=10, share_of=share_of)
        total = ran["light"] + ran["heavy"]
        assert total > 0.9 * 8 * 150  # saturated: the 8 vCPUs were busy
        # ideal 0.75 / 0.25; tolerance ±0.05 of the capacity over the window
        assert ran["light"] / total == pytest.approx(0.75, abs=0.05), ran
        # the ledger the head recorded agrees, and a restarted head has it again
        usage = head.scheduler.fair_share_views(clock.now)["q"].usage
        assert usage["light"] / (usage["light"] + usage["heavy"]) == pytest.approx(0.75, abs=0.05)
    finally:
        head.close()
    again = Head.open(tmp_path / "home", clock)
    try:
        restored = again.scheduler.fair_share_views(clock.now)["q"].usage
        assert restored == pytest.approx(usage)
    finally:
        again.close()


def test_fifo_queue_on_a_head_runs_in_submission_order(tmp_path: Path) -> None:
    """The same head without a policy: the shares make no difference (FIFO)."""
    clock = FakeClock()
    head = Head.open(tmp_path / "home", clock)
    try:
        head.basic(("n1",))
        ids = [head.submit(f"j{i}") for i in range(6)]
        head.ticks(2)
        running = [i for i in ids if head.status(i) == "STARTING"]
        assert running == ids[:4]
        assert head.scheduler.fair_share_views(clock.now) == {}
    finally:
        head.close()


# --- what `mnp shares` shows -----------------------------------------------------------------
def test_shares_of_a_queue_in_serving_order_with_usage_weight_and_running(tmp_path: Path) -> None:
    clock = FakeClock()
    head = fair_head(
        tmp_path,
        clock,
        shareDecaySeconds=300,
        computeReservation=50,
        shareDistribution=[{"shareIdentifier": "team*", "weightFactor": 0.5}],
    )
    try:
        for i in range(3):
            head.submit(f"a{i}", shareIdentifier="team-a")
            head.submit(f"b{i}", shareIdentifier="solo")
        head.ticks(2)
        for node_id in ("n1", "n2"):
            for a in head.poll(node_id)[0]:
                head.started(node_id, a.attempt_id)
        clock.advance(10)
        got = head.service.policies.describe_shares(ByName("q"))
        assert (got["maxVcpus"], got["computeReservation"]) == (8.0, 50)
        assert got["reservedVcpus"] == 2.0  # (50/100)^2 of 8: two active shares
        rows = {s["shareIdentifier"]: s for s in got["shares"]}
        assert rows["team-a"]["weightFactor"] == 0.5 and rows["solo"]["weightFactor"] == 1.0
        running = rows["team-a"]["runningVcpus"] + rows["solo"]["runningVcpus"]
        assert running == 6.0  # 8 less the 2 held back
        assert rows["team-a"]["runningVcpus"] == 3.0  # its lower weight: all three of its jobs
        assert rows["team-a"]["usageVcpuSeconds"] == pytest.approx(30, rel=0.03)
        assert rows["team-a"]["weightedUsage"] == pytest.approx(15, rel=0.03)
        assert [s["shareIdentifier"] for s in got["shares"]] == ["team-a", "solo"]
        console = Console(width=120, record=True)
        console.print(shares_summary(got))
        console.print(shares_table(got))
        text = console.export_text()
        assert "compute reservation 50% (2 of 8 vCPUs held for new shares)" in text
        assert re.search(r"team-a\s+29\.7\s+0\.5\s+14\.8\s+3\s+0\s+yes", text), text
        head.queue("plain")
        with pytest.raises(InvalidInput):
            head.service.policies.describe_shares(ByName("plain"))
    finally:
        head.close()
