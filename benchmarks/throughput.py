"""Benchmark 1, end-to-end throughput: trivial jobs submitted one ``submitJob`` call at a time,
timed until all are terminal; baseline: process spawns per second."""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.config import JSON, TARGETS, Sizes, say
from benchmarks.cpu import CpuMeter, wait_quiet
from benchmarks.head import HeadNode
from benchmarks.jobs import definition, wait_terminal_count
from benchmarks.machine import spawn_rate
from benchmarks.report import Row, cpu_row, load, verdict
from benchmarks.stats import median, median_per_job, per_job_ms


def _one_run(sizes: Sizes, scratch: Path, keep: bool, run: int) -> JSON:
    """One run on a fresh head, after its baseline; raises unless every job SUCCEEDED."""
    say(f"throughput run {run + 1}/{sizes.throughput_runs}: baseline spawn of {sizes.jobs}")
    spawns = spawn_rate(sizes.jobs)
    with HeadNode(scratch, "throughput", keep) as head:
        c = head.c
        c.register_job_definition(definition("t", ["true"]))
        quiet = wait_quiet()
        say(f"  submitting {sizes.jobs} jobs")
        meter = CpuMeter(head).start()
        wall0 = time.time()
        t0 = time.perf_counter()
        ids = [c.submit({"jobName": f"x{i}", "jobQueue": "default", "jobDefinition": "t"})
               for i in range(sizes.jobs)]
        submitted = time.perf_counter() - t0
        wait_terminal_count(c, sizes.jobs, timeout=max(120.0, sizes.jobs * 0.2))
        elapsed = time.perf_counter() - t0
        cpu = meter.stop()
        details = c.describe_jobs(ids)
    statuses = {d["status"] for d in details}
    if len(details) != sizes.jobs or statuses != {"SUCCEEDED"}:
        raise RuntimeError(f"throughput: expected {sizes.jobs} SUCCEEDED, got {statuses}")
    last_stop_s = max(int(d["stoppedAt"]) for d in details) / 1000 - wall0
    result = {
        "jobs": sizes.jobs,
        "elapsed_s": round(elapsed, 3),
        "jobs_per_s": round(sizes.jobs / elapsed, 1),
        "server_elapsed_s": round(last_stop_s, 3),
        "submit_s": round(submitted, 3),
        "submits_per_s": round(sizes.jobs / submitted, 1),
        "baseline_spawns_per_s": round(spawns, 1),
        "busy_before_pct": quiet,
        **cpu,
        "cpu_ms_per_job": per_job_ms(cpu, sizes.jobs),
    }
    say(f"  {result}")
    return result


def run(sizes: Sizes, scratch: Path, keep: bool) -> JSON:
    runs = [_one_run(sizes, scratch, keep, r) for r in range(sizes.throughput_runs)]
    rate = median([r["jobs_per_s"] for r in runs])
    spawn = median([r["baseline_spawns_per_s"] for r in runs])
    return {
        "median_other_pct": median([r["other_pct"] for r in runs]),
        "median_cpu_ms_per_job": median_per_job(runs),
        "runs": runs,
        "median_jobs_per_s": rate,
        "median_submits_per_s": median([r["submits_per_s"] for r in runs]),
        "median_baseline_spawns_per_s": spawn,
        "ratio_to_spawn": round(rate / spawn, 3),
        "target_jobs_per_s": TARGETS["throughput_jobs_per_s"],
        "met": rate >= TARGETS["throughput_jobs_per_s"],
    }


def rows(t: JSON, results: JSON) -> list[Row]:
    return [
        ("1. end-to-end throughput",
         f"{t['median_jobs_per_s']:.0f} jobs/s",
         f"{t['median_baseline_spawns_per_s']:.0f} spawns/s (ratio {t['ratio_to_spawn']:.2f})",
         f"≥ {t['target_jobs_per_s']:.0f} jobs/s", verdict(t["met"]), load(t)),
        ("   submit rate (client, 1 thread)", f"{t['median_submits_per_s']:.0f} /s",
         "", "", "", ""),
        cpu_row(t),
    ]


def prose(f: Sizes, results: JSON) -> str:
    return f"""\
1. **End-to-end throughput.** {f.jobs:,} trivial jobs (`true`, 1 vCPU) submitted one
   `submitJob` call at a time; time from the first submit until `getStatus` counts them all
   terminal (polled every 20 ms; all checked SUCCEEDED). {f.throughput_runs} runs, fresh head
   each; median. Baseline: `subprocess.run(["true"])` in a loop in the benchmark process
   (same count), and the ratio jobs/s ÷ spawns/s.
"""
