"""Benchmark 5, MNP launch overhead: an 8-rank MPICH job on 4 nodes, submit → SUCCEEDED,
against raw ``mpiexec`` over the same SSH endpoints (:mod:`benchmarks.mnp_raw`)."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

from benchmarks.config import JSON, TARGETS, Sizes, say
from benchmarks.cpu import CpuMeter, wait_quiet
from benchmarks.head import HeadNode
from benchmarks.jobs import history_at, history_s
from benchmarks.mnp_raw import RAW_PER_JOB, RawMpiexec
from benchmarks.multinode import mnp_definition, run_mnp_job
from benchmarks.report import Row, load, target, verdict
from benchmarks.stats import median, s3

MNP_NODES = 4
MNP_TASKS_PER_NODE = 2
MNP_VCPUS = 2
BARRIER = "from mpi4py import MPI; MPI.COMM_WORLD.Barrier()"
MNP_COMMANDS: dict[str, list[str]] = {
    "true": ["/bin/true"],
    "barrier": [sys.executable, "-c", BARRIER],
}


def wire_ready_s(log: str) -> float | None:
    """``launcher.wire: 3 nodes ready in 0.15 s`` → 0.15."""
    for line in log.splitlines():
        if line.startswith("launcher.wire:") and " nodes ready in " in line:
            with contextlib.suppress(ValueError):
                return float(line.rsplit(" in ", 1)[1].split()[0])
    return None


class _Rounds:
    """What the measured rounds collect: per command, one sample per MNP job, and the raw
    mpiexec times (plus ``wire_dry_run``) with one entry per baseline job."""

    def __init__(self, head: HeadNode, baseline: RawMpiexec, argv_check: JSON) -> None:
        self.head = head
        self.baseline = baseline
        self.argv_check = argv_check
        self.samples: dict[str, list[JSON]] = {kind: [] for kind in MNP_COMMANDS}
        self.raw: dict[str, list[float]] = {kind: [] for kind in [*MNP_COMMANDS, "wire_dry_run"]}
        self.raw_jobs: list[JSON] = []

    def raw_job(self, iterations: int) -> None:
        """One baseline job; raises if its mpiexec argv is not the one checked at warm-up."""
        time.sleep(0.3)
        phase = CpuMeter(self.head).start()
        got, job_s = self.baseline.run(iterations)
        if got["argv"] != self.argv_check:
            raise RuntimeError(f"mnp: raw argv changed: {got['argv']}")
        for kind, times in got["times_s"].items():
            self.raw[kind] += [s3(t) for t in times]
        self.raw_jobs.append({"job_s": s3(job_s), "other_pct": phase.stop()["other_pct"]})

    def mnp_job(self, kind: str) -> None:
        c = self.head.c
        time.sleep(0.3)  # idle: the previous job's nodes are free and reported
        phase = CpuMeter(self.head).start()
        detail, node_jobs, client_s = run_mnp_job(c, f"mnp-{kind}", MNP_NODES)
        other = phase.stop()["other_pct"]
        last_child = max(int(history_at(d, "RUNNING") or 0) for d in node_jobs[1:])
        self.samples[kind].append({
            "client_s": s3(client_s),
            "history_s": history_s(detail, "SUBMITTED", "SUCCEEDED"),
            "to_running_s": history_s(detail, "SUBMITTED", "RUNNING"),
            "running_to_last_child_running_s":
                (last_child - int(history_at(detail, "RUNNING") or 0)) / 1000,
            "running_to_succeeded_s": history_s(detail, "RUNNING", "SUCCEEDED"),
            "wire_ready_s": wire_ready_s("".join(c.logs(f"{detail['jobId']}#0"))),
            "other_pct": other,
        })


def _per_kind(kind: str, ss: list[JSON], raw: list[float], warmup: JSON) -> JSON:
    """The result of one command: its samples, the raw baseline, and the target check."""
    ratio, slack = TARGETS["mnp_ratio_to_raw_mpiexec"], TARGETS["mnp_slack_s"]
    client = [x["client_s"] for x in ss]
    history = [x["history_s"] for x in ss]
    raw_median = median(raw)
    limit = ratio * raw_median + slack
    wire = [x["wire_ready_s"] for x in ss if x["wire_ready_s"] is not None]
    return {
        "command": MNP_COMMANDS[kind],
        "mnp_client_s": client,
        "mnp_history_s": history,
        "raw_mpiexec_s": raw,
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
        "warmup_s": warmup,
    }


def _result(n: int, rounds: _Rounds, argv_check: JSON, per_kind: JSON, quiet: float,
            cpu: JSON) -> JSON:
    kinds = list(MNP_COMMANDS)
    ratio, slack = TARGETS["mnp_ratio_to_raw_mpiexec"], TARGETS["mnp_slack_s"]
    raw, raw_jobs = rounds.raw, rounds.raw_jobs
    return {
        "nodes": MNP_NODES,
        "tasks_per_node": MNP_TASKS_PER_NODE,
        "ranks": MNP_NODES * MNP_TASKS_PER_NODE,
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


def run(sizes: Sizes, scratch: Path, keep: bool) -> JSON:
    n = sizes.mnp_samples
    kinds = list(MNP_COMMANDS)
    with HeadNode(scratch, "mnp", keep, nodes=MNP_NODES, vcpus=MNP_VCPUS) as head:
        c = head.c
        for kind, command in MNP_COMMANDS.items():
            c.register_job_definition(mnp_definition(
                f"mnp-{kind}", MNP_NODES, command, None, "mpich", MNP_TASKS_PER_NODE, 300))
        say(f"mnp: warm-up ({', '.join(kinds)}, raw), {MNP_NODES * MNP_TASKS_PER_NODE} ranks "
            f"on {MNP_NODES} nodes")
        warmup = {kind: s3(run_mnp_job(c, f"mnp-{kind}", MNP_NODES)[2]) for kind in kinds}
        baseline = RawMpiexec(c, MNP_NODES, MNP_TASKS_PER_NODE, MNP_COMMANDS)
        warm_raw, _ = baseline.run(1)
        argv_check = warm_raw["argv"]
        if any(v["mnp"] != v["raw"] for v in argv_check.values()):
            raise RuntimeError(f"mnp: the raw mpiexec argv differs from mnp's: {argv_check}")
        quiet = wait_quiet()
        say(f"  {n} rounds: one MNP job per command; a raw mpiexec job ({RAW_PER_JOB} runs "
            f"per command) every {RAW_PER_JOB} rounds")
        meter = CpuMeter(head).start()
        rounds = _Rounds(head, baseline, argv_check)
        for r in range(n):  # interleaved: drift in the machine's load weighs on both sides
            if r % RAW_PER_JOB == 0:
                rounds.raw_job(min(RAW_PER_JOB, n - r))
            for kind in kinds:
                rounds.mnp_job(kind)
        cpu = meter.stop()
    per_kind: JSON = {
        kind: _per_kind(kind, rounds.samples[kind], rounds.raw[kind],
                        {"mnp": warmup[kind], "raw": s3(warm_raw["times_s"][kind][0])})
        for kind in kinds}
    result = _result(n, rounds, argv_check, per_kind, quiet, cpu)
    for kind in kinds:
        k = per_kind[kind]
        say(f"  {kind}: mnp {k['median_mnp_client_s']} s (history {k['median_mnp_history_s']})"
            f", raw {k['median_raw_mpiexec_s']} s, ratio {k['ratio_client']}, "
            f"limit {k['limit_s']} s, met {k['met']}")
    return result


def rows(mn: JSON, results: JSON) -> list[Row]:
    out: list[Row] = []
    shape = f"{mn['ranks']} ranks on {mn['nodes']} nodes"
    goal = (f"≤ {target(results, 'mnp_ratio_to_raw_mpiexec'):g} × raw + "
            f"{target(results, 'mnp_slack_s'):g} s")
    for i, kind in enumerate(k for k in MNP_COMMANDS if k in mn):
        r = mn[kind]
        label = {"true": "`/bin/true`", "barrier": "mpi4py `Barrier()`"}.get(kind, kind)
        first = f"5. MNP launch, {shape}, {label}" if i == 0 else f"   {label}"
        out.append((f"{first}: submit → SUCCEEDED, client / history",
                    f"{r['median_mnp_client_s']:.2f} / {r['median_mnp_history_s']:.2f} s",
                    f"raw mpiexec {r['median_raw_mpiexec_s']:.2f} s (ratio "
                    f"{r['ratio_client']:.2f} / {r['ratio_history']:.2f})",
                    f"{goal} = {r['limit_s']:.2f} s",
                    f"{verdict(r['met'])} / {verdict(r['met_history'])}",
                    load(mn) if i == 0 else ""))
    if "true" in mn:
        st = mn["true"]["stage_median_s"]
        wire = []
        if mn["true"].get("median_wire_ready_s") is not None:
            wire.append(f"SSH check {mn['true']['median_wire_ready_s'] * 1000:.0f} ms")
        if mn.get("median_wire_dry_run_s") is not None:
            wire.append(f"own start {mn['median_wire_dry_run_s'] * 1000:.0f} ms")
        out.append(("   `/bin/true` stages: submit→RUNNING / RUNNING→last child RUNNING / "
                    "RUNNING→SUCCEEDED",
                    " / ".join(f"{v * 1000:.0f}" for v in st.values()) + " ms",
                    ("launcher.wire: " + ", ".join(wire)) if wire else "", "", "", ""))
    return out


def prose(f: Sizes, results: JSON) -> str:
    ranks = MNP_NODES * MNP_TASKS_PER_NODE
    mnp_block = json.dumps({"mpi": "mpich", "tasksPerNode": MNP_TASKS_PER_NODE})
    raw_cmd = (f"mpiexec -f hostfile.mpich -n {ranks} -ppn {MNP_TASKS_PER_NODE} -launcher ssh "
               "-launcher-exec ssh-wrapper -iface lo -genvnone <command>")
    ratio, slack = target(results, "mnp_ratio_to_raw_mpiexec"), target(results, "mnp_slack_s")
    return f"""\
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
   {ratio:g} × raw median + {slack:g} s (client-observed; "met" shows
   client / history). Also reported: the parent's stages, how
   long `launcher.wire` waited for the other nodes (its SSH check), and its own start-up
   (`--dry-run`: interpreter, imports, `mpiexec --version`; timed in the baseline job).
"""
