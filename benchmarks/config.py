"""What every benchmark shares: the paths, the cluster shape, the targets, the sizes of a full
and a quick run, and the one progress channel (:func:`say`, on stderr)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent

JSON = dict[str, Any]
"""A result as it goes into ``results.json`` (and a head's answers, as the client returns them)."""

NODES = 4
VCPUS = 4
MEMORY_MIB = 4096
TERMINAL = ("SUCCEEDED", "FAILED")

TARGETS = {
    "throughput_jobs_per_s": 300.0,
    "array_submit_s": 0.5,
    "latency_median_ms": 50.0,
    "mnp_ratio_to_raw_mpiexec": 1.3,
    "mnp_slack_s": 0.2,
    "aws_submits_per_s": 500.0,
}
"""Benchmark 5: median MNP submit→SUCCEEDED ≤ ratio × median raw mpiexec + slack.
Benchmark 7: SubmitJob through boto3 ≥ 10 × AWS's per-account rate (``AWS_SUBMIT_LIMIT``)."""


@dataclass(frozen=True, slots=True)
class Sizes:
    jobs: int
    """Benchmark 1: trivial jobs per run."""
    throughput_runs: int
    array_size: int
    """Benchmark 2: children of the array."""
    array_runs: int
    latency_samples: int
    fill_arrays: int
    """Benchmark 4: arrays submitted to fill the store."""
    fill_array_size: int
    fill_in_flight: int
    """Benchmark 4: at most this many fill arrays unfinished at a time."""
    mnp_samples: int
    """Benchmark 5: MNP jobs per command; also raw mpiexec runs per command in each of the
    two baseline jobs."""
    bringup_samples: int
    """Benchmark 6: MNP jobs per node count."""
    aws_submits: int
    """Benchmark 7: SubmitJob calls per measurement (split over the clients when concurrent)."""
    aws_runs: int
    aws_describe_calls: int
    """Benchmark 7: DescribeJobs calls (of 100 ids) per run, each through boto3 and natively."""
    container_jobs: int = 100
    """Benchmark 8: trivial jobs of each kind (container, process, raw ``docker run``)."""

    @property
    def fill_jobs(self) -> int:
        return self.fill_arrays * self.fill_array_size


FULL = Sizes(jobs=1000, throughput_runs=3, array_size=10_000, array_runs=3,
             latency_samples=30, fill_arrays=100, fill_array_size=1000, fill_in_flight=4,
             mnp_samples=9, bringup_samples=7, aws_submits=1000, aws_runs=3,
             aws_describe_calls=50, container_jobs=100)
QUICK = Sizes(jobs=200, throughput_runs=3, array_size=2000, array_runs=1,
              latency_samples=10, fill_arrays=10, fill_array_size=1000, fill_in_flight=4,
              mnp_samples=3, bringup_samples=3, aws_submits=200, aws_runs=1,
              aws_describe_calls=10, container_jobs=20)


def say(message: str) -> None:
    """Progress, timestamped, on stderr (stdout carries only the final summary)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
