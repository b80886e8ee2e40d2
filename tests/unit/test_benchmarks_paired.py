"""benchmarks.paired's summary: medians per tree and the median of the per-round ratios."""

from __future__ import annotations

from typing import Any

from benchmarks.paired import summary, table


def _tree(jobs_per_s: float, head: float) -> dict[str, Any]:
    cpu = {"client": 0.1, "head": head, "agents": 1.0, "jobs": 0.5}
    return {
        "singles": {"jobs_per_s": jobs_per_s, "cpu_ms_per_job": cpu,
                    "cpu_ms_per_job_total": sum(cpu.values())},
        "submit": {"native": {"head_cpu_ms_per_submit": 0.4},
                   "aws": {"head_cpu_ms_per_submit": 0.5}},
    }  # fmt: skip


def test_the_ratio_is_the_median_of_each_rounds_own() -> None:
    # the machine doubles its speed in round 2: both trees move, the paired ratio does not
    rounds = [
        {"baseline": _tree(100, 2.0), "this": _tree(110, 1.8)},
        {"baseline": _tree(200, 1.0), "this": _tree(220, 0.9)},
        {"baseline": _tree(150, 1.5), "this": _tree(165, 1.35)},
    ]
    got = summary(rounds)
    assert got["singles jobs/s"]["paired_ratio"] == 1.1
    assert got["singles head ms/job"]["paired_ratio"] == 0.9
    assert got["singles jobs/s"]["baseline"] == 150 and got["singles jobs/s"]["this"] == 165
    assert got["singles jobs/s"]["this_range"] == [110, 220]
    assert got["SubmitJob head ms, AWS"]["paired_ratio"] == 1.0
    text = table({"baseline": "abc1234", "summary": got})
    assert "| singles jobs/s | 150 (100–200) | 165 (110–220) | 1.1 |" in text
