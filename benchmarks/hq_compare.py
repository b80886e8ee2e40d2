"""mnp side by side with HyperQueue: 1,000 trivial jobs submitted one by one, and one array of
1,000, on 16 slots each (4 nodes × 4 vCPUs; HyperQueue's ``LocalCluster`` with 4 workers × 4
cores), alternating the two systems run by run; jobs/s and whole-machine CPU per job by process.

One command: ``python -m benchmarks.hq_compare [--runs 3] [--jobs 1000]``; installs
``hyperqueue`` from PyPI with pip if it is missing; writes ``benchmarks/results-hq.json`` and
prints the table of ``benchmarks/README.md``.

HyperQueue's ``LocalCluster`` runs its server and workers as threads of one process (Rust, over
FFI); that process is hosted by a child of the benchmark so its CPU is told apart from the
client's. Its figures are reported as ``head`` (server and workers together; ``agents`` is 0),
its tasks' as ``jobs``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.config import BENCH_DIR, JSON, REPO, say
from benchmarks.cpu import wait_quiet
from benchmarks.head import HeadNode
from benchmarks.jobs import definition, wait_job, wait_terminal_count
from benchmarks.machine import machine_info, machine_jiffies, process_jiffies, speed_gauge
from benchmarks.stats import median
from mnp.config import NODE_NETWORK_ENV

RESULTS = BENCH_DIR / "results-hq.json"
WORKERS = 4
CORES = 4
WORKLOADS = ("singles", "array")
ROLES = ("client", "head", "agents", "jobs")

_HQ_HOST = """\
import os, sys
from hyperqueue.cluster import LocalCluster, WorkerConfig
cluster = LocalCluster(server_dir=sys.argv[1])
for _ in range(int(sys.argv[2])):
    cluster.start_worker(WorkerConfig(cores=int(sys.argv[3])))
print("SERVER_DIR", cluster.cluster.server_dir, flush=True)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
sys.stdin.read()
cluster.stop()
"""
"""The HyperQueue cluster's process: prints its server directory, runs until stdin closes."""


def ensure_hyperqueue() -> Any:
    """The ``hyperqueue`` module, installed from PyPI with pip first if it is missing."""
    try:
        return importlib.import_module("hyperqueue")
    except ImportError:
        say("installing hyperqueue from PyPI")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "hyperqueue"],
                       check=True)
        importlib.invalidate_caches()
        return importlib.import_module("hyperqueue")


class Meter:
    """Whole-machine CPU between :meth:`start` and :meth:`stop`, and each role's share:
    ``roles`` maps a PID to (its own role, its reaped children's role or "")."""

    def __init__(self, roles: dict[int, tuple[str, str]]) -> None:
        self.roles = roles
        self._machine = (0, 0)
        self._before: dict[int, tuple[int, int]] = {}

    def start(self) -> Meter:
        self._machine = machine_jiffies()
        self._before = {p: j for p in self.roles if (j := process_jiffies(p)) is not None}
        return self

    def stop(self, jobs: int) -> JSON:
        total1, idle1 = machine_jiffies()
        total = max(1, total1 - self._machine[0])
        busy = total - (idle1 - self._machine[1])
        tick = os.sysconf("SC_CLK_TCK")
        by_role = dict.fromkeys(ROLES, 0)
        for pid, before in self._before.items():
            after = process_jiffies(pid) or before
            own, children = self.roles[pid]
            by_role[own] += after[0] - before[0]
            if children:
                by_role[children] += after[1] - before[1]
        ours = sum(by_role.values())
        ms = {role: round(j * 1000 / tick / jobs, 2) for role, j in by_role.items()}
        return {
            "machine_busy_pct": round(100 * busy / total, 1),
            "other_pct": round(100 * max(0, busy - ours) / total, 1),
            "cpu_ms_per_job": ms,
            "cpu_ms_per_job_total": round(sum(ms.values()), 2),
            "machine_cpu_ms_per_job": round(busy * 1000 / tick / jobs, 2),
        }


def _children(parents: set[int]) -> set[int]:
    """The live child processes of ``parents`` (an agent's fence, :mod:`launcher.fence`,
    lives as long as the agent: its CPU is the agent's, never reaped while measuring)."""
    found: set[int] = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid in parents:
            found.add(int(stat.parent.name))
    return found


def _measure(label: str, jobs: int, roles: dict[int, tuple[str, str]],
             submit: Callable[[], Callable[[], None]]) -> JSON:
    """Time ``submit`` (which returns the wait for its jobs) and that wait, under a meter."""
    quiet = wait_quiet(max_wait=30)
    meter = Meter(roles).start()
    t0 = time.perf_counter()
    finish = submit()
    submitted = time.perf_counter() - t0
    finish()
    elapsed = time.perf_counter() - t0
    result = {"jobs": jobs, "elapsed_s": round(elapsed, 3), "jobs_per_s": round(jobs / elapsed, 1),
              "submit_s": round(submitted, 3), "busy_before_pct": quiet, **meter.stop(jobs)}
    say(f"  {label}: {result['jobs_per_s']} jobs/s, {result['cpu_ms_per_job_total']} ms/job "
        f"{result['cpu_ms_per_job']}, other {result['other_pct']}%")
    return result


def run_mnp(workload: str, jobs: int, scratch: Path, repo: Path = REPO,
            warm_up: int = 0) -> JSON:
    """mnp's side of one run (``repo``: the tree the head runs; ``warm_up`` singles done
    first, not counted)."""
    with HeadNode(scratch, f"hq-{workload}", repo=repo) as head:
        c = head.c
        c.register_job_definition(definition("t", ["true"]))
        if warm_up:
            for i in range(warm_up):
                c.submit({"jobName": f"w{i}", "jobQueue": "default", "jobDefinition": "t"})
            wait_terminal_count(c, warm_up, timeout=60)
        roles = {os.getpid(): ("client", ""), head.pid: ("head", "")}
        roles |= {pid: ("agents", "jobs") for pid in head.agent_pids}
        roles |= {pid: ("agents", "") for pid in _children(head.agent_pids)}  # their fences

        def singles() -> Callable[[], None]:
            for i in range(jobs):
                c.submit({"jobName": f"x{i}", "jobQueue": "default", "jobDefinition": "t"})
            return lambda: wait_terminal_count(c, warm_up + jobs, timeout=max(120.0, jobs * 0.2))

        def array() -> Callable[[], None]:
            parent = c.submit({"jobName": "arr", "jobQueue": "default", "jobDefinition": "t",
                               "arrayProperties": {"size": jobs}})

            def finish() -> None:
                d = wait_job(c, parent, timeout=max(120.0, jobs * 0.2), interval=0.02)
                done = d.get("arrayProperties", {}).get("statusSummary", {}).get("SUCCEEDED")
                if d["status"] != "SUCCEEDED" or done != jobs:
                    raise RuntimeError(f"mnp array: {d['status']}, {done} children SUCCEEDED")
            return finish

        result = _measure(f"mnp {workload}", jobs, roles, singles if workload == "singles"
                          else array)
        if workload == "singles":
            counts = c.status()["jobCounts"]
            if int(counts.get("SUCCEEDED", 0)) != warm_up + jobs:
                raise RuntimeError(f"mnp singles: {counts}")
        return result


@contextmanager
def hq_cluster(scratch: Path) -> Iterator[tuple[int, str]]:
    """A HyperQueue ``LocalCluster`` in a child process: (its PID, its server directory)."""
    server_dir = tempfile.mkdtemp(prefix="hq-server-", dir=scratch)
    proc = subprocess.Popen([sys.executable, "-c", _HQ_HOST, server_dir, str(WORKERS),
                             str(CORES)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, cwd=scratch, text=True,
                            # its workers' sockets (hq-lc-*) land in the scratch, removed after
                            env={**os.environ, "TMPDIR": str(scratch)})
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # HyperQueue prints its own banner first
            if line.startswith("SERVER_DIR "):
                break
        else:
            raise RuntimeError(f"the HyperQueue cluster did not start ({proc.wait(10)})")
        yield proc.pid, line.split(" ", 1)[1].strip()
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def run_hq(workload: str, jobs: int, scratch: Path) -> JSON:
    hq = ensure_hyperqueue()
    work = Path(tempfile.mkdtemp(prefix=f"hq-{workload}-", dir=scratch))
    with hq_cluster(scratch) as (pid, server_dir):
        client = hq.Client(server_dir)
        roles = {os.getpid(): ("client", ""), pid: ("head", "jobs")}

        def wait(submitted: list[Any]) -> Callable[[], None]:
            def finish() -> None:
                failed = client.connection.wait_for_jobs(tuple(j.id for j in submitted),
                                                         lambda _: None)
                if failed:
                    raise RuntimeError(f"HyperQueue: jobs {failed} failed")
            return finish

        def singles() -> Callable[[], None]:
            submitted = []
            for _ in range(jobs):
                job = hq.Job(default_workdir=work)
                job.program(["true"])
                submitted.append(client.submit(job))
            return wait(submitted)

        def array() -> Callable[[], None]:
            job = hq.Job(default_workdir=work)
            for _ in range(jobs):
                job.program(["true"])
            return wait([client.submit(job)])

        warm = hq.Job(default_workdir=work)  # the workers are registered and run tasks
        warm.program(["true"])
        wait([client.submit(warm)])()
        return _measure(f"hq {workload}", jobs, roles, singles if workload == "singles"
                        else array)


def submit_cost(scratch: Path, n: int, repo: Path = REPO, warm_up: int = 0) -> JSON:
    """Head-side CPU per SubmitJob on a head of one node busy with 4 long jobs (the rest stay
    RUNNABLE, so the figure is the submit and its scheduling passes, not the run), natively
    and through boto3 on the AWS wire; the client's own CPU apart. ``repo``: the tree the head
    runs; ``warm_up`` AWS calls first, not counted."""
    from benchmarks.aws_clients import Boto3Batch, aws_env

    out: JSON = {}
    with HeadNode(scratch, "submit", nodes=1, repo=repo) as head:
        c = head.c
        c.register_job_definition(definition("t", ["sleep", "600"]))
        boto = Boto3Batch(aws_env(head)).client()
        calls: dict[str, Callable[[int], object]] = {
            "native": lambda i: c.submit({"jobName": f"n{i}", "jobQueue": "default",
                                          "jobDefinition": "t"}),
            "aws": lambda i: boto.submit_job(jobName=f"a{i}", jobQueue="default",
                                             jobDefinition="t"),
        }
        for i in range(warm_up):
            calls["aws"](i)
        for wire, call in calls.items():
            wait_quiet(max_wait=30)
            me, hp = os.getpid(), head.pid
            b = {p: process_jiffies(p) for p in (me, hp)}
            t0 = time.perf_counter()
            for i in range(n):
                call(i)
            elapsed = time.perf_counter() - t0
            a = {p: process_jiffies(p) for p in (me, hp)}
            tick = os.sysconf("SC_CLK_TCK")
            ms = {role: ((a[p] or (0, 0))[0] - (b[p] or (0, 0))[0]) * 1000 / tick / n
                  for role, p in (("client", me), ("head", hp))}
            out[wire] = {"submits": n, "submits_per_s": round(n / elapsed, 1),
                         "head_cpu_ms_per_submit": round(ms["head"], 3),
                         "client_cpu_ms_per_submit": round(ms["client"], 3)}
            say(f"  submit {wire}: {out[wire]}")
    return out


def _summary(runs: list[JSON]) -> JSON:
    rates = [r["jobs_per_s"] for r in runs]
    totals = [r["cpu_ms_per_job_total"] for r in runs]
    return {
        "median_jobs_per_s": median(rates), "range_jobs_per_s": [min(rates), max(rates)],
        "median_cpu_ms_per_job_total": median(totals),
        "range_cpu_ms_per_job_total": [min(totals), max(totals)],
        "median_machine_cpu_ms_per_job": median([r["machine_cpu_ms_per_job"] for r in runs]),
        "median_cpu_ms_per_job": {role: median([r["cpu_ms_per_job"][role] for r in runs])
                                  for role in ROLES},
        "median_other_pct": median([r["other_pct"] for r in runs]),
    }


def table(results: JSON) -> str:
    lines = ["| workload | system | jobs/s (range) | CPU ms/job (range) | client / head / "
             "agents / jobs ms | ratio mnp ÷ HQ (range) |", "|---|---|---|---|---|---|"]
    for w in WORKLOADS:
        for system in ("mnp", "hq"):
            s = results[w][system]
            share = " / ".join(f"{s['median_cpu_ms_per_job'][r]:.2f}" for r in ROLES)
            ratio = ""
            if system == "mnp":
                rr = results[w]["ratios"]
                ratio = f"{median(rr):.2f} ({min(rr):.2f}–{max(rr):.2f})"
            lo, hi = s["range_jobs_per_s"]
            clo, chi = s["range_cpu_ms_per_job_total"]
            lines.append(f"| {w} | {'mnp' if system == 'mnp' else 'HyperQueue'} | "
                         f"{s['median_jobs_per_s']:.0f} ({lo:.0f}–{hi:.0f}) | "
                         f"{s['median_cpu_ms_per_job_total']:.2f} ({clo:.2f}–{chi:.2f}) | "
                         f"{share} | {ratio} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="paired runs (default 3)")
    ap.add_argument("--jobs", type=int, default=1000, help="jobs per workload (default 1000)")
    ap.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    ap.add_argument("--network", choices=("loopback", "auto"), default="loopback",
                    help="the mnp nodes' network (MNP_NODE_NETWORK; default loopback: on root "
                         "'auto' gives each node a namespace, and each job its own mount "
                         "namespace through a Python wrapper)")
    ap.add_argument("--submit-runs", type=int, default=3,
                    help="runs of the head-side CPU per SubmitJob measurement (0: none)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    os.environ[NODE_NETWORK_ENV] = args.network  # the head (and its nodes) inherit it
    ensure_hyperqueue()
    gauge = [speed_gauge()]
    runs: dict[str, dict[str, list[JSON]]] = {w: {"mnp": [], "hq": []} for w in args.workloads}
    with tempfile.TemporaryDirectory(prefix="mnp-hq-") as tmp:
        scratch = Path(tmp)
        for r in range(args.runs):
            order = ("mnp", "hq") if r % 2 == 0 else ("hq", "mnp")
            for w in args.workloads:
                say(f"run {r + 1}/{args.runs}, {w}: {' then '.join(order)}")
                for system in order:
                    fn = run_mnp if system == "mnp" else run_hq
                    runs[w][system].append(fn(w, args.jobs, scratch))
        gauge.append(speed_gauge())
        submits = [submit_cost(scratch, args.jobs) for _ in range(args.submit_runs)]
        gauge.append(speed_gauge())
    results: JSON = {"machine": machine_info(),
                     "hyperqueue": importlib.metadata.version("hyperqueue"),
                     "jobs": args.jobs, "runs": args.runs,
                     "mnp_node_network": args.network, "slots": WORKERS * CORES,
                     "speed_gauge_s": gauge}
    for w in args.workloads if args.runs else ():
        m, h = runs[w]["mnp"], runs[w]["hq"]
        results[w] = {"mnp": _summary(m), "hq": _summary(h),
                      "ratios": [round(a["jobs_per_s"] / b["jobs_per_s"], 3)
                                 for a, b in zip(m, h, strict=True)],
                      "runs": runs[w]}
    if submits:
        results["submit_cost"] = {
            wire: {f"median_{k}": median([s[wire][k] for s in submits]) for k in submits[0][wire]
                   if k != "submits"} | {"runs": [s[wire] for s in submits]}
            for wire in submits[0]}
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    if args.runs and set(args.workloads) == set(WORKLOADS):
        print(table(results))
    say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
