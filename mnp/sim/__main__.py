"""``python -m mnp.sim``: run a simulated cluster (:mod:`mnp.sim.cluster`) and print its
summary as JSON.

``python -m mnp.sim --nodes 10000 --vcpus 35 --jobs 200000 --seconds 600`` runs 10,000
virtual nodes of 35 vCPUs (350,000 vCPUs) for 600 virtual seconds (or until the 200,000 jobs
are done), fair share on with two shares of equal weight; ``--wall-limit`` stops it sooner
in wall-clock time (the summary says whether it was cut short).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mnp.config import tune_gc
from mnp.sim.cluster import Workload, cluster


def _shares(text: str) -> tuple[tuple[str, float], ...]:
    """``a=1,b=3`` → (("a", 1.0), ("b", 3.0)); ``""`` or ``none``: a FIFO queue."""
    if text in ("", "none"):
        return ()
    out = []
    for part in text.split(","):
        name, _, weight = part.partition("=")
        out.append((name.strip(), float(weight or 1.0)))
    return tuple(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mnp.sim", description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--vcpus", type=int, default=35, help="vCPUs per node")
    ap.add_argument("--jobs", type=int, default=100_000, help="jobs in the workload")
    ap.add_argument("--seconds", type=float, default=600, help="virtual seconds to run")
    ap.add_argument("--queue", type=int, default=10_000, help="unplaced jobs kept queued")
    ap.add_argument("--array-size", type=int, default=1000,
                    help="children per SubmitJob (1: single jobs)")  # fmt: skip
    ap.add_argument("--shares", default="a=1,b=1",
                    help="fair-share shares as id=weightFactor,...; 'none': FIFO")  # fmt: skip
    ap.add_argument("--min-seconds", type=int, default=1)
    ap.add_argument("--max-seconds", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--step", type=float, default=1.0, help="virtual seconds per step")
    ap.add_argument("--wall-limit", type=float, default=None, help="wall-clock seconds at most")
    ap.add_argument("--home", type=Path, default=None, help="the head's home (default: a temp dir)")
    args = ap.parse_args(argv)
    tune_gc()  # as a head does (mnp.config.GC_THRESHOLDS)
    workload = Workload(
        jobs=args.jobs,
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        shares=_shares(args.shares),
        queue_target=args.queue,
        seed=args.seed,
        array_size=args.array_size,
    )
    t0 = time.perf_counter()
    with cluster(args.nodes, args.vcpus, workload, args.home, step_seconds=args.step) as c:
        setup = time.perf_counter() - t0
        finished = c.run(args.seconds, args.wall_limit)
        out = c.summary()
    out["setup_seconds"] = round(setup, 3)
    out["cut_short_by_wall_limit"] = not finished
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
