#!/usr/bin/env python
"""EC2 compute environments' scale-out against a moto server, and the instance chooser's
decision time (issue 13).

``python benchmarks/ec2.py [--jobs N] [--rounds R] [--choose-calls K]``:

1. **Simulated scale-out.** Per round and allocation strategy (BEST_FIT, BEST_FIT_PROGRESSIVE),
   on a fresh moto state (``/moto-api/reset``, then a VPC, subnet, security group and the
   ``ecsInstanceRole`` instance profile, as the EC2 integration tests make them) and a fresh
   head (``mnp up --nodes 0`` with ``MNP_EC2=1``, boto3 pointed at moto by
   ``AWS_ENDPOINT_URL_EC2``, ``--lost-after 600``: its launch timeout is
   ``max(30 s, lost_after)``, so no LAUNCHING node is lost meanwhile), a MANAGED EC2
   environment (``instanceTypes ["c5.9xlarge"]``: 36 vCPUs, ``maxvCpus`` far above the
   demand) gets one array job of N children of 7 vCPUs and 2,048 MiB each: 5 fit on an
   instance (35 of its 36 vCPUs; a sixth would need 42), so N = 1,000 needs 200 instances.
   No instance simulator: instances never boot and no agent joins. Measured: the submit call
   → the head's log line ``launched <node> as <instance>`` of the last instance (one per
   RunInstances answered; the log's own timestamp), and every EC2 request the head made
   meanwhile, by action, from moto's request recorder (``/moto-api/recorder``: one entry per
   request moto received, with its body, so its ``Action``); the recording is reset just
   before the submit and read once the last line is there. Afterwards moto's
   DescribeInstances is checked to hold exactly that many instances of the head's cluster.
   Baseline in the same round, on a fresh moto state again: the same number of bare boto3
   ``run_instances`` calls (one instance each, the same type, subnet, group, profile, tag
   keys and user data as the head's first instance), 8 at a time from one client (the EC2
   provider's ``launch_threads``), and one at a time. Ratios: the head's requests per
   instance against the ideal 1; the head's time ÷ the 8-thread baseline's.
2. **The chooser's decision time.** :func:`mnp.ec2.choose.choose` over the full catalogue
   moto knows (DescribeInstanceTypes → :func:`mnp.ec2.catalog.catalogue_from_ec2`) with the
   head's shipped price table, for 1,000 jobs of 8 shapes (see :data:`SHAPES`), with
   ``instanceTypes ["optimal"]`` and with every x86_64 type (a compute environment's types
   must share one architecture), for each allocation strategy; median of K calls.

Medians over the rounds; writes ``results-ec2.json`` (the benchmarks README shows it). moto,
every head and any agent are stopped by PID, also on failure.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

if __name__ == "__main__":  # run as a script: the checkout's packages, not installed ones
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]

from benchmarks.polling import wait_for
from benchmarks.report import save_standalone
from mnp.ec2.catalog import Catalogue, catalogue_from_ec2
from mnp.ec2.choose import Need, Strategy, choose
from mnp.ec2.prices import load_prices
from tests.integration.cluster import Cluster
from tests.integration.motoserver import DUMMY_CREDENTIALS, MotoServer

JSON = dict[str, Any]
RESULTS = Path(__file__).resolve().parent / "results-ec2.json"
REPO = Path(__file__).resolve().parent.parent
AMI = "ami-12c6146b"  # one of moto's stock images
CIDR = "10.232.0.0/16"
ROLE = "ecsInstanceRole"
INSTANCE_TYPE, INSTANCE_VCPUS = "c5.9xlarge", 36
JOB_VCPUS, JOB_MEMORY_MIB = 7, 2048
PER_INSTANCE = INSTANCE_VCPUS // JOB_VCPUS
SCALE_STRATEGIES = ("BEST_FIT_PROGRESSIVE", "BEST_FIT")
BASELINE_THREADS = 8
"""The EC2 provider's ``launch_threads`` default: RunInstances calls in flight at once."""
BENCH_AGENT = "mnp-benchmark"
"""In the User-Agent of this script's own boto3 clients, so the recorder's count of the
head's requests leaves them out."""
LAUNCHED = re.compile(r"^(\S+ \S+) mnp\.providers\.ec2 INFO launched (\S+) as (i-\w+)", re.M)
SHAPES = tuple((v, m) for v in (1, 2, 4, 8) for m in (1024, 6144))
"""The chooser's jobs: (vCPUs, MiB), job i has shape i mod 8."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _client(moto: MotoServer, service: str = "ec2") -> Any:
    return boto3.client(service, config=Config(user_agent_extra=BENCH_AGENT,
                                               retries={"total_max_attempts": 1}),
                        **moto.client_args())  # fmt: skip


def _post(moto: MotoServer, path: str) -> None:
    req = urllib.request.Request(f"{moto.url}{path}", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()


class Recorder:
    """moto's request recorder: every request moto receives, appended to ``path`` (set by
    ``MOTO_RECORDER_FILEPATH`` before moto starts) while recording is on."""

    def __init__(self, moto: MotoServer, path: Path) -> None:
        self.moto, self.path = moto, path

    def restart(self) -> None:
        _post(self.moto, "/moto-api/recorder/stop-recording")
        self.path.write_text("")
        _post(self.moto, "/moto-api/recorder/start-recording")

    def actions(self) -> tuple[Counter[str], int]:
        """The recorded requests' actions (EC2's query ``Action``, else the method and path),
        leaving out this script's own requests; and how many of those were left out. The
        entries are decoded one after the other, not by line: moto writes an entry and its
        newline in two writes, so concurrent requests may put two entries on one line."""
        text = self.path.read_text(errors="replace")
        decoder = json.JSONDecoder()
        out: Counter[str] = Counter()
        ours, i = 0, 0
        while True:
            while i < len(text) and text[i].isspace():
                i += 1
            if i >= len(text):
                break
            entry, i = decoder.raw_decode(text, i)
            headers = {k.lower(): v for k, v in (entry.get("headers") or {}).items()}
            if BENCH_AGENT in str(headers.get("user-agent", "")):
                ours += 1
                continue
            out[_action(entry)] += 1
        return out, ours


def _action(entry: JSON) -> str:
    body = entry.get("body") or ""
    if entry.get("body_encoded"):
        body = base64.b64decode(body).decode(errors="replace")
    action = parse_qs(str(body)).get("Action")
    if action:
        return action[0]
    return f"{entry.get('method')} {str(entry.get('url', '')).split('?')[0]}"


def _world(moto: MotoServer) -> dict[str, str]:
    """Reset moto to nothing, then what an EC2 environment names: a VPC's subnet, a security
    group and the instance profile."""
    _post(moto, "/moto-api/reset")
    ec2 = _client(moto)
    vpc = ec2.create_vpc(CidrBlock=CIDR)["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=CIDR)["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="mnp-nodes", Description="mnp nodes",
                                      VpcId=vpc)["GroupId"]  # fmt: skip
    iam = _client(moto, "iam")
    iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument="{}")
    iam.create_instance_profile(InstanceProfileName=ROLE)
    iam.add_role_to_instance_profile(InstanceProfileName=ROLE, RoleName=ROLE)
    return {"subnet": subnet, "group": group}


def _instances(ec2: Any, filters: list[JSON]) -> list[JSON]:
    pages = ec2.get_paginator("describe_instances").paginate(Filters=filters)
    return [i for p in pages for r in p["Reservations"] for i in r["Instances"]]


def _log_time(stamp: str) -> float:
    """The epoch seconds of a head log line's ``asctime`` (local time, milliseconds)."""
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def scale_round(moto: MotoServer, rec: Recorder, scratch: Path, strategy: str,
                jobs: int) -> tuple[JSON, JSON]:
    """One head's scale-out for ``jobs`` children (see the module docstring); also returns
    the RunInstances arguments the baseline repeats (taken from the head's first instance)."""
    world = _world(moto)
    ec2 = _client(moto)
    home = Path(tempfile.mkdtemp(prefix="mnp-bench-ec2-", dir=scratch))
    cluster = Cluster(home / "home", nodes=0, lost_after=600.0, min_timeout=60.0,
                      kill_grace=5.0, mpi_hang=10.0)  # fmt: skip
    cluster.extra_env.update({
        "MNP_EC2": "1", "AWS_ENDPOINT_URL_EC2": moto.url, "AWS_DEFAULT_REGION": moto.region,
        "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIALS["aws_secret_access_key"],
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
    })  # fmt: skip
    log = cluster.home / "head-test.log"
    target = -(-jobs // PER_INSTANCE)
    try:
        cluster.start(wait_nodes=False)
        c = cluster.client
        c.call("createComputeEnvironment", {
            "computeEnvironmentName": "fleet", "type": "MANAGED",
            "computeResources": {
                "type": "EC2", "allocationStrategy": strategy, "minvCpus": 0,
                "maxvCpus": 4 * target * INSTANCE_VCPUS, "desiredvCpus": 0,
                "instanceTypes": [INSTANCE_TYPE], "subnets": [world["subnet"]],
                "securityGroupIds": [world["group"]], "instanceRole": ROLE, "imageId": AMI}})
        c.call("createJobQueue", {"jobQueueName": "fleet", "priority": 1,
               "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "fleet"}]})
        wait_for("the environment VALID", lambda: c.call(
            "describeComputeEnvironments", {"computeEnvironments": ["fleet"]}
        )["computeEnvironments"][0]["status"] == "VALID", 60)  # fmt: skip
        cluster.register("work", ["true"], container={"resourceRequirements": [
            {"type": "VCPU", "value": str(JOB_VCPUS)},
            {"type": "MEMORY", "value": str(JOB_MEMORY_MIB)}]})  # fmt: skip
        if LAUNCHED.search(log.read_text(errors="replace")):
            raise RuntimeError("the head launched instances before any job was submitted")
        rec.restart()
        t0 = time.time()
        c.submit({"jobName": "many", "jobQueue": "fleet", "jobDefinition": "work",
                  "arrayProperties": {"size": jobs}})  # fmt: skip
        submit_s = time.time() - t0

        def launched() -> list[tuple[str, str, str]] | None:
            got = LAUNCHED.findall(log.read_text(errors="replace"))
            return got if len(got) >= target else None

        lines = wait_for(f"{target} instances launched", launched, 600, interval=0.05)
        seen_s = time.time() - t0
        actions, ours = rec.actions()
        time.sleep(2)  # anything more the head would launch shows up by now
        more = LAUNCHED.findall(log.read_text(errors="replace"))
        last = max(_log_time(stamp) for stamp, _, _ in lines)
        mine = _instances(ec2, [{"Name": "tag:mnp:ce", "Values": ["fleet"]}])
        types = Counter(str(i["InstanceType"]) for i in mine)
        nodes = [n for n in c.call("listNodes", {"includeGone": True})["nodes"]
                 if n["computeEnvironment"] == "fleet"]  # fmt: skip
        first = next(i for i in mine if i["InstanceId"] == lines[0][2])
        user_data = ec2.describe_instance_attribute(InstanceId=first["InstanceId"],
                                                    Attribute="userData")  # fmt: skip
        template = {
            "ImageId": first["ImageId"], "InstanceType": first["InstanceType"],
            "SubnetId": first["SubnetId"],
            "SecurityGroupIds": [g["GroupId"] for g in first.get("SecurityGroups", [])],
            "IamInstanceProfile": {"Name": ROLE},
            "UserData": base64.b64decode(user_data["UserData"]["Value"]).decode(),
            "tags": {t["Key"]: t["Value"] for t in first.get("Tags", [])},
        }
    except BaseException:
        _say(f"head log tail ({log}):\n" + "\n".join(
            log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else "")
        raise
    finally:
        cluster.stop()
        shutil.rmtree(home, ignore_errors=True)
    if len(mine) != target or len(more) != target or set(types) != {INSTANCE_TYPE}:
        raise RuntimeError(f"{target} {INSTANCE_TYPE} instances wanted: moto holds "
                           f"{dict(types)}, the head logged {len(more)} launches")
    runs = actions.get("RunInstances", 0)
    total = sum(actions.values())
    return {
        "strategy": strategy, "jobs": jobs, "target_instances": target,
        "submit_call_s": round(submit_s, 4),
        "to_all_launched_s": round(last - t0, 3),
        "client_observed_s": round(seen_s, 3),
        "launched_lines": len(lines), "launched_lines_2s_later": len(more),
        "moto_instances": len(mine), "moto_instance_types": dict(types),
        "node_records": len(nodes),
        "requests": dict(sorted(actions.items())), "requests_total": total,
        "benchmark_requests_left_out": ours,
        "requests_per_instance": round(total / target, 4),
        "run_instances_per_instance": round(runs / target, 4),
        "s_per_instance": round((last - t0) / target, 5),
    }, template


def bare_round(moto: MotoServer, rec: Recorder, template: JSON, count: int,
               threads: int) -> JSON:
    """``count`` bare ``run_instances`` calls like the head's, ``threads`` at a time."""
    world = _world(moto)
    ec2 = boto3.client("ec2", **moto.client_args())  # recorded: not the benchmark's agent
    tags = template["tags"]
    params = {k: v for k, v in template.items() if k != "tags"}
    params.update(SubnetId=world["subnet"], SecurityGroupIds=[world["group"]])
    lock = threading.Lock()
    done: list[str] = []

    def one(k: int) -> None:
        values = {**tags, "mnp:node": f"bare-{k:05d}"}
        answer = ec2.run_instances(
            MinCount=1, MaxCount=1, ClientToken=f"bare-{threads}-{k}",
            TagSpecifications=[{"ResourceType": "instance", "Tags": [
                {"Key": key, "Value": value} for key, value in values.items()]}],
            **params)  # fmt: skip
        with lock:
            done.append(answer["Instances"][0]["InstanceId"])

    rec.restart()
    t0 = time.perf_counter()
    if threads == 1:
        for k in range(count):
            one(k)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(count)))
    took = time.perf_counter() - t0
    actions, _ = rec.actions()
    if actions.get("RunInstances") != count or len(done) != count:
        raise RuntimeError(f"the recorder saw {dict(actions)} for {count} bare RunInstances")
    return {"threads": threads, "calls": count, "s": round(took, 3),
            "s_per_call": round(took / count, 5), "recorded": dict(actions)}


def scale_out(moto: MotoServer, rec: Recorder, scratch: Path, jobs: int, rounds: int) -> JSON:
    by_strategy: dict[str, list[JSON]] = {s: [] for s in SCALE_STRATEGIES}
    bare: dict[int, list[JSON]] = {BASELINE_THREADS: [], 1: []}
    for r in range(rounds):
        template: JSON = {}
        for strategy in SCALE_STRATEGIES:
            _say(f"round {r + 1}/{rounds}: {strategy}, {jobs} jobs")
            got, template = scale_round(moto, rec, scratch, strategy, jobs)
            by_strategy[strategy].append(got)
            _say(f"  {got['launched_lines']} launched in {got['to_all_launched_s']:.2f} s, "
                 f"requests {got['requests']}")
        target = -(-jobs // PER_INSTANCE)
        for threads in bare:
            _say(f"round {r + 1}/{rounds}: {target} bare RunInstances, {threads} at a time")
            bare[threads].append(bare_round(moto, rec, template, target, threads))
            _say(f"  {bare[threads][-1]['s']:.2f} s")

    def med(rows: list[JSON], key: str) -> float:
        return round(statistics.median(float(x[key]) for x in rows), 4)

    out: JSON = {"instance_type": INSTANCE_TYPE, "instance_vcpus": INSTANCE_VCPUS,
                 "job_vcpus": JOB_VCPUS, "job_memory_mib": JOB_MEMORY_MIB, "jobs": jobs,
                 "jobs_per_instance": PER_INSTANCE, "target_instances": -(-jobs // PER_INSTANCE),
                 "submission": f"one array job of {jobs:,} children", "rounds": rounds,
                 "strategies": {}, "bare": {}}  # fmt: skip
    base = med(bare[BASELINE_THREADS], "s")
    for threads, rows in bare.items():
        out["bare"][str(threads)] = {"median_s": med(rows, "s"),
                                     "median_s_per_call": med(rows, "s_per_call"),
                                     "rounds": rows}
    for strategy, rows in by_strategy.items():
        t = med(rows, "to_all_launched_s")
        out["strategies"][strategy] = {
            "median_to_all_launched_s": t,
            "median_client_observed_s": med(rows, "client_observed_s"),
            "median_s_per_instance": med(rows, "s_per_instance"),
            "median_requests_per_instance": med(rows, "requests_per_instance"),
            "median_submit_call_s": med(rows, "submit_call_s"),
            "ratio_to_bare": round(t / base, 2) if base else None,
            "rounds": rows,
        }
    return out


def chooser(catalogue: Catalogue, jobs: int, calls: int) -> JSON:
    """:func:`choose`'s decision time for ``jobs`` jobs, per type set and strategy."""
    prices = load_prices()
    demand = [Need(f"j{i}", float(SHAPES[i % len(SHAPES)][0]), SHAPES[i % len(SHAPES)][1])
              for i in range(jobs)]  # fmt: skip
    x86 = sorted(t.name for t in catalogue if t.architecture == "x86_64")
    sets = {"optimal": ["optimal"], "every x86_64 type": x86}
    out: JSON = {"catalogue_types": len(catalogue), "x86_64_types": len(x86), "jobs": jobs,
                 "shapes": [list(s) for s in SHAPES], "calls": calls, "results": []}
    for label, allowed in sets.items():
        for strategy in Strategy:
            times = []
            decision = None
            for _ in range(calls):
                t0 = time.perf_counter()
                decision = choose(demand, catalogue, allowed, strategy, 10**7, 0, prices=prices)
                times.append(time.perf_counter() - t0)
            assert decision is not None
            row = {"types": label, "allowed": len(catalogue.expand(allowed)),
                   "strategy": strategy.value,
                   "median_ms": round(statistics.median(times) * 1000, 2),
                   "max_ms": round(max(times) * 1000, 2),
                   "instances": sum(n for _, n in decision.pairs()),
                   "instance_types": dict(decision.pairs()),
                   "waiting": len(decision.waiting)}
            _say(f"chooser {label} {strategy.value}: {row['median_ms']:.1f} ms, "
                 f"{row['instances']} instances, {row['waiting']} waiting")
            out["results"].append(row)
    return out


def run(scratch: Path, jobs: int, rounds: int, calls: int) -> JSON:
    record = scratch / "moto-recording.jsonl"
    saved = os.environ.get("MOTO_RECORDER_FILEPATH")
    os.environ["MOTO_RECORDER_FILEPATH"] = str(record)  # moto_server inherits it
    try:
        with MotoServer() as moto:
            rec = Recorder(moto, record)
            t = time.perf_counter()
            catalogue = catalogue_from_ec2(_client(moto))
            catalogue_s = time.perf_counter() - t
            picked = chooser(catalogue, 1000, calls)
            picked["describe_instance_types_s"] = round(catalogue_s, 3)
            scaled = scale_out(moto, rec, scratch, jobs, rounds)
    finally:
        if saved is None:
            os.environ.pop("MOTO_RECORDER_FILEPATH", None)
        else:
            os.environ["MOTO_RECORDER_FILEPATH"] = saved
    return {"scale_out": scaled, "chooser": picked, "cpus": os.cpu_count()}


def _requests_text(req: dict[str, int]) -> str:
    return ", ".join(f"{n} {a}" for a, n in sorted(req.items(), key=lambda x: (-x[1], x[0])))


def table(results: JSON) -> str:
    """The README's tables of :func:`run`'s results."""
    s, ch = results["scale_out"], results["chooser"]
    n = s["target_instances"]
    b8, b1 = s["bare"][str(BASELINE_THREADS)], s["bare"]["1"]
    lines = [
        f"| scale-out, {s['jobs']:,} RUNNABLE jobs → {n} instances requested (median) "
        f"| time | per instance | EC2 requests per instance (ideal 1) "
        f"| ÷ bare RunInstances, {BASELINE_THREADS} at a time |",
        "|---|---|---|---|---|",
    ]
    for strategy, r in s["strategies"].items():
        last = r["rounds"][len(r["rounds"]) // 2]
        lines.append(
            f"| {strategy} (requests in one round: {_requests_text(last['requests'])}) "
            f"| {r['median_to_all_launched_s']:.2f} s | {r['median_s_per_instance'] * 1000:.1f} ms "
            f"| {r['median_requests_per_instance']:.3f} | {r['ratio_to_bare']:.2f} |")
    lines += [
        f"| baseline: {n} bare boto3 `run_instances`, {BASELINE_THREADS} at a time "
        f"| {b8['median_s']:.2f} s | {b8['median_s_per_call'] * 1000:.1f} ms | 1 | 1 |",
        f"| {n} bare boto3 `run_instances`, one at a time | {b1['median_s']:.2f} s "
        f"| {b1['median_s_per_call'] * 1000:.1f} ms | 1 | "
        f"{b1['median_s'] / b8['median_s']:.2f} |",
        "",
        f"| chooser, {ch['jobs']:,} jobs (median of {ch['calls']}) | BEST_FIT "
        "| BEST_FIT_PROGRESSIVE | SPOT_CAPACITY_OPTIMIZED | SPOT_PRICE_CAPACITY_OPTIMIZED |",
        "|---|---|---|---|---|",
    ]
    for label in dict.fromkeys(r["types"] for r in ch["results"]):
        rows = {r["strategy"]: r for r in ch["results"] if r["types"] == label}
        allowed = next(iter(rows.values()))["allowed"]
        cells = [f"{rows[st.value]['median_ms']:.1f} ms ({rows[st.value]['instances']} "
                 f"instances)" for st in Strategy]  # fmt: skip
        lines.append(f"| `{label}` ({allowed} types) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1000,
                    help=f"array children; {PER_INSTANCE} per instance")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--choose-calls", type=int, default=5)
    ap.add_argument("--scratch", type=Path, default=None)
    ap.add_argument("--output", type=Path, default=RESULTS, help="results JSON")
    args = ap.parse_args()
    if shutil.which("moto_server") is None:
        raise SystemExit("needs moto_server (pip install 'moto[server]')")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        results = run(Path(tmp), args.jobs, args.rounds, args.choose_calls)
    save_standalone(results, t0, args.output, table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
