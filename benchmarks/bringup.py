"""Benchmark 6, bring-up time as the gang grows: every-node MNP jobs of 2, 4 and 8 nodes,
from their histories, and the growth per node; baseline: a plain 1-vCPU job."""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.config import JSON, Sizes, say
from benchmarks.cpu import CpuMeter, wait_quiet
from benchmarks.head import HeadNode
from benchmarks.jobs import definition, history_at, history_s, wait_job
from benchmarks.multinode import mnp_definition, run_mnp_job
from benchmarks.report import Row, load
from benchmarks.stats import median, s3, slope
from mnp.client.client import Client

BRINGUP_NODES = (2, 4, 8)
BRINGUP_VCPUS = 2
BRINGUP_HEAD_NODES = max(BRINGUP_NODES)
METRICS = ("submit_to_running_s", "running_to_last_child_running_s", "submit_to_succeeded_s")


def _gang_sample(c: Client, k: int, samples: dict[str, list[float]]) -> None:
    """One every-node job of ``k`` nodes; appends its ``METRICS`` to ``samples``."""
    detail, node_jobs, _ = run_mnp_job(c, f"every{k}", k, poll=0.02)
    running = int(history_at(detail, "RUNNING") or 0)
    last_child = max(int(history_at(d, "RUNNING") or 0) for d in node_jobs[1:])
    samples["submit_to_running_s"].append(history_s(detail, "SUBMITTED", "RUNNING"))
    samples["running_to_last_child_running_s"].append((last_child - running) / 1000)
    samples["submit_to_succeeded_s"].append(history_s(detail, "SUBMITTED", "SUCCEEDED"))


def _plain_sample(c: Client, plain: dict[str, list[float]]) -> None:
    """One plain job (the baseline); appends its times to ``plain``."""
    job = c.submit({"jobName": "plain", "jobQueue": "default", "jobDefinition": "plain"})
    d = wait_job(c, job, 60, interval=0.02)
    if d["status"] != "SUCCEEDED":
        raise RuntimeError(f"bringup: plain job {job} ended {d['status']}")
    plain["submit_to_running_s"].append(history_s(d, "SUBMITTED", "RUNNING"))
    plain["submit_to_succeeded_s"].append(history_s(d, "SUBMITTED", "SUCCEEDED"))


def run(sizes: Sizes, scratch: Path, keep: bool) -> JSON:
    n = sizes.bringup_samples
    samples: dict[int, dict[str, list[float]]] = {
        k: {m: [] for m in METRICS} for k in BRINGUP_NODES}
    plain: dict[str, list[float]] = {"submit_to_running_s": [], "submit_to_succeeded_s": []}
    with HeadNode(scratch, "bringup", keep, nodes=BRINGUP_HEAD_NODES,
                  vcpus=BRINGUP_VCPUS) as head:
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
                _gang_sample(c, k, samples[k])
            time.sleep(0.3)
            _plain_sample(c, plain)
        cpu = meter.stop()
    medians = {m: {str(k): s3(median(samples[k][m])) for k in BRINGUP_NODES} for m in METRICS}
    fits: JSON = {}
    for m in METRICS:
        a, b = slope([float(k) for k in BRINGUP_NODES], [medians[m][str(k)]
                                                         for k in BRINGUP_NODES])
        fits[m] = {"slope_s_per_node": round(a, 4) + 0.0, "intercept_s": s3(b)}  # no -0.0
    result = {
        "node_counts": list(BRINGUP_NODES),
        "head_nodes": BRINGUP_HEAD_NODES,
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
    for m in METRICS:
        say(f"  {m}: {medians[m]}, slope {fits[m]['slope_s_per_node']} s/node")
    return result


def rows(bu: JSON, results: JSON) -> list[Row]:
    counts = " / ".join(str(k) for k in bu["node_counts"])
    plain = bu["baseline_plain_job_median_s"]
    labels = {
        "submit_to_running_s": (f"6. bring-up, every-node `true`, {counts} nodes: "
                                "submit → RUNNING", plain["submit_to_running_s"]),
        "running_to_last_child_running_s": ("   RUNNING → last child RUNNING", None),
        "submit_to_succeeded_s": ("   submit → SUCCEEDED", plain["submit_to_succeeded_s"]),
    }
    out: list[Row] = []
    for metric, (label, base) in labels.items():
        med = bu["median_s"][metric]
        fit = bu["fit_over_medians"][metric]
        out.append((label,
                    " / ".join(f"{med[str(k)] * 1000:.0f}" for k in bu["node_counts"])
                    + f" ms; {fit['slope_s_per_node'] * 1000:+.1f} ms/node",
                    "" if base is None else f"plain 1-vCPU job {base * 1000:.0f} ms",
                    "", "", load(bu) if metric == "submit_to_running_s" else ""))
    return out


def prose(f: Sizes, results: JSON) -> str:
    sizes6 = ", ".join(map(str, BRINGUP_NODES))
    return f"""\
6. **Bring-up time as the gang grows.** Every-node MNP jobs (`mpi: none`, range `0:` runs
   `true`) of {sizes6} nodes on one head of {BRINGUP_HEAD_NODES} nodes, round-robin over
   the sizes, {f.bringup_samples} rounds (one warm-up each first). From the histories: submit
   → parent RUNNING (the main node started), parent RUNNING → the last other node RUNNING,
   submit → parent SUCCEEDED; medians per size and the slope of a least-squares line through
   the medians (growth per node). Baseline: a plain 1-vCPU `true` job in each round on the
   same head (submit → RUNNING, → SUCCEEDED).
"""
