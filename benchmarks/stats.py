"""The figures a benchmark reports: medians, p90, fits, rounding, CPU per job."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from benchmarks.config import JSON


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def p90(values: Sequence[float]) -> float:
    if len(values) < 2:
        return float(values[0])
    return float(statistics.quantiles(values, n=10, method="inclusive")[8])


def slope(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line through the points."""
    fit = statistics.linear_regression(xs, ys)
    return fit.slope, fit.intercept


def s3(x: float) -> float:
    return round(x, 3)


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


def per_job_ms(cpu: JSON, jobs: int) -> dict[str, float]:
    """CPU milliseconds per job by role, from a :class:`~benchmarks.cpu.CpuMeter` reading."""
    return {role: round(sec * 1000 / jobs, 2) for role, sec in cpu["cpu_s"].items()}


def median_per_job(runs: Sequence[JSON]) -> dict[str, float]:
    """The median of each role's ``cpu_ms_per_job`` over ``runs``."""
    roles = runs[0]["cpu_ms_per_job"]
    return {role: median([r["cpu_ms_per_job"][role] for r in runs]) for role in roles}
