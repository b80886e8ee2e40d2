"""The head's running tallies for fair share (``HeadState.share_jobs`` and ``live_shares``):
kept as jobs come, start and end, they must say what a walk over every active job says, through
placements, retries, cancellations and a reload from the store."""

from __future__ import annotations

from pathlib import Path

from mnp.scheduler.fairshare import interval_usage
from mnp.scheduler.state import HeadState
from mnp.spec.states import JobStatus
from tests.unit.helpers_core import FakeClock, Head
from tests.unit.test_fairshare import fair_head

LIVE = (JobStatus.STARTING, JobStatus.RUNNING)


def walked(s: HeadState, now: int, decay: float) -> tuple[set[str], dict[str, float], float]:
    """Active shares, vCPUs held per share and their decayed usage so far, by walking every
    active job (what a pass did before the tallies)."""
    active: set[str] = set()
    held: dict[str, float] = {}
    usage = 0.0
    for job in s.active.values():
        if job.status.terminal:
            continue
        share = job.spec.share_identifier or ""
        active.add(share)
        attempt = job.current_attempt
        if job.status not in LIVE or attempt is None or job.is_array_parent:
            continue
        held[share] = held.get(share, 0.0) + job.resources.vcpus
        usage += interval_usage(job.resources.vcpus, attempt.placed_at, now, now, decay)
    return active, held, usage


def check(head: Head) -> None:
    s, now = head.state, head.clock.now
    active, held, usage = walked(s, now, 120)
    view = head.scheduler.fair_share_views(now)["q"]
    assert {share for (q, share) in s.share_jobs if q == "q"} == active
    assert view.active >= active
    assert view.running == held
    ended = s.ledger.usage("q", now, 120)
    live = sum(view.usage.values()) - sum(ended.values())
    assert abs(live - usage) < 1e-6


def test_tallies_follow_every_start_and_end_and_a_reload(tmp_path: Path) -> None:
    clock = FakeClock()
    head = fair_head(
        tmp_path,
        clock,
        shareDecaySeconds=120,
        shareDistribution=[{"shareIdentifier": "a"}, {"shareIdentifier": "b"}],
    )
    try:
        ids = [head.submit(f"j{i}", shareIdentifier="ab"[i % 2]) for i in range(12)]
        head.submit("arr", shareIdentifier="b", arrayProperties={"size": 3})
        other = head.submit("c0", shareIdentifier="c")
        check(head)
        assert ("q", "c") in head.state.share_jobs
        head.api["cancelJob"]({"jobId": other, "reason": "no"})
        check(head)
        assert ("q", "c") not in head.state.share_jobs  # its only job ended
        for step in range(12):
            head.scheduler.tick()
            check(head)
            for node_id in ("n1", "n2"):
                assignments, _ = head.poll(node_id)
                for n, a in enumerate(assignments):
                    if (step + n) % 3:
                        head.started(node_id, a.attempt_id)
                    if step % 2:
                        head.exited(node_id, a.attempt_id, step % 4 - 1)  # some fail
            check(head)
            if step == 4:
                head.api["cancelJob"]({"jobId": ids[-1], "reason": "no"})
                head.api["terminateJob"]({"jobId": ids[0], "reason": "no"})
                check(head)
            if step == 6:
                head.scheduler.reload()  # memory rebuilt from the store: the tallies too
                check(head)
            clock.advance(1)
    finally:
        head.close()
    again = Head.open(tmp_path / "home", clock)
    try:
        check(again)
        assert again.state.share_jobs  # jobs are left, and counted again after a restart
    finally:
        again.close()
