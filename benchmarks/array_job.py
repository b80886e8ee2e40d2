"""Benchmark 2, an array of many children: the ``submitJob`` call that creates it, and the
time until all children are done; baselines: a one-job ``submitJob``, process spawns."""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.config import JSON, TARGETS, Sizes, say
from benchmarks.cpu import CpuMeter, wait_quiet
from benchmarks.head import HeadNode
from benchmarks.jobs import definition, wait_job, wait_terminal_count
from benchmarks.machine import spawn_rate
from benchmarks.report import Row, cpu_row, load, verdict
from benchmarks.stats import median, median_per_job, mib, per_job_ms
from mnp.client.client import Client


def _single_submits(c: Client) -> list[float]:
    """Baseline: seconds of 10 plain submitJob calls, waited out before the array."""
    single: list[float] = []
    single_ids: list[str] = []
    for i in range(10):
        t = time.perf_counter()
        single_ids.append(c.submit({"jobName": f"s{i}", "jobQueue": "default",
                                    "jobDefinition": "t"}))
        single.append(time.perf_counter() - t)
    wait_terminal_count(c, len(single_ids), timeout=60)
    return single


def _one_run(sizes: Sizes, scratch: Path, keep: bool, run: int) -> JSON:
    """One run on a fresh head; raises unless the parent and every child SUCCEEDED."""
    n = sizes.array_size
    say(f"array run {run + 1}/{sizes.array_runs}: baseline spawn of 1000")
    spawns = spawn_rate(1000)
    with HeadNode(scratch, "array", keep) as head:
        c = head.c
        c.register_job_definition(definition("t", ["true"]))
        single = _single_submits(c)
        quiet = wait_quiet()
        say(f"  submitting an array of {n}")
        meter = CpuMeter(head).start()
        t0 = time.perf_counter()
        parent = c.submit({"jobName": "arr", "jobQueue": "default", "jobDefinition": "t",
                           "arrayProperties": {"size": n}})
        submit_s = time.perf_counter() - t0
        detail = wait_job(c, parent, timeout=max(300.0, n * 0.2), interval=0.05)
        elapsed = time.perf_counter() - t0
        cpu = meter.stop()
        rss = head.rss_kib()
        hwm = head.hwm_kib()
    summary = detail.get("arrayProperties", {}).get("statusSummary", {})
    if detail["status"] != "SUCCEEDED" or summary.get("SUCCEEDED") != n:
        raise RuntimeError(f"array: parent {detail['status']}, children {summary}")
    server_s = (int(detail["stoppedAt"]) - int(detail["createdAt"])) / 1000
    result = {
        "children": n,
        "submit_s": round(submit_s, 4),
        "elapsed_s": round(elapsed, 3),
        "jobs_per_s": round(n / elapsed, 1),
        "server_elapsed_s": round(server_s, 3),
        "baseline_single_submit_ms": round(median(single) * 1000, 2),
        "baseline_spawns_per_s": round(spawns, 1),
        "head_rss_after_mib": mib(rss),
        "head_peak_rss_mib": mib(hwm),
        "busy_before_pct": quiet,
        **cpu,
        "cpu_ms_per_job": per_job_ms(cpu, n),
    }
    say(f"  {result}")
    return result


def run(sizes: Sizes, scratch: Path, keep: bool) -> JSON:
    runs = [_one_run(sizes, scratch, keep, r) for r in range(sizes.array_runs)]
    submit = median([r["submit_s"] for r in runs])
    rate = median([r["jobs_per_s"] for r in runs])
    spawn = median([r["baseline_spawns_per_s"] for r in runs])
    return {
        "median_other_pct": median([r["other_pct"] for r in runs]),
        "median_cpu_ms_per_job": median_per_job(runs),
        "runs": runs,
        "n_runs": len(runs),
        "median_submit_s": submit,
        "median_jobs_per_s": rate,
        "median_elapsed_s": median([r["elapsed_s"] for r in runs]),
        "median_baseline_single_submit_ms": median(
            [r["baseline_single_submit_ms"] for r in runs]),
        "median_baseline_spawns_per_s": spawn,
        "ratio_to_spawn": round(rate / spawn, 3),
        "target_submit_s": TARGETS["array_submit_s"],
        "met": submit < TARGETS["array_submit_s"],
    }


def rows(a: JSON, results: JSON) -> list[Row]:
    n = a["runs"][0]["children"]
    return [
        (f"2. array of {n:,}: submit call", f"{a['median_submit_s'] * 1000:.0f} ms",
         f"single submitJob {a['median_baseline_single_submit_ms']:.1f} ms",
         f"< {a['target_submit_s'] * 1000:.0f} ms", verdict(a["met"]), ""),
        (f"   array of {n:,}: all children done",
         f"{a['median_elapsed_s']:.1f} s ({a['median_jobs_per_s']:.0f} jobs/s)",
         f"{a['median_baseline_spawns_per_s']:.0f} spawns/s (ratio {a['ratio_to_spawn']:.2f})",
         "", "", load(a)),
        cpu_row(a),
    ]


def prose(f: Sizes, results: JSON) -> str:
    return f"""\
2. **Array job.** One `submitJob` with `arrayProperties.size = {f.array_size:,}`: the time of
   the call, and the time until the parent is SUCCEEDED (all children done; jobs/s).
   Median of {f.array_runs} runs, fresh head each. Baselines: a plain one-job `submitJob`
   call on the same head; the process spawn rate.
"""
