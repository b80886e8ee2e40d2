#!/usr/bin/env python
"""mnp benchmarks: throughput, large arrays, submit→RUNNING latency, head-node memory,
MNP launch overhead, MNP bring-up time, SubmitJob throughput through boto3, container jobs.

Usage (from the repository root)::

    python benchmarks/run.py            # full sizes; writes results.json and README.md
    python benchmarks/run.py --only mnp,bringup   # a subset
    python benchmarks/run.py --only aws           # SubmitJob/DescribeJobs through boto3
    python benchmarks/run.py --only containers    # container vs process jobs vs docker run
    python benchmarks/run.py --quick    # small sizes; writes results-quick.json only

Every benchmark starts its own head node (``python -m mnp --home <tmp> up …`` in the
foreground, as a child process) with 4 local node agents (8 for the bring-up benchmark),
waits for the nodes to be ACTIVE, measures, and stops it again (SIGTERM to its PID; agents
it started that are still alive afterwards are SIGKILLed by PID). Each benchmark measures its
baseline in the same run. Results are merged into the results file (entries of benchmarks not
run this time are kept); a full-size run to the default file also rewrites README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TypeVar

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
if str(REPO) not in sys.path:  # run from a source checkout without installing it
    sys.path.insert(0, str(REPO))

from mnp.client.client import Client  # noqa: E402

JSON = dict[str, Any]
T = TypeVar("T")

NODES = 4
VCPUS = 4
MEMORY_MIB = 4096
TERMINAL = ("SUCCEEDED", "FAILED")

TARGETS = {
    "throughput_jobs_per_s": 300.0,
    "array_submit_s": 0.5,
    "latency_median_ms": 50.0,
    "mnp_ratio_to_raw_mpiexec": 1.3,
    "mnp_slack_s": 0.2,
    "aws_submits_per_s": 500.0,
}
"""Benchmark 5: median MNP submit→SUCCEEDED ≤ ratio × median raw mpiexec + slack.
Benchmark 7: SubmitJob through boto3 ≥ 10 × AWS's per-account rate (``AWS_SUBMIT_LIMIT``)."""


@dataclass(frozen=True, slots=True)
class Sizes:
    jobs: int
    """Benchmark 1: trivial jobs per run."""
    throughput_runs: int
    array_size: int
    """Benchmark 2: children of the array."""
    array_runs: int
    latency_samples: int
    fill_arrays: int
    """Benchmark 4: arrays submitted to fill the store."""
    fill_array_size: int
    fill_in_flight: int
    """Benchmark 4: at most this many fill arrays unfinished at a time."""
    mnp_samples: int
    """Benchmark 5: MNP jobs per command; also raw mpiexec runs per command in each of the
    two baseline jobs."""
    bringup_samples: int
    """Benchmark 6: MNP jobs per node count."""
    aws_submits: int
    """Benchmark 7: SubmitJob calls per measurement (split over the clients when concurrent)."""
    aws_runs: int
    aws_describe_calls: int
    """Benchmark 7: DescribeJobs calls (of 100 ids) per run, each through boto3 and natively."""
    container_jobs: int = 100
    """Benchmark 8: trivial jobs of each kind (container, process, raw ``docker run``)."""

    @property
    def fill_jobs(self) -> int:
        return self.fill_arrays * self.fill_array_size


FULL = Sizes(jobs=1000, throughput_runs=3, array_size=10_000, array_runs=3,
             latency_samples=30, fill_arrays=100, fill_array_size=1000, fill_in_flight=4,
             mnp_samples=9, bringup_samples=7, aws_submits=1000, aws_runs=3,
             aws_describe_calls=50, container_jobs=100)
QUICK = Sizes(jobs=200, throughput_runs=3, array_size=2000, array_runs=1,
              latency_samples=10, fill_arrays=10, fill_array_size=1000, fill_in_flight=4,
              mnp_samples=3, bringup_samples=3, aws_submits=200, aws_runs=1,
              aws_describe_calls=10, container_jobs=20)

# Benchmark 5: an 8-rank MPICH job on 4 nodes; benchmark 6: every-node jobs of 2, 4, 8 nodes.
MNP_NODES = 4
MNP_TASKS_PER_NODE = 2
MNP_VCPUS = 2
BARRIER = "from mpi4py import MPI; MPI.COMM_WORLD.Barrier()"
MNP_COMMANDS: dict[str, list[str]] = {
    "true": ["/bin/true"],
    "barrier": [sys.executable, "-c", BARRIER],
}
BRINGUP_NODES = (2, 4, 8)
BRINGUP_VCPUS = 2
BRINGUP_HEAD_NODES = max(BRINGUP_NODES)
# Benchmark 7: boto3 against the head's AWS Batch endpoint.
AWS_CLIENTS = 8
AWS_SUBMIT_LIMIT = 50.0
"""AWS Batch's SubmitJob rate per account (requests per second)."""
AWS_REGION = "us-east-1"
AWS_DESCRIBE_IDS = 100


# --- small helpers ------------------------------------------------------------------------------
def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Abort(Exception):
    """Raised by a ``wait_for`` condition to stop waiting at once."""


def wait_for(what: str, check: Callable[[], T | None], timeout: float,
             interval: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; raise at the deadline."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Abort:
            raise
        except Exception as e:  # the condition may raise while things start up
            last = e
        else:
            if result:
                return result
            last = result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def p90(values: Sequence[float]) -> float:
    if len(values) < 2:
        return float(values[0])
    return float(statistics.quantiles(values, n=10, method="inclusive")[8])


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def proc_status_kib(pid: int, field: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (VmRSS, VmHWM, …)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(f"{field} not in /proc/{pid}/status")


def tree_usage(root: Path) -> tuple[int, int, int]:
    """(directories, files, bytes) under ``root``."""
    dirs = files = size = 0
    for _dirpath, dirnames, filenames in os.walk(root):
        dirs += len(dirnames)
        files += len(filenames)
        for name in filenames:
            with contextlib.suppress(OSError):
                size += os.stat(os.path.join(_dirpath, name)).st_size
    return dirs, files, size


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


def definition(name: str, command: list[str]) -> JSON:
    return {
        "jobDefinitionName": name,
        "type": "container",
        "containerProperties": {
            "command": command,
            "resourceRequirements": [{"type": "VCPU", "value": "1"}],
        },
    }


def per_job_ms(cpu: JSON, jobs: int) -> dict[str, float]:
    """CPU milliseconds per job by role, from a :class:`CpuMeter` reading."""
    return {role: round(sec * 1000 / jobs, 2) for role, sec in cpu["cpu_s"].items()}


def median_per_job(runs: Sequence[JSON]) -> dict[str, float]:
    roles = runs[0]["cpu_ms_per_job"]
    return {role: median([r["cpu_ms_per_job"][role] for r in runs]) for role in roles}


def spawn_rate(n: int) -> float:
    """Baseline: ``subprocess.run(["true"])`` per second, in this process."""
    t0 = time.perf_counter()
    for _ in range(n):
        subprocess.run(["true"], check=True)
    return n / (time.perf_counter() - t0)


# --- CPU accounting: how much of the machine we used, and how much something else did -----------
def _machine_jiffies() -> tuple[int, int]:
    """(all, idle) clock ticks of every CPU since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(fields), fields[3] + fields[4]


def _process_jiffies(pid: int) -> tuple[int, int] | None:
    """(own utime + stime, reaped children's), in clock ticks; None if the process is gone."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(f[11]) + int(f[12]), int(f[13]) + int(f[14])


class CpuMeter:
    """CPU used between :meth:`start` and :meth:`stop`: the whole machine, and the processes of
    this benchmark: this process (``client``), the head, its agents, and the agents' jobs
    (counted once reaped).

    ``other_pct`` (machine capacity used by anything else) flags a run disturbed by other work
    on the machine; the figures of such a run are pessimistic.
    """

    def __init__(self, head: HeadNode) -> None:
        self.roles: dict[int, tuple[str, str]] = {os.getpid(): ("client", "")}
        self.roles[head.pid] = ("head", "")
        for pid in head.agent_pids:
            self.roles[pid] = ("agents", "jobs")
        self._machine = (0, 0)
        self._before: dict[int, tuple[int, int]] = {}

    def start(self) -> CpuMeter:
        self._machine = _machine_jiffies()
        self._before = {p: j for p in self.roles if (j := _process_jiffies(p)) is not None}
        return self

    def stop(self, extra_client_s: float = 0.0) -> JSON:
        """``extra_client_s``: CPU seconds of client processes this meter cannot see (worker
        processes that exit before it stops, reporting their own time), counted as client."""
        total1, idle1 = _machine_jiffies()
        total = max(1, total1 - self._machine[0])
        busy = total - (idle1 - self._machine[1])
        tick = os.sysconf("SC_CLK_TCK")
        by_role: dict[str, int] = {"client": round(extra_client_s * tick), "head": 0,
                                   "agents": 0, "jobs": 0}
        for pid, before in self._before.items():
            after = _process_jiffies(pid) or before
            own, children = self.roles[pid]
            by_role[own] += after[0] - before[0]
            if children:  # the client's children (the head) are not reaped while measuring
                by_role[children] += after[1] - before[1]
        ours = sum(by_role.values())
        return {
            "machine_busy_pct": round(100 * busy / total, 1),
            "cpu_s": {role: round(j / tick, 2) for role, j in by_role.items()},
            "other_pct": round(100 * max(0, busy - ours) / total, 1),
        }


def machine_busy_pct(seconds: float) -> float:
    total0, idle0 = _machine_jiffies()
    time.sleep(seconds)
    total1, idle1 = _machine_jiffies()
    return 100 * (1 - (idle1 - idle0) / max(1, total1 - total0))


def wait_quiet(limit_pct: float = 25.0, max_wait: float = 60.0) -> float:
    """Wait (up to ``max_wait`` s) until the machine is less than ``limit_pct`` busy over one
    second, so a measurement does not start in the middle of someone else's work. Returns
    the last reading."""
    deadline = time.monotonic() + max_wait
    busy = machine_busy_pct(1.0)
    if busy >= limit_pct:
        say(f"  the machine is {busy:.0f}% busy with other work; waiting up to {max_wait:.0f} s")
    while busy >= limit_pct and time.monotonic() < deadline:
        busy = machine_busy_pct(1.0)
    return round(busy, 1)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Ignore SIGTERM/SIGINT meanwhile (in the main thread), so cleanup is not cut short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


# --- a head node with local agents, as a child process ------------------------------------------
class HeadNode:
    """``mnp up`` in the foreground on a private home and port; a context manager.

    Leaving the ``with`` block (also on error) SIGTERMs the head by PID, waits for it, and
    SIGKILLs any agent it started that is still alive (by the PIDs it reported), then removes
    the home unless ``keep``.
    """

    def __init__(self, scratch: Path, label: str, keep: bool = False, nodes: int = NODES,
                 vcpus: int = VCPUS) -> None:
        self.nodes = nodes
        self.vcpus = vcpus
        self.home = Path(tempfile.mkdtemp(prefix=f"mnp-bench-{label}-", dir=scratch))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.keep = keep
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: Client | None = None
        self.pid = 0
        self.agent_pids: set[int] = set()
        self.stop_s: float | None = None
        """How long the head took to exit after SIGTERM."""

    @property
    def c(self) -> Client:
        assert self.client is not None, "the head node is not started"
        return self.client

    @property
    def db_path(self) -> Path:
        return self.home / "mnp.sqlite3"

    def __enter__(self) -> HeadNode:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None and not isinstance(exc, KeyboardInterrupt):
            say(f"head log tail ({self.home / 'head.log'}):\n{self.log_tail()}")
        self.stop()

    def start(self) -> None:
        argv = [sys.executable, "-m", "mnp", "--home", str(self.home), "up",
                "--port", str(self.port), "--nodes", str(self.nodes), "--vcpus", str(self.vcpus),
                "--memory-mib", str(MEMORY_MIB)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        with open(self.home / "head.log", "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         env=env, cwd=self.home)
        self.client = Client(url=self.url, home=self.home, timeout=120)

        def answering() -> JSON | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise Abort(f"the head node exited with {self.proc.returncode}")
            return self.c.status()

        self.pid = int(wait_for("the head node to answer", answering, 30)["pid"])

        def nodes_active() -> bool:
            nodes = self.c.nodes()
            self.agent_pids |= {int(n["pid"]) for n in nodes if n.get("pid")}
            return sum(1 for n in nodes if n["status"] == "ACTIVE") >= self.nodes

        wait_for(f"{self.nodes} ACTIVE nodes", nodes_active, 60)
        self.agent_pids |= self._agent_pid_files()

    def _agent_pid_files(self) -> set[int]:
        pids: set[int] = set()
        for f in (self.home / "nodes").glob("*/agent.pid"):
            with contextlib.suppress(OSError, ValueError):
                pids.add(int(f.read_text().strip()))
        return pids

    def rss_kib(self) -> int:
        return proc_status_kib(self.pid, "VmRSS")

    def hwm_kib(self) -> int:
        return proc_status_kib(self.pid, "VmHWM")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.home / "head.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        with _signals_held():
            self._stop()

    def _stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        self.agent_pids |= self._agent_pid_files()
        proc = self.proc
        t0 = time.perf_counter()
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                say(f"head {proc.pid} ignored SIGTERM for 60 s; SIGKILL")
                proc.kill()
                proc.wait(10)
            self.stop_s = time.perf_counter() - t0
        for pid in sorted(self.agent_pids):
            if not pid_alive(pid):
                continue
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"launcher.agent" in cmdline and str(self.home).encode() in cmdline:
                    say(f"agent {pid} outlived its head; SIGKILL")
                    os.kill(pid, signal.SIGKILL)
        if not self.keep:
            t = time.perf_counter()
            shutil.rmtree(self.home, ignore_errors=True)
            if time.perf_counter() - t > 5:
                say(f"  removing {self.home} took {time.perf_counter() - t:.0f} s")


def wait_terminal_count(c: Client, expected: int, timeout: float, interval: float = 0.02) -> None:
    """Until getStatus counts ``expected`` SUCCEEDED+FAILED jobs (or more)."""
    def done() -> bool:
        counts = c.status()["jobCounts"]
        return sum(int(counts.get(s, 0)) for s in TERMINAL) >= expected
    wait_for(f"{expected} terminal jobs", done, timeout, interval)


def wait_job(c: Client, job_id: str, timeout: float, interval: float = 0.05) -> JSON:
    def terminal() -> JSON | None:
        d = c.describe(job_id)
        return d if d["status"] in TERMINAL else None
    return wait_for(f"job {job_id} to finish", terminal, timeout, interval)


# --- 1. end-to-end throughput ---------------------------------------------------------------------
def bench_throughput(sizes: Sizes, scratch: Path, keep: bool) -> JSON:
    runs: list[JSON] = []
    for run in range(sizes.throughput_runs):
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
        runs.append(result)
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


# --- 2. an array of many children -----------------------------------------------------------------
def bench_array(sizes: Sizes, scratch: Path, keep: bool) -> JSON:
    runs: list[JSON] = []
    n = sizes.array_size
    for run in range(sizes.array_runs):
        say(f"array run {run + 1}/{sizes.array_runs}: baseline spawn of 1000")
        spawns = spawn_rate(1000)
        with HeadNode(scratch, "array", keep) as head:
            c = head.c
            c.register_job_definition(definition("t", ["true"]))
            # Baseline: plain submitJob calls on the same head (waited out before the array).
            single: list[float] = []
            single_ids: list[str] = []
            for i in range(10):
                t = time.perf_counter()
                single_ids.append(c.submit({"jobName": f"s{i}", "jobQueue": "default",
                                            "jobDefinition": "t"}))
                single.append(time.perf_counter() - t)
            wait_terminal_count(c, len(single_ids), timeout=60)
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
        runs.append(result)
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


# --- 3. submit → RUNNING latency ------------------------------------------------------------------
def history_at(detail: JSON, status: str) -> int | None:
    for h in detail.get("history", []):
        if h.get("status") == status:
            return int(h["at"])
    return None


def started_check(c: Client, job_id: str) -> Callable[[], bool]:
    def started() -> bool:
        return c.describe(job_id)["status"] in ("RUNNING", *TERMINAL)
    return started


def bench_latency(sizes: Sizes, scratch: Path, keep: bool) -> JSON:
    server: list[float] = []
    client: list[float] = []
    stages: dict[str, list[float]] = {"SUBMITTED→RUNNABLE": [], "RUNNABLE→STARTING": [],
                                      "STARTING→RUNNING": []}
    with HeadNode(scratch, "latency", keep) as head:
        c = head.c
        c.register_job_definition(definition("sleep1", ["sleep", "1"]))
        c.register_job_definition(definition("t", ["true"]))
        # Baselines: one API round trip (describeJobs of a known job), and one process spawn.
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
        quiet = wait_quiet()
        meter = CpuMeter(head).start()
        for i in range(sizes.latency_samples):
            time.sleep(0.3)  # idle: the previous job is done and its report handled
            t0 = time.perf_counter()
            job = c.submit({"jobName": f"lat{i}", "jobQueue": "default",
                            "jobDefinition": "sleep1"})
            wait_for("RUNNING", started_check(c, job), 30, interval=0.002)
            client.append((time.perf_counter() - t0) * 1000)
            detail = wait_job(c, job, timeout=30)
            if detail["status"] != "SUCCEEDED":
                raise RuntimeError(f"latency job {job} ended {detail['status']}")
            at = {s: history_at(detail, s)
                  for s in ("SUBMITTED", "RUNNABLE", "STARTING", "RUNNING")}
            if any(v is None for v in at.values()):
                raise RuntimeError(f"latency job {job}: incomplete history {detail['history']}")
            sub, rnb, sta, run = (int(at[s] or 0)
                                  for s in ("SUBMITTED", "RUNNABLE", "STARTING", "RUNNING"))
            server.append(float(run - sub))
            stages["SUBMITTED→RUNNABLE"].append(float(rnb - sub))
            stages["RUNNABLE→STARTING"].append(float(sta - rnb))
            stages["STARTING→RUNNING"].append(float(run - sta))
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


# --- 4. head-node memory with many finished jobs --------------------------------------------------
def bench_memory(sizes: Sizes, scratch: Path, keep: bool) -> JSON:
    with HeadNode(scratch, "memory", keep) as head:
        c = head.c
        c.register_job_definition(definition("t", ["true"]))
        time.sleep(2.0)  # settle: every agent's first heartbeat round is done
        idle = head.rss_kib()
        quiet = wait_quiet()
        say(f"memory: idle head RSS {mib(idle)} MiB; filling {sizes.fill_arrays} arrays of "
            f"{sizes.fill_array_size}, at most {sizes.fill_in_flight} at a time")
        meter = CpuMeter(head).start()
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
        fill_s = time.perf_counter() - t0
        cpu = meter.stop()
        bad = [d["jobId"] for d in done if d["status"] != "SUCCEEDED"]
        if bad:
            raise RuntimeError(f"memory: fill arrays did not succeed: {bad[:5]}")
        t = time.perf_counter()
        counts = c.status()["jobCounts"]
        status_s = time.perf_counter() - t
        time.sleep(2.0)
        after = head.rss_kib()
        hwm = head.hwm_kib()
        db = head.db_path.stat().st_size
        wal_path = head.db_path.with_name(head.db_path.name + "-wal")
        wal = wal_path.stat().st_size if wal_path.exists() else 0
        node_dirs, node_files, node_bytes = tree_usage(head.home / "nodes")
        log_dirs, log_files, log_bytes = tree_usage(head.home / "logs")
    expected = sizes.fill_jobs + sizes.fill_arrays
    if int(counts.get("SUCCEEDED", 0)) != expected:
        raise RuntimeError(f"memory: expected {expected} SUCCEEDED jobs in the store, got {counts}")
    result = {
        "finished_jobs": sizes.fill_jobs,
        "jobs_in_store": sum(int(v) for v in counts.values()),
        "arrays": f"{sizes.fill_arrays} x {sizes.fill_array_size}",
        "fill_s": round(fill_s, 1),
        "fill_jobs_per_s": round(sizes.fill_jobs / fill_s, 1),
        "baseline_idle_rss_mib": mib(idle),
        "rss_after_mib": mib(after),
        "rss_growth_mib": mib(after - idle),
        "peak_rss_sampled_mib": mib(peak),
        "peak_rss_hwm_mib": mib(hwm),
        "sqlite_mib": round(db / 2**20, 1),
        "sqlite_wal_mib": round(wal / 2**20, 1),
        "sqlite_bytes_per_job": round((db + wal) / max(1, sizes.fill_jobs)),
        "node_dirs_files_mib": [node_dirs, node_files, round(node_bytes / 2**20, 1)],
        "log_dirs_files_mib": [log_dirs, log_files, round(log_bytes / 2**20, 1)],
        "get_status_s": round(status_s, 3),
        "head_stop_s": None if head.stop_s is None else round(head.stop_s, 2),
        "busy_before_pct": quiet,
        **cpu,
        "cpu_ms_per_job": per_job_ms(cpu, sizes.fill_jobs),
    }
    say(f"  {result}")
    return result


# --- multi-node parallel jobs: shared helpers -----------------------------------------------------
def mnp_definition(name: str, nodes: int, main: list[str], others: list[str] | None, mpi: str,
                   tasks_per_node: int | None = None, timeout_s: int | None = None) -> JSON:
    """A ``type: multinode`` definition: node 0 runs ``main``; nodes ``1:`` run ``others``, or
    nothing when None (they hold and serve SSH to the main node's ``mpiexec``)."""
    ranges: list[JSON] = [{"targetNodes": "0", "container": {"command": main}}]
    if nodes > 1:
        ranges.append({"targetNodes": "1:",
                       "container": {} if others is None else {"command": others}})
    settings: JSON = {"mpi": mpi}
    if tasks_per_node is not None:
        settings["tasksPerNode"] = tasks_per_node
    body: JSON = {
        "jobDefinitionName": name,
        "type": "multinode",
        "nodeProperties": {"numNodes": nodes, "mainNode": 0, "nodeRangeProperties": ranges,
                           "mnp": settings},
    }
    if timeout_s is not None:
        body["timeout"] = {"attemptDurationSeconds": timeout_s}
    return body


def settled_nodes(c: Client, job_id: str, nodes: int, timeout: float = 60) -> list[JSON]:
    """Every node job ``<job_id>#i``, once each is SUCCEEDED or FAILED (its node is free)."""
    ids = [f"{job_id}#{i}" for i in range(nodes)]

    def done() -> list[JSON] | None:
        ds = c.describe_jobs(ids)
        return ds if len(ds) == nodes and all(d["status"] in TERMINAL for d in ds) else None

    return wait_for(f"the {nodes} nodes of {job_id} to settle", done, timeout)


def run_mnp_job(c: Client, definition_name: str, nodes: int, timeout: float = 120,
                poll: float = 0.01) -> tuple[JSON, list[JSON], float]:
    """Submit one MNP job and wait for it: (parent, its node jobs once settled, seconds from
    before ``submitJob`` until ``describeJobs`` says the parent is terminal, polled every
    ``poll`` s). Raises unless everything SUCCEEDED."""
    t0 = time.perf_counter()
    job = c.submit({"jobName": definition_name, "jobQueue": "default",
                    "jobDefinition": definition_name})
    detail = wait_job(c, job, timeout, interval=poll)
    client_s = time.perf_counter() - t0
    node_jobs = settled_nodes(c, job, nodes)
    bad = [d["jobId"] for d in [detail, *node_jobs] if d["status"] != "SUCCEEDED"]
    if bad:
        log = "".join(c.logs(f"{job}#0"))[-3000:]
        raise RuntimeError(f"MNP job {job} ({definition_name}): not SUCCEEDED: {bad} "
                           f"({detail.get('statusReason')}); main node log tail:\n{log}")
    return detail, node_jobs, client_s


def history_s(detail: JSON, start: str, end: str) -> float:
    """Seconds between two statuses of a job's history (head clock, epoch ms)."""
    a, b = history_at(detail, start), history_at(detail, end)
    if a is None or b is None:
        raise RuntimeError(f"{detail['jobId']}: no {start} or {end} in {detail.get('history')}")
    return (b - a) / 1000


def s3(x: float) -> float:
    return round(x, 3)


# --- 5. MNP launch overhead vs raw mpiexec on the same SSH endpoints ------------------------------
RAW_PER_JOB = 3
"""Raw mpiexec runs per command in one baseline job. mnp fails an MNP job as hung once an
MPI proxy on a node has ended and the job goes on for ``mpi_hang_seconds`` (10 s): one job
may not loop over mpiexec for long, so the raw runs are spread over several short jobs."""

RAW_MPIEXEC = r'''
"""Raw mpiexec over the job's own SSH endpoints, timed: runs as an MNP job's main node
(mpi none) while the other nodes hold. argv: iterations, JSON {kind: command}."""
import json, os, shutil, signal, subprocess, sys, tempfile, time
from mnp.build import mpi

signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: still remove the copy

iterations = int(sys.argv[1])
commands = json.loads(sys.argv[2])
src = os.environ["MNP_WIRING_DIR"]
nodes = len(os.environ["MNP_NODE_ALIASES"].split())
tasks = int(os.environ["MNP_TASKS_PER_NODE"])
iface = os.environ.get("MNP_MPI_IFACE") or None
mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
dst = tempfile.mkdtemp(prefix="mnp-bench-raw-")  # a private, plain path
try:
    # (a) a copy of the wiring the main node got, pointing at itself
    for name in ("ssh_config", "known_hosts", "id_ed25519", "hostfile.mpich", "ssh-wrapper"):
        shutil.copy2(os.path.join(src, name), os.path.join(dst, name))
    cfg = os.path.join(dst, "ssh_config")
    with open(cfg) as f:
        text = f.read()
    with open(cfg, "w") as f:
        f.write(text.replace(src, dst))

    def argv(command):
        return mpi.launch_argv("mpich", mpiexec, nodes * tasks, tasks,
                               os.path.join(dst, "hostfile.mpich"), cfg, iface, command, [],
                               ssh_wrapper=os.path.join(dst, "ssh-wrapper"))

    def norm(args, directory):
        real = os.path.realpath(directory)
        return ["<wiring>/" + os.path.basename(a)
                if a.startswith("/") and os.path.realpath(os.path.dirname(a)) == real else a
                for a in args]

    def wire_dry_run(command):
        """What mnp itself would exec (launcher.wire --dry-run), and how long that took."""
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "launcher.wire", "--mpi", "mpich",
                              "--dry-run", "--", *command], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, check=True).stdout.splitlines()
        elapsed = time.perf_counter() - t0
        for a in out:  # a plain alias launcher.wire made for a non-plain wiring path
            d = os.path.dirname(a)
            if os.path.islink(d) and os.path.basename(os.path.dirname(d)).startswith("mnp-wiring-"):
                shutil.rmtree(os.path.dirname(d), ignore_errors=True)
        return out, elapsed

    same = {}
    for kind, command in commands.items():
        same[kind] = {"mnp": norm(wire_dry_run(command)[0], src),
                      "raw": norm(argv(command), dst)}
    # (b) the same mpiexec, timed; also launcher.wire's own start (interpreter, imports,
    # mpiexec --version, argv), without its wait for the nodes and its exec
    times = {kind: [] for kind in commands}
    times["wire_dry_run"] = []
    for i in range(iterations):
        times["wire_dry_run"].append(wire_dry_run(next(iter(commands.values())))[1])
        for kind, command in commands.items():
            args = argv(command)
            sys.stdout.flush()
            t0 = time.perf_counter()
            rc = subprocess.run(args, stdin=subprocess.DEVNULL).returncode
            elapsed = time.perf_counter() - t0
            if rc != 0:
                print(f"raw mpiexec ({kind}) exited with {rc}: {args}", file=sys.stderr)
                sys.exit(1)
            times[kind].append(elapsed)
    print("RAW_RESULT " + json.dumps({"times_s": times, "argv": same}))
finally:
    shutil.rmtree(dst, ignore_errors=True)
'''


def raw_mpiexec_job(c: Client, registered: set[int], iterations: int) -> tuple[JSON, float]:
    """One baseline MNP job (mpi none; children hold) whose main node times raw ``mpiexec``
    ``iterations`` times per command; (its RAW_RESULT, seconds the whole job took)."""
    name = f"mnp-raw-{iterations}"
    if iterations not in registered:
        c.register_job_definition(mnp_definition(
            name, MNP_NODES, [sys.executable, "-c", RAW_MPIEXEC, str(iterations),
                              json.dumps(MNP_COMMANDS)],
            None, "none", MNP_TASKS_PER_NODE, 300))
        registered.add(iterations)
    detail, _nodes, client_s = run_mnp_job(c, name, MNP_NODES, timeout=300)
    log = "".join(c.logs(f"{detail['jobId']}#0"))
    for line in log.splitlines():
        if line.startswith("RAW_RESULT "):
            return json.loads(line.split(" ", 1)[1]), client_s
    raise RuntimeError(f"raw mpiexec job {detail['jobId']}: no RAW_RESULT in\n{log[-3000:]}")


def wire_ready_s(log: str) -> float | None:
    """``launcher.wire: 3 nodes ready in 0.15 s`` → 0.15."""
    for line in log.splitlines():
        if line.startswith("launcher.wire:") and " nodes ready in " in line:
            with contextlib.suppress(ValueError):
                return float(line.rsplit(" in ", 1)[1].split()[0])
    return None


def bench_mnp(sizes: Sizes, scratch: Path, keep: bool) -> JSON:
    n = sizes.mnp_samples
    ranks = MNP_NODES * MNP_TASKS_PER_NODE
    ratio, slack = TARGETS["mnp_ratio_to_raw_mpiexec"], TARGETS["mnp_slack_s"]
    kinds = list(MNP_COMMANDS)
    samples: dict[str, list[JSON]] = {kind: [] for kind in kinds}
    raw: dict[str, list[float]] = {kind: [] for kind in [*kinds, "wire_dry_run"]}
    raw_jobs: list[JSON] = []
    registered: set[int] = set()
    with HeadNode(scratch, "mnp", keep, nodes=MNP_NODES, vcpus=MNP_VCPUS) as head:
        c = head.c
        for kind, command in MNP_COMMANDS.items():
            c.register_job_definition(mnp_definition(
                f"mnp-{kind}", MNP_NODES, command, None, "mpich", MNP_TASKS_PER_NODE, 300))
        say(f"mnp: warm-up ({', '.join(kinds)}, raw), {ranks} ranks on {MNP_NODES} nodes")
        warmup = {kind: s3(run_mnp_job(c, f"mnp-{kind}", MNP_NODES)[2]) for kind in kinds}
        warm_raw, _ = raw_mpiexec_job(c, registered, 1)
        argv_check = warm_raw["argv"]
        if any(v["mnp"] != v["raw"] for v in argv_check.values()):
            raise RuntimeError(f"mnp: the raw mpiexec argv differs from mnp's: {argv_check}")
        quiet = wait_quiet()
        say(f"  {n} rounds: one MNP job per command; a raw mpiexec job ({RAW_PER_JOB} runs "
            f"per command) every {RAW_PER_JOB} rounds")
        meter = CpuMeter(head).start()
        for r in range(n):  # interleaved: drift in the machine's load weighs on both sides
            if r % RAW_PER_JOB == 0:
                time.sleep(0.3)
                phase = CpuMeter(head).start()
                got, job_s = raw_mpiexec_job(c, registered, min(RAW_PER_JOB, n - r))
                if got["argv"] != argv_check:
                    raise RuntimeError(f"mnp: raw argv changed: {got['argv']}")
                for kind, times in got["times_s"].items():
                    raw[kind] += [s3(t) for t in times]
                raw_jobs.append({"job_s": s3(job_s), "other_pct": phase.stop()["other_pct"]})
            for kind in kinds:
                time.sleep(0.3)  # idle: the previous job's nodes are free and reported
                phase = CpuMeter(head).start()
                detail, node_jobs, client_s = run_mnp_job(c, f"mnp-{kind}", MNP_NODES)
                other = phase.stop()["other_pct"]
                last_child = max(int(history_at(d, "RUNNING") or 0) for d in node_jobs[1:])
                samples[kind].append({
                    "client_s": s3(client_s),
                    "history_s": history_s(detail, "SUBMITTED", "SUCCEEDED"),
                    "to_running_s": history_s(detail, "SUBMITTED", "RUNNING"),
                    "running_to_last_child_running_s":
                        (last_child - int(history_at(detail, "RUNNING") or 0)) / 1000,
                    "running_to_succeeded_s": history_s(detail, "RUNNING", "SUCCEEDED"),
                    "wire_ready_s": wire_ready_s("".join(c.logs(f"{detail['jobId']}#0"))),
                    "other_pct": other,
                })
        cpu = meter.stop()
    per_kind: JSON = {}
    for kind in kinds:
        ss = samples[kind]
        client = [x["client_s"] for x in ss]
        history = [x["history_s"] for x in ss]
        raw_median = median(raw[kind])
        limit = ratio * raw_median + slack
        wire = [x["wire_ready_s"] for x in ss if x["wire_ready_s"] is not None]
        per_kind[kind] = {
            "command": MNP_COMMANDS[kind],
            "mnp_client_s": client,
            "mnp_history_s": history,
            "raw_mpiexec_s": raw[kind],
            "median_mnp_client_s": s3(median(client)),
            "median_mnp_history_s": s3(median(history)),
            "median_raw_mpiexec_s": s3(raw_median),
            "ratio_client": round(median(client) / raw_median, 2),
            "ratio_history": round(median(history) / raw_median, 2),
            "overhead_client_s": s3(median(client) - raw_median),
            "overhead_history_s": s3(median(history) - raw_median),
            "limit_s": s3(limit),
            "met": median(client) <= limit,
            "met_history": median(history) <= limit,
            "stage_median_s": {
                "SUBMITTED→RUNNING": s3(median([x["to_running_s"] for x in ss])),
                "RUNNING→last child RUNNING": s3(median(
                    [x["running_to_last_child_running_s"] for x in ss])),
                "RUNNING→SUCCEEDED": s3(median([x["running_to_succeeded_s"] for x in ss])),
            },
            "median_wire_ready_s": s3(median(wire)) if wire else None,
            "median_other_pct": median([x["other_pct"] for x in ss]),
            "warmup_s": {"mnp": warmup[kind], "raw": s3(warm_raw["times_s"][kind][0])},
        }
    result = {
        "nodes": MNP_NODES,
        "tasks_per_node": MNP_TASKS_PER_NODE,
        "ranks": ranks,
        "mpi": "mpich",
        "samples": n,
        "raw_samples": len(raw[kinds[0]]),
        "raw_runs_per_job": RAW_PER_JOB,
        "raw_argv": argv_check[kinds[0]]["raw"],
        "raw_argv_same_as_mnp": True,
        "raw_jobs": raw_jobs,
        "raw_median_other_pct": median([j["other_pct"] for j in raw_jobs]),
        "wire_dry_run_s": raw["wire_dry_run"],
        "median_wire_dry_run_s": s3(median(raw["wire_dry_run"])),
        **per_kind,
        "target": f"median ≤ {ratio:g} × raw + {slack:g} s (client-observed)",
        "met": all(per_kind[k]["met"] for k in kinds),
        "busy_before_pct": quiet,
        **cpu,
    }
    for kind in kinds:
        k = per_kind[kind]
        say(f"  {kind}: mnp {k['median_mnp_client_s']} s (history {k['median_mnp_history_s']})"
            f", raw {k['median_raw_mpiexec_s']} s, ratio {k['ratio_client']}, "
            f"limit {k['limit_s']} s, met {k['met']}")
    return result


# --- 6. MNP bring-up time as the gang grows ------------------------------------------------------
def slope(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line through the points."""
    fit = statistics.linear_regression(xs, ys)
    return fit.slope, fit.intercept


def bench_bringup(sizes: Sizes, scratch: Path, keep: bool) -> JSON:
    n = sizes.bringup_samples
    top = max(BRINGUP_NODES)
    metrics = ("submit_to_running_s", "running_to_last_child_running_s",
               "submit_to_succeeded_s")
    samples: dict[int, dict[str, list[float]]] = {
        k: {m: [] for m in metrics} for k in BRINGUP_NODES}
    plain: dict[str, list[float]] = {"submit_to_running_s": [], "submit_to_succeeded_s": []}
    with HeadNode(scratch, "bringup", keep, nodes=top, vcpus=BRINGUP_VCPUS) as head:
        c = head.c
        for k in BRINGUP_NODES:
            c.register_job_definition(mnp_definition(f"every{k}", k, ["true"], ["true"], "none"))
        c.register_job_definition(definition("plain", ["true"]))
        say(f"bringup: warm-up, then {n} rounds of every-node jobs of "
            f"{', '.join(map(str, BRINGUP_NODES))} nodes (and a plain job)")
        for k in BRINGUP_NODES:
            run_mnp_job(c, f"every{k}", k, poll=0.02)
        quiet = wait_quiet()
        meter = CpuMeter(head).start()
        for _ in range(n):  # round-robin: drift in the machine's load weighs on every size
            for k in BRINGUP_NODES:
                time.sleep(0.3)
                detail, node_jobs, _ = run_mnp_job(c, f"every{k}", k, poll=0.02)
                running = int(history_at(detail, "RUNNING") or 0)
                last_child = max(int(history_at(d, "RUNNING") or 0) for d in node_jobs[1:])
                samples[k]["submit_to_running_s"].append(
                    history_s(detail, "SUBMITTED", "RUNNING"))
                samples[k]["running_to_last_child_running_s"].append(
                    (last_child - running) / 1000)
                samples[k]["submit_to_succeeded_s"].append(
                    history_s(detail, "SUBMITTED", "SUCCEEDED"))
            time.sleep(0.3)
            job = c.submit({"jobName": "plain", "jobQueue": "default", "jobDefinition": "plain"})
            d = wait_job(c, job, 60, interval=0.02)
            if d["status"] != "SUCCEEDED":
                raise RuntimeError(f"bringup: plain job {job} ended {d['status']}")
            plain["submit_to_running_s"].append(history_s(d, "SUBMITTED", "RUNNING"))
            plain["submit_to_succeeded_s"].append(history_s(d, "SUBMITTED", "SUCCEEDED"))
        cpu = meter.stop()
    medians = {m: {str(k): s3(median(samples[k][m])) for k in BRINGUP_NODES} for m in metrics}
    fits: JSON = {}
    for m in metrics:
        a, b = slope([float(k) for k in BRINGUP_NODES], [medians[m][str(k)]
                                                         for k in BRINGUP_NODES])
        fits[m] = {"slope_s_per_node": round(a, 4) + 0.0, "intercept_s": s3(b)}  # no -0.0
    result = {
        "node_counts": list(BRINGUP_NODES),
        "head_nodes": top,
        "vcpus_per_node": BRINGUP_VCPUS,
        "samples": n,
        "runs": {str(k): samples[k] for k in BRINGUP_NODES},
        "median_s": medians,
        "fit_over_medians": fits,
        "baseline_plain_job_s": plain,
        "baseline_plain_job_median_s": {m: s3(median(v)) for m, v in plain.items()},
        "busy_before_pct": quiet,
        **cpu,
    }
    for m in metrics:
        say(f"  {m}: {medians[m]}, slope {fits[m]['slope_s_per_node']} s/node")
    return result


# --- 7. SubmitJob throughput through boto3 over HTTP --------------------------------------------
AWS_WORKER = r'''
import json, os, sys, time
import boto3, botocore.config
count, prefix = int(sys.argv[1]), sys.argv[2]
client = boto3.session.Session().client(
    "batch", endpoint_url=os.environ["MNP_BENCH_ENDPOINT"],
    aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
    aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    region_name=os.environ["AWS_DEFAULT_REGION"],
    config=botocore.config.Config(retries={"total_max_attempts": 1}))
client.describe_job_queues()  # warm: the service model loaded, the connection open
print("ready", flush=True)
if sys.stdin.readline().strip() != "go":
    sys.exit(3)
cpu0, start = time.process_time(), time.monotonic()
for i in range(count):
    client.submit_job(jobName=f"{prefix}{i}", jobQueue="default", jobDefinition="t")
end = time.monotonic()
print(json.dumps({"start": start, "end": end, "cpu_s": time.process_time() - cpu0}), flush=True)
'''
"""One client process of the 8-process measurement: ``python -c AWS_WORKER COUNT PREFIX``,
the endpoint and key in its environment; says ``ready``, submits on ``go``, prints its times
(``time.monotonic``, one clock for every process on Linux) and its own CPU time."""

AWS_MODES = ("native", "boto3_single", "boto3_threads", "boto3_processes")


def aws_env(head: HeadNode) -> dict[str, str]:
    """The ``export`` lines of ``python -m mnp --home H env``, as a dict."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    out = subprocess.run([sys.executable, "-m", "mnp", "--home", str(head.home), "env"],
                         capture_output=True, text=True, check=True, env=env,
                         timeout=60).stdout
    exports: dict[str, str] = {}
    for line in out.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, value = words[1].split("=", 1)
            exports[name] = value
    missing = {"AWS_ENDPOINT_URL_BATCH", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} - set(
        exports)
    if missing:
        raise RuntimeError(f"aws: `mnp env` printed no {', '.join(sorted(missing))}")
    return exports


class Boto3Batch:
    """Makes boto3 ``batch`` clients for one head: its endpoint and key, retries off."""

    def __init__(self, exports: dict[str, str]) -> None:
        self.boto3: Any = importlib.import_module("boto3")  # untyped; a dev dependency
        self.config: Any = importlib.import_module("botocore.config").Config(
            retries={"total_max_attempts": 1})
        self.endpoint = exports["AWS_ENDPOINT_URL_BATCH"]
        self.key_id = exports["AWS_ACCESS_KEY_ID"]
        self.secret = exports["AWS_SECRET_ACCESS_KEY"]

    def client(self) -> Any:
        """A new client on its own session (creating clients from one session is not
        thread-safe), warmed by one call: the service model loaded, the connection open."""
        client = self.boto3.session.Session().client(
            "batch", endpoint_url=self.endpoint, aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret, region_name=AWS_REGION, config=self.config)
        client.describe_job_queues()
        return client

    def worker_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE")}
        env.update(MNP_BENCH_ENDPOINT=self.endpoint, AWS_ACCESS_KEY_ID=self.key_id,
                   AWS_SECRET_ACCESS_KEY=self.secret, AWS_DEFAULT_REGION=AWS_REGION)
        return env


def aws_phase(head: HeadNode, mode: str, n: int, elapsed: float, quiet: float, cpu: JSON,
              **extra: Any) -> JSON:
    result = {"mode": mode, "submits": n, "elapsed_s": round(elapsed, 3),
              "submits_per_s": round(n / elapsed, 1),
              "ratio_to_aws_limit": round(n / elapsed / AWS_SUBMIT_LIMIT, 2),
              **extra, "busy_before_pct": quiet, **cpu,
              "cpu_ms_per_submit": per_job_ms(cpu, n)}
    say(f"  {mode}: {result['submits_per_s']:.0f} submits/s "
        f"({result['ratio_to_aws_limit']:.1f}× AWS), other load {cpu['other_pct']:.0f}%")
    return result


def aws_threads(head: HeadNode, boto: Boto3Batch, per_client: int) -> tuple[JSON, list[str]]:
    """``AWS_CLIENTS`` threads, one boto3 client each, released together by a barrier."""
    clients = [boto.client() for _ in range(AWS_CLIENTS)]
    barrier = threading.Barrier(AWS_CLIENTS + 1)
    ends = [0.0] * AWS_CLIENTS
    ids: list[list[str]] = [[] for _ in range(AWS_CLIENTS)]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            barrier.wait()
            for i in range(per_client):
                ids[k].append(clients[k].submit_job(
                    jobName=f"t{k}-{i}", jobQueue="default", jobDefinition="t")["jobId"])
        except threading.BrokenBarrierError:
            pass
        except BaseException as e:  # reported by the main thread
            errors.append(e)
        finally:
            ends[k] = time.perf_counter()

    threads = [threading.Thread(target=work, args=(k,), daemon=True, name=f"boto3-{k}")
               for k in range(AWS_CLIENTS)]
    for t in threads:
        t.start()
    try:
        quiet = wait_quiet()
        meter = CpuMeter(head).start()
        t0 = time.perf_counter()
        barrier.wait()
        for t in threads:
            t.join()
        cpu = meter.stop()
    finally:
        barrier.abort()  # releases the threads if we did not get as far as the barrier
        for t in threads:
            t.join(60)
    if errors:
        raise RuntimeError(f"aws: {len(errors)} boto3 thread(s) failed: {errors[0]!r}")
    n = per_client * AWS_CLIENTS
    per = [round(per_client / (e - t0), 1) for e in ends]
    return aws_phase(head, "boto3_threads", n, max(ends) - t0, quiet, cpu, clients=AWS_CLIENTS,
                     per_client_submits_per_s=per), [i for part in ids for i in part]


def aws_processes(head: HeadNode, boto: Boto3Batch, per_client: int) -> JSON:
    """``AWS_CLIENTS`` processes (``AWS_WORKER``), one boto3 client each, started together.
    Every worker is killed by PID if it is still running when this returns or fails."""
    procs: list[subprocess.Popen[str]] = []
    try:
        for k in range(AWS_CLIENTS):
            procs.append(subprocess.Popen(
                [sys.executable, "-c", AWS_WORKER, str(per_client), f"p{k}-"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                env=boto.worker_env(), cwd=head.home))
        for p in procs:
            assert p.stdout is not None
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"aws: worker {p.pid} did not start (exit {p.wait(30)})")
        quiet = wait_quiet()
        meter = CpuMeter(head).start()
        t0 = time.monotonic()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        reports: list[JSON] = []
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            if not line:
                raise RuntimeError(f"aws: worker {p.pid} failed (exit {p.wait(30)})")
            reports.append(json.loads(line))
        worker_cpu = sum(float(r["cpu_s"]) for r in reports)
        cpu = meter.stop(extra_client_s=worker_cpu)
        for p in procs:
            if p.wait(30) != 0:
                raise RuntimeError(f"aws: worker {p.pid} exited with {p.returncode}")
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
            for stream in (p.stdin, p.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
    n = per_client * AWS_CLIENTS
    elapsed = max(float(r["end"]) for r in reports) - t0
    per = [round(per_client / (float(r["end"]) - t0), 1) for r in reports]
    start_spread = max(float(r["start"]) for r in reports) - t0
    return aws_phase(head, "boto3_processes", n, elapsed, quiet, cpu, clients=AWS_CLIENTS,
                     per_client_submits_per_s=per, start_spread_ms=round(start_spread * 1000, 1),
                     worker_cpu_s=round(worker_cpu, 2))


def aws_describe(head: HeadNode, boto: Boto3Batch, ids: list[str], calls: int) -> JSON:
    """DescribeJobs of ``AWS_DESCRIBE_IDS`` finished jobs: boto3 and ``Client.describe_jobs``
    alternately (which goes first alternates too), the same ids for both in each round."""
    chunks = [ids[i:i + AWS_DESCRIBE_IDS]
              for i in range(0, len(ids) - AWS_DESCRIBE_IDS + 1, AWS_DESCRIBE_IDS)]
    if not chunks:
        raise RuntimeError(f"aws: {len(ids)} job ids, fewer than {AWS_DESCRIBE_IDS}")
    client = boto.client()
    c = head.c
    calls_by: dict[str, Callable[[list[str]], int]] = {
        "boto3": lambda chunk: len(client.describe_jobs(jobs=chunk)["jobs"]),
        "native": lambda chunk: len(c.describe_jobs(chunk)),
    }
    ms: dict[str, list[float]] = {k: [] for k in calls_by}
    cpu_ms: dict[str, list[float]] = {k: [] for k in calls_by}
    for call in calls_by.values():  # warm-up
        call(chunks[0])
    quiet = wait_quiet()
    meter = CpuMeter(head).start()
    for i in range(calls):
        chunk = chunks[i % len(chunks)]
        order = list(calls_by) if i % 2 == 0 else list(reversed(calls_by))
        for kind in order:
            cpu0, t = time.process_time(), time.perf_counter()
            got = calls_by[kind](chunk)
            ms[kind].append(round((time.perf_counter() - t) * 1000, 2))
            cpu_ms[kind].append(round((time.process_time() - cpu0) * 1000, 2))
            if got != len(chunk):
                raise RuntimeError(f"aws: {kind} describeJobs returned {got} of {len(chunk)}")
    cpu = meter.stop()
    result = {
        "ids_per_call": AWS_DESCRIBE_IDS, "calls": calls,
        "boto3_ms": ms["boto3"], "native_ms": ms["native"],
        "median_boto3_ms": round(median(ms["boto3"]), 2),
        "p90_boto3_ms": round(p90(ms["boto3"]), 2),
        "median_native_ms": round(median(ms["native"]), 2),
        "p90_native_ms": round(p90(ms["native"]), 2),
        "median_boto3_client_cpu_ms": round(median(cpu_ms["boto3"]), 2),
        "median_native_client_cpu_ms": round(median(cpu_ms["native"]), 2),
        "busy_before_pct": quiet, **cpu,
    }
    say(f"  describeJobs of {AWS_DESCRIBE_IDS}: boto3 {result['median_boto3_ms']:.1f} ms "
        f"(client CPU {result['median_boto3_client_cpu_ms']:.1f}), native "
        f"{result['median_native_ms']:.1f} ms")
    return result


def aws_run(head: HeadNode, sizes: Sizes) -> JSON:
    """One run on a fresh head: the native baseline, then boto3 with 1 client, threads,
    processes (each phase starting on an idle cluster), then DescribeJobs."""
    c = head.c
    boto = Boto3Batch(aws_env(head))
    registered = boto.client().register_job_definition(
        jobDefinitionName="t", type="container",
        containerProperties={"command": ["true"],
                             "resourceRequirements": [{"type": "VCPU", "value": "1"}]})
    if registered["jobDefinitionName"] != "t":
        raise RuntimeError(f"aws: registerJobDefinition answered {registered}")
    n = sizes.aws_submits
    per_client = max(1, n // AWS_CLIENTS)
    result: JSON = {}
    submitted = 0
    describe_ids: list[str] = []

    def settle(count: int) -> None:
        """Wait until the phase's jobs are done, so the next one starts on an idle cluster."""
        nonlocal submitted
        submitted += count
        wait_terminal_count(c, submitted, timeout=max(120.0, count * 0.2))

    # Baseline: mnp's own client (native API), one thread, same count.
    quiet = wait_quiet()
    meter = CpuMeter(head).start()
    t0 = time.perf_counter()
    for i in range(n):
        c.submit({"jobName": f"n{i}", "jobQueue": "default", "jobDefinition": "t"})
    result["native"] = aws_phase(head, "native", n, time.perf_counter() - t0, quiet,
                                 meter.stop())
    settle(n)

    client = boto.client()
    quiet = wait_quiet()
    meter = CpuMeter(head).start()
    t0 = time.perf_counter()
    for i in range(n):
        describe_ids.append(client.submit_job(
            jobName=f"b{i}", jobQueue="default", jobDefinition="t")["jobId"])
    result["boto3_single"] = aws_phase(head, "boto3_single", n, time.perf_counter() - t0,
                                       quiet, meter.stop())
    settle(n)

    result["boto3_threads"], thread_ids = aws_threads(head, boto, per_client)
    describe_ids += thread_ids
    settle(per_client * AWS_CLIENTS)
    result["boto3_processes"] = aws_processes(head, boto, per_client)
    settle(per_client * AWS_CLIENTS)

    counts = c.status()["jobCounts"]
    if int(counts.get("SUCCEEDED", 0)) != submitted:
        raise RuntimeError(f"aws: {submitted} jobs submitted, counts {counts}")
    result["describe"] = aws_describe(head, boto, describe_ids, sizes.aws_describe_calls)
    return result


def bench_aws(sizes: Sizes, scratch: Path, keep: bool) -> JSON:
    runs: list[JSON] = []
    for run in range(sizes.aws_runs):
        say(f"aws run {run + 1}/{sizes.aws_runs}: {sizes.aws_submits} submits each: native, "
            f"boto3 1 client, {AWS_CLIENTS} threads, {AWS_CLIENTS} processes; describeJobs")
        with HeadNode(scratch, "aws", keep) as head:
            runs.append(aws_run(head, sizes))

    def med(mode: str, key: str) -> float:
        return median([r[mode][key] for r in runs])

    rates = {mode: med(mode, "submits_per_s") for mode in AWS_MODES}
    cpu_per_submit = {mode: {role: median([r[mode]["cpu_ms_per_submit"][role] for r in runs])
                             for role in runs[0][mode]["cpu_ms_per_submit"]}
                      for mode in AWS_MODES}
    target = TARGETS["aws_submits_per_s"]
    concurrent = max(("boto3_threads", "boto3_processes"), key=lambda m: rates[m])
    describe = {key: round(median([r["describe"][key] for r in runs]), 2) for key in (
        "median_boto3_ms", "p90_boto3_ms", "median_native_ms", "p90_native_ms",
        "median_boto3_client_cpu_ms", "median_native_client_cpu_ms", "other_pct")}
    return {
        "submits": sizes.aws_submits,
        "clients": AWS_CLIENTS,
        "n_runs": len(runs),
        "runs": runs,
        "median_submits_per_s": rates,
        "ratio_to_aws_limit": {m: round(v / AWS_SUBMIT_LIMIT, 2) for m, v in rates.items()},
        "median_other_pct_by_mode": {m: med(m, "other_pct") for m in AWS_MODES},
        "median_other_pct": median([r[m]["other_pct"] for r in runs for m in AWS_MODES]),
        "median_cpu_ms_per_submit": cpu_per_submit,
        "best_concurrent": concurrent,
        "describe": {"ids_per_call": AWS_DESCRIBE_IDS, "calls_per_run": sizes.aws_describe_calls,
                     **describe},
        "aws_submit_limit_per_s": AWS_SUBMIT_LIMIT,
        "target_submits_per_s": target,
        "met_by_mode": {m: rates[m] >= target for m in AWS_MODES if m != "native"},
        "met": rates[concurrent] >= target,
    }


# --- results and README ---------------------------------------------------------------------------
def machine_info() -> JSON:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=False).stdout.strip()
    dirty = -1
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        status = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"],
                                capture_output=True, text=True, check=False).stdout
        dirty = len(status.splitlines())
    return {
        "nproc": os.cpu_count(),
        "git_dirty_paths": dirty,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "memory_mib": mem_kib // 1024,
        "git_commit": commit,
    }


def mn_ratio(results: JSON) -> float:
    return float(results.get("targets", {}).get("mnp_ratio_to_raw_mpiexec",
                                                 TARGETS["mnp_ratio_to_raw_mpiexec"]))


def mn_slack(results: JSON) -> float:
    return float(results.get("targets", {}).get("mnp_slack_s", TARGETS["mnp_slack_s"]))


NUMBERS = {"throughput": 1, "array": 2, "latency": 3, "memory": 4, "mnp": 5, "bringup": 6,
           "aws": 7, "containers": 8}


def runs_text(results: JSON) -> str:
    """One paragraph per run that produced some of the benchmarks in ``results``."""
    out = []
    for run in results_runs(results):
        m = run["machine"]
        names = [n for n in run["benchmarks"] if n in results["benchmarks"]]
        if not names:
            continue
        which = ", ".join(f"{NUMBERS.get(n, '?')}. {n}" for n in names)
        dirty = m.get("git_dirty_paths", -1)
        tree = " (plus the working tree)" if dirty != 0 else ""
        out.append(textwrap.fill(
            f"- {which}: {run['timestamp']}: {m['nproc']} CPUs ({m['cpu'] or 'unknown CPU'}), "
            f"{m['memory_mib']:,} MiB, Python {m['python']}, commit "
            f"`{m['git_commit'] or '?'}`{tree}; total {run['total_s']:.0f} s.",
            width=92, subsequent_indent="  ", break_on_hyphens=False, break_long_words=False))
    return "\n".join(out)


def results_runs(results: JSON) -> list[JSON]:
    """The runs recorded in ``results`` (older files have only the top-level one)."""
    if results.get("runs"):
        return list(results["runs"])
    return [{"timestamp": results["timestamp"], "mode": results.get("mode"),
             "sizes": results.get("sizes"), "machine": results["machine"],
             "total_s": results.get("total_s", 0.0),
             "benchmarks": list(results.get("benchmarks", {}))}]


def merge_results(path: Path, new: JSON) -> JSON:
    """``new`` merged over the results already in ``path`` (same mode only): benchmarks not
    run this time keep their entries, and ``runs`` says which run produced which."""
    run = {k: new[k] for k in ("timestamp", "mode", "sizes", "machine", "total_s")}
    run["benchmarks"] = list(new["benchmarks"])
    old: JSON = {}
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            say(f"cannot read {path} ({e}); not merging")
    if old.get("mode") != new["mode"] or not old.get("benchmarks"):
        return {**new, "runs": [run]}
    runs = []
    for r in results_runs(old):
        kept = [n for n in r["benchmarks"] if n not in new["benchmarks"]]
        if kept:
            runs.append({**r, "benchmarks": kept})
    merged = {**old["benchmarks"], **new["benchmarks"]}
    order = [*BENCHMARKS, *merged]
    benchmarks = {n: merged[n] for n in dict.fromkeys(order) if n in merged}
    return {**new, "benchmarks": benchmarks, "runs": [*runs, run]}


def verdict(met: object) -> str:
    return "yes" if met is True else "**no**" if met is False else "–"


def readme(results: JSON) -> str:
    b = results["benchmarks"]
    rows: list[tuple[str, ...]] = []

    def load(result: JSON) -> str:
        other = result.get("median_other_pct", result.get("other_pct"))
        return "" if other is None else f"{other:.0f}%"

    if "throughput" in b:
        t = b["throughput"]
        rows.append(("1. end-to-end throughput",
                     f"{t['median_jobs_per_s']:.0f} jobs/s",
                     f"{t['median_baseline_spawns_per_s']:.0f} spawns/s "
                     f"(ratio {t['ratio_to_spawn']:.2f})",
                     f"≥ {t['target_jobs_per_s']:.0f} jobs/s", verdict(t["met"]), load(t)))
        rows.append(("   submit rate (client, 1 thread)", f"{t['median_submits_per_s']:.0f} /s",
                     "", "", "", ""))
        rows.append(("   CPU per job: " + " / ".join(t["median_cpu_ms_per_job"]),
                     " / ".join(f"{v:.1f}" for v in t["median_cpu_ms_per_job"].values())
                     + " ms", "", "", "", ""))
    if "array" in b:
        a = b["array"]
        n = a["runs"][0]["children"]
        rows.append((f"2. array of {n:,}: submit call", f"{a['median_submit_s'] * 1000:.0f} ms",
                     f"single submitJob {a['median_baseline_single_submit_ms']:.1f} ms",
                     f"< {a['target_submit_s'] * 1000:.0f} ms", verdict(a["met"]), ""))
        rows.append((f"   array of {n:,}: all children done",
                     f"{a['median_elapsed_s']:.1f} s ({a['median_jobs_per_s']:.0f} jobs/s)",
                     f"{a['median_baseline_spawns_per_s']:.0f} spawns/s "
                     f"(ratio {a['ratio_to_spawn']:.2f})", "", "", load(a)))
        rows.append(("   CPU per job: " + " / ".join(a["median_cpu_ms_per_job"]),
                     " / ".join(f"{v:.1f}" for v in a["median_cpu_ms_per_job"].values())
                     + " ms", "", "", "", ""))
    if "latency" in b:
        lat = b["latency"]
        st = lat["stage_median_ms"]
        rows.append(("3. submit → RUNNING (history), median / p90",
                     f"{lat['median_ms']:.0f} / {lat['p90_ms']:.0f} ms",
                     f"API round trip {lat['baseline_api_rtt_median_ms']:.1f} ms, "
                     f"spawn {lat['baseline_spawn_median_ms']:.1f} ms",
                     f"median < {lat['target_median_ms']:.0f} ms", verdict(lat["met"]), load(lat)))
        rows.append(("   client-observed (poll describe), median / p90",
                     f"{lat['client_median_ms']:.0f} / {lat['client_p90_ms']:.0f} ms",
                     "", "", "", ""))
        rows.append(("   stages: →RUNNABLE / →STARTING / →RUNNING (median)",
                     " / ".join(f"{v:.0f}" for v in st.values()) + " ms", "", "", "", ""))
    if "memory" in b:
        mem = b["memory"]
        rows.append((f"4. head RSS with {mem['finished_jobs']:,} finished jobs",
                     f"{mem['rss_after_mib']:.0f} MiB (peak {mem['peak_rss_hwm_mib']:.0f})",
                     f"idle head {mem['baseline_idle_rss_mib']:.0f} MiB", "", "", ""))
        rows.append(("   SQLite file (+ WAL)",
                     f"{mem['sqlite_mib']:.0f} MiB (+ {mem['sqlite_wal_mib']:.0f})",
                     f"{mem['sqlite_bytes_per_job']} bytes/job", "", "", ""))
        rows.append(("   fill rate (arrays, sustained)", f"{mem['fill_jobs_per_s']:.0f} jobs/s",
                     "", "", "", load(mem)))
        dirs, files, size = mem["node_dirs_files_mib"]
        rows.append(("   agents' workdirs left on disk", f"{dirs:,} dirs, {files:,} files",
                     f"{size:.0f} MiB", "", "", ""))
    if "mnp" in b:
        mn = b["mnp"]
        shape = f"{mn['ranks']} ranks on {mn['nodes']} nodes"
        for i, kind in enumerate(k for k in MNP_COMMANDS if k in mn):
            r = mn[kind]
            label = {"true": "`/bin/true`", "barrier": "mpi4py `Barrier()`"}.get(kind, kind)
            first = f"5. MNP launch, {shape}, {label}" if i == 0 else f"   {label}"
            rows.append((f"{first}: submit → SUCCEEDED, client / history",
                         f"{r['median_mnp_client_s']:.2f} / {r['median_mnp_history_s']:.2f} s",
                         f"raw mpiexec {r['median_raw_mpiexec_s']:.2f} s (ratio "
                         f"{r['ratio_client']:.2f} / {r['ratio_history']:.2f})",
                         f"≤ {mn_ratio(results):g} × raw + {mn_slack(results):g} s "
                         f"= {r['limit_s']:.2f} s",
                         f"{verdict(r['met'])} / {verdict(r['met_history'])}",
                         load(mn) if i == 0 else ""))
        if "true" in mn:
            st = mn["true"]["stage_median_s"]
            wire = []
            if mn["true"].get("median_wire_ready_s") is not None:
                wire.append(f"SSH check {mn['true']['median_wire_ready_s'] * 1000:.0f} ms")
            if mn.get("median_wire_dry_run_s") is not None:
                wire.append(f"own start {mn['median_wire_dry_run_s'] * 1000:.0f} ms")
            rows.append(("   `/bin/true` stages: submit→RUNNING / RUNNING→last child RUNNING / "
                         "RUNNING→SUCCEEDED",
                         " / ".join(f"{v * 1000:.0f}" for v in st.values()) + " ms",
                         ("launcher.wire: " + ", ".join(wire)) if wire else "",
                         "", "", ""))
    if "bringup" in b:
        bu = b["bringup"]
        counts = " / ".join(str(k) for k in bu["node_counts"])
        plain = bu["baseline_plain_job_median_s"]
        labels = {
            "submit_to_running_s": (f"6. bring-up, every-node `true`, {counts} nodes: "
                                    "submit → RUNNING", plain["submit_to_running_s"]),
            "running_to_last_child_running_s": ("   RUNNING → last child RUNNING", None),
            "submit_to_succeeded_s": ("   submit → SUCCEEDED", plain["submit_to_succeeded_s"]),
        }
        for metric, (label, base) in labels.items():
            med = bu["median_s"][metric]
            fit = bu["fit_over_medians"][metric]
            rows.append((label,
                         " / ".join(f"{med[str(k)] * 1000:.0f}" for k in bu["node_counts"])
                         + f" ms; {fit['slope_s_per_node'] * 1000:+.1f} ms/node",
                         "" if base is None else f"plain 1-vCPU job {base * 1000:.0f} ms",
                         "", "", load(bu) if metric == "submit_to_running_s" else ""))
    if "aws" in b:
        w = b["aws"]
        rate, ratio = w["median_submits_per_s"], w["ratio_to_aws_limit"]
        met_by, other_by = w.get("met_by_mode", {}), w.get("median_other_pct_by_mode", {})
        limit = w["aws_submit_limit_per_s"]
        goal = (f"≥ {w['target_submits_per_s']:.0f} /s "
                f"({w['target_submits_per_s'] / limit:g} × AWS)")

        def pct(mode: str) -> str:
            return "" if mode not in other_by else f"{other_by[mode]:.0f}%"

        rows.append(("7. AWS SubmitJob, boto3 over HTTP, 1 client",
                     f"{rate['boto3_single']:.0f} /s ({ratio['boto3_single']:.1f} × AWS's "
                     f"{limit:.0f}/s)",
                     f"native `Client.submit` {rate['native']:.0f} /s "
                     f"({pct('native')} other load)",
                     goal, verdict(met_by.get("boto3_single")), pct("boto3_single")))
        for mode, label in (("boto3_threads", "threads, one process"),
                            ("boto3_processes", "processes")):
            best = " (best)" if w.get("best_concurrent") == mode else ""
            rows.append((f"   {w['clients']} clients, {label}{best}",
                         f"{rate[mode]:.0f} /s ({ratio[mode]:.1f} × AWS)", "", goal,
                         verdict(met_by.get(mode)), pct(mode)))
        d = w["describe"]
        rows.append((f"   DescribeJobs of {d['ids_per_call']} ids (boto3), median / p90",
                     f"{d['median_boto3_ms']:.0f} / {d['p90_boto3_ms']:.0f} ms (client CPU "
                     f"{d['median_boto3_client_cpu_ms']:.0f} ms)",
                     f"native `Client.describe_jobs` {d['median_native_ms']:.0f} / "
                     f"{d['p90_native_ms']:.0f} ms (client CPU "
                     f"{d['median_native_client_cpu_ms']:.0f} ms)", "", "",
                     f"{d['other_pct']:.0f}%"))
    if "containers" in b:
        ct = b["containers"]
        rows.append((f"8. container job, submit → SUCCEEDED, one at a time ({ct['jobs']})",
                     f"{ct['median_container_job_s'] * 1000:.0f} ms",
                     f"process job {ct['median_process_job_s'] * 1000:.0f} ms (ratio "
                     f"{ct['ratio_container_to_process']:.1f}); `docker run --rm` "
                     f"{ct['median_raw_docker_run_s'] * 1000:.0f} ms (ratio "
                     f"{ct['ratio_container_to_raw_docker_run']:.2f})", "", "", ""))
        rows.append((f"   {ct['jobs']} submitted at once: all done",
                     f"{ct['batch_container_s']:.1f} s ({ct['batch_container_jobs_per_s']:.0f} "
                     "jobs/s)",
                     f"process jobs {ct['batch_process_s']:.1f} s (ratio "
                     f"{ct['batch_ratio_container_to_process']:.1f}); `docker run --rm`, "
                     f"{ct['batch_raw_docker_run_parallel']} at a time, "
                     f"{ct['batch_raw_docker_run_s']:.1f} s (ratio "
                     f"{ct['batch_ratio_container_to_raw_docker_run']:.2f})", "", "", ""))
    table = ["| benchmark | result (median) | baseline (same run) | target | met | other load |",
             "|---|---|---|---|---|---|"]
    table += ["| " + " | ".join(r) + " |" for r in rows]
    runs = b.get("array", {}).get("n_runs")
    f, q = FULL, QUICK
    head5 = f"--nodes {MNP_NODES} --vcpus {MNP_VCPUS}"
    head6 = f"--nodes {BRINGUP_HEAD_NODES} --vcpus {BRINGUP_VCPUS}"
    ranks = MNP_NODES * MNP_TASKS_PER_NODE
    mnp_block = json.dumps({"mpi": "mpich", "tasksPerNode": MNP_TASKS_PER_NODE})
    raw_cmd = (f"mpiexec -f hostfile.mpich -n {ranks} -ppn {MNP_TASKS_PER_NODE} -launcher ssh "
               "-launcher-exec ssh-wrapper -iface lo -genvnone <command>")
    sizes6 = ", ".join(map(str, BRINGUP_NODES))
    aws_x = TARGETS["aws_submits_per_s"] / AWS_SUBMIT_LIMIT
    return f"""# mnp benchmarks

`python benchmarks/run.py` runs eight benchmarks against real head nodes, each started as
`python -m mnp --home <tmp> up --nodes {NODES} --vcpus {VCPUS} --memory-mib {MEMORY_MIB}`
({NODES} local node agents, {NODES * VCPUS} one-vCPU job slots; benchmark 5 uses
`{head5}`, benchmark 6 `{head6}`) and driven through `mnp.client.client.Client`
from one thread (benchmark 7 also through boto3, from several threads and processes).
Each benchmark starts a fresh head node, waits for its nodes to be ACTIVE, measures, and
stops it (SIGTERM by PID; leftover agents are killed by PID, also on failure).
Each one measures its own baseline in the same run.

1. **End-to-end throughput.** {f.jobs:,} trivial jobs (`true`, 1 vCPU) submitted one
   `submitJob` call at a time; time from the first submit until `getStatus` counts them all
   terminal (polled every 20 ms; all checked SUCCEEDED). {f.throughput_runs} runs, fresh head
   each; median. Baseline: `subprocess.run(["true"])` in a loop in the benchmark process
   (same count), and the ratio jobs/s ÷ spawns/s.
2. **Array job.** One `submitJob` with `arrayProperties.size = {f.array_size:,}`: the time of
   the call, and the time until the parent is SUCCEEDED (all children done; jobs/s).
   Median of {f.array_runs} runs, fresh head each. Baselines: a plain one-job `submitJob`
   call on the same head; the process spawn rate.
3. **Submit → RUNNING latency** on an idle cluster: {f.latency_samples} `sleep 1` jobs, one at
   a time; `RUNNING.at − SUBMITTED.at` from the job's `history` (head clock), and the
   client-observed time from before `submitJob` until `describeJobs` says RUNNING (polled
   every 2 ms). Median and p90, and the median of each stage (SUBMITTED→RUNNABLE→STARTING→
   RUNNING). Baselines: one `describeJobs` round trip; one `Popen(["true"])`.
4. **Head-node memory** with {f.fill_jobs:,} finished jobs in the store: {f.fill_arrays}
   arrays of {f.fill_array_size:,} `true` children (at most {f.fill_in_flight} unfinished at a
   time), then the head's `VmRSS` (and `VmHWM`, its peak) and the SQLite file size.
   Baseline: `VmRSS` of the idle head before filling.
5. **MNP launch overhead.** A `type: multinode` job of {MNP_NODES} nodes with
   `nodeProperties.mnp = {mnp_block}` (MPICH wheel; node `0` runs
   the command, nodes `1:` only serve SSH): {ranks} ranks of `/bin/true`, and of
   `python -c "{BARRIER}"` (`python`: the absolute
   `sys.executable`). Time from submit to SUCCEEDED, client-observed (before `submitJob`
   until `describeJobs` says SUCCEEDED, polled every 10 ms) and from the parent's `history`
   (`SUCCEEDED.at − SUBMITTED.at`); {f.mnp_samples} rounds of one job per command, one job at
   a time (one warm-up job each first, not counted). Baseline: **raw `mpiexec` over the
   very same SSH endpoints**: an MNP job (`mpi: none`, nodes `1:` holding, so their SSH
   servers accept the job's key) whose main node copies its wiring (`$MNP_WIRING_DIR`:
   `ssh_config`, `known_hosts`, `id_ed25519`, `hostfile.mpich`, `ssh-wrapper`) and runs
   `{raw_cmd}`
   (built by `mnp.build.mpi.launch_argv`, checked equal to what `python -m launcher.wire --dry-run`
   prints, paths aside) in a loop, {RAW_PER_JOB} runs per command, timing each with
   `time.perf_counter()`. Such a job runs every {RAW_PER_JOB} rounds, interleaved with the MNP
   jobs ({f.mnp_samples} raw runs per command in all, after a warm-up job). Several short jobs
   rather than one long loop because mnp fails an MNP job as hung once an MPI proxy on a node
   has ended and the job goes on for 10 s (`mpi_hang_seconds`). Target: median ≤
   {mn_ratio(results):g} × raw median + {mn_slack(results):g} s (client-observed; "met" shows
   client / history). Also reported: the parent's stages, how
   long `launcher.wire` waited for the other nodes (its SSH check), and its own start-up
   (`--dry-run`: interpreter, imports, `mpiexec --version`; timed in the baseline job).
6. **Bring-up time as the gang grows.** Every-node MNP jobs (`mpi: none`, range `0:` runs
   `true`) of {sizes6} nodes on one head of {BRINGUP_HEAD_NODES} nodes, round-robin over
   the sizes, {f.bringup_samples} rounds (one warm-up each first). From the histories: submit
   → parent RUNNING (the main node started), parent RUNNING → the last other node RUNNING,
   submit → parent SUCCEEDED; medians per size and the slope of a least-squares line through
   the medians (growth per node). Baseline: a plain 1-vCPU `true` job in each round on the
   same head (submit → RUNNING, → SUCCEEDED).
7. **AWS SubmitJob throughput through boto3 over HTTP.** boto3 `batch` clients pointed at
   the head (`endpoint_url` and key as `python -m mnp --home H env` prints them,
   `region_name="{AWS_REGION}"`, retries off: `Config(retries={{"total_max_attempts": 1}})`,
   so a refused or failed call fails the benchmark); a `true` job definition registered
   through boto3. Each client is made on its own `boto3.session.Session` and warmed with one
   `describeJobQueues` call before timing. Per run, on a fresh head, {f.aws_submits:,} `submit_job`
   calls (a) from one client in a loop; (b) from {AWS_CLIENTS} clients at once, \
{f.aws_submits // AWS_CLIENTS} each: {AWS_CLIENTS} threads
   of this process (released by a barrier; they share the GIL), and {AWS_CLIENTS} processes
   (`python -c`, started and warmed first, released by a line on stdin; time until the last
   one is done). submits/s, median of {f.aws_runs} runs, and the ratio to AWS Batch's \
{AWS_SUBMIT_LIMIT:.0f}
   SubmitJob/s per account. The head runs the `true` jobs while they are being submitted:
   that load is part of the measurement (each phase starts on an idle cluster, once the
   previous phase's jobs are done; all checked SUCCEEDED).
   Baseline: the same count through mnp's native `Client.submit`, same head.
   (c) `describe_jobs` of {AWS_DESCRIBE_IDS} finished jobs' ids on the idle head, \
{f.aws_describe_calls} calls per run,
   alternating call by call with `Client.describe_jobs` of the same ids (the baseline);
   latency and the client's own CPU time per call, median per run, median of the runs.
   Target: ≥ {TARGETS['aws_submits_per_s']:.0f} submits/s ({aws_x:g} × AWS), shown for each \
client setup (the JSON's
   `met`: the better of threads and processes).
8. **Container job overhead.** On one head, with a Docker engine (the running one, else
   `dockerd --bridge=none --iptables=false` started for the benchmark and stopped by PID)
   and a tiny image imported from this machine's files (`tests/docker_support.py`, nothing
   pulled): {f.container_jobs} trivial `true` jobs run as processes, then {f.container_jobs} \
with that `image`, one at
   a time (client-observed submit → SUCCEEDED, polled every 5 ms; 3 warm-up jobs each
   first), and {f.container_jobs} of each submitted at once (time until all are done).
   Baseline: `docker run --rm --network host <image> true` through the CLI, one at a time,
   {f.container_jobs} runs, and {f.container_jobs} runs {NODES * VCPUS} at a time (as many as
   the head has job slots). Medians and their ratios.

## Running

    python benchmarks/run.py           # full sizes (about 10-15 min on 2 cores);
                                       # rewrites results.json and this README
    python benchmarks/run.py --quick   # {q.jobs} jobs, {q.array_size:,} children,
                                       # {q.latency_samples} samples, {q.fill_jobs:,} finished jobs,
                                       # {q.mnp_samples} MNP / {q.bringup_samples} bring-up samples,
                                       # {q.aws_submits} boto3 submits × {q.aws_runs} run;
                                       # writes results-quick.json only
    python benchmarks/run.py --only mnp,bringup   # a subset: merged into results.json
                                       # (other entries kept), README regenerated
    python benchmarks/run.py --readme  # only regenerate this README from results.json

`--keep` leaves each head's home (store, logs) under the scratch directory (`--scratch`,
default the system temp dir) for inspection; `--array-runs N` changes the array runs.

## Last full run

{runs_text(results)}

Array: median of {runs} run(s). Raw figures: `results.json` (`runs` says which run produced
which benchmark). "CPU per job" splits the CPU time used during the measurement
by process: the benchmark client, the head node, the 4 agents, and the job processes.

"other load" is the share of the machine's CPU used by processes outside the benchmark
(neither this script, the head, its agents nor their jobs) during the measurement; the
benchmark waits (up to 60 s) for the machine to be under 25% busy before each measurement,
but anything above a few percent means the run shared the machine and its figures are
pessimistic.

{chr(10).join(table)}

Targets: throughput ≥ {TARGETS['throughput_jobs_per_s']:.0f} jobs/s; array submit call
< {TARGETS['array_submit_s'] * 1000:.0f} ms; submit → RUNNING median
< {TARGETS['latency_median_ms']:.0f} ms; MNP launch median ≤ {mn_ratio(results):g} × raw
mpiexec median + {mn_slack(results):g} s; SubmitJob through boto3 \
≥ {TARGETS['aws_submits_per_s']:.0f} /s
({aws_x:g} × AWS Batch's {AWS_SUBMIT_LIMIT:.0f}/s per account).
"""


# --- 8. container jobs ----------------------------------------------------------------------------
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
    from concurrent.futures import ThreadPoolExecutor

    env = {**os.environ, "DOCKER_HOST": host}

    def one(_: int) -> float:
        t0 = time.perf_counter()
        subprocess.run(["docker", "run", "--rm", "--network", "host", image, "true"],
                       check=True, env=env, stdout=subprocess.DEVNULL, timeout=120)
        return time.perf_counter() - t0

    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(one, range(count)))


def bench_containers(sizes: Sizes, scratch: Path, keep: bool) -> JSON:
    from tests.docker_support import DockerEngine

    n = sizes.container_jobs
    engine = DockerEngine()
    saved = os.environ.get("DOCKER_HOST")
    try:
        engine.start()
        os.environ["DOCKER_HOST"] = engine.host  # the head's agents inherit it
        image = engine.build_images()["base"]
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
        raw_docker_runs(engine.host, image, 3)
        say(f"  {n} raw docker run --rm")
        raw_s = raw_docker_runs(engine.host, image, n)
        slots = NODES * VCPUS
        say(f"  {n} raw docker run --rm, {slots} at a time")
        t0 = time.perf_counter()
        raw_docker_runs(engine.host, image, n, parallel=slots)
        raw_batch = time.perf_counter() - t0
        left = engine.mnp_containers()
    finally:
        if saved is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = saved
        engine.stop()
    if left:
        raise RuntimeError(f"containers: {len(left)} containers left behind")
    mp, mc, mr = median(proc_s), median(ctr_s), median(raw_s)
    result = {
        "jobs": n,
        "image": image,
        "busy_before_pct": quiet,
        "median_process_job_s": round(mp, 4),
        "median_container_job_s": round(mc, 4),
        "median_raw_docker_run_s": round(mr, 4),
        "p90_container_job_s": round(p90(ctr_s), 4),
        "ratio_container_to_process": round(mc / mp, 2),
        "ratio_container_to_raw_docker_run": round(mc / mr, 2),
        "container_overhead_over_raw_s": round(mc - mr, 4),
        "batch_process_s": round(proc_batch, 3),
        "batch_container_s": round(ctr_batch, 3),
        "batch_process_jobs_per_s": round(n / proc_batch, 1),
        "batch_container_jobs_per_s": round(n / ctr_batch, 1),
        "batch_ratio_container_to_process": round(ctr_batch / proc_batch, 2),
        "batch_raw_docker_run_s": round(raw_batch, 3),
        "batch_raw_docker_run_parallel": slots,
        "batch_ratio_container_to_raw_docker_run": round(ctr_batch / raw_batch, 2),
    }
    say(f"  {result}")
    return result


# --- main -----------------------------------------------------------------------------------------
BENCHMARKS: dict[str, Callable[[Sizes, Path, bool], JSON]] = {
    "throughput": bench_throughput,
    "array": bench_array,
    "latency": bench_latency,
    "memory": bench_memory,
    "mnp": bench_mnp,
    "bringup": bench_bringup,
    "aws": bench_aws,
    "containers": bench_containers,
}


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # so every finally (and every head's stop) runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a fast check")
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    parser.add_argument("--array-runs", type=int, default=None,
                        help="runs of the array benchmark (default: 3 full, 1 quick)")
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()),
                        help="where head homes are created")
    parser.add_argument("--keep", action="store_true", help="keep each head's home")
    parser.add_argument("--output", type=Path, default=None,
                        help="results file (default results.json, or results-quick.json); "
                        "merged into when it holds results of the same mode")
    parser.add_argument("--readme", action="store_true",
                        help="only regenerate README.md from results.json, run nothing")
    args = parser.parse_args(argv)
    if args.readme:
        results_file = BENCH_DIR / "results.json"
        (BENCH_DIR / "README.md").write_text(readme(json.loads(results_file.read_text())))
        say(f"wrote {BENCH_DIR / 'README.md'} from {results_file}")
        return 0
    sizes = QUICK if args.quick else FULL
    if args.array_runs is not None:
        sizes = Sizes(**{**asdict(sizes), "array_runs": args.array_runs})
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    args.scratch.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    results: JSON = {
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "sizes": asdict(sizes),
        "machine": machine_info(),
        "targets": TARGETS,
        "benchmarks": {},
    }
    for name in chosen:
        say(f"== {name}")
        results["benchmarks"][name] = BENCHMARKS[name](sizes, args.scratch, args.keep)
    results["total_s"] = round(time.perf_counter() - started, 1)

    output = args.output or BENCH_DIR / ("results-quick.json" if args.quick else "results.json")
    merged = merge_results(output, results)
    output.write_text(json.dumps(merged, indent=2, ensure_ascii=False) + "\n")
    say(f"wrote {output}")
    if not args.quick and args.output is None:
        (BENCH_DIR / "README.md").write_text(readme(merged))
        say(f"wrote {BENCH_DIR / 'README.md'}")
    summary = {n: {k: v for k, v in r.items() if not isinstance(v, list | dict)}
               for n, r in results["benchmarks"].items()}
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
