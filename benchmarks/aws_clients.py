"""Benchmark 7's clients: boto3 ``batch`` clients pointed at a head, and SubmitJob from
several of them at once (threads of this process, or processes of their own)."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from benchmarks.config import JSON, say
from benchmarks.cpu import CpuMeter, wait_quiet
from benchmarks.head import HeadNode, repo_env
from benchmarks.stats import per_job_ms

AWS_CLIENTS = 8
AWS_SUBMIT_LIMIT = 50.0
"""AWS Batch's SubmitJob rate per account (requests per second)."""
AWS_REGION = "us-east-1"
AWS_MODES = ("native", "boto3_single", "boto3_threads", "boto3_processes")

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


def aws_env(head: HeadNode) -> dict[str, str]:
    """The ``export`` lines of ``python -m mnp --home H env``, as a dict."""
    out = subprocess.run([sys.executable, "-m", "mnp", "--home", str(head.home), "env"],
                         capture_output=True, text=True, check=True, env=repo_env(),
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
    """The result of one SubmitJob phase: ``n`` submits in ``elapsed`` s, then ``extra``."""
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
