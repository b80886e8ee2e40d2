#!/usr/bin/env python
"""Scheduling-pass cost against the RUNNABLE backlog, head memory with it, and restart time
against store size (issue 17's baseline).

``python benchmarks/passcost.py [--sizes 1000,10000,100000] [--passes 7]
[--restart-sizes 1000,10000,100000] [--million] [--cases pass,mixed,restart]
[--mixed-runs 3]``

Pass cost: per size, in a fresh process (so its RSS is the head's alone), an in-process head
(:class:`mnp.sim.cluster.Cluster`: the real scheduler and SQLite store, a virtual clock) with
4 virtual nodes of 1 vCPU, each running a job that never ends, gets ``size`` more 1-vCPU jobs
as arrays of up to 10,000 children; it ticks until all of them are RUNNABLE (the nodes are
full, so they stay so), then :meth:`Scheduler.tick` is timed ``passes`` times (the clock
still), each walking the whole queue for its reasons (``explain_every_ms`` 0: the pass the
head makes at most once a second on a deep queue): median per pass and per RUNNABLE job, and
the first pass apart (it writes each new RUNNABLE job's waiting reason once); then as many
passes between such walks (``median_pass_ms_between_walks``). Three kinds: a FIFO queue; a
fair-share queue of 2 shares; and *fragmented*, FIFO with 2-vCPU jobs on 4 nodes of 3 vCPUs, one job
running on each, so every node has a vCPU free that no queued job fits in (placement looks
at every job against every node). The head's ``VmRSS`` is read before the jobs are
submitted and once they are RUNNABLE.

Mixed (``--cases mixed`` alone), also in a fresh process: an array of 10,000 1-vCPU children
and 1,000 single jobs after it, as 100 chains of 10 (a pipeline's later stages: each single
depends on the array's parent by ``jobId``, each but a chain's first also on the single
before it), queued behind 4 nodes of 2,500 vCPUs, each full with one 2,500-vCPU job that
ends at a virtual hour; the passes are timed as above once the children are RUNNABLE and the
singles PENDING (median per pass and per queued job, the first apart; RSS before and after
queueing). Then the clock jumps the hour: one step places the whole array (its passes
timed), 4 new node-sized jobs are queued so the nodes fill again once the array ends, and
the next step reports the children's exits (the array's parent SUCCEEDED there) and ticks:
the passes of that step (the first looks at all 1,000 singles; the 100 chains' first jobs
become RUNNABLE, the rest wait on their predecessors) and then ``passes`` more with the
clock still are timed. The head's own pieces release the singles; nothing is set by hand.
Run ``--mixed-runs`` times (3), once the machine is quiet each: the run of the median pass
cost is kept, with every run's median pass and the other load meanwhile. ``--baseline``
does not apply to it.

Restart: a store holding ``size`` SUCCEEDED jobs (each one attempt and the 5 history entries
of its way through SUBMITTED…SUCCEEDED, all sharing one spec, written with the store's own
:meth:`Store.save_jobs` in transactions of 20,000) and the environment, queue and 4 nodes of
a head; then a head is opened on it 3 times (:class:`Store`, :class:`HeadState`,
:class:`Scheduler`, :class:`Service` and ``Service.load``, which restores the state from the
store): median time. ``--million`` adds 1,000,000 finished jobs when building it takes under
3 minutes (estimated from the 100,000 build).

Writes ``results-passcost.json`` (the benchmarks README shows it); ``--cases`` naming only
some keeps the others' results as they are in it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: the checkout's packages, not installed ones
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import save_standalone
from mnp.config import HeadConfig
from mnp.scheduler.loop import EXPLAIN_EVERY_MS, Scheduler
from mnp.scheduler.state import HeadState
from mnp.service.core import Service
from mnp.sim.cluster import CE, DEFINITION, QUEUE, Cluster, Workload
from mnp.spec.jobs import Attempt, Job, array_child_id
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
    c.scheduler.explain_every_ms = 0  # every pass walks the whole queue for its reasons
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
    times = _timed_passes(c, passes)
    c.scheduler.explain_every_ms = EXPLAIN_EVERY_MS
    c.scheduler.tick()  # untimed: the last walk was "now", so this and the next do not walk
    cut = _timed_passes(c, passes)
    assert len(c.state.runnable[QUEUE]) == size and c.counts.placed == NODES
    median = statistics.median(times)
    return {
        "runnable": size,
        "passes": passes,
        "median_pass_ms": round(median * 1000, 3),
        "pass_ms_range": [round(min(times) * 1000, 3), round(max(times) * 1000, 3)],
        "first_pass_ms": round(times[0] * 1000, 3),
        "median_pass_ms_between_walks": round(statistics.median(cut) * 1000, 3),
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


# --- mixed queue: an array and single jobs depending on it (one process) -----------------------
MIXED_ARRAY = 10_000
MIXED_SINGLES = 1_000
MIXED_CHAIN = 10
"""The singles are chains of this many: each depends on the array, each but a chain's first
also on the single before it."""
MIXED_NODE_VCPUS = -(-MIXED_ARRAY // NODES)
"""Nodes big enough to take the whole array at once when freed."""
FILL_S = 3600
"""The first fillers' virtual duration: the clock is still while passes are timed, then it
jumps past this so that the nodes free."""
FILLER = "simfill"


def mixed(passes: int) -> JSON:
    """Pass cost with an array of :data:`MIXED_ARRAY` RUNNABLE children and
    :data:`MIXED_SINGLES` PENDING singles depending on it, behind full nodes, then the passes
    that release the singles (see the module docstring)."""
    workload = Workload(jobs=0, min_seconds=1, max_seconds=1, shares=())
    with tempfile.TemporaryDirectory(prefix="mnp-passcost-") as tmp:
        c = Cluster(Path(tmp) / "home", NODES, MIXED_NODE_VCPUS, workload)
        c.scheduler.explain_every_ms = 0  # every pass walks the queue for reasons: the worst
        try:
            return _measure_mixed(c, passes)
        finally:
            c.close()


def _submit_body(c: Cluster, body: JSON, seconds: int) -> str:
    job_id = str(c.api["submitJob"]({"jobName": "m", "jobQueue": QUEUE, **body})["jobId"])
    size = body.get("arrayProperties", {}).get("size", 1)
    for child in [array_child_id(job_id, i) for i in range(size)] if size > 1 else [job_id]:
        c.durations[child] = seconds
    return job_id


def _statuses(c: Cluster) -> dict[str, int]:
    out: dict[str, int] = {}
    for job in c.state.active.values():
        if not job.is_array_parent:
            out[job.status.value] = out.get(job.status.value, 0) + 1
    return out


def _timed_passes(c: Cluster, passes: int) -> list[float]:
    times = []
    for _ in range(passes):
        t = time.perf_counter()
        c.scheduler.tick()
        times.append(time.perf_counter() - t)
    return times


@contextmanager
def _each_pass(scheduler: Scheduler) -> Iterator[list[float]]:
    """The wall seconds of each :meth:`Scheduler.tick` while inside: :meth:`Cluster.step`
    ticks again while a tick wakes work, as the head's loop does, and those passes are
    timed apart."""
    tick = scheduler.tick
    times: list[float] = []

    def timed() -> None:
        t = time.perf_counter()
        tick()
        times.append(time.perf_counter() - t)

    scheduler.tick = timed  # type: ignore[method-assign]
    try:
        yield times
    finally:
        scheduler.tick = tick  # type: ignore[method-assign]


def _measure_mixed(c: Cluster, passes: int) -> JSON:
    c.api["registerJobDefinition"]({
        "jobDefinitionName": FILLER,
        "type": "container",
        "containerProperties": {"command": ["true"], "resourceRequirements": [
            {"type": "VCPU", "value": str(MIXED_NODE_VCPUS)},
            {"type": "MEMORY", "value": "256"},
        ]},
    })  # fmt: skip
    for _ in range(NODES):  # fill the nodes, each with one job as big as it
        _submit_body(c, {"jobDefinition": FILLER}, FILL_S)
    for _ in range(5):
        c.step()
    assert c.counts.placed == NODES, c.counts
    rss_before = rss_mib()
    t0 = time.perf_counter()
    array = _submit_body(
        c, {"jobDefinition": DEFINITION, "arrayProperties": {"size": MIXED_ARRAY}}, 1
    )
    last = ""
    for k in range(MIXED_SINGLES):
        deps = [{"jobId": array}] + ([{"jobId": last}] if k % MIXED_CHAIN else [])
        last = _submit_body(c, {"jobDefinition": DEFINITION, "dependsOn": deps}, 1)
    queued = MIXED_ARRAY + MIXED_SINGLES
    want = {"RUNNING": NODES, "RUNNABLE": MIXED_ARRAY, "PENDING": MIXED_SINGLES}
    deadline = time.perf_counter() + 600
    while _statuses(c) != want:
        assert time.perf_counter() < deadline, f"not all queued: {_statuses(c)}"
        c.scheduler.tick()
    build = time.perf_counter() - t0
    times = _timed_passes(c, passes)
    assert _statuses(c) == want, _statuses(c)
    rss_queued = rss_mib()
    # the nodes free: one step places the whole array, the next reports its exits
    c.clock.advance(FILL_S)
    with _each_pass(c.scheduler) as placing:
        c.step()
    assert _statuses(c) == {"RUNNING": MIXED_ARRAY, "PENDING": MIXED_SINGLES}, _statuses(c)
    for _ in range(NODES):  # fillers again, queued before the array ends: RUNNABLE first
        _submit_body(c, {"jobDefinition": FILLER}, NEVER_S)
    while _statuses(c).get("RUNNABLE", 0) < NODES:
        assert time.perf_counter() < deadline, f"fillers not RUNNABLE: {_statuses(c)}"
        c.scheduler.tick()
    report = c.counts.wall.get("report", 0.0)
    with _each_pass(c.scheduler) as releasing:
        c.step()
    report = c.counts.wall["report"] - report
    after = _statuses(c)
    heads = MIXED_SINGLES // MIXED_CHAIN
    assert after == {"RUNNING": NODES, "RUNNABLE": heads, "PENDING": MIXED_SINGLES - heads}, after
    later = _timed_passes(c, passes)
    assert _statuses(c) == after, _statuses(c)
    median, median_later = statistics.median(times), statistics.median(later)
    return {
        "array_children": MIXED_ARRAY,
        "singles": MIXED_SINGLES,
        "chain": MIXED_CHAIN,
        "node_vcpus": MIXED_NODE_VCPUS,
        "passes": passes,
        "queued": queued,
        "median_pass_ms": _ms(median),
        "pass_ms_range": [_ms(min(times)), _ms(max(times))],
        "first_pass_ms": _ms(times[0]),
        "median_us_per_queued_job": round(median / queued * 1e6, 3),
        "rss_mib_before": round(rss_before, 1),
        "rss_mib_queued": round(rss_queued, 1),
        "build_seconds": round(build, 2),
        "placing_array_passes_ms": [_ms(t) for t in placing],
        "exits_report_ms": _ms(report),
        "release_passes_ms": [_ms(t) for t in releasing],
        "after_release": after,
        "after_release_median_pass_ms": _ms(median_later),
        "after_release_first_pass_ms": _ms(later[0]),
        "rss_mib_after_release": round(rss_mib(), 1),
    }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def mixed_runs(runs: int, passes: int) -> JSON:
    """The mixed case ``runs`` times, each in a fresh process: the run of the median pass
    cost, with every run's median pass and other load beside (the machine is shared, and a
    run it disturbs stands out)."""
    done = []
    runs = max(1, runs)
    for i in range(runs):
        _say(f"pass cost: an array of {MIXED_ARRAY:,} and {MIXED_SINGLES:,} singles after it "
             f"({i + 1} of {runs})")  # fmt: skip
        done.append(_one_mixed(Path(__file__).resolve().parent.parent, passes))
    done.sort(key=lambda r: r["median_pass_ms"])
    out = dict(done[(len(done) - 1) // 2])
    out["runs"] = runs
    out["runs_median_pass_ms"] = [r["median_pass_ms"] for r in done]
    out["runs_other_pct"] = [r["other_pct"] for r in done]
    return out


def _one_mixed(tree: Path, passes: int) -> JSON:
    """The mixed case measured in a fresh interpreter (its RSS is its own), once the machine
    is quiet; ``other_pct``: the machine's capacity something else used meanwhile (a run
    disturbed by other work has pessimistic figures)."""
    # here, not at the top: the measuring process would carry them in its RSS
    from benchmarks.cpu import wait_quiet
    from benchmarks.machine import machine_jiffies

    cmd = [sys.executable, str(tree / "benchmarks" / "passcost.py"), "--one-mixed",
           "--passes", str(passes)]  # fmt: skip
    wait_quiet()
    total0, idle0 = machine_jiffies()
    before = os.times()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=900)
    after = os.times()
    total1, idle1 = machine_jiffies()
    total = max(1, total1 - total0)
    busy = total - (idle1 - idle0)
    ours = _cpu_s(after) - _cpu_s(before)
    result: JSON = json.loads(done.stdout)
    other = busy - ours * os.sysconf("SC_CLK_TCK")
    result["other_pct"] = round(100 * max(0.0, other) / total, 1)
    return result


def _cpu_s(t: os.times_result) -> float:
    """CPU seconds of this process and its reaped children."""
    return t.user + t.system + t.children_user + t.children_system


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
    lines: list[str] = []
    if results.get("pass_cost"):
        lines += _pass_table(results)
    if results.get("restart"):
        lines += ["", "| finished jobs in the store | restart (median of 3) | store size |",
                  "|---|---|---|"]  # fmt: skip
    for r in results.get("restart", []):
        if "skipped" in r:
            lines.append(f"| {r['finished_jobs']:,} | skipped: {r['skipped']} | |")
        else:
            lines.append(f"| {r['finished_jobs']:,} | {r['median_restart_s']} s "
                         f"| {r['store_mib']:,} MiB |")  # fmt: skip
    m = results.get("mixed")
    if m:
        a, heads = m["after_release"], m["singles"] // m["chain"]
        lines += [
            "", "| queued: array + singles after it | pass (median), per queued job "
            "| head RSS (before the jobs) | placing the array; its exits reported "
            "| passes releasing the singles | pass after "
            f"({a.get('RUNNABLE', 0):,} RUNNABLE, {a.get('PENDING', 0):,} PENDING) |",
            "|---|---|---|---|---|---|",
            f"| {m['array_children']:,} + {m['singles']:,} (chains of {m['chain']}; "
            f"{heads:,} released) | {m['median_pass_ms']:,} ms, "
            f"{m['median_us_per_queued_job']} µs (first {m['first_pass_ms']:,.0f} ms) "
            f"| {m['rss_mib_queued']:,.0f} MiB ({m['rss_mib_before']:,.0f}) "
            f"| {' + '.join(f'{t:,.0f}' for t in m['placing_array_passes_ms'])} ms; "
            f"{m['exits_report_ms']:,.0f} ms "
            f"| {', '.join(f'{t:,.1f}' for t in m['release_passes_ms'])} ms "
            f"| {m['after_release_median_pass_ms']} ms |",
        ]  # fmt: skip
    return "\n".join(lines).lstrip("\n") + "\n"


def _pass_table(results: JSON) -> list[str]:
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
    return lines


def _before(r: JSON) -> str:
    b = r.get("baseline_median_pass_ms")
    return "" if b is None else f"; baseline {b:,} ms"


CASES = ("pass", "mixed", "restart")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--passes", type=int, default=7)
    ap.add_argument("--restart-sizes", default="1000,10000,100000")
    ap.add_argument("--million", action="store_true", help="also 1,000,000 finished jobs")
    ap.add_argument("--cases", default=",".join(CASES),
                    help="those of pass,mixed,restart to run (others' results kept)")  # fmt: skip
    ap.add_argument("--output", type=Path, default=RESULTS, help="results JSON")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="another checkout: each case also runs on it, just before")  # fmt: skip
    ap.add_argument("--mixed-runs", type=int, default=3, help="runs of the mixed case")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--one-mixed", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--kind", choices=KINDS, default="fifo", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:  # one size, in this process: JSON on stdout
        print(json.dumps(one_size(args.one, args.passes, args.kind)))
        return 0
    if args.one_mixed:
        print(json.dumps(mixed(args.passes)))
        return 0
    cases = [c for c in args.cases.split(",") if c]
    if unknown := sorted(set(cases) - set(CASES)):
        ap.error(f"unknown cases {unknown}: choose from {', '.join(CASES)}")
    t0 = time.perf_counter()
    results: JSON = {"nodes": NODES, "vcpus_per_node": 1}
    if set(cases) != set(CASES) and args.output.exists():  # the cases not run: as they were
        results = json.loads(args.output.read_text())
    if "pass" in cases:
        sizes = [int(s) for s in args.sizes.split(",") if s]
        results["baseline"] = str(args.baseline) if args.baseline is not None else None
        results["pass_cost"] = pass_cost(sizes, args.passes, args.baseline)
        results["per_job_growth_smallest_to_largest"] = _growth(results["pass_cost"])
    if "mixed" in cases:
        started = time.perf_counter()
        results["mixed"] = mixed_runs(args.mixed_runs, args.passes)
        results["mixed"]["seconds"] = round(time.perf_counter() - started, 1)
        results["mixed"]["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if "restart" in cases:
        restart_sizes = [int(s) for s in args.restart_sizes.split(",") if s]
        results["restart"] = restart(restart_sizes, args.million)
    if set(cases) == set(CASES):
        save_standalone(results, t0, args.output, table(results))
    else:  # the run's time and timestamp stay those of the last run of every case
        args.output.write_text(json.dumps(results, indent=2) + "\n")
        print(table(results), end="")
    return 0


def _growth(rows: list[JSON]) -> JSON:
    """Per kind, the per-job pass cost at the largest size ÷ at the smallest."""
    growth = {}
    for kind in KINDS:
        mine = sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["runnable"])
        if len(mine) > 1 and mine[0]["median_us_per_runnable_job"] > 0:
            growth[kind] = round(mine[-1]["median_us_per_runnable_job"]
                                 / mine[0]["median_us_per_runnable_job"], 2)  # fmt: skip
    return growth


if __name__ == "__main__":
    raise SystemExit(main())
