"""Benchmark 8, container job overhead: trivial jobs with an image against the same jobs as
processes, one at a time and all at once; baseline: ``docker run --rm`` through the CLI."""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from benchmarks.config import JSON, NODES, VCPUS, Sizes, say
from benchmarks.cpu import wait_quiet
from benchmarks.head import HeadNode
from benchmarks.jobs import definition, wait_job
from benchmarks.report import Row
from benchmarks.stats import median, p90
from mnp.client.client import Client

SLOTS = NODES * VCPUS
"""The head's one-vCPU job slots: how many raw ``docker run`` go at once in the batch."""


def one_by_one(c: Client, definition_name: str, count: int) -> list[float]:
    """Client-observed seconds from before ``submitJob`` until ``describeJobs`` says the job
    ended, one job at a time (polled every 5 ms); every job must succeed."""
    times = []
    for i in range(count):
        t0 = time.perf_counter()
        job = c.submit({"jobName": f"{definition_name}{i}", "jobQueue": "default",
                        "jobDefinition": definition_name})
        d = wait_job(c, job, timeout=60, interval=0.005)
        times.append(time.perf_counter() - t0)
        if d["status"] != "SUCCEEDED":
            raise RuntimeError(f"containers: {definition_name} job {job} {d['status']}: "
                               f"{d.get('statusReason')}")
    return times


def all_at_once(c: Client, definition_name: str, count: int) -> float:
    """Seconds from the first of ``count`` submits until all are terminal (all SUCCEEDED)."""
    t0 = time.perf_counter()
    ids = [c.submit({"jobName": f"{definition_name}-b{i}", "jobQueue": "default",
                     "jobDefinition": definition_name}) for i in range(count)]
    for job in ids:
        d = wait_job(c, job, timeout=max(120.0, count * 2.0), interval=0.02)
        if d["status"] != "SUCCEEDED":
            raise RuntimeError(f"containers: {job} {d['status']}: {d.get('statusReason')}")
    return time.perf_counter() - t0


def raw_docker_runs(host: str, image: str, count: int, parallel: int = 1) -> list[float]:
    """Seconds per ``docker run --rm --network host <image> true`` (the CLI), ``parallel``
    at a time."""
    env = {**os.environ, "DOCKER_HOST": host}

    def one(_: int) -> float:
        t0 = time.perf_counter()
        subprocess.run(["docker", "run", "--rm", "--network", "host", image, "true"],
                       check=True, env=env, stdout=subprocess.DEVNULL, timeout=120)
        return time.perf_counter() - t0

    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(one, range(count)))


@dataclass(frozen=True, slots=True)
class Measured:
    """Seconds measured through mnp (per job, one at a time; whole batches) and raw."""

    quiet: float
    proc_s: list[float]
    ctr_s: list[float]
    proc_batch: float
    ctr_batch: float
    raw_s: list[float]
    raw_batch: float


def _measure(scratch: Path, keep: bool, host: str, image: str, n: int) -> Measured:
    """The mnp jobs on a fresh head, then the raw ``docker run`` baseline."""
    with HeadNode(scratch, "containers", keep) as head:
        c = head.c
        c.register_job_definition(definition("proc", ["true"]))
        ctr = definition("ctr", ["true"])
        ctr["containerProperties"]["image"] = image
        c.register_job_definition(ctr)
        one_by_one(c, "proc", 3)  # warm-up, not counted
        one_by_one(c, "ctr", 3)
        quiet = wait_quiet()
        say(f"  {n} process jobs, then {n} container jobs, one at a time")
        proc_s = one_by_one(c, "proc", n)
        ctr_s = one_by_one(c, "ctr", n)
        say(f"  {n} of each submitted at once")
        proc_batch = all_at_once(c, "proc", n)
        ctr_batch = all_at_once(c, "ctr", n)
    raw_docker_runs(host, image, 3)
    say(f"  {n} raw docker run --rm")
    raw_s = raw_docker_runs(host, image, n)
    say(f"  {n} raw docker run --rm, {SLOTS} at a time")
    t0 = time.perf_counter()
    raw_docker_runs(host, image, n, parallel=SLOTS)
    raw_batch = time.perf_counter() - t0
    return Measured(quiet, proc_s, ctr_s, proc_batch, ctr_batch, raw_s, raw_batch)


def run(sizes: Sizes, scratch: Path, keep: bool) -> JSON:
    """Needs Docker (``tests.docker_support``): the running engine, else one started here and
    stopped by PID; ``DOCKER_HOST`` is restored afterwards."""
    from tests.docker_support import DockerEngine

    n = sizes.container_jobs
    engine = DockerEngine()
    saved = os.environ.get("DOCKER_HOST")
    try:
        engine.start()
        os.environ["DOCKER_HOST"] = engine.host  # the head's agents inherit it
        image = engine.build_images()["base"]
        m = _measure(scratch, keep, engine.host, image, n)
        left = engine.mnp_containers()
    finally:
        if saved is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = saved
        engine.stop()
    if left:
        raise RuntimeError(f"containers: {len(left)} containers left behind")
    mp, mc, mr = median(m.proc_s), median(m.ctr_s), median(m.raw_s)
    result = {
        "jobs": n,
        "image": image,
        "busy_before_pct": m.quiet,
        "median_process_job_s": round(mp, 4),
        "median_container_job_s": round(mc, 4),
        "median_raw_docker_run_s": round(mr, 4),
        "p90_container_job_s": round(p90(m.ctr_s), 4),
        "ratio_container_to_process": round(mc / mp, 2),
        "ratio_container_to_raw_docker_run": round(mc / mr, 2),
        "container_overhead_over_raw_s": round(mc - mr, 4),
        "batch_process_s": round(m.proc_batch, 3),
        "batch_container_s": round(m.ctr_batch, 3),
        "batch_process_jobs_per_s": round(n / m.proc_batch, 1),
        "batch_container_jobs_per_s": round(n / m.ctr_batch, 1),
        "batch_ratio_container_to_process": round(m.ctr_batch / m.proc_batch, 2),
        "batch_raw_docker_run_s": round(m.raw_batch, 3),
        "batch_raw_docker_run_parallel": SLOTS,
        "batch_ratio_container_to_raw_docker_run": round(m.ctr_batch / m.raw_batch, 2),
    }
    say(f"  {result}")
    return result


def rows(ct: JSON, results: JSON) -> list[Row]:
    return [
        (f"8. container job, submit → SUCCEEDED, one at a time ({ct['jobs']})",
         f"{ct['median_container_job_s'] * 1000:.0f} ms",
         f"process job {ct['median_process_job_s'] * 1000:.0f} ms (ratio "
         f"{ct['ratio_container_to_process']:.1f}); `docker run --rm` "
         f"{ct['median_raw_docker_run_s'] * 1000:.0f} ms (ratio "
         f"{ct['ratio_container_to_raw_docker_run']:.2f})", "", "", ""),
        (f"   {ct['jobs']} submitted at once: all done",
         f"{ct['batch_container_s']:.1f} s ({ct['batch_container_jobs_per_s']:.0f} jobs/s)",
         f"process jobs {ct['batch_process_s']:.1f} s (ratio "
         f"{ct['batch_ratio_container_to_process']:.1f}); `docker run --rm`, "
         f"{ct['batch_raw_docker_run_parallel']} at a time, "
         f"{ct['batch_raw_docker_run_s']:.1f} s (ratio "
         f"{ct['batch_ratio_container_to_raw_docker_run']:.2f})", "", "", ""),
    ]


def prose(f: Sizes, results: JSON) -> str:
    return f"""\
8. **Container job overhead.** On one head, with a Docker engine (the running one, else
   `dockerd --bridge=none --iptables=false` started for the benchmark and stopped by PID)
   and a tiny image imported from this machine's files (`tests/docker_support.py`, nothing
   pulled): {f.container_jobs} trivial `true` jobs run as processes, then {f.container_jobs} \
with that `image`, one at
   a time (client-observed submit → SUCCEEDED, polled every 5 ms; 3 warm-up jobs each
   first), and {f.container_jobs} of each submitted at once (time until all are done).
   Baseline: `docker run --rm --network host <image> true` through the CLI, one at a time,
   {f.container_jobs} runs, and {f.container_jobs} runs {SLOTS} at a time (as many as
   the head has job slots). Medians and their ratios.
"""
