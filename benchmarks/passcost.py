#!/usr/bin/env python
"""Scheduling-pass cost against the RUNNABLE backlog, head memory with it, and restart time
against store size (issue 17's baseline).

``python benchmarks/passcost.py [--sizes 1000,10000,100000] [--passes 7]
[--restart-sizes 1000,10000,100000] [--million]``

Pass cost: per size, in a fresh process (so its RSS is the head's alone), an in-process head
(:class:`mnp.sim.cluster.Cluster`: the real scheduler and SQLite store, a virtual clock) with
4 virtual nodes of 1 vCPU, each running a job that never ends, gets ``size`` more 1-vCPU jobs
as arrays of up to 10,000 children; it ticks until all of them are RUNNABLE (the nodes are
full, so they stay so), then :meth:`Scheduler.tick` is timed ``passes`` times (the clock
still): median per pass and per RUNNABLE job, and the first pass apart (it writes each new
RUNNABLE job's waiting reason once). Three kinds: a FIFO queue; a fair-share
queue of 2 shares; and *fragmented*, FIFO with 2-vCPU jobs on 4 nodes of 3 vCPUs, one job
running on each, so every node has a vCPU free that no queued job fits in (placement looks
at every job against every node). The head's ``VmRSS`` is read before the jobs are
submitted and once they are RUNNABLE.

Restart: a store holding ``size`` SUCCEEDED jobs (each one attempt and the 5 history entries
of its way through SUBMITTED…SUCCEEDED, all sharing one spec, written with the store's own
:meth:`Store.save_jobs` in transactions of 20,000) and the environment, queue and 4 nodes of
a head; then a head is opened on it 3 times (:class:`Store`, :class:`HeadState`,
:class:`Scheduler`, :class:`Service` and ``Service.load``, which restores the state from the
store): median time. ``--million`` adds 1,000,000 finished jobs when building it takes under
3 minutes (estimated from the 100,000 build).

Writes ``results-passcost.json`` (the benchmarks README shows it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: the checkout's packages, not installed ones
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import save_standalone
from mnp.config import HeadConfig
from mnp.scheduler.loop import Scheduler
from mnp.scheduler.state import HeadState
from mnp.service.core import Service
from mnp.sim.cluster import CE, DEFINITION, QUEUE, Cluster, Workload
from mnp.spec.jobs import Attempt, Job
from mnp.spec.states import HistoryEntry, JobStatus
from mnp.store.sqlite import Store

JSON = dict[str, Any]
RESULTS = Path(__file__).resolve().parent / "results-passcost.json"
NODES = 4
ARRAY_MOST = 10_000
NEVER_S = 10**7
"""A virtual duration no pass reaches: the nodes stay full."""
BUILD_BATCH = 20_000
SHARES = (("a", 1.0), ("b", 1.0))


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rss_mib() -> float:
    """This process's resident set (``VmRSS``), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- pass cost (one size, in its own process) --------------------------------------------------
KINDS = ("fifo", "fairshare", "fragmented")


def one_size(size: int, passes: int, kind: str) -> JSON:
    """Pass cost with ``size`` RUNNABLE jobs behind full nodes (see the module docstring)."""
    shares = SHARES if kind == "fairshare" else ()
    # fragmented: 2-vCPU jobs on 3-vCPU nodes, one each: every node has 1 vCPU free, which
    # no queued job fits in
    job_vcpus, node_vcpus = (2, 3) if kind == "fragmented" else (1, 1)
    workload = Workload(
        jobs=0, min_seconds=NEVER_S, max_seconds=NEVER_S, shares=shares, vcpus=job_vcpus
    )
    with tempfile.TemporaryDirectory(prefix="mnp-passcost-") as tmp:
        c = Cluster(Path(tmp) / "home", NODES, node_vcpus, workload)
        try:
            out = _measure(c, size, passes, shares)
        finally:
            c.close()
    out["kind"] = kind
    return out


def _submit(c: Cluster, count: int, share: str | None) -> None:
    body: JSON = {"jobName": "p", "jobQueue": QUEUE, "jobDefinition": DEFINITION}
    if share is not None:
        body["shareIdentifier"] = share
    if count > 1:
        body["arrayProperties"] = {"size": count}
    job_id = str(c.api["submitJob"](body)["jobId"])
    ids = [f"{job_id}:{i}" for i in range(count)] if count > 1 else [job_id]
    for child in ids:
        c.durations[child] = NEVER_S


def _measure(c: Cluster, size: int, passes: int, shares: tuple[tuple[str, float], ...]) -> JSON:
    names: list[str | None] = [s for s, _ in shares] or [None]
    for i in range(NODES):  # fill the nodes
        _submit(c, 1, names[i % len(names)])
    for _ in range(5):
        c.step()
    assert c.counts.placed == NODES, c.counts
    rss_before = rss_mib()
    t0 = time.perf_counter()
    left, k = size, 0
    while left > 0:
        n = min(ARRAY_MOST, left)
        _submit(c, n if n > 1 else 1, names[k % len(names)])
        left -= n
        k += 1
    runnable = c.state.runnable.get(QUEUE, {})
    deadline = time.perf_counter() + 600
    while len(runnable) < size:
        assert time.perf_counter() < deadline, "the jobs did not all become RUNNABLE"
        c.scheduler.tick()
        runnable = c.state.runnable.get(QUEUE, {})
    build = time.perf_counter() - t0
    times = []
    for _ in range(passes):
        t = time.perf_counter()
        c.scheduler.tick()
        times.append(time.perf_counter() - t)
    assert len(c.state.runnable[QUEUE]) == size and c.counts.placed == NODES
    median = statistics.median(times)
    return {
        "runnable": size,
        "passes": passes,
        "median_pass_ms": round(median * 1000, 3),
        "pass_ms_range": [round(min(times) * 1000, 3), round(max(times) * 1000, 3)],
        "first_pass_ms": round(times[0] * 1000, 3),
        "median_us_per_runnable_job": round(median / size * 1e6, 3),
        "rss_mib_before": round(rss_before, 1),
        "rss_mib_with_backlog": round(rss_mib(), 1),
        "build_seconds": round(build, 2),
    }


def pass_cost(sizes: list[int], passes: int, baseline: Path | None = None) -> list[JSON]:
    """Each size and queue kind in a fresh interpreter (its RSS is its own); with a
    ``baseline`` checkout, each also on that one just before, its median pass beside."""
    out = []
    for kind in KINDS:
        for size in sizes:
            _say(f"pass cost: {size:,} RUNNABLE, {kind}")
            before = _one(baseline, size, passes, kind) if baseline is not None else None
            row = _one(Path(__file__).resolve().parent.parent, size, passes, kind)
            if before is not None:
                row["baseline_median_pass_ms"] = before["median_pass_ms"]
                row["baseline_median_us_per_runnable_job"] = before["median_us_per_runnable_job"]
            out.append(row)
    return out


def _one(tree: Path, size: int, passes: int, kind: str) -> JSON:
    """One size and kind measured with the ``mnp`` of ``tree`` (a checkout)."""
    cmd = [sys.executable, str(tree / "benchmarks" / "passcost.py"), "--one", str(size),
           "--passes", str(passes), "--kind", kind]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=900)
    result: JSON = json.loads(done.stdout)
    return result


# --- restart against store size ----------------------------------------------------------------
def build_store(home: Path, finished: int) -> float:
    """A head's store in ``home`` with its environment, queue, 4 nodes and ``finished``
    SUCCEEDED jobs; returns the seconds writing the jobs took."""
    c = Cluster(home, NODES, 1, Workload(jobs=0, shares=()))
    try:
        _submit(c, 1, None)  # a spec to share
        c.run(seconds=3)
        spec = next(iter(c.state.active.values())).spec if c.state.active else None
        if spec is None:
            spec = c.store.spec(c.store.db.execute("SELECT spec_id FROM job_specs").fetchone()[0])
    finally:
        c.close()
    store = Store(HeadConfig(home=home, local=None).db_path)
    t0 = time.perf_counter()
    try:
        at = 1_700_000_000_000
        done = 0
        while done < finished:
            batch = []
            for i in range(done, min(finished, done + BUILD_BATCH)):
                batch.append(_finished_job(f"done-{i:08d}", spec, at + i))
            with store.transaction():
                store.save_jobs(batch)
            done += len(batch)
    finally:
        store.close()
    return time.perf_counter() - t0


def _finished_job(job_id: str, spec: Any, at: int) -> Job:
    steps = (JobStatus.SUBMITTED, JobStatus.PENDING, JobStatus.RUNNABLE, JobStatus.STARTING,
             JobStatus.RUNNING, JobStatus.SUCCEEDED)  # fmt: skip
    attempt = Attempt(1, "v000000", "10.0.0.0", CE, f"{DEFINITION}/default/{job_id}", at + 3,
                      at + 4, at + 10, 0, None, "Essential container in task exited")  # fmt: skip
    return Job(
        job_id=job_id,
        spec=spec,
        status=JobStatus.SUCCEEDED,
        created_at=at,
        started_at=at + 4,
        stopped_at=at + 10,
        attempts=[attempt],
        history=[HistoryEntry(s, at + k * 2, None) for k, s in enumerate(steps)],
    )


def reopen(home: Path) -> float:
    """Seconds to open a head on ``home``'s store and restore its state."""
    t0 = time.perf_counter()
    config = HeadConfig(home=home, local=None)
    store = Store(config.db_path)
    try:
        state = HeadState(config, store, clock=lambda: 1_700_000_000_000)
        Service(state, Scheduler(state, "http://127.0.0.1:1")).load()
        return time.perf_counter() - t0
    finally:
        store.close()


def restart(sizes: list[int], million: bool) -> list[JSON]:
    out = []
    rate = None
    todo = list(sizes)
    if million:
        todo.append(1_000_000)
    for size in todo:
        if size == 1_000_000 and (rate is None or size / rate > 180):
            _say(f"restart: 1,000,000 skipped (build estimated {size / (rate or 1):.0f} s)")
            out.append({"finished_jobs": size, "skipped": "build estimated over 3 minutes"})
            continue
        with tempfile.TemporaryDirectory(prefix="mnp-restart-") as tmp:
            home = Path(tmp) / "home"
            _say(f"restart: building {size:,} finished jobs")
            build = build_store(home, size)
            rate = size / build if build > 0 else None
            db = HeadConfig(home=home, local=None).db_path
            times = [reopen(home) for _ in range(3)]
            out.append({
                "finished_jobs": size,
                "median_restart_s": round(statistics.median(times), 3),
                "restart_s_range": [round(min(times), 3), round(max(times), 3)],
                "store_mib": round(sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
                                   / 2**20, 1),
                "build_seconds": round(build, 1),
            })  # fmt: skip
    return out


def table(results: JSON) -> str:
    """The README's tables of the results."""
    lines = [
        "| RUNNABLE jobs | FIFO: pass (median), per job | fair share | fragmented (FIFO) "
        "| head RSS, FIFO (before the jobs) |",
        "|---|---|---|---|---|",
    ]
    by = {(r["kind"], r["runnable"]): r for r in results["pass_cost"]}
    for size in sorted({r["runnable"] for r in results["pass_cost"]}):
        cells = []
        for kind in KINDS:
            r = by.get((kind, size))
            cells.append(
                "–" if r is None
                else f"{r['median_pass_ms']:,} ms, {r['median_us_per_runnable_job']} µs"
                f" (first {r['first_pass_ms']:,.0f} ms)" + _before(r)
            )  # fmt: skip
        f = by.get(("fifo", size), {})
        rss = f"{f.get('rss_mib_with_backlog', 0):,.0f} MiB ({f.get('rss_mib_before', 0):,.0f})"
        lines.append(f"| {size:,} | " + " | ".join(cells) + f" | {rss} |")
    growth = results.get("per_job_growth_smallest_to_largest")
    if growth:
        lines.append("| per-job cost, largest ÷ smallest | "
                     + " | ".join(f"{growth.get(k, '–')}×" for k in KINDS) + " | |")  # fmt: skip
    lines += ["", "| finished jobs in the store | restart (median of 3) | store size |",
              "|---|---|---|"]  # fmt: skip
    for r in results["restart"]:
        if "skipped" in r:
            lines.append(f"| {r['finished_jobs']:,} | skipped: {r['skipped']} | |")
        else:
            lines.append(f"| {r['finished_jobs']:,} | {r['median_restart_s']} s "
                         f"| {r['store_mib']:,} MiB |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _before(r: JSON) -> str:
    b = r.get("baseline_median_pass_ms")
    return "" if b is None else f"; baseline {b:,} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--passes", type=int, default=7)
    ap.add_argument("--restart-sizes", default="1000,10000,100000")
    ap.add_argument("--million", action="store_true", help="also 1,000,000 finished jobs")
    ap.add_argument("--output", type=Path, default=RESULTS, help="results JSON")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="another checkout: each case also runs on it, just before")  # fmt: skip
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--kind", choices=KINDS, default="fifo", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:  # one size, in this process: JSON on stdout
        print(json.dumps(one_size(args.one, args.passes, args.kind)))
        return 0
    t0 = time.perf_counter()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    results: JSON = {"nodes": NODES, "vcpus_per_node": 1}
    results["baseline"] = str(args.baseline) if args.baseline is not None else None
    results["pass_cost"] = pass_cost(sizes, args.passes, args.baseline)
    growth = {}
    for kind in KINDS:
        rows = sorted((r for r in results["pass_cost"] if r["kind"] == kind),
                      key=lambda r: r["runnable"])  # fmt: skip
        if len(rows) > 1 and rows[0]["median_us_per_runnable_job"] > 0:
            growth[kind] = round(rows[-1]["median_us_per_runnable_job"]
                                 / rows[0]["median_us_per_runnable_job"], 2)  # fmt: skip
    results["per_job_growth_smallest_to_largest"] = growth
    restart_sizes = [int(s) for s in args.restart_sizes.split(",") if s]
    results["restart"] = restart(restart_sizes, args.million)
    save_standalone(results, t0, args.output, table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
