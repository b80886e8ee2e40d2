"""The benchmarks, in their order (the README's numbering): each module measures, and says
how its result reads in the README (table rows and a numbered paragraph)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks import (
    array_job,
    aws,
    bringup,
    containers,
    latency,
    memory,
    mnp_launch,
    throughput,
)
from benchmarks.config import JSON, Sizes
from benchmarks.report import Row


@dataclass(frozen=True, slots=True)
class Benchmark:
    """One benchmark, as its module provides it."""

    run: Callable[[Sizes, Path, bool], JSON]
    """(sizes, scratch directory, keep the heads' homes) → its entry in ``results.json``;
    starts and stops its own head nodes, and raises if a job did not do what it should."""
    rows: Callable[[JSON, JSON], list[Row]]
    """(its entry, the whole results) → its rows of the README's table."""
    prose: Callable[[Sizes, JSON], str]
    """(the full sizes, the whole results) → its numbered paragraph of the README, ending
    in a newline."""


BENCHMARKS: dict[str, Benchmark] = {
    "throughput": Benchmark(throughput.run, throughput.rows, throughput.prose),
    "array": Benchmark(array_job.run, array_job.rows, array_job.prose),
    "latency": Benchmark(latency.run, latency.rows, latency.prose),
    "memory": Benchmark(memory.run, memory.rows, memory.prose),
    "mnp": Benchmark(mnp_launch.run, mnp_launch.rows, mnp_launch.prose),
    "bringup": Benchmark(bringup.run, bringup.rows, bringup.prose),
    "aws": Benchmark(aws.run, aws.rows, aws.prose),
    "containers": Benchmark(containers.run, containers.rows, containers.prose),
}
NUMBERS = {name: i for i, name in enumerate(BENCHMARKS, 1)}
"""Benchmark name → its number in the README."""
