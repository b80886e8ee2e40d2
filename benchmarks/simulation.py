#!/usr/bin/env python
"""Scheduling decisions per wall-clock second on simulated clusters (issue 17's baseline).

``python benchmarks/simulation.py [--quick] [--full]``: each case is one run of
``python -m mnp.sim`` (:mod:`mnp.sim.cluster`: the real head, scheduler and SQLite store
in-process, virtual nodes of 35 vCPUs in an UNMANAGED environment, a virtual clock stepped
1 s at a time) in its own process, its JSON summary kept. The workload: 1-vCPU jobs of 1–60
virtual seconds (uniform, seed 1), submitted as arrays of up to 1,000 children so the queue
holds its target of unplaced jobs, on a fair-share queue of 2 shares of weight 1.

Two sweeps: node count (100, 1,000, 10,000 nodes; queue 2,000) and queue length on 100
nodes (1,000, 10,000, 50,000 queued). Each case runs its virtual seconds or until its
wall-clock limit (checked between steps: one step of a large cluster may run past it). A
decision is a placement or a completion; the rates are decisions over the wall-clock time of
the scheduling work (reports, ticks, polls; submitting apart), and the *sustained* rate the
median over the steps of the second half of the run. ``--full`` adds the issue's own size
(``--nodes 10000 --vcpus 35 --jobs 200000 --seconds 600``, queue 10,000) with a 10-minute
limit. Writes ``results-simulation.json`` (the benchmarks README shows it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: the checkout's packages, not installed ones
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import save_standalone

JSON = dict[str, Any]
ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results-simulation.json"
VCPUS = 35

# (sweep, nodes, queue, virtual seconds, wall-clock limit)
CASES = (
    ("nodes", 100, 2_000, 120, 60),
    ("nodes", 1_000, 2_000, 120, 45),
    ("nodes", 10_000, 2_000, 120, 45),
    ("queue", 100, 1_000, 60, 30),
    ("queue", 100, 10_000, 60, 30),
    ("queue", 100, 50_000, 60, 30),
)
QUICK = (
    ("nodes", 100, 2_000, 30, 20),
    ("nodes", 1_000, 2_000, 10, 20),
    ("queue", 100, 10_000, 20, 20),
)
FULL = ("full", 10_000, 10_000, 600, 600)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_case(
    sweep: str, nodes: int, queue: int, seconds: int, wall_limit: int, tree: Path = ROOT
) -> JSON:
    """One case, run with the ``mnp`` of ``tree`` (a checkout; default this one)."""
    jobs = 200_000 if sweep == "full" else max(200_000, 4 * queue)
    cmd = [
        sys.executable, "-m", "mnp.sim", "--nodes", str(nodes), "--vcpus", str(VCPUS),
        "--jobs", str(jobs), "--seconds", str(seconds), "--queue", str(queue),
        "--wall-limit", str(wall_limit),
    ]  # fmt: skip
    _say(f"{sweep}: {' '.join(cmd[3:])}")
    done = subprocess.run(
        cmd, cwd=tree, capture_output=True, text=True, check=True, timeout=wall_limit * 4 + 600
    )
    out: JSON = json.loads(done.stdout)
    out["sweep"] = sweep
    out["command"] = "python -m mnp.sim " + " ".join(cmd[3:])
    return out


def with_baseline(case: tuple[str, int, int, int, int], baseline: Path) -> JSON:
    """The case run on this checkout and on ``baseline`` (the baseline first): this one's
    figures, the baseline's beside them and the ratio of the sustained rates."""
    before = run_case(*case, tree=baseline)
    out = run_case(*case)
    keep = ("virtual_seconds", "decisions", "placed", "completed", "wall_seconds_by_phase",
            "decisions_per_scheduling_second", "sustained_decisions_per_second",
            "cut_short_by_wall_limit")  # fmt: skip
    out["baseline"] = {k: before[k] for k in keep}
    if before["sustained_decisions_per_second"] > 0:
        out["sustained_vs_baseline"] = round(
            out["sustained_decisions_per_second"] / before["sustained_decisions_per_second"], 2
        )
    return out


def table(results: JSON) -> str:
    """The README's table of the cases."""
    lines = [
        "| case | nodes (vCPUs) | queue | virtual s run | decisions (placed + done) "
        "| decisions / s, sustained (whole run) | wall: tick / poll / report / submit "
        "| baseline: decisions / s, sustained (virtual s run) | ÷ baseline |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["cases"]:
        phases = r["wall_seconds_by_phase"]
        cut = " (wall limit)" if r["cut_short_by_wall_limit"] else ""
        lines.append(
            f"| {r['sweep']} | {r['nodes']:,} ({r['vcpus']:,.0f}) | {r['queue_target']:,} "
            f"| {r['virtual_seconds']:g}{cut} | {r['decisions']:,} "
            f"({r['placed']:,} + {r['completed']:,}) "
            f"| {r['sustained_decisions_per_second']:,.0f} "
            f"({r['decisions_per_scheduling_second']:,.0f}) "
            f"| {phases.get('tick', 0):.1f} / {phases.get('poll', 0):.1f} / "
            f"{phases.get('report', 0):.1f} / {phases.get('submit', 0):.1f} s |"
            + _baseline_cells(r)
        )
    return "\n".join(lines) + "\n"


def _baseline_cells(r: JSON) -> str:
    b = r.get("baseline")
    if b is None:
        return " – | – |"
    cut = ", wall limit" if b["cut_short_by_wall_limit"] else ""
    return (
        f" {b['sustained_decisions_per_second']:,.0f} ({b['virtual_seconds']:g}{cut})"
        f" | {r.get('sustained_vs_baseline', '–')}× |"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="three short cases (about 1 min)")
    ap.add_argument("--full", action="store_true", help="add the 10,000-node CLI run (10 min)")
    ap.add_argument("--output", type=Path, default=RESULTS, help="results JSON")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="another checkout: each case also runs on it, just before")  # fmt: skip
    args = ap.parse_args()
    t0 = time.perf_counter()
    cases = list(QUICK if args.quick else CASES)
    if args.full:
        cases.append(FULL)
    base = args.baseline
    results: JSON = {
        "vcpus_per_node": VCPUS,
        "baseline": str(base) if base is not None else None,
        "cases": [run_case(*c) if base is None else with_baseline(c, base) for c in cases],
    }
    output = args.output
    if args.quick and output == RESULTS:
        output = output.with_name("results-simulation-quick.json")
    save_standalone(results, t0, output, table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
