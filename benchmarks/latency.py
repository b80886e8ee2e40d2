"""Benchmark 3, submit → RUNNING latency on an idle cluster, from the job's history and as
the client sees it; baselines: an API round trip, a process spawn."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

from benchmarks.config import JSON, TARGETS, TERMINAL, Sizes, say
from benchmarks.cpu import CpuMeter, wait_quiet
from benchmarks.head import HeadNode
from benchmarks.jobs import definition, history_at, wait_job
from benchmarks.polling import wait_for
from benchmarks.report import Row, load, verdict
from benchmarks.stats import median, p90
from mnp.client.client import Client

STATUSES = ("SUBMITTED", "RUNNABLE", "STARTING", "RUNNING")
STAGES = [f"{a}→{b}" for a, b in pairwise(STATUSES)]


def started_check(c: Client, job_id: str) -> Callable[[], bool]:
    def started() -> bool:
        return c.describe(job_id)["status"] in ("RUNNING", *TERMINAL)
    return started


def _baselines(c: Client) -> tuple[list[float], list[float]]:
    """Milliseconds of 50 ``describeJobs`` round trips (of a finished job) and of 50
    ``Popen(["true"])``."""
    known = c.submit({"jobName": "warm", "jobQueue": "default", "jobDefinition": "t"})
    wait_job(c, known, timeout=30)
    rtt: list[float] = []
    for _ in range(50):
        t = time.perf_counter()
        c.describe(known)
        rtt.append((time.perf_counter() - t) * 1000)
    spawn: list[float] = []
    for _ in range(50):
        t = time.perf_counter()
        p = subprocess.Popen(["true"])
        spawn.append((time.perf_counter() - t) * 1000)
        p.wait()
    return rtt, spawn


def _sample(c: Client, i: int) -> tuple[float, list[int]]:
    """One ``sleep 1`` job: (client-observed ms until RUNNING, the history times of
    ``STATUSES``, epoch ms); raises unless it SUCCEEDED with a complete history."""
    t0 = time.perf_counter()
    job = c.submit({"jobName": f"lat{i}", "jobQueue": "default", "jobDefinition": "sleep1"})
    wait_for("RUNNING", started_check(c, job), 30, interval=0.002)
    client_ms = (time.perf_counter() - t0) * 1000
    detail = wait_job(c, job, timeout=30)
    if detail["status"] != "SUCCEEDED":
        raise RuntimeError(f"latency job {job} ended {detail['status']}")
    at = {s: history_at(detail, s) for s in STATUSES}
    if any(v is None for v in at.values()):
        raise RuntimeError(f"latency job {job}: incomplete history {detail['history']}")
    return client_ms, [int(at[s] or 0) for s in STATUSES]


def run(sizes: Sizes, scratch: Path, keep: bool) -> JSON:
    server: list[float] = []
    client: list[float] = []
    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
    with HeadNode(scratch, "latency", keep) as head:
        c = head.c
        c.register_job_definition(definition("sleep1", ["sleep", "1"]))
        c.register_job_definition(definition("t", ["true"]))
        rtt, spawn = _baselines(c)
        quiet = wait_quiet()
        meter = CpuMeter(head).start()
        for i in range(sizes.latency_samples):
            time.sleep(0.3)  # idle: the previous job is done and its report handled
            client_ms, at = _sample(c, i)
            client.append(client_ms)
            server.append(float(at[-1] - at[0]))
            for stage, (start, end) in zip(STAGES, pairwise(at), strict=True):
                stages[stage].append(float(end - start))
        cpu = meter.stop()
    result = {
        "samples": len(server),
        "history_ms": server,
        "client_ms": [round(x, 2) for x in client],
        "median_ms": median(server),
        "p90_ms": p90(server),
        "client_median_ms": round(median(client), 2),
        "client_p90_ms": round(p90(client), 2),
        "stage_median_ms": {k: median(v) for k, v in stages.items()},
        "baseline_api_rtt_median_ms": round(median(rtt), 2),
        "baseline_spawn_median_ms": round(median(spawn), 2),
        "target_median_ms": TARGETS["latency_median_ms"],
        "met": median(server) < TARGETS["latency_median_ms"],
        "busy_before_pct": quiet,
        **cpu,
    }
    say(f"  latency median {result['median_ms']} ms, p90 {result['p90_ms']} ms, "
        f"client median {result['client_median_ms']} ms")
    return result


def rows(lat: JSON, results: JSON) -> list[Row]:
    st = lat["stage_median_ms"]
    return [
        ("3. submit → RUNNING (history), median / p90",
         f"{lat['median_ms']:.0f} / {lat['p90_ms']:.0f} ms",
         f"API round trip {lat['baseline_api_rtt_median_ms']:.1f} ms, "
         f"spawn {lat['baseline_spawn_median_ms']:.1f} ms",
         f"median < {lat['target_median_ms']:.0f} ms", verdict(lat["met"]), load(lat)),
        ("   client-observed (poll describe), median / p90",
         f"{lat['client_median_ms']:.0f} / {lat['client_p90_ms']:.0f} ms", "", "", "", ""),
        ("   stages: →RUNNABLE / →STARTING / →RUNNING (median)",
         " / ".join(f"{v:.0f}" for v in st.values()) + " ms", "", "", "", ""),
    ]


def prose(f: Sizes, results: JSON) -> str:
    return f"""\
3. **Submit → RUNNING latency** on an idle cluster: {f.latency_samples} `sleep 1` jobs, one at
   a time; `RUNNING.at − SUBMITTED.at` from the job's `history` (head clock), and the
   client-observed time from before `submitJob` until `describeJobs` says RUNNING (polled
   every 2 ms). Median and p90, and the median of each stage (SUBMITTED→RUNNABLE→STARTING→
   RUNNING). Baselines: one `describeJobs` round trip; one `Popen(["true"])`.
"""
