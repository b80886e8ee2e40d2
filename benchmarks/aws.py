"""Benchmark 7, AWS SubmitJob throughput through boto3 over HTTP, from one client and from
several at once, and DescribeJobs; baseline: mnp's native client on the same head."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.aws_clients import (
    AWS_CLIENTS,
    AWS_MODES,
    AWS_REGION,
    AWS_SUBMIT_LIMIT,
    Boto3Batch,
    aws_env,
    aws_phase,
    aws_processes,
    aws_threads,
)
from benchmarks.config import JSON, TARGETS, Sizes, say
from benchmarks.cpu import CpuMeter, wait_quiet
from benchmarks.head import HeadNode
from benchmarks.jobs import wait_terminal_count
from benchmarks.report import Row, verdict
from benchmarks.stats import median, p90

AWS_DESCRIBE_IDS = 100


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


def run(sizes: Sizes, scratch: Path, keep: bool) -> JSON:
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


def rows(w: JSON, results: JSON) -> list[Row]:
    rate, ratio = w["median_submits_per_s"], w["ratio_to_aws_limit"]
    met_by, other_by = w.get("met_by_mode", {}), w.get("median_other_pct_by_mode", {})
    limit = w["aws_submit_limit_per_s"]
    goal = (f"≥ {w['target_submits_per_s']:.0f} /s "
            f"({w['target_submits_per_s'] / limit:g} × AWS)")

    def pct(mode: str) -> str:
        return "" if mode not in other_by else f"{other_by[mode]:.0f}%"

    out: list[Row] = [
        ("7. AWS SubmitJob, boto3 over HTTP, 1 client",
         f"{rate['boto3_single']:.0f} /s ({ratio['boto3_single']:.1f} × AWS's {limit:.0f}/s)",
         f"native `Client.submit` {rate['native']:.0f} /s ({pct('native')} other load)",
         goal, verdict(met_by.get("boto3_single")), pct("boto3_single"))]
    for mode, label in (("boto3_threads", "threads, one process"),
                        ("boto3_processes", "processes")):
        best = " (best)" if w.get("best_concurrent") == mode else ""
        out.append((f"   {w['clients']} clients, {label}{best}",
                    f"{rate[mode]:.0f} /s ({ratio[mode]:.1f} × AWS)", "", goal,
                    verdict(met_by.get(mode)), pct(mode)))
    d = w["describe"]
    out.append((f"   DescribeJobs of {d['ids_per_call']} ids (boto3), median / p90",
                f"{d['median_boto3_ms']:.0f} / {d['p90_boto3_ms']:.0f} ms (client CPU "
                f"{d['median_boto3_client_cpu_ms']:.0f} ms)",
                f"native `Client.describe_jobs` {d['median_native_ms']:.0f} / "
                f"{d['p90_native_ms']:.0f} ms (client CPU "
                f"{d['median_native_client_cpu_ms']:.0f} ms)", "", "",
                f"{d['other_pct']:.0f}%"))
    return out


def prose(f: Sizes, results: JSON) -> str:
    aws_x = TARGETS["aws_submits_per_s"] / AWS_SUBMIT_LIMIT
    return f"""\
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
"""
