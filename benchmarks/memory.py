"""Benchmark 4, head-node memory with many finished jobs in the store: the head's RSS, its
SQLite file and what the agents left on disk; baseline: the idle head's RSS."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.config import JSON, TERMINAL, Sizes, say
from benchmarks.cpu import CpuMeter, wait_quiet
from benchmarks.head import HeadNode
from benchmarks.jobs import definition
from benchmarks.machine import tree_usage
from benchmarks.report import Row, load
from benchmarks.stats import mib, per_job_ms


@dataclass(frozen=True, slots=True)
class Filled:
    """The head once the store is filled: job counts, RSS and what is on disk."""

    counts: dict[str, int]
    status_s: float
    """How long one getStatus call took."""
    rss_kib: int
    hwm_kib: int
    db_bytes: int
    wal_bytes: int
    nodes: tuple[int, int, int]
    """(directories, files, bytes) under the home's ``nodes/``; ``logs`` likewise."""
    logs: tuple[int, int, int]


def _fill(head: HeadNode, sizes: Sizes, idle: int) -> tuple[float, list[JSON], int]:
    """Submit the fill arrays, at most ``fill_in_flight`` unfinished at a time, until all are
    done: (seconds, their final descriptions, the peak RSS sampled meanwhile)."""
    c = head.c
    t0 = time.perf_counter()
    submitted = 0
    in_flight: list[str] = []
    done: list[JSON] = []
    peak = idle
    last_note = t0
    while submitted < sizes.fill_arrays or in_flight:
        while submitted < sizes.fill_arrays and len(in_flight) < sizes.fill_in_flight:
            in_flight.append(c.submit({
                "jobName": f"fill{submitted}", "jobQueue": "default", "jobDefinition": "t",
                "arrayProperties": {"size": sizes.fill_array_size}}))
            submitted += 1
        time.sleep(0.25)
        details = c.describe_jobs(in_flight)
        finished = [d for d in details if d["status"] in TERMINAL]
        done.extend(finished)
        gone = {d["jobId"] for d in finished}
        in_flight = [j for j in in_flight if j not in gone]
        peak = max(peak, head.rss_kib())
        if time.perf_counter() - last_note > 30:
            last_note = time.perf_counter()
            rate = len(done) * sizes.fill_array_size / (last_note - t0)
            say(f"  {len(done)}/{sizes.fill_arrays} arrays done ({rate:.0f} jobs/s), "
                f"RSS {mib(head.rss_kib())} MiB")
    return time.perf_counter() - t0, done, peak


def _filled(head: HeadNode) -> Filled:
    t = time.perf_counter()
    counts = head.c.status()["jobCounts"]
    status_s = time.perf_counter() - t
    time.sleep(2.0)
    rss = head.rss_kib()
    hwm = head.hwm_kib()
    db = head.db_path.stat().st_size
    wal_path = head.db_path.with_name(head.db_path.name + "-wal")
    wal = wal_path.stat().st_size if wal_path.exists() else 0
    return Filled(counts=counts, status_s=status_s, rss_kib=rss, hwm_kib=hwm, db_bytes=db,
                  wal_bytes=wal, nodes=tree_usage(head.home / "nodes"),
                  logs=tree_usage(head.home / "logs"))


def run(sizes: Sizes, scratch: Path, keep: bool) -> JSON:
    with HeadNode(scratch, "memory", keep) as head:
        head.c.register_job_definition(definition("t", ["true"]))
        time.sleep(2.0)  # settle: every agent's first heartbeat round is done
        idle = head.rss_kib()
        quiet = wait_quiet()
        say(f"memory: idle head RSS {mib(idle)} MiB; filling {sizes.fill_arrays} arrays of "
            f"{sizes.fill_array_size}, at most {sizes.fill_in_flight} at a time")
        meter = CpuMeter(head).start()
        fill_s, done, peak = _fill(head, sizes, idle)
        cpu = meter.stop()
        bad = [d["jobId"] for d in done if d["status"] != "SUCCEEDED"]
        if bad:
            raise RuntimeError(f"memory: fill arrays did not succeed: {bad[:5]}")
        filled = _filled(head)
    counts = filled.counts
    expected = sizes.fill_jobs + sizes.fill_arrays
    if int(counts.get("SUCCEEDED", 0)) != expected:
        raise RuntimeError(f"memory: expected {expected} SUCCEEDED jobs in the store, got {counts}")
    db, wal = filled.db_bytes, filled.wal_bytes
    result = {
        "finished_jobs": sizes.fill_jobs,
        "jobs_in_store": sum(int(v) for v in counts.values()),
        "arrays": f"{sizes.fill_arrays} x {sizes.fill_array_size}",
        "fill_s": round(fill_s, 1),
        "fill_jobs_per_s": round(sizes.fill_jobs / fill_s, 1),
        "baseline_idle_rss_mib": mib(idle),
        "rss_after_mib": mib(filled.rss_kib),
        "rss_growth_mib": mib(filled.rss_kib - idle),
        "peak_rss_sampled_mib": mib(peak),
        "peak_rss_hwm_mib": mib(filled.hwm_kib),
        "sqlite_mib": round(db / 2**20, 1),
        "sqlite_wal_mib": round(wal / 2**20, 1),
        "sqlite_bytes_per_job": round((db + wal) / max(1, sizes.fill_jobs)),
        "node_dirs_files_mib": [*filled.nodes[:2], round(filled.nodes[2] / 2**20, 1)],
        "log_dirs_files_mib": [*filled.logs[:2], round(filled.logs[2] / 2**20, 1)],
        "get_status_s": round(filled.status_s, 3),
        "head_stop_s": None if head.stop_s is None else round(head.stop_s, 2),
        "busy_before_pct": quiet,
        **cpu,
        "cpu_ms_per_job": per_job_ms(cpu, sizes.fill_jobs),
    }
    say(f"  {result}")
    return result


def rows(mem: JSON, results: JSON) -> list[Row]:
    dirs, files, size = mem["node_dirs_files_mib"]
    return [
        (f"4. head RSS with {mem['finished_jobs']:,} finished jobs",
         f"{mem['rss_after_mib']:.0f} MiB (peak {mem['peak_rss_hwm_mib']:.0f})",
         f"idle head {mem['baseline_idle_rss_mib']:.0f} MiB", "", "", ""),
        ("   SQLite file (+ WAL)",
         f"{mem['sqlite_mib']:.0f} MiB (+ {mem['sqlite_wal_mib']:.0f})",
         f"{mem['sqlite_bytes_per_job']} bytes/job", "", "", ""),
        ("   fill rate (arrays, sustained)", f"{mem['fill_jobs_per_s']:.0f} jobs/s",
         "", "", "", load(mem)),
        ("   agents' workdirs left on disk", f"{dirs:,} dirs, {files:,} files",
         f"{size:.0f} MiB", "", "", ""),
    ]


def prose(f: Sizes, results: JSON) -> str:
    return f"""\
4. **Head-node memory** with {f.fill_jobs:,} finished jobs in the store: {f.fill_arrays}
   arrays of {f.fill_array_size:,} `true` children (at most {f.fill_in_flight} unfinished at a
   time), then the head's `VmRSS` (and `VmHWM`, its peak) and the SQLite file size.
   Baseline: `VmRSS` of the idle head before filling.
"""
