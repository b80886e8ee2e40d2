#!/usr/bin/env python
"""Elastic scale-out and scale-in of a MANAGED environment on the local provider (issue 12).

``python benchmarks/elastic.py [--nodes N] [--rounds R] [--sleep S] [--idle S]``: per round,
on a fresh head (``mnp up --nodes 0``: no default environment), an AWS-shaped environment
(``minvCpus 0``, ``maxvCpus = 4 N``: N nodes of 4 vCPUs, namespace nodes when root) gets
``4 N`` one-vCPU ``sleep S`` jobs at once. Measured from the jobs' histories (head clock):
first submit → the last job RUNNING; the provider's launch and terminate calls and the nodes
in each (the head's log, one line per call of :class:`mnp.providers.local.LocalProvider`);
then the scale-in: the last job's end → every node STOPPED (client-observed), with
``MNP_SCALE_IN_AFTER_SECONDS = idle``. Baseline in the same round: the same jobs on a head
whose fixed default environment of N nodes of 4 vCPUs is already up (ratio elastic ÷ fixed).
Medians over the rounds; writes ``results-elastic.json`` (the benchmarks README shows it).
Every head, agent and namespace is stopped and removed by PID (:class:`benchmarks.head.
HeadNode`), also on failure.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: the checkout's packages, not installed ones
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.head import HeadNode
from benchmarks.polling import wait_for
from benchmarks.report import save_standalone
from mnp.client.client import Client
from mnp.providers.netns import home_tag

JSON = dict[str, Any]
RESULTS = Path(__file__).resolve().parent / "results-elastic.json"
VCPUS = 4
CE, QUEUE, DEFINITION = "elastic", "eq", "sleeper"
TAGS: set[str] = set()
"""The network tags of the homes of the heads this run started (their namespaces' names)."""
CALL = re.compile(r"provider (launch|terminate): (\d+) node\(s\) in one call")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _definition(c: Client, sleep_s: float) -> None:
    c.register_job_definition({
        "jobDefinitionName": DEFINITION, "type": "container",
        "containerProperties": {
            "command": ["sleep", f"{sleep_s:g}"],
            "resourceRequirements": [{"type": "VCPU", "value": "1"},
                                     {"type": "MEMORY", "value": "64"}]}})


def _elastic_environment(c: Client, nodes: int) -> None:
    c.call("createComputeEnvironment", {
        "computeEnvironmentName": CE, "type": "MANAGED",
        "computeResources": {"type": "EC2", "minvCpus": 0, "maxvCpus": nodes * VCPUS,
                             "instanceTypes": ["optimal"], "subnets": []}})
    c.call("createJobQueue", {
        "jobQueueName": QUEUE, "priority": 1,
        "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": CE}]})


def _set_state(c: Client, ce: str, state: str) -> None:
    c.call("updateComputeEnvironment", {"computeEnvironment": ce, "state": state})


def _run_jobs(c: Client, ce: str, queue: str, count: int, timeout: float) -> JSON:
    """``count`` jobs held RUNNABLE behind the DISABLED environment ``ce``, which is then
    enabled; waits until every job has SUCCEEDED. Times from the jobs' histories (the head's
    clock is this machine's wall clock, epoch milliseconds), in seconds from the enable call."""
    _set_state(c, ce, "DISABLED")
    t0 = time.perf_counter()
    ids = [c.submit({"jobName": f"j{i}", "jobQueue": queue, "jobDefinition": DEFINITION})
           for i in range(count)]
    submit_s = time.perf_counter() - t0
    wait_for(f"{count} jobs RUNNABLE", lambda: len(c.list_jobs(queue, "RUNNABLE")) == count, 60)
    enabled_at = time.time()
    _set_state(c, ce, "ENABLED")
    states = c.wait(ids, timeout=timeout, poll_interval=0.25)
    bad = {j: s for j, s in states.items() if s != "SUCCEEDED"}
    if bad:
        raise RuntimeError(f"{len(bad)} jobs did not succeed: {list(bad.items())[:3]}")
    jobs = c.describe_jobs(ids)

    def at(job: JSON, status: str) -> float:
        return float(next(h["at"] for h in job["history"] if h["status"] == status)) / 1000

    last_running = max(at(j, "RUNNING") for j in jobs)
    first_done = min(at(j, "SUCCEEDED") for j in jobs)
    return {"submit_s": round(submit_s, 3),
            "to_first_running_s": round(min(at(j, "RUNNING") for j in jobs) - enabled_at, 3),
            "to_all_running_s": round(last_running - enabled_at, 3),
            "all_ran_at_once": last_running < first_done,
            "last_done_at": max(at(j, "SUCCEEDED") for j in jobs)}


def _calls(head: HeadNode) -> dict[str, list[int]]:
    """The nodes in each provider call the head's log shows, by kind, in order."""
    text = (head.home / "head.log").read_text(errors="replace")
    out: dict[str, list[int]] = {"launch": [], "terminate": []}
    for kind, n in CALL.findall(text):
        out[kind].append(int(n))
    if not out["launch"]:  # the nodes ran, so the provider's log line must have changed
        raise RuntimeError(f"no provider call in {head.home / 'head.log'} matches {CALL.pattern}")
    return out


def elastic_round(scratch: Path, nodes: int, sleep_s: float, idle_s: float) -> JSON:
    """One elastic round on a fresh head (see the module docstring)."""
    os.environ["MNP_SCALE_IN_AFTER_SECONDS"] = f"{idle_s:g}"
    with HeadNode(scratch, "elastic", nodes=0, vcpus=VCPUS) as head:
        TAGS.add(home_tag(head.home))
        c = head.c
        _definition(c, sleep_s)
        _elastic_environment(c, nodes)
        wait_for("the environment VALID", lambda: c.call(
            "describeComputeEnvironments", {"computeEnvironments": [CE]}
        )["computeEnvironments"][0]["status"] == "VALID", 30)
        if c.nodes(CE):
            raise RuntimeError("an empty elastic environment started nodes")
        got = _run_jobs(c, CE, QUEUE, nodes * VCPUS, timeout=300)
        head.agent_pids |= {int(n["pid"]) for n in c.nodes(CE) if n.get("pid")}
        wait_for("every elastic node STOPPED", lambda: all(
            n["status"] == "STOPPED" for n in c.nodes(CE)), idle_s + 180, interval=0.2)
        got["scale_in_s"] = round(time.time() - got["last_done_at"], 3)
        got["calls"] = _calls(head)
    return got


def fixed_round(scratch: Path, nodes: int, sleep_s: float) -> JSON:
    """The baseline: the same jobs on an already-up fixed environment of ``nodes`` nodes."""
    t0 = time.perf_counter()
    with HeadNode(scratch, "fixed", nodes=nodes, vcpus=VCPUS) as head:
        TAGS.add(home_tag(head.home))
        up_s = time.perf_counter() - t0
        _definition(head.c, sleep_s)
        got = _run_jobs(head.c, "local", "default", nodes * VCPUS, timeout=300)
        got["head_up_s"] = up_s
    return got


def _leftover_namespaces() -> list[str]:
    """The namespaces of this run's heads still there (other heads' are not ours to judge)."""
    try:
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    names = [line.split()[0] for line in out.stdout.splitlines() if line.strip()]
    return [n for n in names if any(n.startswith(f"mnp-{t}-") for t in TAGS)]


def run(scratch: Path, nodes: int, rounds: int, sleep_s: float, idle_s: float) -> JSON:
    """``rounds`` alternating elastic/fixed rounds; medians and the ratio elastic ÷ fixed."""
    el: list[JSON] = []
    fx: list[JSON] = []
    for r in range(rounds):
        _say(f"round {r + 1}/{rounds}: elastic, {nodes} nodes")
        el.append(elastic_round(scratch, nodes, sleep_s, idle_s))
        _say(f"  all RUNNING {el[-1]['to_all_running_s']:.1f} s, "
             f"scale-in {el[-1]['scale_in_s']:.1f} s, calls {el[-1]['calls']}")
        _say(f"round {r + 1}/{rounds}: fixed, {nodes} nodes")
        fx.append(fixed_round(scratch, nodes, sleep_s))
        _say(f"  all RUNNING {fx[-1]['to_all_running_s']:.1f} s")

    def med(rows: list[JSON], key: str) -> float:
        return round(statistics.median(float(x[key]) for x in rows), 3)

    e_run, f_run = med(el, "to_all_running_s"), med(fx, "to_all_running_s")
    return {
        "nodes": nodes, "vcpus_per_node": VCPUS, "jobs": nodes * VCPUS, "rounds": rounds,
        "sleep_s": sleep_s, "scale_in_after_s": idle_s,
        "elastic": {"median_to_all_running_s": e_run,
                    "median_scale_in_s": med(el, "scale_in_s"),
                    "median_submit_s": med(el, "submit_s"),
                    "launch_calls": [x["calls"]["launch"] for x in el],
                    "terminate_calls": [x["calls"]["terminate"] for x in el],
                    "all_ran_at_once": [x["all_ran_at_once"] for x in el],
                    "rounds": el},
        "fixed": {"median_to_all_running_s": f_run, "median_submit_s": med(fx, "submit_s"),
                  "median_head_up_s": med(fx, "head_up_s"),
                  "all_ran_at_once": [x["all_ran_at_once"] for x in fx], "rounds": fx},
        "elastic_to_fixed_ratio": round(e_run / f_run, 2) if f_run else None,
        "namespaces_left": _leftover_namespaces(),
    }


def _calls_text(calls: list[list[int]]) -> str:
    """Per round, ``1 call (50 nodes)`` or ``12 calls (1–10 nodes each, 50 in all)``; the
    rounds joined by ``;``."""
    def one(c: list[int]) -> str:
        if not c:
            return "none"
        if len(c) == 1:
            return f"1 call ({c[0]} nodes)"
        return f"{len(c)} calls ({min(c)}–{max(c)} nodes each, {sum(c)} in all)"

    return "; ".join(one(c) for c in calls)


def table(results: JSON) -> str:
    """The README's table of :func:`run`'s results."""
    e, f = results["elastic"], results["fixed"]
    n, jobs = results["nodes"], results["jobs"]
    return "\n".join([
        "| measurement (median) | elastic, from 0 nodes | fixed, already up | elastic ÷ fixed |",
        "|---|---|---|---|",
        f"| {jobs} RUNNABLE 1-vCPU jobs (environment enabled) → all RUNNING on {n} nodes of "
        f"{results['vcpus_per_node']} vCPUs | {e['median_to_all_running_s']:.1f} s "
        f"| {f['median_to_all_running_s']:.1f} s | {results['elastic_to_fixed_ratio']} |",
        f"| provider launch calls per round | {_calls_text(e['launch_calls'])} "
        f"| (head start: {f['median_head_up_s']:.1f} s) | |",
        f"| scale-in: last job done → all nodes STOPPED (idle delay "
        f"{results['scale_in_after_s']:g} s) | {e['median_scale_in_s']:.1f} s | | |",
        f"| provider terminate calls per round | {_calls_text(e['terminate_calls'])} | | |",
    ]) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--nodes", type=int, default=50, help="nodes of 4 vCPUs (maxvCpus / 4)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sleep", type=float, default=15.0,
                    help="each job's sleep (s): long enough that all run at once")
    ap.add_argument("--idle", type=float, default=5.0, help="scale_in_after_seconds")
    ap.add_argument("--scratch", type=Path, default=None)
    ap.add_argument("--output", type=Path, default=RESULTS, help="results JSON")
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        results = run(Path(tmp), args.nodes, args.rounds, args.sleep, args.idle)
    save_standalone(results, t0, args.output, table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
