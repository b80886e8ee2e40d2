#!/usr/bin/env python
"""Fair share against the ideal split over long simulated runs (issue 16's benchmark).

``python benchmarks/fairshare.py [--quick]``: each case is a saturated simulated cluster
(:mod:`mnp.sim.cluster`: the real head, scheduler and SQLite store in-process, virtual nodes,
a virtual clock stepped 1 s at a time) whose fair-share queue always holds work of every share
(1-vCPU jobs of 5-30 virtual seconds, seeded, submitted share by share in
arrays of 100). After a warm-up of two decay periods, the
vCPU-seconds each share ran are counted over the rest of the run and compared with the ideal
split AWS Batch defines: a share's part is proportional to 1 / weightFactor (a factor of 0.5
gets twice the capacity of 1.0).

Reported per case: the largest and the mean absolute error of the shares' parts (in
percentage points of the cluster's vCPU-time), the busiest vCPU fraction (saturation check),
and each share's ideal and measured part. The baseline is the same workload on a FIFO queue
(no policy), measured in the same run: how far plain FIFO is from the ideal split.
Writes ``results-fairshare.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: the checkout's packages, not installed ones
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import save_standalone
from mnp.sim.cluster import Workload, cluster

JSON = dict[str, Any]
RESULTS = Path(__file__).resolve().parent / "results-fairshare.json"
MIN_SECONDS, MAX_SECONDS = 5, 30

CASES: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = (
    ("2 shares, weights 1 and 3", (("a", 1.0), ("b", 3.0))),
    ("4 shares, weights 0.5, 1, 2, 4", (("a", 0.5), ("b", 1.0), ("c", 2.0), ("d", 4.0))),
    ("8 shares, weights 1 to 8", tuple((f"s{i}", float(i)) for i in range(1, 9))),
)


def ideal(shares: tuple[tuple[str, float], ...]) -> dict[str, float]:
    inverse = {name: 1.0 / weight for name, weight in shares}
    total = sum(inverse.values())
    return {name: v / total for name, v in inverse.items()}


def run_case(name: str, shares: tuple[tuple[str, float], ...], nodes: int, vcpus: int,
             decay: int, seconds: int, fair: bool) -> JSON:  # fmt: skip
    capacity = nodes * vcpus
    # every share must have work queued to the end: the queue holds, per share, more than the
    # largest ideal part of all the jobs the run can start (jobs are submitted share by share)
    startable = capacity / ((MIN_SECONDS + MAX_SECONDS) / 2) * (2 * decay + seconds)
    target = int(startable * max(ideal(shares).values()) * len(shares) * 1.3)
    workload = Workload(
        jobs=10**7, min_seconds=MIN_SECONDS, max_seconds=MAX_SECONDS, shares=shares,
        fair_share=fair, queue_target=target, share_decay_seconds=decay, seed=7,
        array_size=100,
    )  # fmt: skip
    t0 = time.perf_counter()
    with cluster(nodes, vcpus, workload) as c:
        c.run(seconds=2 * decay)
        c.count_from_ms = c.clock.now
        c.counts.vcpu_seconds.clear()
        c.run(seconds=seconds)
        used = dict(c.counts.vcpu_seconds)
    total = sum(used.values()) or 1.0
    want = ideal(shares)
    parts = {n: used.get(n, 0.0) / total for n in want}
    errors = [abs(parts[n] - want[n]) * 100 for n in want]
    return {
        "case": name, "policy": "fair share" if fair else "FIFO", "nodes": nodes,
        "vcpus": capacity, "decay_seconds": decay, "counted_seconds": seconds,
        "busy_fraction": round(total / (capacity * seconds), 3),
        "queued_jobs": workload.queue_target,
        "max_error_points": round(max(errors), 2),
        "mean_error_points": round(sum(errors) / len(errors), 2),
        "ideal": {n: round(v, 4) for n, v in want.items()},
        "measured": {n: round(v, 4) for n, v in parts.items()},
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip


def table(results: JSON) -> str:
    lines = [
        "| shares | policy | vCPUs | busy | max error | mean error |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["cases"]:
        lines.append(
            f"| {r['case']} | {r['policy']} | {r['vcpus']} | {r['busy_fraction']:.0%} | "
            f"{r['max_error_points']:.1f} pts | {r['mean_error_points']:.1f} pts |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs (about 1 min)")
    ap.add_argument("--output", type=Path, default=RESULTS, help="results JSON")
    args = ap.parse_args()
    t0 = time.perf_counter()
    nodes, vcpus, decay, seconds = (4, 4, 120, 600) if args.quick else (8, 4, 300, 1800)
    cases = []
    for name, shares in CASES:
        cases.append(run_case(name, shares, nodes, vcpus, decay, seconds, fair=True))
        cases.append(run_case(name, shares, nodes, vcpus, decay, seconds, fair=False))
    save_standalone({"cases": cases}, t0, args.output, table({"cases": cases}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
