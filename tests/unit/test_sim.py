"""The simulated cluster (:mod:`mnp.sim`): virtual nodes on a virtual clock drive the real
head to known outcomes: every job done, the makespan a schedule by hand gives, the same
workload from the same seed, fair share's split of a saturated cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mnp.sim.__main__ import main
from mnp.sim.cluster import Cluster, Workload, cluster


def test_eight_jobs_of_ten_seconds_on_four_slots_take_twenty_virtual_seconds(
    tmp_path: Path,
) -> None:
    workload = Workload(jobs=8, min_seconds=10, max_seconds=10, shares=(), queue_target=8)
    with cluster(4, 1, workload, tmp_path / "home") as c:
        assert c.run(seconds=100)
        assert c.done
        assert c.makespan == 20.0  # two waves of four: 0→10, 10→20
        assert c.statuses() == {"SUCCEEDED": 8}
        assert (c.counts.placed, c.counts.completed) == (8, 8)
        assert c.counts.vcpu_seconds == {"": 80.0}
        assert c.unplaced() == 0


def test_an_array_workload_on_fair_share_runs_to_completion(tmp_path: Path) -> None:
    workload = Workload(jobs=60, min_seconds=1, max_seconds=5, queue_target=20, array_size=10)
    with cluster(4, 2, workload, tmp_path / "home") as c:
        assert c.run(seconds=200)
        assert c.done
        statuses = c.statuses()
        assert statuses == {"SUCCEEDED": 60 + 6}  # the children and their 6 parents
        assert c.submits == 6
        total = sum(c.durations.values())
        assert sum(c.counts.vcpu_seconds.values()) == total
        assert c.makespan is not None and total / 8 <= c.makespan <= total


def drawn(seed: int) -> tuple[list[int], float, float | None]:
    workload = Workload(jobs=40, seed=seed, shares=(), queue_target=40)
    with cluster(4, 2, workload) as c:
        c.run()
        assert c.done and c.statuses() == {"SUCCEEDED": 40}
        return list(c.durations.values()), sum(c.counts.vcpu_seconds.values()), c.makespan


def test_the_same_seed_draws_the_same_workload_and_another_does_not() -> None:
    durations, used, makespan = drawn(7)
    again = drawn(7)
    assert again[0] == durations and again[1] == used == sum(durations)
    assert all(1 <= d <= 60 for d in durations)
    assert makespan is not None and max(durations) <= makespan
    assert drawn(8)[0] != durations


@pytest.mark.parametrize(("heavy_weight", "light_part"), [(3.0, 0.75), (1.0, 0.5)])
def test_fair_share_splits_a_saturated_cluster_by_weight(
    tmp_path: Path, heavy_weight: float, light_part: float
) -> None:
    """Weight factors 1 and 3 (a lower factor gets more): 3:1 of the vCPU-time once the
    cluster is saturated; equal factors: 1:1."""
    workload = Workload(
        jobs=600,
        min_seconds=10,
        max_seconds=10,
        shares=(("light", 1.0), ("heavy", heavy_weight)),
        queue_target=600,
        share_decay_seconds=120,
    )
    with cluster(2, 4, workload, tmp_path / "home") as c:
        c.run(seconds=150)
        c.count_from_ms = c.clock.now  # the second half: the shares' usage has built up
        c.run(seconds=150)
        used = c.counts.vcpu_seconds
        total = used["light"] + used["heavy"]
        assert total > 0.9 * 8 * 150  # saturated: the 8 vCPUs were busy
        assert used["light"] / total == pytest.approx(light_part, abs=0.05), used


def test_wall_limit_stops_between_steps(tmp_path: Path) -> None:
    with cluster(2, 1, Workload(jobs=100, min_seconds=5, max_seconds=5, shares=())) as c:
        assert not c.run(seconds=1000, wall_limit=0.0)
        assert c.counts.steps == 0


def test_the_command_prints_a_json_summary(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--nodes", "3", "--vcpus", "2", "--jobs", "30", "--seconds", "500", "--queue", "10"]
    assert main([*args, "--array-size", "5", "--shares", "a=1,b=3", "--max-seconds", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["nodes"], out["vcpus"], out["submitted"], out["completed"]) == (3, 6, 30, 30)
    assert out["decisions"] == 60 and not out["cut_short_by_wall_limit"]
    assert set(out["vcpu_seconds_by_share"]) == {"a", "b"}
    assert out["decisions_per_wall_second"] > 0


def test_a_cluster_keeps_its_store_in_the_home_given(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "home", 1, 1, Workload(jobs=2, min_seconds=1, max_seconds=1))
    try:
        c.run()
        assert c.done and (tmp_path / "home").is_dir()
    finally:
        c.close()
